"""Connors' RSI(2) pullback strategy: buy a short, sharp dip inside a long-term uptrend.

    RSI    : Wilder's RSI(rsi_period) of the closes (core.domain.indicators.wilder_rsi): seeded with the mean
             of rsi_period changes, then Wilder-smoothed over rsi_smoothing more changes
    entry  : RSI[t] < entry_below  and  close[t] > SMA(trend_days)[t]
    exit   : close[t] > SMA(exit_days)[t]                 (reason: exit_mean_reverted)
    score  : RSI[t] where close[t] > SMA(trend_days)[t], else none (the trend filter rules it out)

SMA(n)[t] is the mean of the n closes up to and including t. Defaults are Connors' (RSI(2) below 10,
above the 200-day average, out above the 5-day average). Connors uses no stop; here the pipeline's
stop-loss and maximum holding time still apply, as for every strategy that does not declare its own.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from agents.strategies.base import Indicators, Parameters, Strategy
from core.domain.bar_panel import BarPanel
from core.domain.indicators import rolling_mean, wilder_rsi
from core.domain.models import SignalReason


class Rsi2Strategy(Strategy):
    """Connors' RSI(2): buy RSI(2) < 10 above the 200-day average, sell above the 5-day average."""

    name = "rsi2"
    score_name = "RSI"
    entry_reason = SignalReason.ENTRY_OVERSOLD
    exit_reason = SignalReason.EXIT_MEAN_REVERTED

    class Params(Parameters):
        rsi_period: int = Field(2, ge=1, le=50, description="RSI period (Wilder)")
        rsi_smoothing: int = Field(100, ge=0, le=1000,
                                   description="Wilder smoothing steps after the seed (the RSI's warm-up)")
        entry_below: float = Field(10.0, gt=0.0, lt=100.0, description="enter when RSI < this")
        trend_days: int = Field(200, ge=1, le=1000, description="enter only when close > SMA(trend_days)")
        exit_days: int = Field(5, ge=1, le=500, description="exit when close > SMA(exit_days)")
        scan_below: float = Field(30.0, gt=0.0, le=100.0,
                                  description="the scanner keeps symbols with RSI below this")

        @model_validator(mode="after")
        def _scanner_not_stricter_than_entry(self) -> Rsi2Strategy.Params:
            if self.scan_below < self.entry_below:
                raise ValueError(f"scan_below {self.scan_below:g} is below entry_below {self.entry_below:g}: "
                                 "the scanner would drop symbols the entry rule buys")
            return self

    params: Params

    def bars_needed(self) -> int:
        p = self.params
        return max(p.trend_days, p.exit_days, p.rsi_period + p.rsi_smoothing + 1)

    def compute(self, bars: BarPanel) -> Indicators:
        p = self.params
        close = bars.close
        rsi = wilder_rsi(close, p.rsi_period, p.rsi_smoothing)
        with np.errstate(invalid="ignore"):  # NaN compares False: no value, no signal
            uptrend = close > rolling_mean(close, p.trend_days)
            entry = (rsi < p.entry_below) & uptrend
            exit_ = close > rolling_mean(close, p.exit_days)
        return Indicators(entry=entry, exit=exit_, score=np.where(uptrend, rsi, np.nan), extra={"rsi": rsi})

    def scan_threshold(self) -> float:
        return self.params.scan_below

    def no_score_reason(self) -> str:
        return (f"no RSI (not enough clean bars, or the close is not above its "
                f"{self.params.trend_days}-day average)")
