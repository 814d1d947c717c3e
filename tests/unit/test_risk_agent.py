"""RiskAgent: every check and protection, each rejecting with a reason; targets in, targets out."""

from __future__ import annotations

from datetime import date

import pytest

from agents.risk_agent import RiskAgent, RiskCheckError, RiskContext, RiskParams
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

CAL = get_market_calendar()
SESSION = date(2025, 3, 10)
ALLOC = {"TIER1": 0.4, "TIER2": 0.3, "TIER3": 0.3}


def _params(**over: object) -> RiskParams:
    base: dict[str, object] = {"symbol_tiers": dict(DEFAULT_SYMBOL_TIERS), "tier_allocations": ALLOC}
    base.update(over)
    return RiskParams(**base)  # type: ignore[arg-type]


def _buy(symbol: str, price: float, z: float = -2.5) -> Signal:
    return Signal(symbol, Side.BUY, price, bar_timestamp(SESSION), SESSION, z, SignalReason.ENTRY_OVERSOLD)


def _sell(symbol: str, price: float, reason: SignalReason = SignalReason.EXIT_MEAN_REVERTED) -> Signal:
    return Signal(symbol, Side.SELL, price, bar_timestamp(SESSION), SESSION, 0.5, reason)


def _snap(equity: float = 10_000.0, cash: float | None = None, positions: dict[str, PositionView] | None = None,
          orders: tuple[BrokerOrder, ...] = (), last_equity: float | None = None) -> PortfolioSnapshot:
    cash = equity if cash is None else cash
    return PortfolioSnapshot(AccountView(equity, cash, cash, last_equity or equity), positions or {}, orders)


def _ctx(**over: object) -> RiskContext:
    base: dict[str, object] = {"session": SESSION, "fractionable": {s: True for s in DEFAULT_SYMBOL_TIERS}}
    base.update(over)
    return RiskContext(**base)  # type: ignore[arg-type]


def _pos(symbol: str, qty: float, price: float) -> PositionView:
    return PositionView(symbol, qty, price, qty * price, price)


def _order(symbol: str, side: Side, qty: float | None = None, notional: float | None = None) -> BrokerOrder:
    return BrokerOrder("id-" + symbol, f"cid-{symbol}", symbol, side, OrderStatus.NEW, qty, notional, 0.0, None)


def test_tiered_sizing_fractional_cost() -> None:
    decision = RiskAgent(_params(), CAL).evaluate([_buy("COST", 900.0)], _snap(), _ctx())
    (target,) = decision.approved
    assert target.fractional and target.tier == "TIER3" and target.notional == 150.0
    assert target.qty == pytest.approx(0.166666666)


def test_non_fractionable_expensive_stock_is_a_reasoned_rejection() -> None:
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AVGO", 1400.0)], _snap(), _ctx(fractionable={"AVGO": False}))
    assert decision.approved == ()
    assert "zero-share trap" in decision.rejected[0].reason and decision.rejected[0].meta["reason"]


def test_untiered_symbol_falls_back_to_equal_weight() -> None:
    params = _params(symbol_tiers={"SPY": "TIER1"})
    decision = RiskAgent(params, CAL).evaluate([_buy("ABC", 50.0)], _snap(), _ctx(fractionable={"ABC": True}))
    (target,) = decision.approved
    assert target.meta["sizing"] == "equal_weight" and target.notional == pytest.approx(1000.0)


def test_tiering_disabled_uses_equal_weight() -> None:
    decision = RiskAgent(_params(enable_tiered_allocation=False), CAL).evaluate([_buy("AAPL", 200.0)], _snap(), _ctx())
    assert decision.approved[0].meta["sizing"] == "equal_weight"


def test_risk_check_error_carries_reason() -> None:
    err = RiskCheckError("too big", {"tier": "TIER3"})
    assert err.meta == {"tier": "TIER3", "reason": "too big"}


def test_tier_exposure_cap() -> None:
    # TIER1 budget = 4,000; 3,500 already in SPY-like names -> an 800 entry does not fit.
    positions = {"SPY": _pos("SPY", 7, 500.0)}
    decision = RiskAgent(_params(), CAL).evaluate([_buy("QQQ", 400.0)], _snap(positions=positions), _ctx())
    assert decision.approved == () and "TIER1 exposure" in decision.rejected[0].reason


def test_max_open_positions() -> None:
    positions = {s: _pos(s, 1, 10.0) for s in ("XLK", "XLF")}
    decision = RiskAgent(_params(max_open_positions=2), CAL).evaluate([_buy("AAPL", 200.0)], _snap(positions=positions), _ctx())
    assert "max open positions reached (2/2)" in decision.rejected[0].reason


def test_no_second_entry_held_or_pending() -> None:
    agent = RiskAgent(_params(), CAL)
    held = agent.evaluate([_buy("AAPL", 200.0)], _snap(positions={"AAPL": _pos("AAPL", 1, 200.0)}), _ctx())
    assert "already held" in held.rejected[0].reason
    pending = agent.evaluate([_buy("AAPL", 200.0)], _snap(orders=(_order("AAPL", Side.BUY, qty=1),)), _ctx())
    assert "open order" in pending.rejected[0].reason
    twice = agent.evaluate([_buy("AAPL", 200.0), _buy("AAPL", 200.0)], _snap(), _ctx())
    assert len(twice.approved) == 1 and "approved entry" in twice.rejected[0].reason


def test_buying_power_buffer_with_open_buys_subtracted() -> None:
    # cash 1,000; an open buy reserves 900 -> 100 available, 95 usable; a 150 entry is refused.
    snap = _snap(equity=10_000.0, cash=1_000.0, orders=(_order("XLF", Side.BUY, notional=900.0),))
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], snap, _ctx(current_prices={"XLF": 40.0}))
    assert "insufficient buying power" in decision.rejected[0].reason and "usable 95.00" in decision.rejected[0].reason


def test_sell_never_exceeds_held_and_no_shorts() -> None:
    agent = RiskAgent(_params(), CAL)
    flat = agent.evaluate([_sell("AAPL", 200.0)], _snap(), _ctx())
    assert "not held" in flat.rejected[0].reason and flat.approved == ()
    held = agent.evaluate([_sell("AAPL", 200.0)], _snap(positions={"AAPL": _pos("AAPL", 0.75, 200.0)}), _ctx())
    assert held.approved[0].qty == 0.75 and held.approved[0].side is Side.SELL
    pending = agent.evaluate([_sell("AAPL", 200.0)], _snap(positions={"AAPL": _pos("AAPL", 2, 200.0)},
                                                             orders=(_order("AAPL", Side.SELL, qty=2),)), _ctx())
    assert "already open" in pending.rejected[0].reason


def test_an_exit_sells_only_the_daemons_own_shares() -> None:
    agent = RiskAgent(_params(), CAL)
    held = {"AAPL": _pos("AAPL", 15, 200.0)}       # the daemon's 10 + the user's 5
    own = PortfolioSnapshot(_snap().account, held, (), own_qty={"AAPL": 10.0})
    (target,) = agent.evaluate([_sell("AAPL", 200.0)], own, _ctx()).approved
    assert target.qty == 10 and not target.fractional and target.meta["own_qty"] == 10.0
    # The user sold below the daemon's own quantity: never more than the broker holds.
    short = PortfolioSnapshot(_snap().account, {"AAPL": _pos("AAPL", 7.5, 200.0)}, (), own_qty={"AAPL": 10.0})
    (target,) = agent.evaluate([_sell("AAPL", 200.0)], short, _ctx()).approved
    assert target.qty == 7.5 and target.fractional
    # Whole own shares next to the user's fractional ones: a whole-share sale.
    mixed = PortfolioSnapshot(_snap().account, {"AAPL": _pos("AAPL", 3.25, 200.0)}, (), own_qty={"AAPL": 3.0})
    (target,) = agent.evaluate([_sell("AAPL", 200.0)], mixed, _ctx()).approved
    assert target.qty == 3 and not target.fractional
    # None of them is the daemon's: nothing to sell.
    theirs = PortfolioSnapshot(_snap().account, held, (), own_qty={})
    decision = agent.evaluate([_sell("AAPL", 200.0)], theirs, _ctx())
    assert decision.approved == () and "daemon's own" in decision.rejected[0].reason


def test_daily_loss_halts_entries_but_not_exits() -> None:
    snap = _snap(equity=9_600.0, last_equity=10_000.0, positions={"MSFT": _pos("MSFT", 1, 400.0)})
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0), _sell("MSFT", 400.0)], snap, _ctx())
    assert [t.symbol for t in decision.approved] == ["MSFT"]
    assert decision.halts and decision.halts[0].startswith("daily_loss")
    assert "entries halted" in decision.rejected[0].reason


def test_max_drawdown_kill_switch() -> None:
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], _snap(equity=8_000.0),
                                                   _ctx(peak_equity=10_000.0))
    assert decision.approved == () and decision.halts[0].startswith("max_drawdown")


def test_persisted_halt_still_blocks() -> None:
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], _snap(), _ctx(active_halts=("max_drawdown: x",)))
    assert decision.approved == () and "entries halted: max_drawdown" in decision.rejected[0].reason


def test_cooldown_after_stop_loss() -> None:
    agent = RiskAgent(_params(stop_loss_cooldown_sessions=3), CAL)
    recent = agent.evaluate([_buy("AAPL", 200.0)], _snap(), _ctx(last_stop_loss_exits={"AAPL": date(2025, 3, 6)}))
    assert "cooling down" in recent.rejected[0].reason
    old = agent.evaluate([_buy("AAPL", 200.0)], _snap(), _ctx(last_stop_loss_exits={"AAPL": date(2025, 3, 4)}))
    assert len(old.approved) == 1


def test_entries_most_oversold_first_share_capacity() -> None:
    params = _params(max_open_positions=1)
    decision = RiskAgent(params, CAL).evaluate([_buy("AAPL", 200.0, z=-2.1), _buy("MSFT", 400.0, z=-3.0)], _snap(), _ctx())
    assert [t.symbol for t in decision.approved] == ["MSFT"]


def test_sizes_from_current_price_not_signal_close() -> None:
    decision = RiskAgent(_params(enable_fractional_shares=False), CAL).evaluate(
        [_buy("XLK", 200.0)], _snap(), _ctx(current_prices={"XLK": 210.0}))
    assert decision.approved[0].price == 210.0 and decision.approved[0].qty == 2.0
