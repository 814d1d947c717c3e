"""Issue 10, item 4: exits that cannot go out at that moment, end to end through the real SDK.

The daemon buys MA for real on 2025-02-12 (its z-score closed at -2.5 on 2025-02-11) and the same
day's close is 5% below the fill, so with STOP_LOSS_PCT=0.04 the stop-loss fires on the 2025-02-12
bar and the sale is decided for the open of 2025-02-13. Each test then makes the broker refuse or
hold that sale and checks the broker's orders and positions, the state database (intents and
`pending_exits`) and that no decision ever reached the broker twice.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.execution_agent import client_order_id
from core.domain.models import Side
from tests.harness.clocks import ny
from tests.harness.logs import events
from tests.harness.scenario import (
    SCENARIO_INSTANCE,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

ENTRY_DECISION = date(2025, 2, 11)
EXIT_DECISION = date(2025, 2, 12)
START = ny(2025, 2, 12, 9, 0)   # the morning the daemon buys MA
EXIT_DAY_OPEN = ny(2025, 2, 13, 9, 30)
CONFIG: dict[str, Any] = {"symbol_tiers": {"MA": "TIER3"}, "stop_loss_pct": 0.04, "loop_interval_seconds": 300.0}
BUY = client_order_id("zmr", ENTRY_DECISION, "MA", Side.BUY, SCENARIO_INSTANCE)


def sell_attempt(n: int) -> str:
    return client_order_id("zmr", EXIT_DECISION, "MA", Side.SELL, SCENARIO_INSTANCE, n)


@pytest.fixture
def scenario_config() -> dict[str, Any]:
    return CONFIG


def _hold_ma(scn: Scenario) -> Any:
    """Boot, buy MA at the 2025-02-12 open, and check the precondition: the stop-loss will fire."""
    assert scn.zscores(["MA"], ENTRY_DECISION)["MA"] <= -scn.config.entry_z
    daemon = scn.boot()
    daemon.orchestrator.run(until=ny(2025, 2, 12, 10, 0))
    assert scn.broker_positions().get("MA", 0) > 0, "precondition: the daemon bought MA"
    fill = scn.sim.exchange.order_by_client_id(BUY)
    assert fill is not None and fill.filled_avg_price is not None
    close = scn.sim.bars.session_bar("MA", EXIT_DECISION).close
    assert close <= float(fill.filled_avg_price) * (1 - scn.config.stop_loss_pct), "precondition: stop-loss fires"
    return daemon


def _sells(scn: Scenario) -> list[Any]:
    return [o for o in scn.broker_orders() if o.symbol == "MA" and o.side == "sell"]


def _pending_exits(scn: Scenario) -> list[dict[str, Any]]:
    return scn.db_rows("SELECT * FROM pending_exits ORDER BY id")


def _sell_intents(scn: Scenario) -> dict[str, dict[str, Any]]:
    return {cid: row for cid, row in scn.intents().items() if row["side"] == "sell"}


def test_stop_loss_while_trading_is_blocked_is_retried_and_fills_when_the_block_lifts(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(START)
    daemon = _hold_ma(scn)
    lifted = ny(2025, 2, 13, 9, 47)
    scn.clock.at(ny(2025, 2, 13, 9, 0), lambda: scn.sim.exchange.set_trading_blocked(True))
    scn.clock.at(lifted, lambda: scn.sim.exchange.set_trading_blocked(False))

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 13, 11, 0))

    # Refused at 9:30, 9:35, 9:40 and 9:45 (each a new attempt, each refused with 403), sold at 9:50.
    (sale,) = _sells(scn)
    assert sale.status == "filled" and sale.client_order_id == sell_attempt(5)
    assert lifted <= sale.created_at < ny(2025, 2, 13, 9, 55)
    assert "MA" not in scn.broker_positions()
    intents = _sell_intents(scn)
    assert [intents[sell_attempt(n)]["state"] for n in range(1, 6)] == ["rejected"] * 4 + ["submitted"]
    assert all("not authorized to trade" in intents[sell_attempt(n)]["message"] for n in range(1, 5))
    assert len(intents) == 5
    (pending,) = _pending_exits(scn)
    assert (pending["state"], pending["reason"], pending["attempts"], pending["last_refusal"], pending["outcome"]) == (
        "done", "exit_stop_loss", 4, "trading_blocked", "filled")
    retries = [e for e in logs if e["event"] == "exit_refused_will_retry"]
    assert len(retries) == 4 and {e["cause"] for e in retries} == {"trading_blocked"}
    assert [c.reason for c in daemon.store.closed_positions("MA")] == ["exit_stop_loss"]
    # Entries were halted while the broker reported the block, and resume as soon as it lifts (not at the
    # next session): the daemon clears the halt at the first decision that no longer sees it.
    (halt,) = scn.db_rows("SELECT kind, cleared_at, cleared_by FROM risk_halts WHERE kind = 'account_blocked'")
    assert halt["cleared_by"] == "daemon"
    assert lifted <= datetime.fromisoformat(halt["cleared_at"]) < ny(2025, 2, 13, 9, 55)
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_held_asset_halted_when_the_exit_fires_sells_as_soon_as_the_halt_lifts(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(START)
    daemon = _hold_ma(scn)
    # The halt starts after the entry (the session's asset cache says "tradable") and lifts mid-morning.
    scn.sim.exchange.set_asset("MA", tradable=False)
    lifted = ny(2025, 2, 13, 10, 2)
    scn.clock.at(lifted, lambda: scn.sim.exchange.set_asset("MA", tradable=True))

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 13, 11, 0))

    (sale,) = _sells(scn)
    assert sale.status == "filled" and lifted <= sale.created_at < ny(2025, 2, 13, 10, 10)
    # While halted the fresh asset flags stop the sale before any POST: one POST in all, attempt 1.
    assert sale.client_order_id == sell_attempt(1)
    sell_posts = [r for r in scn.order_posts() if r.sim_time >= EXIT_DAY_OPEN]
    assert len(sell_posts) == 1
    assert "MA" not in scn.broker_positions()
    (pending,) = _pending_exits(scn)
    assert (pending["state"], pending["last_refusal"], pending["outcome"]) == ("done", "asset_not_tradable", "filled")
    assert pending["attempts"] >= 6   # 9:30 .. 10:00, one per iteration
    retries = [e for e in logs if e["event"] == "exit_refused_will_retry"]
    assert retries and {e["cause"] for e in retries} == {"asset_not_tradable"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_permanent_refusal_is_not_retried_for_ever(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(START)
    daemon = _hold_ma(scn)
    refusal = json.dumps({"code": 40010001, "message": "qty must be integer"})
    scn.clock.at(ny(2025, 2, 13, 9, 0), lambda: scn.faults.inject(
        "body", method="POST", path_prefix="/v2/orders", count=None, status=422, body=refusal,
        content_type="application/json"))

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 13, 15, 0))

    assert _sells(scn) == [] and scn.broker_positions().get("MA", 0) > 0
    intents = _sell_intents(scn)
    assert list(intents) == [sell_attempt(1)] and intents[sell_attempt(1)]["state"] == "rejected"
    sell_posts = [r for r in scn.order_posts() if r.sim_time >= EXIT_DAY_OPEN]
    assert len(sell_posts) == 1, "one POST for the whole session, not one per iteration"
    (pending,) = _pending_exits(scn)
    assert (pending["state"], pending["outcome"], pending["attempts"]) == ("given_up", "http_422", 0)
    given_up = [e for e in logs if e["event"] == "exit_given_up"]
    assert len(given_up) == 1 and given_up[0]["symbol"] == "MA"
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_restart_during_a_pending_exit_keeps_retrying(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(START)
    first = _hold_ma(scn)
    scn.clock.at(ny(2025, 2, 13, 9, 0), lambda: scn.sim.exchange.set_trading_blocked(True))
    first.orchestrator.run(until=ny(2025, 2, 13, 9, 42))
    assert [row["state"] for row in _sell_intents(scn).values()] == ["rejected"] * 3   # 9:30, 9:35, 9:40
    scn.kill(first)

    # The process is gone; the block lifts while it is down, and a new process boots on the same state.
    scn.sim.exchange.set_trading_blocked(False)
    second = scn.boot()
    second.orchestrator.run(until=ny(2025, 2, 13, 10, 30))

    (sale,) = _sells(scn)
    assert sale.status == "filled" and sale.client_order_id == sell_attempt(4)
    assert "MA" not in scn.broker_positions()
    (pending,) = _pending_exits(scn)
    assert (pending["state"], pending["attempts"], pending["outcome"]) == ("done", 3, "filled")
    assert_book_matches_broker(scn, second.store)
    assert_no_duplicate_orders(scn, second.store)


def test_a_pending_exit_is_pursued_in_a_later_session_although_its_signal_no_longer_holds(
        scenario: Callable[..., Scenario]) -> None:
    # A 4.5% stop: MA's 02-12 close is below it, its 02-14 close is above it again, and its 02-18 open
    # is above the stop by more than MAX_PRICE_DISAGREEMENT_PCT (a fresh judgment would keep MA).
    scn = scenario(START, stop_loss_pct=0.045, max_price_disagreement_pct=0.005)
    daemon = _hold_ma(scn)
    fill = scn.sim.exchange.order_by_client_id(BUY)
    assert fill is not None and fill.filled_avg_price is not None
    stop_level = float(fill.filled_avg_price) * (1 - 0.045)
    assert scn.sim.bars.session_bar("MA", date(2025, 2, 14)).close > stop_level, "precondition: the stop no longer holds"
    assert scn.sim.bars.price_at("MA", ny(2025, 2, 18, 9, 30)) > stop_level * 1.005, "precondition: price guard"
    # Blocked for all of 02-13 and 02-14; lifted over the weekend (02-17 is a holiday).
    scn.clock.at(ny(2025, 2, 13, 9, 0), lambda: scn.sim.exchange.set_trading_blocked(True))
    scn.clock.at(ny(2025, 2, 15, 12, 0), lambda: scn.sim.exchange.set_trading_blocked(False))

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 18, 10, 0))

    (sale,) = _sells(scn)
    assert sale.status == "filled" and sale.created_at == ny(2025, 2, 18, 9, 30)
    # The sale still carries the 2025-02-12 stop-loss decision (one decision, one sale), and the price
    # check did not judge it again.
    assert sale.client_order_id.startswith(f"zmr-{SCENARIO_INSTANCE}-20250212-MA-sell-")
    assert events(logs, "order_refused_by_price_check") == []
    (pending,) = _pending_exits(scn)
    assert (pending["state"], pending["reason"], pending["decision_session"]) == ("done", "exit_stop_loss", "2025-02-12")
    assert [c.reason for c in daemon.store.closed_positions("MA")] == ["exit_stop_loss"]
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


