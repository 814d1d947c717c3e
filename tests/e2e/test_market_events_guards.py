"""Issue 10, items 6-8, end to end: the daemon (real SDK, real gateway, store and orchestrator) against the
simulated market's bad prints, deposits and withdrawals, and the `trading-daemon halts` command.

Signals: QQQ is oversold for real at the close of 2025-06-03 in the seeded market (z = -2.54), so the
first decision on 2025-06-04 buys it when nothing refuses it. Other entry signals are forced with the
simulated market's bad prints: the same factor on the last completed bar and on the in-progress bar
makes a symbol look oversold (the two bars agree, so the drift check passes), while the broker's own
price (latest trade, fills, positions, equity) stays true.
"""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.harness.clocks import ny
from tests.harness.config import REPO_ROOT
from tests.harness.scenario import Scenario, assert_no_duplicate_orders

DAY1, DAY2, DAY3 = date(2025, 6, 4), date(2025, 6, 5), date(2025, 6, 6)
GUARDS_DAY = ny(2025, 6, 4, 10, 0)  # every scenario starts on DAY1 at 10:00 New York
TRADES_LATEST = "/v2/stocks/trades/latest"
ACTIVITIES = "/v2/account/activities"


def _oversold(scenario: Scenario, symbol: str, day: date, factor: float) -> None:
    """The last completed bar and the in-progress bar of `symbol` at `factor` x the true price."""
    scenario.sim.exchange.set_bad_print(symbol, scenario.calendar.previous_session(day), factor)
    scenario.sim.exchange.set_bad_print(symbol, day, factor)


def _go(scenario: Scenario, when: datetime) -> None:
    scenario.clock.advance((when - scenario.clock.now()).total_seconds())


def _true_price(scenario: Scenario, symbol: str) -> float:
    return float(scenario.sim.bars.price_at(symbol, scenario.clock.now()))


def _halts(scenario: Scenario) -> list[dict[str, Any]]:
    return scenario.db_rows("SELECT * FROM risk_halts ORDER BY id")


def _active_kinds(scenario: Scenario) -> list[str]:
    return [h["kind"] for h in _halts(scenario) if h["cleared_at"] is None]


def _peak(scenario: Scenario) -> float:
    rows = scenario.db_rows("SELECT value FROM kv WHERE key = 'peak_equity'")
    return float(rows[0]["value"]) if rows else 0.0


def _equity(scenario: Scenario) -> float:
    return scenario.sim.exchange.account().equity


# ================================================================================ 6. a bad print
def test_the_186_spy_bad_print_is_refused_and_nothing_is_sent(scenario: Any) -> None:
    # $100,000 account, whole shares, SPY alone in TIER1: the position cap is 100,000 x 0.4 x 0.2 = $8,000.
    s = scenario(GUARDS_DAY, initial_cash=100_000.0, symbol_tiers={"SPY": "TIER1"}, enable_fractional_shares=False)
    _oversold(s, "SPY", DAY1, 0.1)
    daemon = s.boot()
    mark = s.log_mark()
    result = daemon.orchestrator.run_iteration()

    assert s.order_posts(since=mark) == [] and s.broker_orders() == []
    assert s.intents() == {}                                   # refused before an intent exists
    (refusal,) = [r for r in result.risk_rejections if r.stage == "price_guard"]
    true = _true_price(s, "SPY")
    bar = refusal.meta["bar_price"]
    assert bar == pytest.approx(true / 10, rel=0.01)
    assert f"${bar:,.2f}" in refusal.reason and "disagrees with the broker's latest trade" in refusal.reason
    assert "beyond MAX_PRICE_DISAGREEMENT_PCT 5.0%" in refusal.reason
    # What was refused is the case: whole shares sized at a tenth of the price, worth about
    # ten times the cap (and 80 % of the account) at the true price.
    assert refusal.meta["qty"] == int(8_000 // bar)
    assert refusal.meta["qty"] * true > 9 * 8_000 and refusal.meta["qty"] * true > 0.7 * 100_000
    # One batched latest-trade request, in this deciding iteration only.
    assert len(s.requests(path_prefix=TRADES_LATEST, since=mark)) == 1

    # The refusal is remembered: the next iterations are steady again (bars + positions).
    for _ in range(3):
        s.clock.advance(60)
        mark = s.log_mark()
        again = daemon.orchestrator.run_iteration()
        assert again.requests == {"data": 1, "trading": 1}
        assert s.requests(path_prefix=TRADES_LATEST, since=mark) == []
    assert s.order_posts() == []


def test_an_order_over_the_cap_at_the_brokers_price_is_refused_not_resized(scenario: Any) -> None:
    # A 10 % lower feed inside a (loosened) 20 % agreement bound: whole shares sized at 0.9 x the price
    # fit the $8,000 cap at that price, but not at the broker's.
    s = scenario(GUARDS_DAY, initial_cash=100_000.0, symbol_tiers={"SPY": "TIER1"}, enable_fractional_shares=False,
                      max_price_disagreement_pct=0.2)
    _oversold(s, "SPY", DAY1, 0.9)
    daemon = s.boot()
    result = daemon.orchestrator.run_iteration()

    assert s.order_posts() == []
    (refusal,) = [r for r in result.risk_rejections if r.stage == "price_guard"]
    qty = refusal.meta["qty"]
    assert qty * refusal.meta["bar_price"] <= 8_000.0 < qty * _true_price(s, "SPY")
    assert "TIER1 position cap $8,000.00" in refusal.reason and "refused, not resized" in refusal.reason
    assert f"{qty:g} shares x $" in refusal.reason


def test_an_agreeing_price_is_sent(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"})
    daemon = s.boot()
    mark = s.log_mark()
    result = daemon.orchestrator.run_iteration()
    assert result.execution is not None and [o.symbol for o in result.execution.submitted] == ["QQQ"]
    assert len(s.requests(path_prefix=TRADES_LATEST, since=mark)) == 1
    (order,) = s.broker_orders()
    assert order.notional == pytest.approx(800.0)               # a notional order: its value is the cap at most
    assert_no_duplicate_orders(s, daemon.store)


def test_no_broker_price_means_no_entry_that_iteration_but_the_next_one_retries(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"})
    daemon = s.boot()
    s.faults.inject("503", path_prefix=TRADES_LATEST, count=None)
    with capture_logs() as events:
        first = daemon.orchestrator.run_iteration()
    assert s.order_posts() == [] and first.rejected >= 1
    (refused,) = [e for e in events if e["event"] == "order_refused_by_price_check"]
    assert refused["symbol"] == "QQQ" and "no independent price from the broker" in refused["reason"]
    assert "HTTP 503" in refused["reason"] and "not sized blind" in refused["reason"]
    s.faults.clear()
    s.clock.advance(60)
    second = daemon.orchestrator.run_iteration()             # not remembered as a refusal: retried at once
    assert second.execution is not None and [o.symbol for o in second.execution.submitted] == ["QQQ"]


def test_a_stop_loss_fired_by_a_bad_print_is_not_sent(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"})
    daemon = s.boot()
    daemon.orchestrator.run_iteration()                      # buys QQQ at the true price
    s.clock.advance(120)
    daemon.orchestrator.run_iteration()                      # the fill reaches the book
    assert "QQQ" in daemon.store.book()
    # Next session: the last bar and the in-progress bar at a tenth: a "stop-loss" on the bars.
    _go(s, ny(2025, 6, 5, 10, 0))
    _oversold(s, "QQQ", DAY2, 0.1)
    mark = s.log_mark()
    result = daemon.orchestrator.run_iteration()
    assert s.order_posts(since=mark) == []
    (refusal,) = [r for r in result.risk_rejections if r.stage == "price_guard"]
    assert refusal.symbol == "QQQ" and "stop-loss not confirmed" in refusal.reason
    assert s.broker_positions().get("QQQ", 0.0) > 0


# ================================================================================ 7. equity at or below zero
def test_equity_at_zero_halts_entries_without_a_crash_and_lifts_when_money_returns(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"})
    s.sim.exchange.withdraw(10_000.0)                          # everything: equity $0.00
    daemon = s.boot()
    with capture_logs() as events:
        first = daemon.orchestrator.run_iteration()            # used to be a ValueError out of the sizer
        s.clock.advance(31 * 60)
        daemon.orchestrator.run_iteration()                    # decides again: the halt is not said twice
    (refusal,) = [r for r in first.risk_rejections if r.symbol == "QQQ"]
    assert refusal.reason == ("entries halted: equity_not_positive: equity is $0.00: no entries until it is "
                              "positive")
    assert s.order_posts() == []
    assert _active_kinds(s) == ["equity_not_positive"]         # a withdrawal: no loss halt
    assert [e["kind"] for e in events if e["event"] == "halt_started"] == ["equity_not_positive"]

    s.sim.exchange.deposit(10_000.0)                           # money comes back: the halt lifts by itself
    s.clock.advance(31 * 60)
    after = daemon.orchestrator.run_iteration()
    assert after.execution is not None and [o.symbol for o in after.execution.submitted] == ["QQQ"]
    (row,) = _halts(s)
    assert row["cleared_by"] == "daemon" and row["clear_reason"] == "the condition no longer holds"
    assert_no_duplicate_orders(s, daemon.store)


def test_negative_equity_keeps_the_daemon_running_and_its_exits_going(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"}, max_holding_sessions=1)
    daemon = s.boot()
    daemon.orchestrator.run_iteration()
    s.clock.advance(120)
    daemon.orchestrator.run_iteration()
    assert "QQQ" in daemon.store.book()

    # Two sessions later QQQ is due out (max holding 1) and SPY looks oversold. The cash is withdrawn
    # and then $3,000 more leaves (a returned deposit: the simulated market refuses to withdraw more
    # than the cash, so it is set directly): equity below zero.
    _go(s, ny(2025, 6, 6, 10, 0))
    _oversold(s, "SPY", DAY3, 0.9)
    s.sim.exchange.withdraw(s.sim.exchange.account().cash)
    s.sim.exchange.set_cash(-3_000.0)
    assert _equity(s) < 0
    mark = s.log_mark()
    with capture_logs() as events:
        result = daemon.orchestrator.run_iteration()          # no ValueError, no crash
        s.clock.advance(120)
        daemon.orchestrator.run_iteration()                   # the sale fills: positions changed, QQQ re-judged
    assert len(s.order_posts(since=mark)) == 1
    assert [o.symbol for o in s.broker_orders() if o.side == "sell"] == ["QQQ"]
    assert "QQQ" not in s.broker_positions()
    (refusal,) = [r for r in result.risk_rejections if r.symbol == "SPY"]
    assert refusal.reason.startswith("entries halted: equity_not_positive: equity is $-")
    assert refusal.reason.endswith(": no entries until it is positive")
    assert "equity_not_positive" in _active_kinds(s)
    started = [e["kind"] for e in events if e["event"] == "halt_started"]
    assert started.count("equity_not_positive") == 1          # said once, over two decisions
    assert_no_duplicate_orders(s, daemon.store)


# ================================================================================ 8. deposits and withdrawals
def test_a_withdrawal_trips_neither_the_daily_loss_nor_the_drawdown_halt(scenario: Any) -> None:
    # Every entry is refused below a $5,000 minimum, so equity is the cash alone and each decision
    # still reads the account (and the activities).
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"}, min_order_notional=5_000.0)
    _oversold(s, "SPY", DAY1, 0.9)
    daemon = s.boot()
    daemon.orchestrator.run_iteration()
    assert _peak(s) == pytest.approx(10_000.0)

    s.sim.exchange.withdraw(5_000.0)                           # -50 %: beyond both limits if it were a loss
    s.clock.advance(31 * 60)
    mark = s.log_mark()
    result = daemon.orchestrator.run_iteration()
    assert len(s.requests(path_prefix=ACTIVITIES, since=mark)) == 1
    assert result.halts == [] and _halts(s) == []
    assert _peak(s) == pytest.approx(5_000.0)                  # 10,000 x 5,000 / 10,000
    (flow,) = s.db_rows("SELECT * FROM cash_flows")
    assert flow["kind"] == "CSW" and flow["amount"] == pytest.approx(-5_000.0)

    _go(s, ny(2025, 6, 5, 10, 0))                              # and on the next day too
    _oversold(s, "SPY", DAY2, 0.9)
    result = daemon.orchestrator.run_iteration()
    assert result.halts == [] and _halts(s) == []
    assert len(s.db_rows("SELECT * FROM cash_flows")) == 1    # applied once


def test_a_deposit_is_not_counted_as_profit(scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"}, min_order_notional=5_000.0)
    _oversold(s, "SPY", DAY1, 0.9)
    daemon = s.boot()
    daemon.orchestrator.run_iteration()                        # peak $10,000

    # A $1,200 loss (12 %: the day's loss halt, not yet the 15 % kill switch).
    s.sim.exchange.set_cash(8_800.0)
    s.clock.advance(31 * 60)
    daemon.orchestrator.run_iteration()
    assert _active_kinds(s) == ["daily_loss"]

    # Next day, $10,000 deposited: equity $18,800. Counted as profit it would be a new peak and the
    # loss forgotten; netted, the peak moves with it (10,000 x 18,800 / 8,800) and the drawdown stays 12 %.
    _go(s, ny(2025, 6, 5, 10, 0))
    _oversold(s, "SPY", DAY2, 0.9)
    s.sim.exchange.deposit(10_000.0)
    result = daemon.orchestrator.run_iteration()
    assert result.halts == []                                  # the deposit day is not a losing day either
    assert _peak(s) == pytest.approx(10_000.0 * 18_800.0 / 8_800.0)
    assert 1 - _equity(s) / _peak(s) == pytest.approx(0.12)

    # A further $700 loss takes the drawdown past 15 % (it would be 3.7 % from a deposit-inflated peak).
    s.sim.exchange.set_cash(18_100.0)
    s.clock.advance(31 * 60)
    result = daemon.orchestrator.run_iteration()
    assert "max_drawdown" in _active_kinds(s)


def test_unreadable_activities_halt_entries_for_the_moment_without_tripping_the_kill_switch(
        scenario: Any) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"}, min_order_notional=5_000.0)
    _oversold(s, "SPY", DAY1, 0.9)
    daemon = s.boot()
    daemon.orchestrator.run_iteration()
    s.sim.exchange.withdraw(5_000.0)
    s.faults.inject("503", path_prefix=ACTIVITIES, count=None)
    s.clock.advance(31 * 60)
    result = daemon.orchestrator.run_iteration()
    assert result.halts == ["cash_flows_unknown: account activities unavailable (GET /v2/account/activities: "
                            "HTTP 503): no entries until deposits and withdrawals can be told from trading losses"]
    assert _active_kinds(s) == ["cash_flows_unknown"]
    s.faults.clear()
    s.clock.advance(60)                                        # a failed read is not a remembered refusal
    result = daemon.orchestrator.run_iteration()
    assert result.halts == [] and _active_kinds(s) == []
    assert _halts(s)[0]["cleared_by"] == "daemon"


# ================================================================================ halts: list and clear
def _cli(cwd: Path, state_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cwd.mkdir(exist_ok=True)
    (cwd / ".env").write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_")}
    env.update({"PYTHONPATH": str(REPO_ROOT), "STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1"})
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60)


def test_a_real_halt_is_listed_and_cleared_through_the_cli_with_an_audit_row(scenario: Any,
                                                                            tmp_path: Path) -> None:
    s = scenario(GUARDS_DAY, symbol_tiers={"SPY": "TIER1", "QQQ": "TIER1"}, min_order_notional=5_000.0)
    _oversold(s, "SPY", DAY1, 0.9)
    daemon = s.boot()
    daemon.orchestrator.run_iteration()
    s.sim.exchange.set_cash(8_000.0)                           # a 20 % loss: both protections trip
    s.clock.advance(31 * 60)
    daemon.orchestrator.run_iteration()
    assert _active_kinds(s) == ["daily_loss", "max_drawdown"]

    state_dir, cwd = Path(s.config.state_dir), tmp_path / "cli"
    listed = _cli(cwd, state_dir, "halts")
    assert listed.returncode == 0, listed.stderr
    assert "Active halts (2):" in listed.stdout
    assert "max_drawdown" in listed.stdout and "drawdown 20.00% from peak 10,000.00" in listed.stdout
    assert "since 2025-06-04T14:31:00+00:00" in listed.stdout

    unknown = _cli(cwd, state_dir, "halts", "clear", "max_drawdwon")
    assert unknown.returncode == 2
    assert unknown.stderr.strip().splitlines() == [
        "trading-daemon: no active halt named 'max_drawdwon': active halts are: daily_loss, max_drawdown "
        "(see `trading-daemon halts`)"]

    cleared = _cli(cwd, state_dir, "halts", "clear", "max_drawdown", "--reason", "loss reviewed; resume")
    assert cleared.returncode == 0, cleared.stderr
    assert cleared.stdout.startswith(f"Cleared halt max_drawdown (since 2025-06-04T14:31:00+00:00) by "
                                     f"{getpass.getuser()}: loss reviewed; resume")
    audit = [json.loads(line) for line in cleared.stderr.splitlines() if line.startswith("{")]
    assert [(a["event"], a["kind"], a["by"], a["reason"]) for a in audit] == [
        ("halt_cleared", "max_drawdown", getpass.getuser(), "loss reviewed; resume")]
    row = next(h for h in _halts(s) if h["kind"] == "max_drawdown")
    assert row["cleared_by"] == getpass.getuser() and row["clear_reason"] == "loss reviewed; resume"
    assert row["cleared_at"] is not None
    assert _peak(s) == 0.0                                     # the high-water mark starts again

    relisted = _cli(cwd, state_dir, "halts")
    assert "Active halts (1):" in relisted.stdout
    assert f"by {getpass.getuser()} (loss reviewed; resume)" in relisted.stdout

    # The running daemon sees it at its next decision: the drawdown is measured afresh, the day's loss stays.
    s.clock.advance(31 * 60)
    daemon.orchestrator.run_iteration()
    assert _active_kinds(s) == ["daily_loss"]
    assert _peak(s) == pytest.approx(8_000.0)
