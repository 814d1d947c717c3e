"""SyntheticBars: deterministic, calendar-aligned, window-independent, realistic, fast."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.indicators import rolling_zscore
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.sim.bars import BASE_PRICES, SyntheticBars

CAL = get_market_calendar()
BARS = SyntheticBars(42)


def test_same_seed_same_bars_and_any_window_gives_the_same_values() -> None:
    other = SyntheticBars(42)
    long_window = other.daily_bars("AAPL", date(2020, 1, 1), date(2025, 3, 7))
    short_window = BARS.daily_bars("AAPL", date(2025, 2, 3), date(2025, 3, 7))
    assert short_window == long_window[-len(short_window) :]
    assert BARS.session_bar("AAPL", date(2025, 2, 3)) == short_window[0]
    assert SyntheticBars(7).daily_bars("AAPL", date(2025, 2, 3), date(2025, 3, 7)) != short_window


def test_batching_symbols_changes_nothing() -> None:
    symbols = ["SPY", "ZZZQ", "AAPL", "BRK.B", "XLF"]
    lo = BARS.first_session_on_or_after(date(2024, 6, 1))
    together = SyntheticBars(42).windows(symbols, lo, lo + 300)
    for symbol, block in zip(symbols, together, strict=True):
        alone = SyntheticBars(42).window(symbol, lo, lo + 300)
        for name in ("open", "high", "low", "close", "volume", "trade_count", "vwap"):
            assert np.array_equal(getattr(block, name), getattr(alone, name)), (symbol, name)


def test_sessions_come_from_the_real_calendar() -> None:
    got = [b.session for b in BARS.daily_bars("SPY", date(2025, 11, 24), date(2025, 12, 2))]
    assert got == CAL.sessions_between(date(2025, 11, 24), date(2025, 12, 2))
    assert date(2025, 11, 27) not in got  # Thanksgiving
    early = BARS.session_bar("SPY", date(2025, 11, 28))
    normal = BARS.session_bar("SPY", date(2025, 11, 26))
    assert early.volume < normal.volume * 1.5  # a 3.5-hour session trades less


@settings(max_examples=40, deadline=None)
@given(
    symbol=st.from_regex(r"[A-Z]{1,5}", fullmatch=True),
    start=st.dates(min_value=date(2004, 6, 1), max_value=date(2030, 6, 1)),
    days=st.integers(min_value=0, max_value=400),
)
def test_bars_are_consistent_for_any_symbol_and_window(symbol: str, start: date, days: int) -> None:
    bars = BARS.daily_bars(symbol, start, start + timedelta(days=days))
    for bar in bars:
        assert 0 < bar.low <= min(bar.open, bar.close) <= max(bar.open, bar.close) <= bar.high
        assert bar.low <= bar.vwap <= bar.high
        assert isinstance(bar.volume, int) and bar.volume > 0
        assert isinstance(bar.trade_count, int) and bar.trade_count > 0
    if bars:
        whole = BARS.daily_bars(symbol, date(2004, 1, 1), bars[-1].session)
        assert whole[-len(bars) :] == bars


def test_prices_hover_around_their_levels_with_realistic_volatility_and_dips() -> None:
    n = len(BARS)
    for symbol in DEFAULT_SYMBOL_TIERS:
        close = BARS.window(symbol, 0, n).close
        base = BASE_PRICES[symbol]
        assert 0.6 * base < close.min() and close.max() < 1.6 * base, symbol
        vol = float(np.diff(np.log(close)).std())
        assert 0.013 < vol < 0.027, (symbol, vol)
        z = rolling_zscore(close[:, None], 20)[:, 0]
        below = z < -2.0
        dips_per_year = np.sum(below[1:] & ~below[:-1]) / (n / 252)
        assert 2.0 < dips_per_year < 12.0, (symbol, dips_per_year)
    unknown = BARS.window("QWERT", 0, n).close
    assert 20 * 0.5 < float(np.median(unknown)) < 400 * 1.5


def test_price_at_follows_the_session() -> None:
    session = date(2025, 3, 10)
    bar, prev = BARS.session_bar("MSFT", session), BARS.session_bar("MSFT", date(2025, 3, 7))
    open_, close = CAL.session_open(session), CAL.session_close(session)
    assert BARS.price_at("MSFT", open_ - timedelta(hours=3)) == prev.close
    assert BARS.price_at("MSFT", open_) == bar.open
    assert BARS.price_at("MSFT", close) == bar.close
    assert BARS.price_at("MSFT", close + timedelta(hours=16)) == bar.close  # Tuesday 08:00 New York, pre-open
    prices = [BARS.price_at("MSFT", open_ + timedelta(minutes=m)) for m in range(0, 391, 5)]
    assert all(bar.low <= p <= bar.high for p in prices)
    assert max(prices) == bar.high or min(prices) == bar.low or len(set(prices)) > 10
    assert BARS.price_at("MSFT", open_ + timedelta(minutes=77)) == BARS.price_at(
        "MSFT", open_ + timedelta(minutes=77)
    )


def test_partial_bar_grows_into_the_full_bar() -> None:
    session = date(2025, 3, 10)
    open_ = CAL.session_open(session)
    full = BARS.session_bar("NVDA", session)
    early = BARS.partial_bar("NVDA", session, open_ + timedelta(minutes=30))
    later = BARS.partial_bar("NVDA", session, open_ + timedelta(hours=5))
    assert early.open == later.open == full.open
    assert early.close == BARS.price_at("NVDA", open_ + timedelta(minutes=30))
    assert full.low <= later.low <= early.low and early.high <= later.high <= full.high
    assert early.volume < later.volume < full.volume
    assert BARS.partial_bar("NVDA", session, CAL.session_close(session)) == full
    with pytest.raises(ValueError):
        BARS.partial_bar("NVDA", session, open_ - timedelta(minutes=1))


def test_minute_bar_is_inside_the_daily_range() -> None:
    now = datetime(2025, 3, 10, 11, 7, 30, tzinfo=NEW_YORK)
    got = BARS.minute_bar("AAPL", now)
    assert got is not None
    start, bar = got
    assert start == datetime(2025, 3, 10, 15, 7, tzinfo=UTC)
    day = BARS.session_bar("AAPL", date(2025, 3, 10))
    assert day.low <= bar.low <= bar.high <= day.high and bar.close == BARS.price_at("AAPL", now)


def test_matrix_for_the_backtest() -> None:
    sessions = CAL.sessions_between(date(2025, 1, 2), date(2025, 1, 31))
    m = BARS.matrix(["SPY", "AAPL"], sessions)
    assert m["close"].shape == (len(sessions), 2)
    assert m["close"][0, 1] == BARS.session_bar("AAPL", sessions[0]).close


def test_five_thousand_symbols_in_server_pages_match_one_symbol_at_a_time() -> None:
    """The bars endpoint's batching (40 symbols per page) gives every symbol exactly its own bars.
    How fast 5,000 symbols are served is measured by scripts/bench_data.py, not asserted here."""
    symbols = [
        f"Z{a}{b}{c}"
        for a in "ABCDEFGH"
        for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        for c in "ABCDEFGHIJKLMNOPQRSTUVWXY"
    ][:5000]
    bars = SyntheticBars(42)
    hi = bars.last_session_on_or_before(date(2025, 3, 7)) + 1
    blocks = []
    for k in range(0, len(symbols), 40):  # one server page's worth of symbols at a time
        blocks += bars.windows(symbols[k : k + 40], hi - 253, hi)
    assert len(blocks) == 5000 and all(len(block) == 253 for block in blocks)
    alone = SyntheticBars(42)
    for i in (0, 39, 40, 2777, 4999):
        (single,) = alone.windows([symbols[i]], hi - 253, hi)
        assert np.array_equal(blocks[i].close, single.close) and np.array_equal(blocks[i].volume, single.volume)
    assert len({float(block.close[-1]) for block in blocks}) > 4000  # distinct series, not one copied
