"""Issue 10, item 3: the user trades a symbol the daemon holds (end to end, through the real SDK).

The daemon manages only the quantity its own orders built. Shares the user buys by hand next to
it are reported (one log line when that difference changes, the start-up summary, `status`) and
never sold by the daemon's exit; a manual sale takes the user's own shares first and lowers the
daemon's own quantity only when the broker holds less than it; a restart with the user's shares
present starts. Each test checks the broker's orders and positions, the state database and that
no client_order_id became two orders.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.execution_agent import client_order_id
from core.domain.models import Side
from core.status import render_status
from tests.harness.clocks import ny
from tests.harness.scenario import (
    SCENARIO_INSTANCE,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

# 2025-03-11 10:00 New York: JNJ closed ~1.5 sd below its mean on 03-10 (an entry at ENTRY_Z=1.2).
JNJ_DAY = ny(2025, 3, 11)
JNJ_DECISION = date(2025, 3, 10)
JNJ_BUY = client_order_id("zmr", JNJ_DECISION, "JNJ", Side.BUY, SCENARIO_INSTANCE)
CONFIG: dict[str, Any] = {"symbol_tiers": {"JNJ": "TIER3", "SPY": "TIER1"}, "entry_z": 1.2,
                          "max_holding_sessions": 1}
EXIT_DAY = ny(2025, 3, 13)   # max holding: the 03-12 decision sells what was entered on 03-11


@pytest.fixture
def scenario_config() -> dict[str, Any]:
    return CONFIG




def _by_hand(scn: Scenario, side: str, qty: float, name: str) -> str:
    """The user trades in the broker's web app: a market order with a foreign client_order_id."""
    cid = f"manual-{name}"
    scn.sim.exchange.submit_order({"symbol": "JNJ", "side": side, "type": "market", "time_in_force": "day",
                                   "qty": str(qty), "client_order_id": cid})
    return cid



def test_shares_bought_by_hand_are_reported_and_never_sold_by_the_daemons_exit(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY)
    daemon, own = scn.daemon_holding("JNJ")
    manual = _by_hand(scn, "buy", 5, "buy")
    with capture_logs() as logs:
        scn.settle(daemon)
        scn.settle(daemon)   # a second look at the same difference logs nothing new
    changed = [e for e in logs if e["event"] == "outside_shares_changed"]
    assert len(changed) == 1, changed
    assert changed[0]["outside_qty"] == pytest.approx(5) and changed[0]["cause"] == "outside_bought"
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own), "the user's shares were absorbed"
    assert_book_matches_broker(scn, daemon.store, outside={"JNJ": 5})
    status = render_status(scn.config)
    assert "not the daemon's" in status and "JNJ" in status.split("not the daemon's", 1)[1]

    # The max-holding exit sells the daemon's own quantity, and only that.
    scn.advance_to(EXIT_DAY)
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    sells = [o for o in scn.broker_orders() if o.side == "sell"]
    assert len(sells) == 1 and sells[0].client_order_id.startswith("zmr-")
    assert sells[0].qty == pytest.approx(own) and sells[0].status == "filled"
    assert scn.broker_positions() == {"JNJ": pytest.approx(5)}
    assert daemon.store.book() == {}
    (closed,) = daemon.store.closed_positions("JNJ")
    assert closed.qty == pytest.approx(own) and closed.exit_price is not None
    assert scn.sim.exchange.order_by_client_id(manual).status == "filled"  # type: ignore[union-attr]
    assert_book_matches_broker(scn, daemon.store, outside={"JNJ": 5})

    # Later iterations leave the user's 5 shares alone: no signal, no order.
    posts = len(scn.order_posts())
    for _ in range(3):
        scn.settle(daemon, minutes=30)
    assert len(scn.order_posts()) == posts and scn.broker_positions() == {"JNJ": pytest.approx(5)}
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_restart_with_the_users_shares_present_starts_and_keeps_them_apart(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY)
    first, own = scn.daemon_holding("JNJ")
    _by_hand(scn, "buy", 5, "buy")
    scn.clock.advance(120)
    scn.kill(first)   # down before it ever saw the user's shares

    with capture_logs() as logs:
        second = scn.boot()   # would refuse (exit 3) before issue 10
    (reconciled,) = [e for e in logs if e["event"] == "reconciled"]
    assert reconciled["outside_shares"] == {"JNJ": pytest.approx(5)} and reconciled["adjusted"] == []
    assert second.store.book()["JNJ"].qty == pytest.approx(own) and second.store.book()["JNJ"].origin == "daemon"
    assert_book_matches_broker(scn, second.store, outside={"JNJ": 5})
    scn.kill(second)

    # And a third start, with nothing new, reports nothing as changed.
    with capture_logs() as logs:
        third = scn.boot()
    assert [e for e in logs if e["event"] == "outside_shares_changed"] == []
    assert_book_matches_broker(scn, third.store, outside={"JNJ": 5})
    assert_no_duplicate_orders(scn, third.store)


def test_a_partial_manual_sale_takes_the_users_shares_first(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY)
    daemon, own = scn.daemon_holding("JNJ")
    _by_hand(scn, "buy", 5, "buy")
    scn.settle(daemon)
    _by_hand(scn, "sell", 3, "sell-3")          # 3 of the user's own 5
    scn.settle(daemon)
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own)
    assert_book_matches_broker(scn, daemon.store, outside={"JNJ": 2})

    with capture_logs() as logs:
        _by_hand(scn, "sell", 4, "sell-4")      # the user's last 2, then 2 of the daemon's
        scn.settle(daemon)
    (reduced,) = [e for e in logs if e["event"] == "own_position_reduced"]
    assert reduced["own_qty"] == pytest.approx(own - 2)
    assert daemon.store.book()["JNJ"].qty == pytest.approx(own - 2)
    assert_book_matches_broker(scn, daemon.store)

    scn.advance_to(EXIT_DAY)
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    (sell,) = [o for o in scn.broker_orders() if o.side == "sell" and o.client_order_id.startswith("zmr-")]
    assert sell.qty == pytest.approx(own - 2) and sell.status == "filled"
    assert scn.broker_positions() == {} and daemon.store.book() == {}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_the_user_selling_everything_closes_the_position_outside_the_daemon(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY)
    daemon, own = scn.daemon_holding("JNJ")
    _by_hand(scn, "buy", 5, "buy")
    scn.settle(daemon)
    scn.sim.exchange.close_position_externally("JNJ")
    with capture_logs() as logs:
        scn.settle(daemon)
    assert any(e["event"] == "position_closed_externally" and e["symbol"] == "JNJ" for e in logs)
    assert daemon.store.book() == {} and daemon.store.seen_positions() == {}
    (closed,) = daemon.store.closed_positions("JNJ")
    assert closed.qty == pytest.approx(own) and closed.reason == "closed outside the daemon"
    scn.advance_to(EXIT_DAY)
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    assert [o.client_order_id for o in scn.broker_orders() if o.client_order_id.startswith("zmr-")] == [JNJ_BUY]
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


@pytest.mark.parametrize("policy", ["flag", "adopt"])
def test_a_position_the_daemon_never_traded_follows_unknown_position_policy(
        scenario: Callable[..., Scenario], policy: str) -> None:
    scn = scenario(JNJ_DAY, unknown_position_policy=policy)
    scn.sim.exchange.add_position("SPY", 2, 480.0)   # someone's SPY, there before the daemon started
    with capture_logs() as logs:
        daemon = scn.boot()
    (reconciled,) = [e for e in logs if e["event"] == "reconciled"]
    if policy == "flag":
        assert reconciled["flagged"] == ["SPY"] and reconciled["adopted"] == []
        assert "SPY" not in daemon.store.book()
        assert_book_matches_broker(scn, daemon.store, outside={"SPY": 2})
    else:
        assert reconciled["adopted"] == ["SPY"] and reconciled["flagged"] == []
        assert daemon.store.book()["SPY"].origin == "adopted" and daemon.store.book()["SPY"].qty == 2
        assert_book_matches_broker(scn, daemon.store)
    # The adopted position is the daemon's own: its max-holding exit sells it; a flagged one is never sold.
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    scn.advance_to(EXIT_DAY)
    daemon.orchestrator.run_iteration()
    scn.settle(daemon)
    spy_sells = [o for o in scn.broker_orders() if o.symbol == "SPY" and o.side == "sell"]
    if policy == "flag":
        assert spy_sells == [] and scn.broker_positions()["SPY"] == 2
        assert_book_matches_broker(scn, daemon.store, outside={"SPY": 2})
    else:
        assert len(spy_sells) == 1 and spy_sells[0].qty == 2 and "SPY" not in scn.broker_positions()
        assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_accept_broker_state_makes_the_users_shares_the_daemons_own_at_that_start(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY)
    first, own = scn.daemon_holding("JNJ")
    _by_hand(scn, "buy", 5, "buy")
    scn.clock.advance(120)
    scn.kill(first)
    second = scn.boot(startup=False)
    with capture_logs() as logs:
        second.orchestrator.startup(accept_broker_quantities=True)   # --accept-broker-state
    (reconciled,) = [e for e in logs if e["event"] == "reconciled"]
    assert reconciled["adjusted"] == ["JNJ"] and reconciled["outside_shares"] == {}
    assert second.store.book()["JNJ"].qty == pytest.approx(own + 5) and second.store.book()["JNJ"].origin == "daemon"
    assert_book_matches_broker(scn, second.store)
    # Its exit now sells all of them.
    scn.advance_to(EXIT_DAY)
    second.orchestrator.run_iteration()
    scn.settle(second)
    (sell,) = [o for o in scn.broker_orders() if o.side == "sell"]
    assert sell.qty == pytest.approx(own + 5) and scn.broker_positions() == {}
    assert_no_duplicate_orders(scn, second.store)
