"""The z-score mean-reversion strategy (the daemon's original rule), behind the strategy interface.

    z[t]   = (close[t] - mean(close[t-L+1 .. t])) / std(close[t-L+1 .. t])     (ddof=1, L = lookback)
    entry  : z[t] <= -entry_z
    exit   : z[t] >= exit_z          (reason: exit_mean_reverted)
    score  : z[t]                    (the scanner keeps z < scanner_oversold_z, most negative first)

Its parameters default to the settings ZSCORE_LOOKBACK, ENTRY_Z, EXIT_Z and SCANNER_OVERSOLD_Z, so a
configuration written before strategies became plug-ins keeps its meaning.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from agents.strategies.base import Indicators, Parameters, Strategy
from core.domain.bar_panel import BarPanel
from core.domain.indicators import rolling_zscore
from core.domain.models import SignalReason


class ZScoreStrategy(Strategy):
    """z-score mean reversion on daily closes: buy z <= -entry_z, sell z >= exit_z (the default)."""

    name = "zscore"
    score_name = "z"
    entry_reason = SignalReason.ENTRY_OVERSOLD
    exit_reason = SignalReason.EXIT_MEAN_REVERTED
    defaults_from_settings = {"lookback": "zscore_lookback", "entry_z": "entry_z", "exit_z": "exit_z",
                              "scanner_oversold_z": "scanner_oversold_z"}

    class Params(Parameters):
        lookback: int = Field(20, ge=2, le=500, description="closes in the z-score window")
        entry_z: float = Field(2.0, gt=0.0, le=10.0, description="enter when z <= -entry_z")
        exit_z: float = Field(0.0, ge=-10.0, le=10.0, description="exit when z >= exit_z")
        scanner_oversold_z: float = Field(-1.0, ge=-10.0, le=0.0,
                                          description="the scanner keeps symbols with z below this")

    params: Params

    def bars_needed(self) -> int:
        return self.params.lookback

    def compute(self, bars: BarPanel) -> Indicators:
        z = rolling_zscore(bars.close, self.params.lookback)
        with np.errstate(invalid="ignore"):  # NaN compares False: no z, no signal
            return Indicators(entry=z <= -self.params.entry_z, exit=z >= self.params.exit_z, score=z)

    def scan_threshold(self) -> float:
        return self.params.scanner_oversold_z

    def no_score_reason(self) -> str:
        return "no z-score (not enough clean bars)"
