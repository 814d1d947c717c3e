"""Completed daily bars aligned on sessions (rows) and symbols (columns). Pure, no I/O.

The one shape every strategy reads: open, high, low, close and volume as `sessions x symbols` float
arrays, NaN where a symbol has no bar for a session. The live loop builds one from the DataAgent's
batch (a few hundred rows of the focus symbols); the backtest builds one over the whole history
(thousands of rows of the whole universe). Row t never holds anything later than session t.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

OHLCV_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "volume")


@dataclass(frozen=True)
class BarPanel:
    sessions: list[date]
    symbols: list[str]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    column: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = (len(self.sessions), len(self.symbols))
        for name in OHLCV_FIELDS:
            if getattr(self, name).shape != shape:
                raise ValueError(f"BarPanel.{name} has shape {getattr(self, name).shape}, expected {shape}")
        object.__setattr__(self, "column", {symbol: j for j, symbol in enumerate(self.symbols)})

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.sessions), len(self.symbols)

    @classmethod
    def empty(cls) -> BarPanel:
        nothing = np.empty((0, 0))
        return cls([], [], nothing, nothing, nothing, nothing, nothing)

    @classmethod
    def from_closes(cls, sessions: list[date], symbols: list[str], closes: np.ndarray) -> BarPanel:
        """A panel whose every price is the close (for code and tests that only have closes)."""
        closes = np.asarray(closes, dtype=float)
        return cls(list(sessions), list(symbols), closes, closes, closes, closes, np.zeros_like(closes))

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame]) -> BarPanel:
        """From `{symbol: frame}` with open/high/low/close[/volume] columns and a UTC bar-time index."""
        import pandas as pd

        if not frames:
            return cls.empty()
        wide = {name: pd.concat({s: f[name] if name in f else f["close"] * np.nan for s, f in frames.items()},
                                axis=1).sort_index()
                for name in OHLCV_FIELDS}
        index = wide["close"].index
        sessions = [ts.tz_convert("America/New_York").date() for ts in index]
        arrays = [wide[name].reindex(index).to_numpy(dtype=float) for name in OHLCV_FIELDS]
        return cls(sessions, list(wide["close"].columns), *arrays)

    def tail(self, rows: int) -> BarPanel:
        """The last `rows` sessions (all of them when there are fewer)."""
        start = max(0, len(self.sessions) - rows)
        return BarPanel(self.sessions[start:], list(self.symbols), self.open[start:], self.high[start:],
                        self.low[start:], self.close[start:], self.volume[start:])

    def select(self, symbols: list[str]) -> BarPanel:
        """The same sessions restricted to `symbols`, in that order."""
        cols = [self.column[s] for s in symbols]
        return BarPanel(list(self.sessions), list(symbols), self.open[:, cols], self.high[:, cols],
                        self.low[:, cols], self.close[:, cols], self.volume[:, cols])
