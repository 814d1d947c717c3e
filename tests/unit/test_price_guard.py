"""The price guard (core/domain/price_guard.py): pure checks of an order against the broker's price, hand-worked numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.market_calendar import bar_timestamp
from core.domain.models import (
    BrokerOrder,
    LatestPrice,
    OrderStatus,
    OrderTarget,
    PositionView,
    Side,
    Signal,
    SignalReason,
)
from core.domain.price_guard import PriceGuard, disagreement
from core.tiered_position_sizer import build_tiers

SESSION = date(2025, 6, 4)
NOW = datetime(2025, 6, 4, 15, 0, tzinfo=UTC)            # 11:00 New York
YESTERDAY = datetime(2025, 6, 3, 19, 59, tzinfo=UTC)
ALLOC = {"TIER1": 0.4, "TIER2": 0.3, "TIER3": 0.3}


def _guard(**over: object) -> PriceGuard:
    base: dict[str, object] = {
        "max_disagreement_pct": 0.05, "stop_loss_pct": 0.08, "tiers": build_tiers(ALLOC, DEFAULT_SYMBOL_TIERS),
        "symbol_tiers": dict(DEFAULT_SYMBOL_TIERS), "max_open_positions": 10,
    }
    base.update(over)
    return PriceGuard(**base)  # type: ignore[arg-type]


def _signal(symbol: str, price: float, side: Side = Side.BUY, reason: SignalReason = SignalReason.ENTRY_OVERSOLD
            ) -> Signal:
    return Signal(symbol, side, price, bar_timestamp(date(2025, 6, 3)), date(2025, 6, 3), -2.5, reason)


def _buy(symbol: str, qty: float, price: float, *, fractional: bool = False, notional: float | None = None
         ) -> OrderTarget:
    return OrderTarget(symbol, Side.BUY, qty, notional if notional is not None else qty * price, price, fractional,
                       DEFAULT_SYMBOL_TIERS.get(symbol), _signal(symbol, price), {"sizing": "tiered"})


def _sell(symbol: str, qty: float, close: float, reason: SignalReason) -> OrderTarget:
    return OrderTarget(symbol, Side.SELL, qty, qty * close, close, False, DEFAULT_SYMBOL_TIERS.get(symbol),
                       _signal(symbol, close, Side.SELL, reason))


def _trade(symbol: str, price: float, at: datetime = NOW, source: str = "trade") -> LatestPrice:
    return LatestPrice(symbol, price, at, source)


def _pos(symbol: str, qty: float, entry: float, current: float) -> PositionView:
    return PositionView(symbol, qty, entry, qty * current, current)


def _entries(guard: PriceGuard, targets: list[OrderTarget], prices: dict[str, LatestPrice], equity: float,
             positions: dict[str, PositionView] | None = None, orders: tuple[BrokerOrder, ...] = (),
             unavailable: str | None = None):  # type: ignore[no-untyped-def]
    return guard.check_entries(targets, prices, equity=equity, positions=positions or {}, open_orders=orders,
                               session=SESSION, unavailable=unavailable)


# ---------------------------------------------------------------------- entries: disagreement
def test_the_186_spy_bad_print_is_refused_naming_both_prices() -> None:
    # $100,000 account: TIER1 cap = 100,000 x 0.40 x 0.20 = $8,000. At a bad price of $43.00, whole
    # shares floor(8,000 / 43) = 186; at the true $430.00 that is $79,980, ten times the cap.
    result = _entries(_guard(), [_buy("SPY", 186, 43.0)], {"SPY": _trade("SPY", 430.0)}, 100_000.0)
    assert result.approved == []
    (refusal,) = result.rejected
    assert refusal.stage == "price_guard" and refusal.symbol == "SPY"
    assert "$43.00" in refusal.reason and "$430.00" in refusal.reason and "90.0%" in refusal.reason
    assert "order not sent" in refusal.reason


def test_disagreement_is_measured_against_the_broker() -> None:
    assert disagreement(43.0, 430.0) == pytest.approx(0.9)
    assert disagreement(451.5, 430.0) == pytest.approx(0.05)


def test_a_price_within_the_bound_passes_and_leaves_with_the_brokers_price() -> None:
    # $10,000: TIER1 cap $800. 1 share at the bars' $500 (500 <= 800); the broker says $510 (2.0 % away).
    result = _entries(_guard(), [_buy("SPY", 1, 500.0)], {"SPY": _trade("SPY", 510.0)}, 10_000.0)
    (target,) = result.approved
    assert target.price == 510.0 and target.qty == 1
    assert target.meta["bar_price"] == 500.0 and target.meta["broker_price"] == 510.0
    assert target.meta["value_at_broker_price"] == 510.0


def test_a_quote_midpoint_is_used_like_a_trade() -> None:
    result = _entries(_guard(), [_buy("SPY", 1, 500.0)], {"SPY": _trade("SPY", 499.0, source="quote")}, 10_000.0)
    assert result.approved[0].meta["broker_price_source"] == "quote"


# ---------------------------------------------------------------------- entries: never blind
def test_no_independent_price_refuses_the_entry() -> None:
    missing = _entries(_guard(), [_buy("SPY", 1, 500.0)], {}, 10_000.0)
    assert missing.approved == [] and "not sized blind" in missing.rejected[0].reason
    failed = _entries(_guard(), [_buy("SPY", 1, 500.0)], {}, 10_000.0,
                      unavailable="latest trades unavailable: GET /v2/stocks/trades/latest: HTTP 503")
    assert failed.approved == [] and "HTTP 503" in failed.rejected[0].reason


def test_a_price_from_an_earlier_session_is_not_trusted() -> None:
    result = _entries(_guard(), [_buy("SPY", 1, 500.0)], {"SPY": _trade("SPY", 500.0, at=YESTERDAY)}, 10_000.0)
    assert result.approved == [] and "from 2025-06-03" in result.rejected[0].reason


# ---------------------------------------------------------------------- entries: the cap at the broker's price
def test_whole_shares_over_the_tier_cap_at_the_brokers_price_are_refused_not_resized() -> None:
    # $10,000: TIER1 cap 10,000 x 0.4 x 0.2 = $800. 2 x $399 = $798 fits at the bars' price;
    # the broker's $405 (1.5 % away, inside the bound) makes it 2 x 405 = $810 > $800.
    result = _entries(_guard(), [_buy("QQQ", 2, 399.0)], {"QQQ": _trade("QQQ", 405.0)}, 10_000.0)
    assert result.approved == []
    reason = result.rejected[0].reason
    assert "2 shares x $405.00 = $810.00" in reason and "TIER1 position cap $800.00" in reason
    assert "refused, not resized" in reason


def test_a_notional_order_is_worth_its_notional() -> None:
    # A notional order of $800 buys $800 whatever the price: exactly at the cap, allowed.
    target = _buy("SPY", 1.6, 500.0, fractional=True, notional=800.0)
    result = _entries(_guard(), [target], {"SPY": _trade("SPY", 520.0)}, 10_000.0)
    assert len(result.approved) == 1 and result.approved[0].meta["value_at_broker_price"] == 800.0


def test_the_tier_budget_counts_positions_open_buys_and_earlier_entries() -> None:
    # $10,000: TIER1 budget $4,000. Held: QQQ worth $2,900 (broker's market value). An open buy of
    # 1 DIA, valued at the broker's $400: $400 reserved. Room: 4,000 - 2,900 - 400 = $700.
    positions = {"QQQ": _pos("QQQ", 7, 400.0, 2900.0 / 7)}
    open_buy = BrokerOrder("o1", "cid-dia", "DIA", Side.BUY, OrderStatus.NEW, 1.0, None, 0.0, None)
    prices = {"SPY": _trade("SPY", 500.0), "IWM": _trade("IWM", 200.0), "DIA": _trade("DIA", 400.0)}
    # SPY 1 x $500 fits ($700 room -> $200 left); IWM 2 x $200 = $400 no longer fits.
    result = _entries(_guard(), [_buy("SPY", 1, 500.0), _buy("IWM", 2, 200.0)], prices, 10_000.0,
                      positions=positions, orders=(open_buy,))
    assert [t.symbol for t in result.approved] == ["SPY"]
    assert "what is left of the TIER1 budget ($200.00 of $4,000.00)" in result.rejected[0].reason


def test_an_untiered_symbol_is_capped_at_the_equal_weight_target() -> None:
    # No tier: cap = equity / MAX_OPEN_POSITIONS = 10,000 / 10 = $1,000. 3 x $330 = $990 at the bars'
    # price, 3 x $340 = $1,020 at the broker's (3 % away).
    target = OrderTarget("ABC", Side.BUY, 3, 990.0, 330.0, False, None, _signal("ABC", 330.0), {})
    result = _entries(_guard(), [target], {"ABC": _trade("ABC", 340.0)}, 10_000.0)
    assert result.approved == [] and "equal-weight position cap $1,000.00" in result.rejected[0].reason
    tiers_off = _entries(_guard(enable_tiered_allocation=False), [_buy("SPY", 2, 500.0)],
                         {"SPY": _trade("SPY", 505.0)}, 10_000.0)
    assert tiers_off.approved == [] and "equal-weight position cap $1,000.00" in tiers_off.rejected[0].reason


def test_exits_pass_through_the_entry_check() -> None:
    sell = _sell("SPY", 2, 500.0, SignalReason.EXIT_MAX_HOLDING)
    result = _entries(_guard(), [sell], {}, 10_000.0, unavailable="down")
    assert result.approved == [sell] and result.rejected == []


# ---------------------------------------------------------------------- exits
def _exits(targets: list[OrderTarget], positions: dict[str, PositionView], entries: dict[str, float]):  # type: ignore[no-untyped-def]
    return _guard().check_exits(targets, positions, entries)


def test_a_stop_loss_from_a_bad_print_is_not_sent() -> None:
    # Entry $430, stop 8 %: stop level 430 x 0.92 = $395.60; confirmed up to 395.60 x 1.05 = $415.38.
    # The bars say $43 (a tenth); the broker's current price is $430: kept.
    stop = _sell("QQQ", 2, 43.0, SignalReason.EXIT_STOP_LOSS)
    result = _exits([stop], {"QQQ": _pos("QQQ", 2, 430.0, 430.0)}, {"QQQ": 430.0})
    assert result.approved == []
    reason = result.rejected[0].reason
    assert "stop-loss not confirmed" in reason and "$43.00" in reason and "$430.00" in reason
    assert "$395.60" in reason


@pytest.mark.parametrize(("close", "current"), [(390.0, 395.0), (390.0, 405.0), (390.0, 250.0), (43.0, 395.0),
                                                (43.0, 100.0)])
def test_a_real_stop_loss_goes_out_however_far_the_price_fell(close: float, current: float) -> None:
    # At or below the stop level $395.60 the broker's price confirms it whatever the bars say; in the
    # band above it ($395.60 .. $415.38) the bars' close must agree with it within 5 %.
    stop = _sell("QQQ", 2, close, SignalReason.EXIT_STOP_LOSS)
    result = _exits([stop], {"QQQ": _pos("QQQ", 2, 430.0, current)}, {"QQQ": 430.0})
    assert result.approved == [stop] and result.rejected == []


@pytest.mark.parametrize(("close", "current"), [(215.0, 405.0), (390.0, 415.0)])
def test_a_stop_loss_near_the_level_needs_the_bars_close_to_agree(close: float, current: float) -> None:
    # The broker's $405 is 2.4 % above the stop level: within the band, but a close at $215 (a bad
    # print at half the price) or $390 (6 % from $415) does not agree with it.
    stop = _sell("QQQ", 2, close, SignalReason.EXIT_STOP_LOSS)
    result = _exits([stop], {"QQQ": _pos("QQQ", 2, 430.0, current)}, {"QQQ": 430.0})
    assert result.approved == []
    reason = result.rejected[0].reason
    assert "stop-loss not confirmed" in reason and f"${close:,.2f}" in reason and "disagrees" in reason


def test_the_stop_level_comes_from_the_books_entry_price() -> None:
    # The book's entry $400 (level $368, confirmed to $386.40) wins over the broker's average $430.
    stop = _sell("QQQ", 2, 360.0, SignalReason.EXIT_STOP_LOSS)
    kept = _exits([stop], {"QQQ": _pos("QQQ", 2, 430.0, 390.0)}, {"QQQ": 400.0})
    assert kept.approved == [] and "$368.00" in kept.rejected[0].reason


def test_a_mean_reversion_exit_needs_the_bars_and_the_broker_to_agree() -> None:
    bad = _sell("SPY", 1, 5000.0, SignalReason.EXIT_MEAN_REVERTED)
    assert _exits([bad], {"SPY": _pos("SPY", 1, 480.0, 500.0)}, {}).rejected[0].reason.startswith(
        "SPY: mean-reversion exit not confirmed")
    good = _sell("SPY", 1, 510.0, SignalReason.EXIT_MEAN_REVERTED)
    assert _exits([good], {"SPY": _pos("SPY", 1, 480.0, 500.0)}, {}).approved == [good]


def test_max_holding_and_missing_prices_never_block_an_exit() -> None:
    held = _sell("SPY", 1, 50.0, SignalReason.EXIT_MAX_HOLDING)
    assert _exits([held], {"SPY": _pos("SPY", 1, 480.0, 500.0)}, {}).approved == [held]
    stop = _sell("SPY", 1, 40.0, SignalReason.EXIT_STOP_LOSS)
    assert _exits([stop], {}, {"SPY": 500.0}).approved == [stop]
    nan_price = PositionView("SPY", 1, 500.0, float("nan"), float("nan"))
    assert _exits([stop], {"SPY": nan_price}, {"SPY": 500.0}).approved == [stop]
