"""Secrets and access: what docs/security.md promises, proved.

- After a full simulated run with distinctive fake keys in the environment, no key or secret is in
  stdout, stderr, the event log, the state database (and its -wal/-shm), candidates.json, crash.log
  or any other file under STATE_DIR. The database is also read table by table, column by column
  (every table sqlite_master lists, so a table added later is covered without editing this file).
- A broker whose error bodies echo the request, keys included, leaves no key in any table: every
  text the store writes is redacted.
- State files are 0600 and the state directory 0700, whatever the umask.
- Symbols are validated before they reach any URL.
- Live trading needs both opt-ins; a refusal or a crash never puts a traceback on stderr.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from config.settings import AppConfig, describe_config, get_config
from tests.harness.config import make_config
from tests.harness.market import gateway_for

API_KEY = "AKSECRETTEST1234567"
SECRET_KEY = "SKsecretTEST987654321xyz"
SECRETS = (API_KEY, SECRET_KEY)
BIN = Path(sys.executable).parent
DAEMON = str(BIN / "trading-daemon")
BAD_SYMBOLS = ["../x", "A B", "AAPL/../v2/account", "aapl", "", "AAPL\n", "AAPL%2F..", "TOOLONG", "SPY?x=1",
               "../../etc/passwd", "BRK/B"]


def _needles(secret: str) -> list[bytes]:
    """The secret as it could land in a file: plain, UTF-16 (SQLite can store either), base64."""
    plain = secret.encode()
    return [plain, secret.encode("utf-16-le"), base64.b64encode(plain)[:-4], plain.lower()]


def assert_no_secret(blob: bytes | str, where: str) -> None:
    data = blob.encode() if isinstance(blob, str) else blob
    for secret in SECRETS:
        for needle in _needles(secret):
            assert needle not in data and needle not in data.lower(), f"{secret!r} found in {where}"
    # Long fragments too (a truncated key in a message is still a leak).
    for secret in SECRETS:
        for i in range(0, len(secret) - 11):
            assert secret[i:i + 12].encode() not in data, f"a fragment of {secret!r} found in {where}"


def assert_no_secret_in_database(db_path: Path, where: str) -> dict[str, int]:
    """Read EVERY table and column of a state database (from sqlite_master) and check each value.

    Returns the number of rows read per table, so a caller can tell that something was searched.
    """
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        assert "order_intents" in tables and "iterations" in tables, tables
        rows_read: dict[str, int] = {}
        for table in tables:
            columns = [row[1] for row in conn.execute(f'PRAGMA table_info("{table}")')]
            assert columns, table
            selected = ", ".join(f'"{column}"' for column in columns)
            rows = conn.execute(f'SELECT {selected} FROM "{table}"').fetchall()
            for row in rows:
                for column, value in zip(columns, row, strict=True):
                    if isinstance(value, str | bytes):
                        assert_no_secret(value, f"{where}: {table}.{column}")
            rows_read[table] = len(rows)
        for (sql,) in conn.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"):
            assert_no_secret(sql, f"{where}: schema")
    finally:
        conn.close()
    return rows_read


def _child_env(state_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k.lower() not in AppConfig.model_fields}
    env.update({"ALPACA_API_KEY": API_KEY, "ALPACA_SECRET_KEY": SECRET_KEY, "STATE_DIR": str(state_dir),
                "PATH": str(BIN) + os.pathsep + env.get("PATH", ""), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _daemon(tmp: Path, *args: str, timeout: float = 120, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAEMON, *args], cwd=tmp, env=_child_env(tmp / "state", **extra),
                          capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------- a full run, then grep everything
NOTIFY_TOKEN = "hookTOKENsecret0123456789"  # a webhook token in NOTIFY_URLS: a secret like the keys


@pytest.fixture(scope="module")
def notify_receiver() -> Iterator[Any]:
    from tests.harness.receivers import JsonReceiver

    receiver = JsonReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def full_run(tmp_path_factory: pytest.TempPathFactory,
             notify_receiver: Any) -> tuple[Path, subprocess.CompletedProcess[str]]:
    tmp = tmp_path_factory.mktemp("full-run")
    old = os.umask(0o022)  # a permissive umask: the modes must not depend on the operator's
    try:
        proc = _daemon(tmp, "run", "--sim", "--sessions", "3", "--show-settings", LOOP_INTERVAL_SECONDS="900",
                       NOTIFY_URLS=f"json://127.0.0.1:{notify_receiver.port}/hooks/{NOTIFY_TOKEN}")
    finally:
        os.umask(old)
    return tmp, proc


def test_no_secret_in_any_notification_message(full_run: tuple[Path, subprocess.CompletedProcess[str]],
                                               notify_receiver: Any) -> None:
    tmp, proc = full_run
    messages = json.dumps(notify_receiver.messages)
    kinds = notify_receiver.titles()
    assert any(" filled " in t for t in kinds) and any("daily summary" in t for t in kinds), kinds
    assert_no_secret(messages, "notification messages")
    assert NOTIFY_TOKEN not in messages
    # The webhook token is masked in --show-settings and never written anywhere else either.
    assert "NOTIFY_URLS                  set (masked)" in proc.stdout
    for path in [p for p in (tmp / "state").rglob("*") if p.is_file()]:
        assert NOTIFY_TOKEN.encode() not in path.read_bytes(), path
    assert NOTIFY_TOKEN not in proc.stdout + proc.stderr


def test_full_run_completes(full_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, proc = full_run
    assert proc.returncode == 0, proc.stderr
    assert "Summary" in proc.stdout and "iterations" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert (tmp / "state" / "sim" / "daemon.log").stat().st_size > 0
    assert (tmp / "state" / "sim" / "candidates.json").exists()
    assert "set (masked)" in proc.stdout  # --show-settings printed the key rows, masked


def test_no_secret_in_any_output_or_state_file(full_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, proc = full_run
    assert_no_secret(proc.stdout, "stdout")
    assert_no_secret(proc.stderr, "stderr")
    files = [p for p in (tmp / "state").rglob("*") if p.is_file()]
    names = {p.name for p in files}
    assert {"daemon.log", "trading.db", "candidates.json"} <= names, names
    for path in files:
        assert_no_secret(path.read_bytes(), str(path.relative_to(tmp)))
    databases = [p for p in files if p.name == "trading.db"]
    assert databases
    for db in databases:
        rows = assert_no_secret_in_database(db, str(db.relative_to(tmp)))
        assert rows["iterations"] > 0, rows
    lines = (tmp / "state" / "sim" / "daemon.log").read_text().splitlines()
    assert len(lines) > 50  # a real event log was written and searched
    for line in lines:
        assert_no_secret(line, "daemon.log line")


def test_state_files_and_directory_are_private(full_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, _ = full_run
    sim_dir = tmp / "state" / "sim"
    assert stat.S_IMODE(sim_dir.stat().st_mode) == 0o700
    for path in sim_dir.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path.name


def test_no_secret_in_the_live_database_wal_and_shm(tmp_path: Path, reset_logging: None) -> None:
    """In-process, with the store open: trading.db, -wal and -shm exist and hold no secret; all are 0600."""
    from core.broker.factory import connect
    from core.daily_scan import scan
    from core.domain.clock import SimClock
    from core.orchestrator import Orchestrator
    from core.runtime.logging_setup import configure_logging
    from core.runtime.process_lock import StateDirLock
    from core.state.store import StateStore

    state = tmp_path / "state"
    config = make_config(tmp_path, alpaca_api_key=API_KEY, alpaca_secret_key=SECRET_KEY,
                         state_dir=state, candidates_path=state / "candidates.json")
    events = io.StringIO()
    configure_logging("DEBUG", json_output=True, secrets=config.secret_values(), stream=events)
    clock = SimClock(datetime(2025, 3, 10, 14, 45, tzinfo=UTC))
    connection = connect(config, clock=clock, force_sim=True)
    old = os.umask(0o022)
    try:
        with StateDirLock(state), StateStore(state, clock) as store:
            scan(config, connection.gateway, clock)
            orch = Orchestrator(config, connection.gateway, store, clock)
            orch.startup()
            for _ in range(5):
                orch.run_iteration()
                clock.advance(900)
            files = {p.name: p for p in state.iterdir()}
            assert {"trading.db", "trading.db-wal", "trading.db-shm", "candidates.json",
                    "trading-daemon.lock", "trading-daemon.pid"} <= set(files), sorted(files)
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
            for name, path in files.items():
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, name
                assert_no_secret(path.read_bytes(), name)
            assert store.all_orders() or store.iteration_requests(), "the run wrote nothing to search"
            assert_no_secret_in_database(state / "trading.db", "live trading.db")
    finally:
        os.umask(old)
        connection.close()
    assert_no_secret(events.getvalue(), "event log")
    assert "iteration_complete" in events.getvalue()


def test_a_broker_that_echoes_the_keys_leaves_none_in_any_table(tmp_path: Path, reset_logging: None) -> None:
    """The broker's error bodies repeat the request's key id and secret: a rejected order (its reason
    goes to order_intents.message) and a failed iteration (iterations.message). Logging is configured
    WITHOUT the keys: the gateway registers the keys it uses, so logs and state are redacted anyway."""
    from core.domain.clock import SimClock
    from core.domain.market_calendar import NEW_YORK
    from core.orchestrator import Orchestrator
    from core.runtime.logging_setup import configure_logging
    from core.sim import SimExchange, SimMarket, SimMarketServer, SyntheticBars
    from core.state.store import StateStore
    from tests.harness.market import gateway_for
    from tests.harness.state import StateDb

    events = io.StringIO()
    configure_logging("DEBUG", json_output=True, stream=events)
    # 2025-03-11 10:00 New York: JNJ is an entry at ENTRY_Z=1.2 (see tests/e2e/test_fault_scenarios.py).
    clock = SimClock(datetime(2025, 3, 11, 10, 0, tzinfo=NEW_YORK))
    bars = SyntheticBars(42)
    exchange = SimExchange(clock, bars, initial_cash=10_000.0)
    server = SimMarketServer(exchange, bars, api_key=API_KEY, secret_key=SECRET_KEY).start()
    market = SimMarket(clock, bars, exchange, server, api_key=API_KEY, secret_key=SECRET_KEY)
    echo = f"you sent APCA-API-KEY-ID: {API_KEY} and APCA-API-SECRET-KEY: {SECRET_KEY}"
    state = tmp_path / "state"
    config = make_config(tmp_path, symbol_tiers={"JNJ": "TIER3", "SPY": "TIER1"}, entry_z=1.2, use_scanner=False,
                         request_timeout_seconds=2.0, retry_backoff_seconds=0.05, state_dir=state)
    try:
        with StateStore(state, clock) as store:
            orch = Orchestrator(config, gateway_for(market, config), store, clock)
            orch.startup()
            server.faults.inject("body", method="POST", path_prefix="/v2/orders", count=None, status=403,
                                 content_type="application/json",
                                 body=json.dumps({"code": 40310000, "message": f"forbidden: {echo}"}))
            result = orch.run_iteration()
            assert result.rejected >= 1, "the scenario needs an order the broker refuses"
            # The next iteration's bars request fails with a long echo (the stored message is cut to
            # 500 characters); the loop records it and carries on.
            server.faults.inject("body", method="GET", path_prefix="/v2/stocks/bars", count=1, status=400,
                                 content_type="application/json",
                                 body=json.dumps({"message": "bad request: " + f"{echo} " * 20}))
            orch.run(max_iterations=1, until=clock.now() + timedelta(hours=1))
            intents = StateDb(state).rows("SELECT * FROM order_intents")
            failures = StateDb(state).rows("SELECT * FROM iterations WHERE status = 'error'")
            tables = assert_no_secret_in_database(state / "trading.db", "trading.db with the store open")
            for name in ("trading.db", "trading.db-wal", "trading.db-shm"):
                if (state / name).exists():
                    assert_no_secret((state / name).read_bytes(), name)
    finally:
        market.stop()
    # The echoes did reach the store, redacted: the test searched real messages.
    assert [i["state"] for i in intents] == ["rejected"] and "forbidden: you sent" in intents[0]["message"]
    assert "***" in intents[0]["message"]
    assert len(failures) == 1 and "HTTP 400" in failures[0]["message"] and "***" in failures[0]["message"]
    assert tables["order_intents"] == 1 and tables["iterations"] >= 2
    assert_no_secret(events.getvalue(), "event log")
    assert "order_rejected" in events.getvalue() and "iteration_failed" in events.getvalue()


def test_the_store_redacts_every_text_it_writes(tmp_path: Path) -> None:
    """Below the gateway: any write method, any table, a key in full or cut off at the end."""
    from core.domain.clock import SimClock
    from core.domain.models import OrderSpec, Side
    from core.domain.ports import IntentState
    from core.runtime.logging_setup import register_secrets
    from core.state.store import StateStore

    register_secrets([API_KEY, SECRET_KEY])
    clock = SimClock(datetime(2025, 3, 11, 15, 0, tzinfo=UTC))
    state = tmp_path / "state"
    with StateStore(state, clock) as store:
        spec = OrderSpec("zmr-20250310-JNJ-buy-0123456789", "JNJ", Side.BUY, qty=1.0)
        store.record_intent(spec, datetime(2025, 3, 10).date(), reason=f"entry {API_KEY}")
        store.mark_intent(spec.client_order_id, IntentState.REJECTED, message=f"403: echo {SECRET_KEY} {API_KEY}")
        store.record_iteration(n=1, started_at=clock.now(), duration_s=0.0, focus_symbols=[], requests={},
                               signals=0, submitted=0, rejected=0, status="error",
                               message=f"HTTP 500: {SECRET_KEY[:-3]}")  # a message cut inside the secret
        store.add_halt("kill_switch", f"halted: {API_KEY}", clock.now().date())
        store.record_exit("JNJ", clock.now().date(), f"exit_stop_loss {SECRET_KEY}")
        store.set_value("note", f"{API_KEY}{SECRET_KEY}")
        message = store.get_intent(spec.client_order_id).message  # type: ignore[union-attr]
        assert message == "403: echo *** ***"
        assert store.last_iteration()["message"] == "HTTP 500: ***"  # type: ignore[index]
        assert store.active_halts()[0].reason == "halted: ***"
        assert store.get_value("note") == "******"
    rows = assert_no_secret_in_database(state / "trading.db", "trading.db")
    assert rows["order_intents"] == rows["iterations"] == rows["risk_halts"] == rows["exits"] == 1


def test_redaction_is_the_last_line_of_defence(reset_logging: None) -> None:
    from core.runtime.logging_setup import configure_logging

    out = io.StringIO()
    configure_logging("INFO", json_output=True, secrets=SECRETS, stream=out)
    structlog.get_logger("t").warning(f"oops {API_KEY}", nested={"k": [SECRET_KEY, f"x{API_KEY}y"]},
                                      pair=(SECRET_KEY,))
    text = out.getvalue()
    assert_no_secret(text, "redacted event")
    assert text.count("***") >= 4


# ---------------------------------------------------------------------------- reprs and messages
def test_config_reprs_and_describe_config_hide_the_keys() -> None:
    config = get_config(env_file=None, alpaca_api_key=API_KEY, alpaca_secret_key=SECRET_KEY)
    shown = [repr(config), str(config), f"{config}", config.model_dump_json(), repr(config.model_dump()),
             repr(describe_config(config)), repr(config.alpaca_api_key), str(config.alpaca_secret_key)]
    for i, text in enumerate(shown):
        assert_no_secret(text, f"view {i}")
    rows = dict(describe_config(config))
    assert rows["ALPACA_API_KEY"] == rows["ALPACA_SECRET_KEY"] == "set (masked)"


def test_gateway_repr_and_a_refused_key_message_hide_the_keys(sim: Any, tmp_path: Path) -> None:
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.errors import AuthenticationError

    config = make_config(tmp_path, request_timeout_seconds=2.0, retry_backoff_seconds=0.05)
    gateway = AlpacaGateway(config, sim.clock, api_key=API_KEY, secret_key=SECRET_KEY,
                            trading_url=sim.url, data_url=sim.url)
    assert_no_secret(repr(gateway), "gateway repr")
    with pytest.raises(AuthenticationError) as info:
        gateway.get_account()  # the simulated market has its own keys: 401
    assert "refused" in str(info.value)
    assert_no_secret(str(info.value) + repr(info.value), "401 message")


def test_a_crash_writes_a_scrubbed_private_crash_log_and_no_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        reset_logging: None) -> None:
    from core import cli

    state = tmp_path / "fresh-state"
    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("STATE_DIR", str(state))

    def boom(args: Any, config: AppConfig) -> int:
        raise RuntimeError(f"unexpected: key={API_KEY} secret={SECRET_KEY}")

    monkeypatch.setattr(cli, "_cmd_status", boom)
    (tmp_path / "empty.env").write_text("")
    old = os.umask(0o022)
    try:
        code = cli.main(["--env-file", str(tmp_path / "empty.env"), "status"])
    finally:
        os.umask(old)
    err = capsys.readouterr().err
    assert code == cli.EXIT_FAILURE
    assert "internal error RuntimeError" in err and "Traceback" not in err
    assert_no_secret(err, "stderr")
    crash = state / "crash.log"
    text = crash.read_text()
    assert "Traceback" in text and "RuntimeError" in text and "***" in text
    assert_no_secret(text, "crash.log")
    assert stat.S_IMODE(crash.stat().st_mode) == 0o600
    assert stat.S_IMODE(state.stat().st_mode) == 0o700


def test_a_daemon_error_message_on_stderr_is_scrubbed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from core import cli
    from core.domain.errors import BrokerError, StateError

    monkeypatch.setenv("ALPACA_API_KEY", API_KEY)
    monkeypatch.setenv("ALPACA_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "empty.env").write_text("")
    for error, code in ((BrokerError(f"echoed {SECRET_KEY}"), cli.EXIT_FAILURE),
                        (StateError(f"echoed {API_KEY}"), cli.EXIT_REFUSED)):
        def fail(args: Any, config: AppConfig, error: Exception = error) -> int:
            raise error

        monkeypatch.setattr(cli, "_cmd_status", fail)
        assert cli.main(["--env-file", str(tmp_path / "empty.env"), "status"]) == code
        err = capsys.readouterr().err
        assert err.startswith("trading-daemon: echoed ***")
        assert_no_secret(err, "stderr")


# ---------------------------------------------------------------------------- symbols never reach a URL unchecked
@pytest.mark.parametrize("symbol", BAD_SYMBOLS)
def test_gateway_refuses_a_bad_symbol_before_any_request(sim: Any, config: AppConfig, symbol: str) -> None:
    from core.domain.models import OrderSpec, Side

    gateway = gateway_for(sim, config)
    sim.server.clear_log()
    calls = [
        lambda: gateway.get_asset(symbol),
        lambda: gateway.get_orders("open", symbols=[symbol]),
        lambda: gateway.get_daily_bars(["SPY", symbol], datetime(2025, 1, 2, tzinfo=UTC)),
        lambda: gateway.submit_order(OrderSpec("zmr-test-1", symbol, Side.BUY, qty=1.0)),
    ]
    for call in calls:
        with pytest.raises(ValueError, match="refusing to send symbol"):
            call()
    assert sim.server.request_log == []


def test_data_agent_excludes_bad_symbols_and_never_sends_them(sim: Any, config: AppConfig) -> None:
    from agents.data_agent import DataAgent

    gateway = gateway_for(sim, config)
    agent = DataAgent(config, market=gateway, clock=sim.clock)
    sim.server.clear_log()
    result = agent.process(["SPY", *BAD_SYMBOLS, "AAPL"], limit=40)
    assert {"SPY", "AAPL"} <= set(result)
    for symbol in BAD_SYMBOLS:
        assert symbol in result.excluded, symbol
        assert symbol not in result
    assert sim.server.request_log, "the good symbols were fetched"
    for record in sim.server.request_log:
        sent = record.path + "?" + "&".join(f"{k}={v}" for k, v in record.query.items())
        assert ".." not in sent and " " not in sent and "/v2/account" not in sent
        if "symbols" in record.query:
            assert set(record.query["symbols"].split(",")) <= {"SPY", "AAPL"}


def test_the_simulated_market_binds_to_loopback_only() -> None:
    from core.domain.clock import SimClock
    from core.sim import SimExchange, SimMarketServer, SyntheticBars, start_sim_market

    clock = SimClock(datetime(2025, 3, 10, 15, 0, tzinfo=UTC))
    bars = SyntheticBars(42)
    for host in ("0.0.0.0", "::", "192.168.1.10", "example.com"):
        with pytest.raises(ValueError, match="loopback"):
            SimMarketServer(SimExchange(clock, bars), bars, host=host)
    with start_sim_market(clock=clock) as market:
        assert market.url.startswith("http://127.0.0.1:")


# ---------------------------------------------------------------------------- live trading needs two opt-ins
LIVE_CASES = [
    pytest.param(["run", "--once"], {"ALPACA_PAPER": "false"}, "needs the explicit --live flag", id="paper-false-no-flag"),
    pytest.param(["run", "--live", "--once"], {"ALPACA_PAPER": "true"}, "ALPACA_PAPER is true", id="flag-paper-true"),
    pytest.param(["run", "--live", "--once"], {}, "ALPACA_PAPER is true", id="flag-paper-default"),
    pytest.param(["run", "--live", "--sim", "--once"], {"ALPACA_PAPER": "false"}, "without Alpaca credentials",
                 id="flag-and-paper-false-but-sim"),
]


@pytest.mark.parametrize(("argv", "env", "message"), LIVE_CASES)
def test_live_trading_refuses_without_both_opt_ins(tmp_path: Path, argv: list[str], env: dict[str, str],
                                                   message: str) -> None:
    # A closed loopback port: even a bug that got past the refusal could not reach Alpaca.
    proc = _daemon(tmp_path, *argv, timeout=60, ALPACA_TRADING_URL="http://127.0.0.1:9",
                   ALPACA_DATA_URL="http://127.0.0.1:9", **env)
    assert proc.returncode == 3, (proc.returncode, proc.stdout, proc.stderr)
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert_no_secret(proc.stdout + proc.stderr, "refusal output")
    assert not (tmp_path / "state" / "trading.db").exists()  # refused before touching any state


# ---------------------------------------------------------------------------- systemd hardening
UNIT_HARDENING = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/trading-daemon",
    "ProtectHome": "yes", "PrivateTmp": "yes", "PrivateDevices": "yes", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectKernelLogs": "yes", "ProtectControlGroups": "yes", "ProtectClock": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "RestrictNamespaces": "yes", "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes", "RestrictRealtime": "yes", "SystemCallArchitectures": "native",
    "SystemCallFilter": "@system-service", "UMask": "0077", "CapabilityBoundingSet": "", "AmbientCapabilities": "",
    "StateDirectoryMode": "0700", "User": "trading", "EnvironmentFile": "/etc/trading-daemon/env",
    "LimitCORE": "0",
}


@pytest.mark.parametrize("unit", ["trading-daemon.service", "scanner.service"])
def test_systemd_units_are_hardened_and_never_live(unit: str) -> None:
    from tests.adapters.test_deploy import read_unit

    service = read_unit(unit)["Service"]
    for key, value in UNIT_HARDENING.items():
        assert service.get(key) == value, f"{unit}: {key}={service.get(key)!r}, expected {value!r}"
    assert "--live" not in service["ExecStart"]
    assert "ALPACA" not in "".join(service.values())  # no key inline in the unit: only the EnvironmentFile
