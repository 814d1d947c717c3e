"""Signal step: z-score mean reversion on daily closes. Pure, no I/O.

Rules for session t (the last completed session), evaluated on bars up to t only:
- entry  (buy):  not held and z[t] <= -entry_z
- exits  (sell), first match wins:
    1. stop-loss:    close[t] <= entry_price * (1 - stop_loss_pct)
    2. max holding:  sessions held >= max_holding_sessions (counted from the entry's fill session)
    3. mean reverted: z[t] >= exit_z

The live loop builds a `ClosePanel` from the DataAgent's frames and reads its last row; the
backtest builds one panel from the whole history and reads row t. Both call `signals_at()`, so
the decision code is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import numpy as np
import pandas as pd

from core.indicators import rolling_zscore
from core.market_calendar import MarketCalendar, bar_timestamp, session_of_bar
from core.models import Side, Signal, SignalReason


@dataclass(frozen=True, slots=True)
class StrategyParams:
    lookback: int = 20
    entry_z: float = 2.0
    exit_z: float = 0.0
    stop_loss_pct: float = 0.08
    max_holding_sessions: int = 10

    @classmethod
    def from_config(cls, config: Any) -> StrategyParams:
        return cls(
            lookback=config.zscore_lookback, entry_z=config.entry_z,
            exit_z=config.exit_z, stop_loss_pct=config.stop_loss_pct,
            max_holding_sessions=config.max_holding_sessions,
        )


@dataclass(frozen=True, slots=True)
class Holding:
    """What the signal step needs to know about a held position."""

    entry_price: float
    entry_session: date | None


@dataclass(frozen=True)
class ClosePanel:
    """Closes and z-scores aligned on sessions (rows) and symbols (columns)."""

    sessions: list[date]
    symbols: list[str]
    closes: np.ndarray
    zscores: np.ndarray

    @classmethod
    def from_closes(cls, sessions: list[date], symbols: list[str], closes: np.ndarray, lookback: int) -> ClosePanel:
        return cls(sessions, symbols, closes, rolling_zscore(closes, lookback))

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], lookback: int) -> ClosePanel:
        closes_of = getattr(frames, "closes", None)
        if callable(closes_of):  # the DataAgent's BarData: aligned closes without building frames
            ts_ns, symbols, matrix = closes_of()
            sessions = [session_of_bar(datetime.fromtimestamp(int(t) / 1e9, tz=UTC)) for t in ts_ns]
            return cls.from_closes(sessions, symbols, matrix, lookback)
        if not frames:
            return cls([], [], np.empty((0, 0)), np.empty((0, 0)))
        wide = pd.concat({symbol: frame["close"] for symbol, frame in frames.items()}, axis=1).sort_index()
        sessions = [ts.tz_convert("America/New_York").date() for ts in wide.index]
        return cls.from_closes(sessions, list(wide.columns), wide.to_numpy(dtype=float), lookback)


class SignalAgent:
    def __init__(self, params: StrategyParams, calendar: MarketCalendar) -> None:
        self.params = params
        self.calendar = calendar

    def signals_at(self, panel: ClosePanel, row: int, holdings: Mapping[str, Holding],
                   symbols: list[str] | None = None) -> list[Signal]:
        """Signals for session `panel.sessions[row]` from rows <= row only."""
        if not panel.sessions:
            return []
        row = row if row >= 0 else len(panel.sessions) + row
        session = panel.sessions[row]
        bar_time = bar_timestamp(session)
        closes = panel.closes[row]
        zs = panel.zscores[row]
        wanted = set(symbols) if symbols is not None else None
        out: list[Signal] = []
        p = self.params
        for col, symbol in enumerate(panel.symbols):
            held = holdings.get(symbol)
            if wanted is not None and symbol not in wanted and held is None:
                continue
            close = float(closes[col])
            if not math.isfinite(close) or close <= 0:
                continue
            z = float(zs[col])
            if held is not None:
                reason = self._exit_reason(close, z, held, session)
                if reason is not None:
                    out.append(Signal(symbol, Side.SELL, close, bar_time, session, z, reason))
            elif math.isfinite(z) and z <= -p.entry_z:
                out.append(Signal(symbol, Side.BUY, close, bar_time, session, z, SignalReason.ENTRY_OVERSOLD))
        return out

    def generate(self, frames: Mapping[str, pd.DataFrame], holdings: Mapping[str, Holding],
                 symbols: list[str] | None = None) -> tuple[list[Signal], ClosePanel]:
        """Live entry point: signals for the latest completed session in `frames`."""
        panel = ClosePanel.from_frames(frames, self.params.lookback)
        return self.signals_at(panel, -1, holdings, symbols), panel

    def _exit_reason(self, close: float, z: float, held: Holding, session: date) -> SignalReason | None:
        p = self.params
        if held.entry_price > 0 and close <= held.entry_price * (1.0 - p.stop_loss_pct):
            return SignalReason.EXIT_STOP_LOSS
        if (held.entry_session is not None and session >= held.entry_session
                and self.calendar.session_distance(held.entry_session, session) >= p.max_holding_sessions):
            return SignalReason.EXIT_MAX_HOLDING
        if math.isfinite(z) and z >= p.exit_z:
            return SignalReason.EXIT_MEAN_REVERTED
        return None
