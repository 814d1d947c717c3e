"""Logs for journald and the loop's events at state changes (issue 12, item 5, and the event stream).

- With $JOURNAL_STREAM naming the log stream (systemd's way to say "this is the journal"), every
  line starts with its syslog priority (<3> error, <4> warning, <6> info, <7> debug), so
  `journalctl -p warning` works; the CLI's own refusals are <3>. Without it, lines are unchanged.
- While the market is closed the loop logs one line at each state change, not one per sleep step.
- Halts are announced once when they trip and once when they clear, wherever the change came from;
  a refused start-up is an event with the differences; a failing consumer never reaches the loop.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import structlog

from core.domain.errors import ReconciliationError
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.events import EventBus, HaltCleared, HaltTripped, OrderFilled, StartupRefused
from core.runtime.logging_setup import configure_logging, writes_to_journal
from tests.harness.config import command_env, make_config

BIN = Path(sys.executable).parent
CAL = get_market_calendar()


class Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def _journal_id(path: Path) -> str:
    info = os.stat(path)
    return f"{info.st_dev}:{info.st_ino}"


# ---------------------------------------------------------------------- journald priorities
def test_each_line_carries_its_syslog_priority_under_journald(tmp_path: Path, reset_logging: None,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "journal-stream"
    with open(path, "w", encoding="utf-8") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", _journal_id(path))
        assert writes_to_journal(stream)
        configure_logging("DEBUG", json_output=True, stream=stream)
        log = structlog.get_logger("t")
        log.error("e1")
        log.warning("w1")
        log.info("i1")
        log.debug("d1")
    lines = path.read_text().splitlines()
    assert [line[:3] for line in lines] == ["<3>", "<4>", "<6>", "<7>"]
    assert [json.loads(line[3:])["event"] for line in lines] == ["e1", "w1", "i1", "d1"]


def test_no_prefix_when_the_stream_is_not_the_journal(tmp_path: Path, reset_logging: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.write_text("")
    monkeypatch.setenv("JOURNAL_STREAM", _journal_id(other))   # the journal is some other file
    buffer = io.StringIO()
    path = tmp_path / "plain"
    with open(path, "w", encoding="utf-8") as stream:
        assert not writes_to_journal(stream) and not writes_to_journal(buffer)
        configure_logging("INFO", json_output=True, stream=stream)
        structlog.get_logger("t").warning("w1")
    assert path.read_text().startswith('{"event": "w1"')


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return command_env(tmp_path / "state", **{"CANDIDATES_PATH": str(tmp_path / "candidates.json"), **extra})


@pytest.mark.parametrize(("argv", "env", "first"), [
    (["scan"], {}, "<6>{"),
    (["run", "--live", "--once"], {"ALPACA_API_KEY": "PKX", "ALPACA_SECRET_KEY": "SKX"},
     "<3>trading-daemon: refusing --live"),
], ids=["scan-info-lines", "refusal-is-an-error"])
def test_cli_lines_on_stderr_carry_priorities_under_journald(tmp_path: Path, argv: list[str], env: dict[str, str],
                                                             first: str) -> None:
    path = tmp_path / "journal-stream"
    with open(path, "w", encoding="utf-8") as stderr:
        proc = subprocess.run([str(BIN / "trading-daemon"), *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=stderr, text=True, timeout=120,
                              env=_env(tmp_path, JOURNAL_STREAM=_journal_id(path), **env))
    lines = [line for line in path.read_text().splitlines() if line]
    assert lines, proc.stdout
    assert lines[0].startswith(first), lines[:3]
    assert all(line[0] == "<" and line[1] in "234567" and line[2] == ">" for line in lines), lines[:5]


# ---------------------------------------------------------------------- market state lines
def test_one_line_per_market_state_change_not_per_sleep_step(tmp_path: Path, logbuf: io.StringIO,
                                                             markets: Any, daemons: Any) -> None:
    market = markets(datetime(2025, 6, 2, 8, 0, tzinfo=NEW_YORK))         # Monday, before the open
    clock = market.clock
    sleeps: list[float] = []
    original_sleep = clock.sleep

    def counting_sleep(seconds: float) -> bool:
        sleeps.append(seconds)
        return original_sleep(seconds)

    clock.sleep = counting_sleep  # type: ignore[method-assign]  # count the loop's sleep steps
    config = make_config(tmp_path, use_scanner=False, loop_interval_seconds=900.0)
    recorder = Recorder()
    orch = daemons(market, config, calendar=CAL, events=recorder).orchestrator
    orch.startup()
    orch.run(until=datetime(2025, 6, 3, 12, 0, tzinfo=NEW_YORK))  # through Monday night
    buffer = logbuf
    lines = [json.loads(line) for line in buffer.getvalue().splitlines()]
    changes = [(e["event"], e.get("waiting_until") or e.get("closes_at")) for e in lines
               if e["event"] in ("market_closed", "market_open")]
    assert changes == [
        ("market_closed", "2025-06-02 09:30 EDT"), ("market_open", "2025-06-02 16:00 EDT"),
        ("market_closed", "2025-06-03 09:30 EDT"), ("market_open", "2025-06-03 16:00 EDT"),
    ]
    assert lines[[e["event"] for e in lines].index("market_closed")]["message"] == \
        "market closed; waiting until 2025-06-02 09:30 EDT"
    night_steps = sum(1 for s in sleeps if s >= 299)
    assert night_steps >= 50, "the night was slept in many bounded steps..."     # ...and logged once
    assert [e.is_open for e in recorder.events if type(e).__name__ == "MarketStateChanged"] == [False, True, False, True]


# ---------------------------------------------------------------------- halts, refusals, consumers
def test_halts_are_announced_once_when_they_trip_and_when_they_clear(tmp_path: Path, markets: Any,
                                                                      daemons: Any) -> None:
    market = markets(datetime(2025, 6, 3, 10, 0, tzinfo=NEW_YORK))
    clock = market.clock
    recorder = Recorder()
    config = make_config(tmp_path, use_scanner=False)
    daemon = daemons(market, config, calendar=CAL, events=recorder)
    store, orch = daemon.store, daemon.orchestrator
    store.add_halt("max_drawdown", "max_drawdown: 16% below the peak", CAL.previous_session(clock.now().date()))
    orch.startup()                   # a halt already active at start-up is not news
    orch.run_iteration()
    assert recorder.of(HaltTripped) == []
    # `halts clear` (another process, the same database), then a new halt from elsewhere.
    store.clear_halt("max_drawdown")
    store.add_halt("kill_switch", "kill_switch: operator", clock.now().date())
    for _ in range(3):
        clock.advance(60)
        orch.run_iteration()
    assert [(e.kind, e.reason) for e in recorder.of(HaltCleared)] == [("max_drawdown", "max_drawdown: 16% below the peak")]
    assert [(e.kind, e.reason) for e in recorder.of(HaltTripped)] == [("kill_switch", "kill_switch: operator")]


def test_a_refused_start_up_is_an_event_listing_the_differences(tmp_path: Path, markets: Any,
                                                                 daemons: Any) -> None:
    market = markets(datetime(2025, 6, 3, 10, 0, tzinfo=NEW_YORK))
    recorder = Recorder()
    # An open order carrying this strategy's prefix that the journal never knew: still a refusal (a
    # replaced STATE_DIR), unlike the user's shares next to the daemon's, which are only reported.
    cid = "zmr-20250602-SPY-buy-0123456789"
    market.exchange.submit_order({"symbol": "SPY", "qty": "1", "side": "buy", "type": "limit",
                                  "limit_price": "1.00", "time_in_force": "gtc", "client_order_id": cid})
    config = make_config(tmp_path, use_scanner=False)
    orch = daemons(market, config, calendar=CAL, events=recorder).orchestrator
    with pytest.raises(ReconciliationError):
        orch.startup()
    [refused] = recorder.of(StartupRefused)
    assert len(refused.differences) == 1
    assert cid in refused.differences[0] and "does not know" in refused.differences[0]


def test_a_failing_consumer_never_reaches_the_loop() -> None:
    class Broken:
        def emit(self, event: Any) -> None:
            raise RuntimeError("boom")

    after = Recorder()
    bus = EventBus([Broken(), after])
    event = OrderFilled(at=datetime(2025, 6, 3, 14, 0, tzinfo=NEW_YORK), symbol="SPY", side="buy", qty=1.0,
                        price=500.0, reason="entry_oversold", client_order_id="zmr-1", order_status="filled",
                        cumulative_qty=1.0)
    bus.emit(event)
    assert bus.failures == 1 and after.events == [event]
