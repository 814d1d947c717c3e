"""A red-team review of the daemon on the simulated market: each finding end to end, through the real SDK.

Every test here reproduces one way the market, the account or the owner fooled the daemon (a split
and a user's trade before its next look, one empty positions answer, a bad print near the stop, the
user's own open order, a host clock a day slow at start-up, one accidental second daemon, a bad
print the feed corrected, an unreadable cash activity, a dry run on the production state directory,
a fractional remnant after a reverse split, a start-up's misleading log), and checks the broker's
orders and positions, the state database and the logs.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import structlog
from structlog.testing import capture_logs

from agents.data_agent import DataAgent
from core import cli
from core.domain.models import Side
from core.domain.order_ids import dry_run_key, format_client_order_id
from core.instance_guard import HALT_KIND
from core.orchestrator import Orchestrator
from core.state.store import StateStore
from core.status_data import collect_status
from tests.harness.clocks import SkewedClock, ny
from tests.harness.config import REPO_ROOT, SIM_START, make_config, venv_env
from tests.harness.logs import events
from tests.harness.market import gateway_for
from tests.harness.scenario import (
    FAST_CONFIG,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

# 2025-03-11 10:00 New York: JNJ closed ~1.5 sd below its mean on 03-10 (an entry at ENTRY_Z=1.2).
JNJ_DAY = ny(2025, 3, 11)
CONFIG: dict[str, Any] = {"symbol_tiers": {"JNJ": "TIER3", "SPY": "TIER1"}, "entry_z": 1.2,
                          "max_holding_sessions": 1}
EXIT_DAY = ny(2025, 3, 13)   # max holding: the 03-12 decision sells what was entered on 03-11
# META closes ~1.6 sd below its mean on 2025-02-27 (bought 02-28) and falls ~5% by 03-03.
META_CONFIG: dict[str, Any] = {"symbol_tiers": {"META": "TIER3", "SPY": "TIER1"}, "entry_z": 1.5,
                               "max_holding_sessions": 10}


@pytest.fixture
def scenario(tmp_path: Path) -> Iterator[Callable[..., Scenario]]:
    made: list[Scenario] = []

    def make(start: datetime = JNJ_DAY, **overrides: Any) -> Scenario:
        base = META_CONFIG if "META" in overrides.pop("universe", "JNJ") else CONFIG
        scn = Scenario(tmp_path / f"s{len(made)}", start, config_overrides={**base, **overrides})
        made.append(scn)
        return scn

    yield make
    for scn in made:
        scn.close()





def _daemon_sells(scn: Scenario, symbol: str = "JNJ") -> list[Any]:
    return [o for o in scn.broker_orders(source=None) if o.symbol == symbol and o.side == "sell"
            and o.client_order_id.startswith("zmr-")]


# ================================================================================ 1. split + a user's trade
@pytest.mark.parametrize("mode", ["running", "restart"])
@pytest.mark.parametrize("user_side", ["sell", "buy"])
def test_a_listed_split_is_rebased_although_the_user_traded_before_the_daemons_next_look(
        scenario: Callable[..., Scenario], mode: str, user_side: str) -> None:
    scn = scenario(stop_loss_pct=0.08, max_holding_sessions=10)
    scn.sim.exchange.add_split("JNJ", date(2025, 3, 13), 2.0)
    daemon, own = scn.daemon_holding("JNJ")
    scn.sim.exchange.trade_externally("JNJ", "buy", 3)
    scn.settle(daemon)
    if mode == "restart":
        scn.kill(daemon)
    scn.advance_to(ny(2025, 3, 12, 15, 0))
    if mode == "running":
        scn.settle(daemon)
    scn.advance_to(ny(2025, 3, 13, 9, 31))
    scn.sim.exchange.trade_externally("JNJ", user_side, 1)   # the user's 6 shares become 5 (or 7)
    scn.advance_to(ny(2025, 3, 13, 9, 40))
    with capture_logs() as logs:
        if mode == "restart":
            daemon = scn.boot()
        results = [scn.settle(daemon, 10) for _ in range(3)]

    user_now = 5.0 if user_side == "sell" else 7.0
    (rebased,) = events(logs, "position_rebased")
    assert rebased["ratio"] == 2.0 and rebased["own_qty"] == pytest.approx(own * 2)
    assert rebased["residual"] == ("outside_sold" if user_side == "sell" else "outside_bought")
    assert any("forward_split 2-for-1" in note for note in rebased["confirmed_by"]), rebased["confirmed_by"]
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own * 2)
    assert daemon.store.book()["JNJ"].avg_entry_price < 140, "the entry price is split-adjusted"
    # No false stop-loss: nothing was sold by the daemon, and the user's shares are theirs.
    assert _daemon_sells(scn) == [] and all(r.submitted == 0 for r in results)
    assert_book_matches_broker(scn, daemon.store, outside={"JNJ": user_now})
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 2. one glitchy positions answer
@pytest.mark.parametrize("when", ["running", "start-up"])
def test_one_empty_positions_answer_does_not_disown_a_held_position(
        scenario: Callable[..., Scenario], when: str) -> None:
    scn = scenario()
    daemon, own = scn.daemon_holding("JNJ")
    if when == "start-up":
        scn.kill(daemon)
    scn.faults.inject("transform", method="GET", path_prefix="/v2/positions", count=1, fn=lambda payload: [])
    mark = scn.log_mark()
    with capture_logs() as logs:
        if when == "start-up":
            daemon = scn.boot()
        scn.settle(daemon)
        scn.settle(daemon)
    (unconfirmed,) = events(logs, "position_change_unconfirmed")
    assert unconfirmed["symbol"] == "JNJ" and unconfirmed["first_read_qty"] == 0.0
    assert unconfirmed["second_read_qty"] == pytest.approx(own)
    assert events(logs, "position_closed_externally") == [] and events(logs, "outside_shares_changed") == []
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own)
    # One extra read, on that event only.
    assert len(scn.requests(method="GET", path_prefix="/v2/positions", since=mark)) == 3 + (when == "start-up")
    # The max-holding exit still sells the daemon's own shares.
    scn.advance_to(EXIT_DAY)
    for _ in range(3):
        scn.settle(daemon, 30)
    (sell,) = _daemon_sells(scn)
    assert sell.qty == pytest.approx(own) and sell.status == "filled"
    assert scn.broker_positions() == {} and daemon.store.book() == {}
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_real_sale_by_the_user_is_confirmed_by_the_second_read(scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    daemon, own = scn.daemon_holding("JNJ")
    scn.sim.exchange.trade_externally("JNJ", "sell", own)
    with capture_logs() as logs:
        scn.settle(daemon)
    assert events(logs, "position_change_unconfirmed") == []
    assert len(events(logs, "position_closed_externally")) == 1
    assert daemon.store.book() == {} and scn.broker_positions() == {}


# ================================================================================ 3. a bad print near the stop level
def test_a_bad_print_does_not_sell_a_healthy_position_with_default_settings(
        scenario: Callable[..., Scenario]) -> None:
    # Defaults: STOP_LOSS_PCT 8 %, MAX_PRICE_DISAGREEMENT_PCT 5 %. META's true 02-28 close is ~5.7 % below
    # its entry (no stop-loss); the daily bar of 02-28 is a bad print at half the price.
    scn = scenario(ny(2025, 2, 28, 9, 30), universe="META")
    daemon = scn.boot()
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    entry = daemon.store.book()["META"].avg_entry_price
    true_close = float(scn.sim.bars.matrix(["META"], [date(2025, 2, 28)])["close"][0, 0])
    assert entry * 0.92 < true_close < entry * 0.95, "precondition: a loss, but no stop-loss"
    scn.sim.exchange.set_bad_print("META", date(2025, 2, 28), 0.5)
    scn.advance_to(ny(2025, 3, 3, 9, 45))
    with capture_logs() as logs:
        for _ in range(3):
            scn.settle(daemon, 5)
    refusals = events(logs, "order_refused_by_price_check")
    assert refusals and "stop-loss not confirmed" in refusals[0]["reason"] and "disagrees" in refusals[0]["reason"]
    assert _daemon_sells(scn, "META") == [] and daemon.store.closed_positions("META") == []
    assert events(logs, "exit_committed") == []


def test_a_bad_print_with_the_true_price_above_the_entry_is_no_stop_loss(scenario: Callable[..., Scenario]) -> None:
    # STOP_LOSS_PCT 3 %: the broker's price (above the entry) is within 5 % of the stop level.
    scn = scenario(stop_loss_pct=0.03, max_holding_sessions=50)
    daemon, own = scn.daemon_holding("JNJ")
    entry = daemon.store.book()["JNJ"].avg_entry_price
    scn.sim.exchange.set_bad_print("JNJ", date(2025, 3, 11), 0.5)
    scn.advance_to(ny(2025, 3, 12, 9, 45))
    assert scn.sim.bars.price_at("JNJ", scn.clock.now()) > entry, "precondition: the true price is above the entry"
    with capture_logs() as logs:
        for _ in range(3):
            scn.settle(daemon, 5)
    assert events(logs, "order_refused_by_price_check")
    assert _daemon_sells(scn) == [] and daemon.store.book()["JNJ"].qty == pytest.approx(own)


# ================================================================================ 4. the user's own open orders
class _Recorder:
    def __init__(self) -> None:
        self.events: list[Any] = []

    def emit(self, event: Any) -> None:
        self.events.append(event)


def test_the_users_open_sell_does_not_block_the_daemons_exit(scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    daemon, own = scn.daemon_holding("JNJ")
    scn.sim.exchange.trade_externally("JNJ", "buy", 5)   # the user's own 5 shares, with a GTC take-profit
    scn.sim.exchange.submit_order({"symbol": "JNJ", "side": "sell", "type": "limit", "limit_price": "999.00",
                                   "time_in_force": "gtc", "qty": "5", "client_order_id": "manual-gtc"})
    scn.advance_to(EXIT_DAY)
    with capture_logs() as logs:
        results = [scn.settle(daemon, 30) for _ in range(3)]
    assert not any("already open" in r.reason for res in results for r in res.risk_rejections)
    (sell,) = _daemon_sells(scn)
    assert sell.qty == pytest.approx(own) and sell.status == "filled"
    assert scn.sim.exchange.order_by_client_id("manual-gtc").status == "new", "the user's order is untouched"
    assert_book_matches_broker(scn, daemon.store, outside={"JNJ": 5.0})
    assert events(logs, "exit_blocked_by_foreign_order") == []


def test_the_users_gtc_take_profit_does_not_hold_back_a_stop_loss(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 28, 9, 30), universe="META", stop_loss_pct=0.04)
    daemon = scn.boot()
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    own = daemon.store.book()["META"].qty
    scn.sim.exchange.trade_externally("META", "buy", 2)
    scn.sim.exchange.submit_order({"symbol": "META", "side": "sell", "type": "limit", "limit_price": "9999.00",
                                   "time_in_force": "gtc", "qty": "2", "client_order_id": "my-take-profit"})
    scn.settle(daemon)
    scn.advance_to(ny(2025, 3, 3, 10, 0))
    scn.settle(daemon, 5)
    scn.settle(daemon, 5)
    (sell,) = _daemon_sells(scn, "META")
    assert sell.qty == pytest.approx(own) and sell.status == "filled"
    assert daemon.store.last_stop_loss_exit("META") is not None
    assert_book_matches_broker(scn, daemon.store, outside={"META": 2.0})


def test_the_users_open_buy_blocks_the_exit_with_one_warning_and_a_notification(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    recorder = _Recorder()
    daemon = scn.boot(events=recorder)
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    scn.sim.exchange.submit_order({"symbol": "JNJ", "side": "buy", "type": "limit", "limit_price": "1.00",
                                   "time_in_force": "gtc", "qty": "1", "client_order_id": "manual-gtc"})
    scn.advance_to(EXIT_DAY)
    with capture_logs() as logs:
        results = [scn.settle(daemon, 30) for _ in range(5)]
    assert all(r.submitted == 0 for r in results) and _daemon_sells(scn) == []
    assert "manual-gtc" in results[0].risk_rejections[0].reason
    (warning,) = events(logs, "exit_blocked_by_foreign_order")
    assert warning["symbol"] == "JNJ" and warning["log_level"] == "warning" and "cancel" in warning["reason"]
    blocked = [e for e in recorder.events if e.KIND == "exit_blocked"]
    assert len(blocked) == 1 and blocked[0].symbol == "JNJ"
    # Once the user cancels it, the exit goes out.
    scn.sim.exchange.cancel_order(scn.sim.exchange.order_by_client_id("manual-gtc").id)
    scn.clock.advance(31 * 60)   # past the re-run interval of a refusal whose inputs did not change
    for _ in range(2):
        scn.settle(daemon, 2)
    (sell,) = _daemon_sells(scn)
    assert sell.status == "filled" and scn.broker_positions() == {}


# ================================================================================ 5. a host clock a day slow at start-up
def test_a_restart_with_the_host_clock_a_day_slow_abandons_yesterdays_stale_entry(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    scn.faults.inject("drop", method="POST", path_prefix="/v2/orders", count=None)
    scn.faults.inject("503", method="GET", path_prefix="/v2/orders:by_client_order_id", count=None)
    daemon = scn.boot()
    daemon.orchestrator.run_iteration()
    (pending,) = daemon.store.pending_intents()
    assert pending.signal_session == date(2025, 3, 10) and scn.broker_orders() == []
    scn.kill(daemon)
    scn.faults.clear()
    scn.advance_to(ny(2025, 3, 12, 10, 0))   # the 03-10 decision is stale; the host thinks it is 03-11
    mark = scn.log_mark()
    with capture_logs() as logs:
        daemon = scn.boot(host_clock=SkewedClock(scn.clock, timedelta(days=-1)))
        daemon.orchestrator.run(max_iterations=1)
    (reconciled,) = events(logs, "reconciled")
    assert reconciled["intents_abandoned"] == [pending.client_order_id] and reconciled["intents_resubmitted"] == []
    assert scn.sim.exchange.order_by_client_id(pending.client_order_id) is None, "yesterday's decision is not sent"
    assert [o.client_order_id[14:22] for o in scn.broker_orders()] == ["20250311"], "only today's decision goes"
    assert scn.intents()[pending.client_order_id]["state"] == "abandoned"
    # The broker's clock was read before the reconciliation, once: the loop's first step used the cached answer.
    clock_reads = scn.requests(path_prefix="/v2/clock", since=mark)
    assert len(clock_reads) == 1
    first = scn.requests(since=mark)[0]
    assert first.path == "/v2/clock"


# ================================================================================ 6. one accidental second daemon
def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path,
         *args: str) -> tuple[int, str, str]:
    """`trading-daemon ARGS` in-process, on the scenario's state directory (no broker call)."""
    monkeypatch.setenv("STATE_DIR", str(state_dir))
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    capsys.readouterr()
    try:
        code = cli.main(["--env-file", str(env_file), *args])
    finally:
        structlog.reset_defaults()   # the command configured logging onto pytest's captured streams
    out, err = capsys.readouterr()
    return code, out, err


def test_one_accidental_run_of_a_second_daemon_halts_entries_until_acknowledged(
        scenario: Callable[..., Scenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scn = scenario(symbol_tiers={"JNJ": "TIER3", "SPY": "TIER1", "KO": "TIER3"})
    first, own = scn.daemon_holding("JNJ")
    # By mistake, a second daemon (another state directory) runs once and buys KO; it never runs again.
    other = make_config(tmp_path / "other", **{**FAST_CONFIG, **CONFIG, "entry_z": 0.5,
                                                "symbol_tiers": {"KO": "TIER3", "PG": "TIER3", "SPY": "TIER1"}})
    scn.clock.advance(600)
    second = scn.boot(config=other)
    second.orchestrator.run_iteration()
    scn.clock.advance(120)
    second.orchestrator.run_iteration()
    theirs = [o for o in scn.broker_orders() if o.client_order_id.startswith(f"zmr-{second.store.instance_id}-")]
    assert theirs and all(o.status == "filled" for o in theirs), "precondition: the other's orders are closed"
    scn.kill(second)
    scn.kill(first)

    # The real daemon restarts the next day: it starts (was exit 3 for good), with entries halted.
    scn.advance_to(ny(2025, 3, 12, 9, 45))
    with capture_logs() as logs:
        first = scn.boot()
    (warning,) = events(logs, "another_instance_traded")
    assert warning["instances"] == [second.store.instance_id] and warning["log_level"] == "warning"
    (halt,) = first.store.active_halts()
    assert halt.kind == HALT_KIND and second.store.instance_id in halt.reason
    assert "halts clear another_instance" in halt.reason
    # Exits run while entries wait: the max-holding exit of JNJ goes out on 03-13.
    scn.advance_to(EXIT_DAY)
    for _ in range(2):
        scn.settle(first, 30)
    (sell,) = _daemon_sells(scn)
    assert sell.qty == pytest.approx(own) and sell.status == "filled"
    assert [o for o in scn.broker_orders() if o.side == "buy" and o.created_at > halt.started_at
            and o.client_order_id.startswith(f"zmr-{first.store.instance_id}-")] == []
    scn.kill(first)

    # The owner acknowledges the other instance; the clear sticks across restarts.
    code, out, err = _cli(monkeypatch, capsys, tmp_path, Path(scn.config.state_dir),
                          "halts", "clear", HALT_KIND, "--reason", "a one-off run by mistake")
    assert code == 0, err
    assert second.store.instance_id in out and "Acknowledged" in out
    for day in (14, 17):
        scn.advance_to(ny(2025, 3, day, 9, 45))
        restarted = scn.boot()
        assert restarted.store.active_halts() == []
        scn.kill(restarted)


# ================================================================================ 8. one unreadable cash activity
BAD_ACTIVITY = {"id": "20250307100000000::bad", "account_id": "x", "activity_type": "JNLC", "date": "2025-03-07",
                "net_amount": None, "description": "journal", "status": "executed", "symbol": None, "qty": None,
                "per_share_amount": None}


def _with_bad_activity(page: Any) -> Any:
    if isinstance(page, list) and not any(isinstance(p, dict) and p.get("id") == BAD_ACTIVITY["id"] for p in page):
        return [BAD_ACTIVITY, *page]
    return page


def test_an_unreadable_cash_activity_is_named_and_acknowledging_it_sticks(
        scenario: Callable[..., Scenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    scn = scenario()
    scn.faults.inject("transform", method="GET", path_prefix="/v2/account/activities", count=None,
                      fn=_with_bad_activity)
    scn.sim.exchange.withdraw(1_000.0)   # a readable flow next to it
    daemon = scn.boot()
    with capture_logs() as logs:
        result = daemon.orchestrator.run_iteration()
    (halt,) = result.halts
    assert halt.startswith("cash_flows_unknown: ") and BAD_ACTIVITY["id"] in halt
    assert "net_amount None is not a number" in halt and "halts clear cash_flows_unknown" in halt
    (warning,) = events(logs, "cash_flows_unreadable")
    assert BAD_ACTIVITY["id"] in warning["activities"][0]
    assert result.submitted == 0 and scn.broker_orders() == []
    assert daemon.store.get_value("cash_flows_checked_on") is None, "the window does not move past it"

    code, out, err = _cli(monkeypatch, capsys, tmp_path, Path(scn.config.state_dir),
                          "halts", "clear", "cash_flows_unknown", "--reason", "a zero journal, checked by hand")
    assert code == 0, err
    assert BAD_ACTIVITY["id"] in out and "no cash flow" in out
    for day in (12, 13):
        scn.advance_to(ny(2025, 3, day, 10, 0))
        result = scn.settle(daemon, 1)
        assert daemon.store.active_halts() == [] and result.halts == []
    # Every other activity was read: the withdrawal is recorded once; the window moved on.
    assert [row["amount"] for row in scn.db_rows("SELECT amount FROM cash_flows")] == [-1000.0]
    assert daemon.store.get_value("cash_flows_checked_on", "") >= "2025-03-12"


# ================================================================================ 7. a bad print the feed corrects
def test_a_running_daemon_drops_a_bad_print_the_feed_corrected_at_the_next_session(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(symbol_tiers={"JNJ": "TIER3", "SPY": "TIER1", "KO": "TIER3"})
    scn.sim.exchange.set_bad_print("JNJ", date(2025, 3, 12), 0.1)
    daemon = scn.boot()
    scn.advance_to(ny(2025, 3, 13, 10, 0))
    daemon.orchestrator.run_iteration()
    limit = daemon.orchestrator.signal_agent.bars_to_fetch
    cached = daemon.orchestrator.data_agent.process(["JNJ"], limit=limit).bars["JNJ"]
    assert cached.values[-1, 3] < 20, "precondition: the bad print (x0.1) is cached"
    scn.sim.exchange.clear_bad_prints()   # the feed corrects it later that day
    scn.advance_to(ny(2025, 3, 14, 10, 0))
    with capture_logs() as logs:
        first = daemon.orchestrator.run_iteration()
        steady = scn.settle(daemon, 1)
    assert len(events(logs, "bar_cache_refreshed")) == 1
    fresh = DataAgent(scn.config, market=daemon.gateway, clock=scn.clock, calendar=scn.calendar).process(
        ["JNJ"], limit=limit)
    warm = daemon.orchestrator.data_agent.process(["JNJ"], limit=limit)
    assert np.allclose(warm.bars["JNJ"].values[:, :4], fresh.bars["JNJ"].values[:, :4])
    assert warm.bars["JNJ"].values[:, 3].min() > 100, "no bar of the window is the bad print any more"
    # The refresh is the iteration's one bars request; the next iteration is a steady one again.
    assert first.requests["data"] == 1 and sum(steady.requests.values()) == 2


# ================================================================================ 10. a dry run on the production state
def test_a_dry_run_on_the_production_state_leaves_the_real_decisions_alone(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    daemon, own = scn.daemon_holding("JNJ")
    scn.advance_to(ny(2025, 3, 13, 9, 45))   # the max-holding exit (03-12's decision) is due
    scn.kill(daemon)
    # The owner runs `run --once --dry-run` on the same STATE_DIR to see what the daemon would do.
    store = StateStore(scn.config.state_dir, scn.clock)
    dry = Orchestrator(scn.config, gateway_for(scn.sim, scn.config), store, scn.clock, calendar=scn.calendar,
                       dry_run=True)
    dry.startup()
    with capture_logs() as logs:
        result = dry.run_iteration()
        again = dry.run_iteration()
    (logged,) = events(logs, "dry_run_order")
    real_id = logged["request"]["client_order_id"]
    assert logged["request"]["side"] == "sell" and logged["request"]["qty"] == pytest.approx(own)
    assert real_id.startswith("zmr-i5ce7a710-20250312-JNJ-sell-"), "the exact request a real run would send"
    assert result.dry_run == 1 and again.dry_run == 0, "a dry run logs a decision once"
    assert scn.intents()[dry_run_key(real_id)]["state"] == "dry_run" and real_id not in scn.intents()
    assert _daemon_sells(scn) == []
    store.close()

    # The real daemon starts again: the exit goes out at once, as the decision it was.
    scn.clock.advance(300)
    daemon = scn.boot()
    scn.settle(daemon, 15)
    scn.settle(daemon, 15)
    (sell,) = _daemon_sells(scn)
    assert sell.client_order_id == real_id and sell.status == "filled"
    assert scn.broker_positions() == {} and daemon.store.book() == {}
    assert_no_duplicate_orders(scn, daemon.store)


def test_an_older_releases_dry_run_row_under_the_real_id_no_longer_blocks_the_exit(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    daemon, own = scn.daemon_holding("JNJ")
    real_id = format_client_order_id("zmr", date(2025, 3, 12), "JNJ", Side.SELL, "i5ce7a710")
    with daemon.store.atomic() as conn:   # as an older release's dry run left it: the real id, state dry_run
        conn.execute("INSERT INTO order_intents (client_order_id, symbol, side, qty, notional, order_type, time_in_force, "
                     "signal_session, reason, state, message, created_at, updated_at) VALUES (?, 'JNJ', 'sell', ?, NULL, "
                     "'market', 'day', '2025-03-12', 'exit_max_holding', 'dry_run', 'dry run: not sent', ?, ?)",
                     (real_id, own, "2025-03-13T13:45:00+00:00", "2025-03-13T13:45:00+00:00"))
    scn.advance_to(EXIT_DAY)
    for _ in range(2):
        scn.settle(daemon, 15)
    (sell,) = _daemon_sells(scn)
    assert sell.client_order_id == real_id and sell.status == "filled"
    assert scn.intents()[real_id]["state"] == "submitted"
    assert scn.intents()["dry-run:" + real_id]["state"] == "dry_run"
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 11. a fractional remnant
def test_a_reverse_splits_fractional_remnant_is_sold_with_fractional_entries_off(
        scenario: Callable[..., Scenario]) -> None:
    # ENABLE_FRACTIONAL_SHARES=false governs entries: 43 whole JNJ, then 1-for-10: 4.3 shares.
    scn = scenario(enable_fractional_shares=False)
    scn.sim.exchange.add_split("JNJ", date(2025, 3, 13), 0.1)
    daemon, own = scn.daemon_holding("JNJ")
    assert own == round(own), "precondition: whole shares"
    scn.advance_to(ny(2025, 3, 13, 10, 0))
    for _ in range(3):
        scn.settle(daemon, 5)
    (sell,) = _daemon_sells(scn)
    assert sell.qty == pytest.approx(own / 10) and sell.qty != round(sell.qty) and sell.status == "filled"
    assert scn.broker_positions() == {} and daemon.store.book() == {}
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_remnant_that_cannot_be_sold_says_why_and_gives_up_once_a_session(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(enable_fractional_shares=False)
    scn.sim.exchange.add_split("JNJ", date(2025, 3, 13), 0.1)
    daemon, own = scn.daemon_holding("JNJ")
    scn.sim.exchange.set_asset("JNJ", fractionable=False)
    scn.advance_to(ny(2025, 3, 13, 10, 0))
    for _ in range(3):
        scn.settle(daemon, 5)
    (sell,) = _daemon_sells(scn)
    assert sell.qty == float(int(own / 10)) and sell.status == "filled"   # the whole shares
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own / 10 - sell.qty)
    with capture_logs() as logs:
        requests = []
        for day in (14, 17):
            scn.advance_to(ny(2025, 3, day, 10, 0))
            requests += [sum(scn.settle(daemon, 5).requests.values()) for _ in range(40)]
    given_up = events(logs, "exit_given_up")
    assert len(given_up) == 2, "once per session, not once per iteration"
    assert all(e["cause"] == "asset_not_fractionable" and "not fractionable" in e["broker"] for e in given_up)
    assert sorted(requests)[len(requests) // 2] == 2, "the steady iterations cost 2 requests again"
    assert len(_daemon_sells(scn)) == 1
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 13. what start-up says it did
def test_a_resubmission_the_broker_refuses_at_start_up_is_logged_as_refused_not_unresolved(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario()
    scn.faults.inject("drop", method="POST", path_prefix="/v2/orders", count=None)
    scn.faults.inject("503", method="GET", path_prefix="/v2/orders:by_client_order_id", count=None)
    daemon = scn.boot()
    daemon.orchestrator.run_iteration()
    (pending,) = daemon.store.pending_intents()
    scn.kill(daemon)
    scn.faults.clear()
    scn.sim.exchange.set_trading_blocked(True)   # the resubmission gets a definitive 403
    scn.clock.advance(120)
    with capture_logs() as logs:
        daemon = scn.boot()
    (reconciled,) = events(logs, "reconciled")
    assert reconciled["intents_rejected"] == [pending.client_order_id] and reconciled["intents_unresolved"] == []
    (refused,) = events(logs, "intent_resubmission_refused")
    assert refused["client_order_id"] == pending.client_order_id and refused["state"] == "rejected"
    assert "403" in refused["reason"] or "blocked" in refused["reason"].lower()
    assert events(logs, "intent_unresolved") == []
    assert daemon.store.pending_intents() == [] and scn.broker_orders() == []


# ================================================================================ 14. one time base
def test_the_daemons_rows_and_iterations_share_the_brokers_time_base_when_the_host_clock_is_off(
        sim: Any, tmp_path: Path) -> None:
    """`trading-daemon run --once` on a host whose clock is far from the broker's (the real clock against the
    simulated market's 2025): iteration times, and every row the store stamps, are in the daemon's one
    broker-corrected time base, so an age computed from them (the loop-stuck alert) is right."""
    env = {k: v for k, v in venv_env().items() if not k.startswith(("ALPACA_", "STATE_DIR"))}
    env.update(ALPACA_API_KEY=sim.api_key, ALPACA_SECRET_KEY=sim.secret_key, ALPACA_TRADING_URL=sim.url,
               ALPACA_DATA_URL=sim.url, STATE_DIR=str(tmp_path / "state"), USE_SCANNER="false",
               SYMBOL_TIERS="JNJ:TIER3,SPY:TIER1")
    (tmp_path / "empty.env").write_text("")
    done = subprocess.run([sys.executable, "-m", "core.cli", "--env-file", str(tmp_path / "empty.env"), "run",
                           "--once"], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "clock_skew_beyond_bound" in done.stderr
    conn = sqlite3.connect(tmp_path / "state" / "trading.db")
    try:
        (started,) = conn.execute("SELECT started_at FROM iterations").fetchone()
        stamped = [row[0] for row in conn.execute("SELECT recorded_at FROM snapshots")]
        stamped += [row[0] for row in conn.execute("SELECT seen_at FROM broker_positions_seen")]
    finally:
        conn.close()
    broker_now = SIM_START
    assert abs((datetime.fromisoformat(started) - broker_now).total_seconds()) < 3600
    assert stamped and all(abs((datetime.fromisoformat(t) - broker_now).total_seconds()) < 3600 for t in stamped)


# ================================================================================ 15. a lapsed daily-loss halt
def test_a_daily_loss_halt_lapses_at_the_next_session_without_a_decision(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(symbol_tiers={"SPY": "TIER1"})   # nothing to decide for days
    daemon = scn.boot()
    daemon.orchestrator.run_iteration()
    daemon.store.add_halt("daily_loss", "daily_loss: equity 9,500.00 is -5.00% vs last close", date(2025, 3, 11))
    scn.settle(daemon)
    assert [h.kind for h in daemon.store.active_halts()] == ["daily_loss"], "precondition: that session it holds"
    scn.advance_to(ny(2025, 3, 12, 10, 0))
    with capture_logs() as logs:
        result = scn.settle(daemon)
    assert result.signals == 0 and result.halts == [], "no decision was taken"
    assert daemon.store.active_halts() == []
    cleared = events(logs, "halt_cleared")
    assert cleared and all(e["kind"] == "daily_loss" for e in cleared), cleared
    assert collect_status(scn.config)["halts"] == []
    assert sum(scn.settle(daemon).requests.values()) == 2, "a local change: a steady iteration asks nothing more"
