"""The strategy interface: what the SignalAgent needs from a trading rule, and nothing more.

A strategy is a class with

- `name`, and `Params`: a pydantic model (a subclass of `Parameters`) of its parameters and defaults;
- `bars_needed()`: how many completed daily bars row t's values depend on (its warm-up);
- `compute(bars)`: ONE vectorised pass over a `BarPanel` (sessions x symbols OHLCV) giving, for every
  row and symbol, whether the entry rule holds, whether its exit rule holds, and a score;
- optionally `exit_signal(...)` for exits that depend on the position (entry price, sessions held),
  `scan_threshold()` for the scanner, and `own_exits` to replace the pipeline's risk exits.

The contract (docs/strategies.md):

- causal: row t of every array uses rows <= t only (the look-ahead test rewrites later bars);
- finite memory: row t depends on the last `bars_needed()` rows only, so the live loop (which fetches
  2 x bars_needed bars) and the backtest (years of bars) compute the same values;
- per symbol: column j depends on column j's bars only, so the live loop (focus symbols) and the
  backtest (the whole universe) agree;
- score: lower = more attractive. Entries are ranked by it (the RiskAgent takes the lowest first and
  the scanner keeps the lowest below `scan_threshold()`); an entry needs a finite score;
- no I/O: a strategy never sees the broker, the state store or the clock. Holdings reach it only
  through `exit_signal`, as `HeldPosition`s.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from typing import ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from core.domain.bar_panel import BarPanel
from core.domain.models import SignalReason


class Parameters(BaseModel):
    """Base of every strategy's `Params`: immutable, unknown names and NaN/inf refused."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


class RiskExit(StrEnum):
    """Exits the pipeline applies to every strategy unless the strategy lists them in `own_exits`."""

    STOP_LOSS = "stop_loss"          # close <= entry price x (1 - STOP_LOSS_PCT)
    MAX_HOLDING = "max_holding"      # sessions held >= MAX_HOLDING_SESSIONS


@dataclass(frozen=True)
class Indicators:
    """What `compute()` returns: arrays shaped like the panel (sessions x symbols)."""

    entry: np.ndarray                # bool: the entry rule holds at the close of row t
    exit: np.ndarray                 # bool: the strategy's own exit rule holds at row t
    score: np.ndarray                # float: lower = more attractive; NaN = no score
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)  # anything else exit_signal reads


@dataclass(frozen=True, slots=True)
class HeldPosition:
    """A held position as a strategy may see it."""

    symbol: str
    entry_price: float               # average fill price
    entry_session: date | None       # the entry's fill session (None if unknown)
    sessions_held: int | None        # sessions after entry_session up to and including row t's


class Strategy(ABC):
    name: ClassVar[str] = ""
    Params: ClassVar[type[Parameters]] = Parameters
    score_name: ClassVar[str] = "score"
    entry_reason: ClassVar[SignalReason] = SignalReason.ENTRY_SIGNAL
    exit_reason: ClassVar[SignalReason] = SignalReason.EXIT_SIGNAL
    own_exits: ClassVar[frozenset[RiskExit]] = frozenset()
    # Parameter -> AppConfig field whose value is the parameter's default (the z-score strategy's
    # ZSCORE_LOOKBACK, ENTRY_Z, ...); STRATEGY_PARAMS and --strategy-param still override it.
    defaults_from_settings: ClassVar[Mapping[str, str]] = {}

    def __init__(self, params: Parameters | None = None) -> None:
        self.params = params if params is not None else self.Params()

    @abstractmethod
    def bars_needed(self) -> int:
        """Completed daily bars that row t's values depend on (rows before that give no signal)."""

    @abstractmethod
    def compute(self, bars: BarPanel) -> Indicators:
        """Entry, exit and score for every row and symbol, vectorised, causal."""

    def exit_signal(self, bars: BarPanel, indicators: Indicators, row: int, col: int,
                    position: HeldPosition) -> SignalReason | None:
        """The exit for one held position at row t, or None. Called only for held symbols."""
        return self.exit_reason if indicators.exit[row, col] else None

    def scan_threshold(self) -> float:
        """The scanner keeps symbols whose score is below this (default: any finite score)."""
        return math.inf

    def no_score_reason(self) -> str:
        """Why a symbol without a score is not a candidate (shown in candidates.json)."""
        return f"no {self.score_name} (not enough clean bars)"

    def describe(self) -> str:
        values = ", ".join(f"{k}={v!r}" for k, v in self.params.model_dump().items())
        return f"{self.name}({values})"
