"""Signal step: the selected strategy's entries and exits, plus the risk exits. Pure, no I/O.

The strategy (agents/strategies/, docs/strategies.md) computes its indicators ONCE over a panel of
completed daily bars (`prepare`); a decision for session t (`signals_at`) only reads row t. Rules for
row t, evaluated on bars up to t only:

- entry (buy):  not held, in focus, the strategy's entry rule holds, its score is finite
- exits (sell) of a held symbol, first match wins:
    1. stop-loss:    close[t] <= entry_price * (1 - stop_loss_pct)
    2. max holding:  sessions held >= max_holding_sessions (counted from the entry's fill session)
    3. the strategy's own exit (`Strategy.exit_signal`)
  1 and 2 belong to risk and apply to every strategy, unless the strategy lists them in `own_exits`.

The live loop prepares the DataAgent's panel of the focus symbols and reads its last row; the backtest
prepares the whole history once and reads row t. Both call `signals_at()`, so the decision code is the same.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from agents.strategies.base import HeldPosition, Indicators, RiskExit, Strategy
from agents.strategies.errors import StrategyError
from agents.strategies.loader import strategy_from_config
from core.domain.bar_panel import BarPanel
from core.domain.market_calendar import MarketCalendar, bar_timestamp
from core.domain.models import Side, Signal, SignalReason

if TYPE_CHECKING:
    import pandas as pd

log = structlog.get_logger("signal_agent")

MIN_BARS_FETCHED = 40


@dataclass(frozen=True, slots=True)
class RiskExitParams:
    stop_loss_pct: float = 0.08
    max_holding_sessions: int = 10

    @classmethod
    def from_config(cls, config: Any) -> RiskExitParams:
        return cls(stop_loss_pct=config.stop_loss_pct, max_holding_sessions=config.max_holding_sessions)


@dataclass(frozen=True, slots=True)
class Holding:
    """What the signal step needs to know about a held position."""

    entry_price: float
    entry_session: date | None


@dataclass(frozen=True)
class PreparedPanel:
    """Bars and the strategy's indicators for every row, computed once."""

    bars: BarPanel
    indicators: Indicators
    can_enter: np.ndarray            # entry rule & finite score & a usable close, per row and symbol
    _entries: list[list[int]] | None = field(default=None, init=False, repr=False, compare=False)

    def entry_columns(self, row: int) -> list[int]:
        """The columns whose entry holds at `row`, ascending (found for every row in one pass, on first use)."""
        entries = self._entries
        if entries is None:
            rows, cols = np.nonzero(self.can_enter)
            bounds = np.searchsorted(rows, np.arange(self.can_enter.shape[0] + 1)).tolist()
            flat = cols.tolist()
            entries = [flat[bounds[i]:bounds[i + 1]] for i in range(len(bounds) - 1)]
            object.__setattr__(self, "_entries", entries)
        return entries[row]


class SignalAgent:
    def __init__(self, strategy: Strategy, calendar: MarketCalendar, exits: RiskExitParams | None = None) -> None:
        self.strategy = strategy
        self.calendar = calendar
        self.exits = exits or RiskExitParams()
        # A strategy that keeps the interface's exit_signal exits on its `exit` array alone: read it directly,
        # without building a HeldPosition for every held symbol every session.
        self._exit_from_array = type(strategy).exit_signal is Strategy.exit_signal

    @classmethod
    def from_config(cls, config: Any, calendar: MarketCalendar) -> SignalAgent:
        """The strategy selected by STRATEGY / STRATEGY_PARAMS, with the configured risk exits."""
        strategy = strategy_from_config(config)
        log.info("strategy_selected", strategy=strategy.describe(), reference=config.strategy,
                 own_exits=sorted(strategy.own_exits))
        return cls(strategy, calendar, RiskExitParams.from_config(config))

    @property
    def bars_to_fetch(self) -> int:
        """Completed bars the live loop asks the DataAgent for: twice the strategy's need, at least 40."""
        return max(2 * self.strategy.bars_needed(), MIN_BARS_FETCHED)

    @property
    def scan_threshold(self) -> float:
        return self.strategy.scan_threshold()

    def prepare(self, bars: BarPanel) -> PreparedPanel:
        shape = bars.shape
        if 0 in shape:
            nothing = np.zeros(shape, dtype=bool)
            return PreparedPanel(bars, Indicators(nothing, nothing, np.full(shape, np.nan)), nothing)
        try:
            indicators = self.strategy.compute(bars)
        except StrategyError:
            raise
        except Exception as exc:  # noqa: BLE001 - the user's code: one message naming the strategy, not a crash
            hint = (" (the bars are read-only, live and in the backtest: copy an array before changing it, "
                    "e.g. bars.close.copy())" if "read-only" in str(exc) else "")
            raise StrategyError(f"strategy {self.strategy.name!r}: compute() raised {type(exc).__name__}: "
                                f"{exc}{hint}") from exc
        if not isinstance(indicators, Indicators):
            raise StrategyError(f"strategy {self.strategy.name!r}: compute() returned a {type(indicators).__name__}: "
                                "expected Indicators(entry=..., exit=..., score=...)")
        for name in ("entry", "exit", "score"):
            value = getattr(indicators, name)
            if not isinstance(value, np.ndarray) or value.shape != shape:
                raise StrategyError(
                    f"strategy {self.strategy.name!r}: compute() returned {name} of shape "
                    f"{getattr(value, 'shape', type(value).__name__)}: expected {shape} (sessions x symbols)")
            if name != "score" and value.dtype != bool:
                raise StrategyError(f"strategy {self.strategy.name!r}: compute() returned {name} of dtype "
                                    f"{value.dtype}: expected bool")
        with np.errstate(invalid="ignore"):
            usable = np.isfinite(bars.close) & (bars.close > 0)
            can_enter = indicators.entry & np.isfinite(indicators.score) & usable
        return PreparedPanel(bars, indicators, can_enter)

    def signals_at(self, prepared: PreparedPanel, row: int, holdings: Mapping[str, Holding],
                   symbols: list[str] | None = None) -> list[Signal]:
        """Signals for session `bars.sessions[row]` from rows <= row only, in column order.

        Held symbols are always judged for an exit; entries only for `symbols` (all when None).
        """
        bars = prepared.bars
        if not bars.sessions:
            return []
        row = row if row >= 0 else len(bars.sessions) + row
        session = bars.sessions[row]
        closes = bars.close[row]
        scores = prepared.indicators.score[row]
        column = bars.column
        found: list[tuple[int, Side, str, float, SignalReason]] = []
        for symbol, held in holdings.items():
            col = column.get(symbol)
            if col is None:
                continue
            close = closes.item(col)
            if not math.isfinite(close) or close <= 0:
                continue
            reason = self._exit_reason(prepared, row, col, symbol, close, held, session)
            if reason is not None:
                found.append((col, Side.SELL, symbol, close, reason))
        if symbols is None:
            entries = prepared.entry_columns(row)
        else:
            can_enter = prepared.can_enter[row]
            entries = sorted({col for s in symbols if (col := column.get(s)) is not None and can_enter[col]})
        reason_in = self.strategy.entry_reason
        names = bars.symbols
        for col in entries:
            symbol = names[col]
            if symbol not in holdings:
                found.append((col, Side.BUY, symbol, closes.item(col), reason_in))
        if not found:
            return []
        found.sort(key=_by_column)
        bar_time = bar_timestamp(session)
        return [Signal(symbol, side, price, bar_time, session, scores.item(col), reason)
                for col, side, symbol, price, reason in found]

    def generate(self, bars: BarPanel | Mapping[str, pd.DataFrame], holdings: Mapping[str, Holding],
                 symbols: list[str] | None = None) -> tuple[list[Signal], PreparedPanel]:
        """Live entry point: signals for the latest completed session in `bars`."""
        panel = bars if isinstance(bars, BarPanel) else BarPanel.from_frames(bars)
        prepared = self.prepare(panel)
        return self.signals_at(prepared, -1, holdings, symbols), prepared

    def scores_at(self, prepared: PreparedPanel, row: int) -> dict[str, float]:
        """Every symbol's score at `row` (NaN = none), for the scanner's candidates.json."""
        if not prepared.bars.sessions:
            return {}
        return dict(zip(prepared.bars.symbols, prepared.indicators.score[row].tolist(), strict=True))

    def candidates_at(self, prepared: PreparedPanel, row: int) -> dict[str, float]:
        """Only the symbols the scanner can select (score below the threshold), found in one comparison."""
        score = prepared.indicators.score[row]
        with np.errstate(invalid="ignore"):
            below = np.flatnonzero(score < self.scan_threshold)
        return {prepared.bars.symbols[j]: float(score[j]) for j in below}

    def _exit_reason(self, prepared: PreparedPanel, row: int, col: int, symbol: str, close: float,
                     held: Holding, session: date) -> SignalReason | None:
        exits, own = self.exits, self.strategy.own_exits
        if (RiskExit.STOP_LOSS not in own and held.entry_price > 0
                and close <= held.entry_price * (1.0 - exits.stop_loss_pct)):
            return SignalReason.EXIT_STOP_LOSS
        held_for = (self.calendar.session_distance(held.entry_session, session)
                    if held.entry_session is not None and session >= held.entry_session else None)
        if RiskExit.MAX_HOLDING not in own and held_for is not None and held_for >= exits.max_holding_sessions:
            return SignalReason.EXIT_MAX_HOLDING
        if self._exit_from_array:
            reason: SignalReason | None = self.strategy.exit_reason if prepared.indicators.exit[row, col] else None
        else:
            position = HeldPosition(symbol, held.entry_price, held.entry_session, held_for)
            reason = self.strategy.exit_signal(prepared.bars, prepared.indicators, row, col, position)
        if reason is not None and not (isinstance(reason, SignalReason) and reason.is_exit):
            raise StrategyError(f"strategy {self.strategy.name!r}: exit_signal() returned {reason!r}: "
                                "expected None or an exit SignalReason")
        return reason


def _by_column(found: tuple[int, Side, str, float, SignalReason]) -> int:
    return found[0]
