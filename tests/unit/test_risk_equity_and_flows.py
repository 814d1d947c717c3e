"""RiskAgent with equity at or below zero, and with the day's deposits and withdrawals netted out."""

from __future__ import annotations

import math

import pytest

from agents.risk_agent import HALT_CASH_FLOWS, HALT_EQUITY, RiskAgent
from core.domain.models import AccountView, PortfolioSnapshot, SignalReason
from core.domain.tier_exposure_tracker import TierExposureTracker
from core.tiered_position_sizer import TieredPositionSizer
from tests.unit.test_risk_agent import CAL, _buy, _ctx, _params, _pos, _sell


def _account(equity: float, last_equity: float, cash: float | None = None) -> AccountView:
    cash = equity if cash is None else cash
    return AccountView(equity, cash, cash, last_equity)


@pytest.mark.parametrize("equity", [0.0, -2_500.0])
def test_equity_at_or_below_zero_halts_entries_and_keeps_exits(equity: float) -> None:
    snap = PortfolioSnapshot(_account(equity, 10_000.0, cash=equity - 400.0), {"MSFT": _pos("MSFT", 1, 400.0)}, ())
    decision = RiskAgent(_params(), CAL).evaluate(
        [_buy("AAPL", 200.0), _sell("MSFT", 400.0, SignalReason.EXIT_STOP_LOSS)], snap,
        _ctx(flows_today=-12_500.0))
    assert [t.symbol for t in decision.approved] == ["MSFT"]
    assert decision.halts[0] == f"{HALT_EQUITY}: equity is ${equity:,.2f}: no entries until it is positive"
    assert decision.rejected[0].reason.startswith(f"entries halted: {HALT_EQUITY}: equity is $")


def test_non_positive_equity_never_reaches_the_sizer_even_without_halts() -> None:
    # The backtest's --bare mode switches halts off; sizing must still refuse, not raise.
    snap = PortfolioSnapshot(_account(-100.0, 10_000.0), {}, ())
    decision = RiskAgent(_params(enforce_halts=False), CAL).evaluate([_buy("SPY", 500.0)], snap, _ctx())
    assert decision.approved == () and "equity is $-100.00: no entries until it is positive" in decision.rejected[0].reason


def test_the_sizer_and_tracker_still_refuse_a_bad_account_value_loudly() -> None:
    # Their contract: a bad account value is a programming error there; risk keeps it from them.
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError):
            TieredPositionSizer(bad)
        with pytest.raises(ValueError):
            TierExposureTracker({}, {}, {}, bad)


def test_a_withdrawal_is_not_a_daily_loss() -> None:
    # $10,000 at the close; $5,000 withdrawn today: equity $5,000 is -50 % raw, 0 % net.
    snap = PortfolioSnapshot(_account(5_000.0, 10_000.0), {}, ())
    raw = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], snap, _ctx())
    assert raw.halts and raw.halts[0].startswith("daily_loss")          # what happened before
    net = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], snap, _ctx(flows_today=-5_000.0))
    assert net.halts == () and len(net.approved) == 1


def test_a_deposit_does_not_hide_a_daily_loss() -> None:
    # $5,000 deposited today, $400 lost: equity $14,600 vs $10,000 is -4 % net, beyond the 3 % limit.
    snap = PortfolioSnapshot(_account(14_600.0, 10_000.0), {}, ())
    decision = RiskAgent(_params(), CAL).evaluate([_buy("AAPL", 200.0)], snap, _ctx(flows_today=5_000.0))
    assert decision.approved == ()
    assert decision.halts[0].startswith("daily_loss: equity 14,600.00 is -4.00% vs last close 10,000.00 "
                                        "net of +5,000.00 deposited/withdrawn")


def test_unreadable_cash_flows_halt_entries_without_judging_losses() -> None:
    # Equity far below the peak and the last close, but it might be a withdrawal: no loss halt is
    # recorded (max_drawdown would be sticky), entries wait, exits go on.
    snap = PortfolioSnapshot(_account(5_000.0, 10_000.0), {"MSFT": _pos("MSFT", 1, 400.0)}, ())
    decision = RiskAgent(_params(), CAL).evaluate(
        [_buy("AAPL", 200.0), _sell("MSFT", 400.0)], snap,
        _ctx(peak_equity=10_000.0, cash_flows_unknown="account activities unavailable (HTTP 503)"))
    assert [h.split(":", 1)[0] for h in decision.halts] == [HALT_CASH_FLOWS]
    assert "HTTP 503" in decision.halts[0]
    assert [t.symbol for t in decision.approved] == ["MSFT"]
