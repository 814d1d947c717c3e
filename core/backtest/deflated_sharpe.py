"""The probabilistic and deflated Sharpe ratios (Bailey & López de Prado, "The Deflated Sharpe Ratio:
Correcting for Selection Bias, Backtest Overfitting and Non-Normality", 2014). Pure: no I/O.

All Sharpe ratios here are per period (per session), not annualised: SR = mean / sd of the returns.

- PSR(SR*) = Phi( (SR - SR*) sqrt(T - 1) / sqrt(1 - skew SR + (kurtosis - 1) / 4 SR^2) ): the
  probability that the true Sharpe ratio exceeds SR*, given T returns with that skewness and
  (non-excess) kurtosis.
- SR0 = sqrt(V) ((1 - g) Phi^-1(1 - 1/N) + g Phi^-1(1 - 1/(N e))), g = Euler-Mascheroni: the Sharpe
  ratio the best of N unskilled trials reaches by luck, V = variance of the N trials' Sharpe ratios.
- DSR = PSR(SR0): the probability that the selected trial's Sharpe ratio beats that luck.

With one trial (N = 1) or no spread between trials (V = 0), SR0 = 0 and DSR = PSR(0).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()


@dataclass(frozen=True)
class ReturnMoments:
    n: int                 # number of returns
    sharpe: float          # per period
    skew: float
    kurtosis: float        # non-excess: 3 for a normal distribution


def moments(returns: Sequence[float]) -> ReturnMoments | None:
    """Per-period Sharpe (sample sd, ddof 1) and the population skewness and kurtosis of `returns`;
    None with fewer than 3 returns or no variation."""
    n = len(returns)
    if n < 3:
        return None
    mean = sum(returns) / n
    dev = [r - mean for r in returns]
    m2 = sum(d * d for d in dev) / n
    if m2 <= 0:
        return None
    m3 = sum(d ** 3 for d in dev) / n
    m4 = sum(d ** 4 for d in dev) / n
    sd = math.sqrt(sum(d * d for d in dev) / (n - 1))
    return ReturnMoments(n=n, sharpe=mean / sd, skew=m3 / m2 ** 1.5, kurtosis=m4 / m2 ** 2)


def probabilistic_sharpe(sharpe: float, n: int, skew: float, kurtosis: float, benchmark: float = 0.0) -> float:
    """PSR: the probability that the true per-period Sharpe ratio exceeds `benchmark`."""
    if n < 2:
        return math.nan
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe ** 2
    if variance <= 0:
        return math.nan
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def expected_max_sharpe(trials: int, variance: float) -> float:
    """SR0: the expected maximum per-period Sharpe ratio of `trials` unskilled trials."""
    if trials < 2 or variance <= 0:
        return 0.0
    return math.sqrt(variance) * ((1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / trials)
                                  + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (trials * math.e)))


def deflated_sharpe(selected: ReturnMoments, trial_sharpes: Sequence[float]) -> tuple[float, float]:
    """(DSR, SR0) of the selected trial among `trial_sharpes` (every trial's per-period Sharpe)."""
    finite = [s for s in trial_sharpes if math.isfinite(s)]
    n = len(finite)
    variance = 0.0
    if n > 1:
        mean = sum(finite) / n
        variance = sum((s - mean) ** 2 for s in finite) / (n - 1)
    sr0 = expected_max_sharpe(len(trial_sharpes), variance)
    return probabilistic_sharpe(selected.sharpe, selected.n, selected.skew, selected.kurtosis, sr0), sr0
