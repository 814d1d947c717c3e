"""Pure rules behind the red-team review's fixes (tests/test_market_events_review.py has them end to end)."""

from __future__ import annotations

from datetime import UTC, date, datetime

from agents.risk_agent import RiskAgent, RiskContext, RiskParams
from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.market_calendar import bar_timestamp, get_market_calendar
from core.domain.models import (
    AccountView,
    BrokerOrder,
    OrderStatus,
    PortfolioSnapshot,
    PositionView,
    Side,
    Signal,
    SignalReason,
)
from core.instance_guard import InstanceGuard

CAL = get_market_calendar()
SESSION = date(2025, 3, 10)
ALLOC = {"TIER1": 0.4, "TIER2": 0.3, "TIER3": 0.3}
OWN_SELL = "zmr-i5ce7a710-20250310-JNJ-sell-0123456789"


def _order(cid: str, side: Side) -> BrokerOrder:
    return BrokerOrder("id-" + cid, cid, "JNJ", side, OrderStatus.NEW, 1.0, None, 0.0, None)


def _exit_decision(orders: tuple[BrokerOrder, ...], own_ids: frozenset[str] | None):  # type: ignore[no-untyped-def]
    agent = RiskAgent(RiskParams(symbol_tiers=dict(DEFAULT_SYMBOL_TIERS), tier_allocations=ALLOC), CAL)
    signal = Signal("JNJ", Side.SELL, 150.0, bar_timestamp(SESSION), SESSION, 0.5, SignalReason.EXIT_MAX_HOLDING)
    snapshot = PortfolioSnapshot(AccountView(10_000.0, 10_000.0, 10_000.0, 10_000.0),
                                 {"JNJ": PositionView("JNJ", 9.0, 150.0, 1350.0, 150.0)}, orders,
                                 own_qty={"JNJ": 4.0}, own_order_ids=own_ids)
    return agent.evaluate([signal], snapshot, RiskContext(session=SESSION))


# ---------------------------------------------------------------------- 4. open orders and the exit
def test_only_the_daemons_own_open_sell_is_an_exit_already_open() -> None:
    decision = _exit_decision((_order(OWN_SELL, Side.SELL),), frozenset({OWN_SELL}))
    assert decision.approved == () and "already open" in decision.rejected[0].reason
    decision = _exit_decision((_order("manual-gtc", Side.SELL),), frozenset())
    (target,) = decision.approved
    assert target.qty == 4.0, "the daemon sells its own shares only"


def test_an_open_buy_blocks_the_exit_and_the_users_says_so() -> None:
    own_buy = "zmr-i5ce7a710-20250310-JNJ-buy-0123456789"
    decision = _exit_decision((_order(own_buy, Side.BUY),), frozenset({own_buy}))
    assert "still open" in decision.rejected[0].reason and "foreign_open_buy" not in decision.rejected[0].meta
    decision = _exit_decision((_order("manual-gtc", Side.BUY),), frozenset())
    (rejection,) = decision.rejected
    assert rejection.meta["foreign_open_buy"] == "manual-gtc" and "cancel" in rejection.reason


def test_without_a_set_of_own_ids_every_order_is_the_daemons() -> None:
    # The backtest: no one else trades its account.
    assert "already open" in _exit_decision((_order("manual-gtc", Side.SELL),), None).rejected[0].reason


def test_own_ids_are_this_prefix_and_this_instance() -> None:
    guard = InstanceGuard("zmr", "i5ce7a710", datetime(2025, 1, 1, tzinfo=UTC))
    orders = [_order(OWN_SELL, Side.SELL), _order("zmr-20250310-JNJ-sell-0123456789", Side.SELL),
              _order("zmr-i00000000-20250310-JNJ-sell-0123456789", Side.SELL), _order("manual", Side.BUY),
              _order("abc-i5ce7a710-20250310-JNJ-sell-0123456789", Side.SELL)]
    assert guard.own_ids(orders) == {OWN_SELL, "zmr-20250310-JNJ-sell-0123456789"}

