"""Vectorised indicators. Pure numpy, no I/O.

z-score over a trailing window that INCLUDES the current close (ddof=1):

    z[t] = (close[t] - mean(close[t-L+1 .. t])) / std(close[t-L+1 .. t])

Row t uses rows <= t only, so a value never changes when later bars change (no look-ahead).
Rows before the window is full, windows with a NaN, and zero-variance windows give NaN.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def rolling_zscore(closes: np.ndarray, lookback: int) -> np.ndarray:
    """z-scores for a 1-D series or a 2-D (sessions x symbols) panel, same shape as the input."""
    if lookback < 2:
        raise ValueError(f"lookback {lookback!r} must be >= 2")
    values = np.asarray(closes, dtype=float)
    squeeze = values.ndim == 1
    if squeeze:
        values = values[:, None]
    out = np.full(values.shape, np.nan)
    if values.shape[0] >= lookback:
        windows = sliding_window_view(values, lookback, axis=0)  # (n-L+1, symbols, L)
        mean = windows.mean(axis=-1)
        std = windows.std(axis=-1, ddof=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = (values[lookback - 1:] - mean) / std
        z[~np.isfinite(z)] = np.nan
        out[lookback - 1:] = z
    return out[:, 0] if squeeze else out
