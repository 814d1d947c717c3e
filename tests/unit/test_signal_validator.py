"""SignalValidator: stale bars, price drift (entries only) and duplicates are rejected with a reason."""

from __future__ import annotations

from datetime import UTC, date, datetime

from core.domain.market_calendar import bar_timestamp, get_market_calendar
from core.domain.models import Side, Signal, SignalReason
from core.domain.signal_validator import SignalValidator

CAL = get_market_calendar()
NOW = datetime(2025, 3, 11, 15, 0, tzinfo=UTC)   # Tuesday, during the session
LAST = date(2025, 3, 10)                           # last completed session


def _sig(symbol: str = "AAPL", session: date = LAST, price: float = 100.0, side: Side = Side.BUY) -> Signal:
    reason = SignalReason.ENTRY_OVERSOLD if side is Side.BUY else SignalReason.EXIT_STOP_LOSS
    return Signal(symbol, side, price, bar_timestamp(session), session, -2.5, reason)


def test_fresh_signal_passes() -> None:
    ok, bad = SignalValidator(CAL, 0.05).validate([_sig()], NOW, {"AAPL": 101.0})
    assert len(ok) == 1 and bad == []


def test_stale_bar_is_rejected() -> None:
    ok, bad = SignalValidator(CAL, 0.05).validate([_sig(session=date(2025, 3, 7))], NOW, {"AAPL": 100.0})
    assert ok == [] and "stale signal" in bad[0].reason and "2025-03-10" in bad[0].reason


def test_drift_beyond_limit_is_rejected_for_entries_only() -> None:
    v = SignalValidator(CAL, 0.05)
    ok, bad = v.validate([_sig(price=100.0)], NOW, {"AAPL": 106.0})
    assert ok == [] and "drifted 6.00%" in bad[0].reason
    ok, bad = v.validate([_sig(price=100.0, side=Side.SELL)], NOW, {"AAPL": 80.0})
    assert len(ok) == 1 and bad == []


def test_missing_or_bad_current_price_is_rejected() -> None:
    v = SignalValidator(CAL, 0.05)
    for prices in ({}, {"AAPL": float("nan")}, {"AAPL": 0.0}):
        ok, bad = v.validate([_sig()], NOW, prices)
        assert ok == [] and "no valid current price" in bad[0].reason


def test_duplicate_in_batch_and_already_handled() -> None:
    v = SignalValidator(CAL, 0.05)
    ok, bad = v.validate([_sig(), _sig()], NOW, {"AAPL": 100.0})
    assert len(ok) == 1 and "duplicate" in bad[0].reason
    ok, bad = v.validate([_sig()], NOW, {"AAPL": 100.0}, handled={("AAPL", "buy")})
    assert ok == [] and "already handled" in bad[0].reason
