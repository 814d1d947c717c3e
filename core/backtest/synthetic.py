"""Synthetic daily bars for the backtest, from the simulated market's own generator
(`core.sim.bars.SyntheticBars`), so a backtest and `trading-daemon run` on the simulated market see the
same prices for the same seed.

Each symbol's bar for a session depends only on (seed, symbol, session): not on which other symbols
are requested or where the window starts, so the 5-symbol and the 29-symbol scenarios see the same
prices for the same symbol, and a longer warm-up changes no price.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import numpy as np

from core.domain.market_calendar import MarketCalendar

BAR_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


def generate_bars(symbols: Sequence[str], sessions: Sequence[date], seed: int,
                  calendar: MarketCalendar | None = None) -> dict[str, np.ndarray]:
    """open/high/low/close/volume arrays shaped (sessions x symbols)."""
    from core.sim.bars import SyntheticBars

    return SyntheticBars(seed, calendar).matrix(list(symbols), list(sessions), BAR_FIELDS)
