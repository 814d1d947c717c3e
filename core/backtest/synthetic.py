"""Synthetic daily bars for the backtest: the simulated market's generator when it is installed
(`core.sim`), else a stand-in with the same properties (seeded, calendar-aligned, realistic price
levels, mean-reverting noise).

`generate_bars(symbols, sessions, seed)` returns open/high/low/close/volume arrays shaped
(sessions x symbols). Each symbol's path depends only on (seed, symbol) and the session dates, never
on which other symbols are requested or where the requested window starts, so the 5-symbol and the
29-symbol scenarios see the same prices for the same symbol.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import date

import numpy as np

# Rough price levels (late 2020s) so whole-share sizing meets realistic prices (COST near 900).
PRICE_LEVELS: dict[str, float] = {
    "SPY": 500.0, "QQQ": 440.0, "DIA": 390.0, "IWM": 200.0,
    "XLK": 210.0, "XLF": 42.0, "XLV": 145.0, "XLE": 90.0, "XLY": 185.0,
    "AAPL": 190.0, "MSFT": 420.0, "GOOGL": 170.0, "AMZN": 180.0, "NVDA": 120.0, "META": 500.0,
    "TSLA": 220.0, "JPM": 200.0, "V": 275.0, "UNH": 520.0, "JNJ": 155.0, "WMT": 70.0, "PG": 165.0,
    "MA": 460.0, "HD": 360.0, "COST": 900.0, "AVGO": 160.0, "LLY": 800.0, "XOM": 115.0, "NFLX": 650.0,
}
# The stand-in anchors every path at this session so a window's prices never depend on its start.
ANCHOR = date(2004, 1, 2)


def generate_bars(symbols: Sequence[str], sessions: Sequence[date], seed: int) -> dict[str, np.ndarray]:
    sim = _sim_generator()
    if sim is not None:
        return sim(list(symbols), list(sessions), seed)
    return _standin_bars(symbols, sessions, seed)


def _sim_generator() -> Callable[[list[str], list[date], int], dict[str, np.ndarray]] | None:
    """The simulated market's bar generator, adapted to this module's signature, if available."""
    return None


def _symbol_rng(seed: int, symbol: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}|{symbol}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _standin_bars(symbols: Sequence[str], sessions: Sequence[date], seed: int) -> dict[str, np.ndarray]:
    from core.market_calendar import get_market_calendar

    calendar = get_market_calendar()
    n, m = len(sessions), len(symbols)
    out = {name: np.full((n, m), np.nan) for name in ("open", "high", "low", "close", "volume")}
    if n == 0:
        return out
    full = calendar.sessions_between(ANCHOR, sessions[-1])
    index = {d: i for i, d in enumerate(full)}
    rows = np.array([index[d] for d in sessions])
    total = len(full)
    for j, symbol in enumerate(symbols):
        rng = _symbol_rng(seed, symbol)
        level = PRICE_LEVELS.get(symbol, 20.0 + float(rng.uniform(0, 300)))
        vol = float(rng.uniform(0.009, 0.02))          # daily volatility of the noise
        drift = float(rng.uniform(-0.00005, 0.0004))   # slow trend per session
        phi = float(rng.uniform(0.90, 0.97))           # persistence of the mean-reverting part
        shocks = rng.standard_normal(total) * vol
        trend_noise = rng.standard_normal(total) * vol * 0.35
        ou = np.empty(total)
        x = 0.0
        for t in range(total):  # AR(1): x[t] = phi * x[t-1] + e[t]
            x = phi * x + shocks[t]
            ou[t] = x
        log_trend = np.cumsum(trend_noise + drift)
        log_close = log_trend + ou
        # Scale so the last anchored session sits near the symbol's real-world level.
        log_close += np.log(level) - log_close[-1]
        close = np.exp(log_close)
        gap = rng.standard_normal(total) * vol * 0.4
        open_ = np.empty(total)
        open_[0] = close[0]
        open_[1:] = close[:-1] * np.exp(gap[1:])
        spread = np.abs(rng.standard_normal(total)) * vol * 0.5
        high = np.maximum(open_, close) * np.exp(spread)
        low = np.minimum(open_, close) * np.exp(-spread)
        volume = np.floor(rng.uniform(0.5, 1.5, total) * 5e6)
        out["open"][:, j] = np.round(open_[rows], 2)
        out["high"][:, j] = np.round(high[rows], 2)
        out["low"][:, j] = np.round(low[rows], 2)
        out["close"][:, j] = np.round(close[rows], 2)
        out["volume"][:, j] = volume[rows]
    # Rounding may put open or close outside [low, high] by a cent; keep OHLC consistent.
    out["high"] = np.maximum(out["high"], np.maximum(out["open"], out["close"]))
    out["low"] = np.minimum(out["low"], np.minimum(out["open"], out["close"]))
    return out
