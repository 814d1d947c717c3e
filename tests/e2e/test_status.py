"""`trading-daemon status` (text and --json), the simulated run's state, and dry-run marks
(issue 12, items 4 and 6).

- `status --json` validates against docs/status.schema.json, for a fresh database, a database
  after a simulated run, and a running daemon's in-memory figures;
- the text output shows equity, cash and P&L, and "no equity yet" on a fresh database;
- the status is read through a read-only connection: it never migrates or writes the database;
- after a simulated run, the command its summary prints shows that run; `run --once --dry-run`
  never deletes an earlier simulated run, and its iteration is marked as a dry run.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.domain.clock import SimClock
from core.state.migrations import migrate
from core.state.store import StateStore
from core.status import render_status, render_status_text
from core.status_data import NO_EQUITY_YET, collect_status
from tests.harness.config import REPO_ROOT, command_env, make_config
from tests.harness.ops import ops_daemon

BIN = Path(sys.executable).parent
DAEMON = str(BIN / "trading-daemon")
SCHEMA = json.loads((REPO_ROOT / "docs" / "status.schema.json").read_text())
FORMATS = jsonschema.FormatChecker()


@FORMATS.checks("date-time", raises=ValueError)
def _date_time(value: object) -> bool:
    # jsonschema checks date-time only with an optional package; an aware ISO-8601 timestamp is the contract.
    return not isinstance(value, str) or datetime.fromisoformat(value).tzinfo is not None


VALIDATOR = jsonschema.Draft202012Validator(SCHEMA, format_checker=FORMATS)


def validate(status: dict[str, Any]) -> None:
    errors = sorted(VALIDATOR.iter_errors(status), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors[:10])


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return command_env(tmp_path / "state", **{"LOOP_INTERVAL_SECONDS": "900", **extra})


def cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DAEMON, *args], cwd=tmp_path, capture_output=True, text=True, timeout=180,
                          env=_env(tmp_path, **env))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------- the schema is not vacuous
def test_the_schema_rejects_what_it_should() -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"schema_version": 1}, SCHEMA)
    assert set(SCHEMA["required"]) == set(SCHEMA["properties"])


# ---------------------------------------------------------------------- a fresh database
def test_fresh_database_says_no_equity_yet_and_validates(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    StateStore(Path(config.state_dir), SimClock(datetime(2025, 6, 2, 14, tzinfo=UTC))).close()
    status = collect_status(config)
    validate(status)
    with pytest.raises(AssertionError, match="generated_at"):
        validate({**status, "generated_at": "yesterday"})
    with pytest.raises(AssertionError, match="positions"):
        validate({**status, "positions": [{"symbol": "SPY"}]})
    assert status["account"] == {"equity": None, "cash": None, "last_equity": None, "as_of": None, "source": None}
    assert status["exposure"]["note"] == NO_EQUITY_YET and status["exposure"]["equity"] is None
    assert all(t["budget"] is None and t["utilisation"] is None for t in status["exposure"]["tiers"])
    text = render_status(config)
    assert "Tier exposure (no equity yet):" in text
    assert "1.00" not in text.split("Tier exposure")[1].split("Open orders")[0]   # no made-up equity of 1.00
    assert "Account: no equity yet" in text and "P&L: day - " in text


def test_status_and_halts_read_without_writing_or_migrating(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    conn = sqlite3.connect(state / "trading.db", isolation_level=None)
    migrate(conn, 3)                      # a database written by an older release
    conn.execute("INSERT INTO kv (key, value) VALUES ('peak_equity', '12000.0')")
    conn.execute("INSERT INTO risk_halts (kind, reason, session, started_at, cleared_at) VALUES "
                 "('daily_loss', 'daily_loss: -3.10%', '2025-06-02', '2025-06-02T15:00:00+00:00', "
                 "'2025-06-03T13:30:00+00:00')")   # schema 3: no cleared_by / clear_reason columns yet
    conn.close()
    before = digest(state / "trading.db")
    halts = cli(tmp_path, "halts")
    assert halts.returncode == 0 and "daily_loss" in halts.stdout.split("Recently cleared")[1], halts.stderr
    proc = cli(tmp_path, "status", "--json")
    assert proc.returncode == 0, proc.stderr
    status = json.loads(proc.stdout)
    validate(status)
    assert status["database_schema"] == 3 and status["equity_curve"] == []
    assert status["exposure"]["basis"] == "peak_equity" and status["exposure"]["equity"] == 12000.0
    assert digest(state / "trading.db") == before
    with sqlite3.connect(state / "trading.db") as check:
        assert check.execute("PRAGMA user_version").fetchone()[0] == 3
    for name in ("trading.db-wal", "trading.db-shm"):           # a reader's files are private too
        if (state / name).exists():
            assert (state / name).stat().st_mode & 0o077 == 0


def test_status_and_halts_of_a_stopped_daemon_leave_the_state_dir_as_it_was(tmp_path: Path) -> None:
    """No -wal/-shm left behind: run as root they would be root's, and the daemon could not open its database."""
    state = tmp_path / "state"
    with StateStore(state, SimClock(datetime(2025, 6, 2, 14, tzinfo=UTC))) as store:
        store.add_halt("max_drawdown", "max_drawdown: drawdown 16.00% from peak 10,000.00", date(2025, 6, 2))
    before = sorted(p.name for p in state.iterdir())
    assert "trading.db-wal" not in before and "trading.db-shm" not in before   # a clean stop removes them
    db = digest(state / "trading.db")
    text, as_json = cli(tmp_path, "status"), cli(tmp_path, "status", "--json")
    assert text.returncode == 0 and "max_drawdown" in text.stdout, text.stderr
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["halts"], as_json.stderr
    halts = cli(tmp_path, "halts")                                # the listing reads the same way
    assert halts.returncode == 0 and "max_drawdown" in halts.stdout.split("Recently cleared")[0], halts.stderr
    assert sorted(p.name for p in state.iterdir()) == before and digest(state / "trading.db") == db


def test_status_beside_an_open_writer_sees_its_latest_commit(tmp_path: Path) -> None:
    """With a -wal file (a writer may be active) the reader shares the writer's view, not a frozen file."""
    config = make_config(tmp_path)
    with StateStore(Path(config.state_dir), SimClock(datetime(2025, 6, 2, 14, tzinfo=UTC))) as store:
        assert collect_status(config)["halts"] == []
        store.add_halt("max_drawdown", "max_drawdown: drawdown 16.00% from peak 10,000.00", date(2025, 6, 2))
        assert (Path(config.state_dir) / "trading.db-wal").exists()
        assert [h["kind"] for h in collect_status(config)["halts"]] == ["max_drawdown"]


def test_status_port_without_serve_is_one_message_and_exit_2(tmp_path: Path) -> None:
    proc = cli(tmp_path, "status", "--port", "8080")
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == "trading-daemon: --port 8080 is for --serve: add --serve to serve the status page on that port\n"


@pytest.mark.parametrize("argv", [["status", "--json"], ["status"], ["halts"]], ids=["json", "text", "halts"])
def test_status_and_halts_without_a_database_are_one_message_and_exit_1(tmp_path: Path, argv: list[str]) -> None:
    proc = cli(tmp_path, *argv)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.startswith("trading-daemon: No state database at ") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "state" / "trading.db").exists()


# ---------------------------------------------------------------------- a running daemon
def test_running_daemon_status_has_live_figures_and_validates(tmp_path: Path) -> None:
    with ops_daemon(tmp_path) as daemon:
        daemon.run_sessions(2)
        status = daemon.ops.status()
        book = daemon.store.book()
        validate(status)
        assert status["daemon"]["running"] and status["daemon"]["source"] == "live"
        assert status["daemon"]["mode"] == "simulated"
        assert [p["symbol"] for p in status["positions"]] == sorted(book)
        broker = daemon.market.exchange.positions()
        for row in status["positions"]:
            assert row["qty"] == pytest.approx(book[row["symbol"]].qty)
            assert row["current_price"] is not None and row["unrealised_pnl"] is not None
            assert row["qty"] == pytest.approx(broker[row["symbol"]].qty)
        account = daemon.gateway.get_account()
        # The daily summary after the last close recorded the broker's figures, which have not moved since.
        assert status["account"]["equity"] == pytest.approx(account.equity)
        assert status["account"]["cash"] == pytest.approx(account.cash)
        assert status["pnl"]["day"] == pytest.approx(account.equity - account.last_equity, abs=0.01)
        closes = [p for p in status["equity_curve"] if p["source"] == "close"]
        assert [p["at"][:10] for p in closes] == ["2025-06-02", "2025-06-03"]
        assert status["iterations"][0]["status"] == "ok" and not status["iterations"][0]["dry_run"]
        assert status["api_usage"]["last_minute"] is not None
        assert status["exposure"]["basis"] == "equity"
        text = render_status_text(status)
        assert f"equity {account.equity:,.2f}" in text and f"cash {account.cash:,.2f}" in text
        assert "P&L: day " in text and "unrealised " in text


# ---------------------------------------------------------------------- the simulated run and status agree
@pytest.fixture(scope="module")
def sim_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, subprocess.CompletedProcess[str]]]:
    tmp = tmp_path_factory.mktemp("sim-run")
    proc = subprocess.run([DAEMON, "run", "--sim", "--sessions", "2"], cwd=tmp, capture_output=True, text=True,
                          timeout=180, env=_env(tmp))
    yield tmp, proc


def test_the_command_the_summary_prints_shows_that_run(sim_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, proc = sim_run
    assert proc.returncode == 0, proc.stderr
    line = next(line for line in proc.stdout.splitlines() if line.strip().startswith("see it with"))
    command = line.split("see it with", 1)[1].strip()
    assert command.endswith("status --sim")
    iterations = int(next(line for line in proc.stdout.splitlines() if "iterations" in line).split()[-1])
    shown = subprocess.run(command, shell=True, cwd=tmp, capture_output=True, text=True, timeout=60, env=_env(tmp))
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Simulated run (state in ")
    assert f"Last iteration: #{iterations} " in shown.stdout
    # The account and the prices of the positions come from different reads: each says when it is from.
    as_json = json.loads(cli(tmp, "status", "--sim", "--json").stdout)
    account_line = next(line for line in shown.stdout.splitlines() if line.startswith("Account: "))
    positions_line = next(line for line in shown.stdout.splitlines() if line.startswith("Positions ("))
    assert account_line.endswith(f"(as of {as_json['account']['as_of']})")
    times = sorted({p["price_as_of"] for p in as_json["positions"] if p["price_as_of"]})
    when = {0: "", 1: f" (prices as of {times[0]})"}.get(len(times), f" (prices as of {times[0]} .. {times[-1]})")
    assert positions_line == f"Positions ({len(as_json['positions'])}){when}:"
    # Plain `status` has no daemon state there, and says where the simulated run is.
    plain = cli(tmp, "status")
    assert plain.returncode == 1 and plain.stdout == ""
    assert "No state database" in plain.stderr and "trading-daemon status --sim" in plain.stderr
    as_json = cli(tmp, "status", "--sim", "--json")
    status = json.loads(as_json.stdout)
    validate(status)
    assert status["iterations"][0]["n"] == iterations and status["equity_curve"]


def test_a_dry_run_never_deletes_the_earlier_simulated_run(
        sim_run: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    tmp, _ = sim_run
    db = tmp / "state" / "sim" / "trading.db"
    before = digest(db)
    proc = cli(tmp, "run", "--once", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert digest(db) == before, "the dry run changed the earlier simulated run's database"
    dry = tmp / "state" / "sim-dry-run"
    assert (dry / "trading.db").is_file()
    assert "marked dry_run in the state database" in proc.stdout
    command = next(line for line in proc.stdout.splitlines() if "see it with" in line).split("see it with", 1)[1]
    assert shlex.split(command)[-2:] == ["--state-dir", str(dry)]
    shown = cli(tmp, "status", "--state-dir", str(dry))
    assert "(dry run: nothing sent)" in shown.stdout
    status = json.loads(cli(tmp, "status", "--state-dir", str(dry), "--json").stdout)
    validate(status)
    assert status["iterations"][0]["dry_run"] is True
    with sqlite3.connect(dry / "trading.db") as conn:
        assert conn.execute("SELECT dry_run FROM iterations").fetchall() == [(1,)]
    assert digest(db) == before


def test_version_flag(tmp_path: Path) -> None:
    from importlib.metadata import version

    proc = cli(tmp_path, "--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"trading-daemon {version('trading-daemon')}"


def test_dry_run_iterations_are_marked_in_the_database(tmp_path: Path) -> None:
    from core.orchestrator import Orchestrator
    from core.sim import start_sim_market
    from tests.harness.market import gateway_for

    clock = SimClock(datetime(2025, 6, 3, 14, 0, tzinfo=UTC))
    market = start_sim_market(clock=clock)
    try:
        config = make_config(tmp_path, use_scanner=False)
        with StateStore(Path(config.state_dir), clock) as store:
            for dry in (False, True):
                orch = Orchestrator(config, gateway_for(market, config), store, clock, dry_run=dry)
                orch.startup()
                orch.run_iteration()
                clock.advance(60)
        status = collect_status(config)
    finally:
        market.stop()
    assert [(it["n"], it["dry_run"]) for it in status["iterations"]] == [(2, True), (1, False)]
    assert date.fromisoformat(status["iterations"][0]["started_at"][:10]) == date(2025, 6, 3)


def test_readme_and_docs_name_the_operator_commands_and_settings() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    for text in ("trading-daemon notify-test", "trading-daemon status --json", "status --serve", "--version",
                 "`HTTP_PORT`", "`NOTIFY_URLS`", "docs/operations.md", "apprise", "prometheus-client"):
        assert text in readme, text
    operations = (REPO_ROOT / "docs" / "operations.md").read_text()
    for text in ("notify-test", "/metrics", "status --json", "status --serve", "journalctl -u trading-daemon -p warning",
                 "alerts.yml", "status.schema.json"):
        assert text in operations, text
    security = (REPO_ROOT / "docs" / "security.md").read_text()
    assert "ssh -N -L 9464:127.0.0.1:9464" in security and "auth_basic" in security
