"""Vectorised indicators. Pure numpy, no I/O.

z-score over a trailing window that INCLUDES the current close (ddof=1):

    z[t] = (close[t] - mean(close[t-L+1 .. t])) / std(close[t-L+1 .. t])

Row t uses rows <= t only, so a value never changes when later bars change (no look-ahead).
Rows before the window is full, windows with a NaN, and zero-variance windows give NaN.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

ZSCORE_BLOCK_ROWS = 256   # windows computed per pass: bounds the temporaries at any panel size


def rolling_zscore(closes: np.ndarray, lookback: int) -> np.ndarray:
    """z-scores for a 1-D series or a 2-D (sessions x symbols) panel, same shape as the input.

    Each window's mean and standard deviation (ddof=1) are sums of its L closes in numpy's pairwise
    order (`_pairwise_sum`), the order numpy's own window reduction takes on a column-ordered panel,
    which is what the backtest has always given it (`rolling_zscore_windows`, the reference a test
    compares with bit for bit). The order is fixed here rather than left to the panel's memory layout,
    so the live loop's row-ordered panel gets the same bits as the backtest's. Computed a block of
    rows at a time from whole-array passes: no (sessions x symbols x L) temporary.
    """
    values, squeeze = _as_columns(closes, lookback)
    out = np.full(values.shape, np.nan)
    rows = values.shape[0] - lookback + 1
    for start in range(0, max(rows, 0), ZSCORE_BLOCK_ROWS):
        count = min(ZSCORE_BLOCK_ROWS, rows - start)
        out[start + lookback - 1:start + lookback - 1 + count] = _zscore_rows(
            values[start:start + count + lookback - 1], lookback)
    return out[:, 0] if squeeze else out


def _zscore_rows(block: np.ndarray, lookback: int) -> np.ndarray:
    """The z-scores of every full window in `block` (its rows lookback-1 .. end)."""
    count = block.shape[0] - lookback + 1
    mean = _pairwise_sum(lambda k: block[k:k + count], 0, lookback) / lookback

    def squared_deviation(k: int) -> np.ndarray:
        deviation = block[k:k + count] - mean
        return np.multiply(deviation, deviation, out=deviation)

    std = np.sqrt(_pairwise_sum(squared_deviation, 0, lookback) / (lookback - 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        z = (block[lookback - 1:] - mean) / std
    z[~np.isfinite(z)] = np.nan
    return z


def _pairwise_sum(term: Callable[[int], np.ndarray], first: int, count: int) -> np.ndarray:
    """term(first) + ... + term(first + count - 1), elementwise, added in numpy's pairwise order
    (numpy's pairwise_sum: eight running sums for up to 128 terms, halves beyond that)."""
    if count < 8:
        total = np.array(term(first), dtype=float, copy=True)
        for k in range(first + 1, first + count):
            total += term(k)
        return total
    if count <= 128:
        sums = [np.array(term(first + j), dtype=float, copy=True) for j in range(8)]
        k = 8
        while k < count - count % 8:
            for j in range(8):
                sums[j] += term(first + k + j)
            k += 8
        total = ((sums[0] + sums[1]) + (sums[2] + sums[3])) + ((sums[4] + sums[5]) + (sums[6] + sums[7]))
        for rest in range(k, count):
            total += term(first + rest)
        return total
    half = count // 2
    half -= half % 8
    return _pairwise_sum(term, first, half) + _pairwise_sum(term, first + half, count - half)


def rolling_zscore_windows(closes: np.ndarray, lookback: int) -> np.ndarray:
    """`rolling_zscore` through numpy's sliding-window mean and std (a rows x symbols x L temporary)."""
    values, squeeze = _as_columns(closes, lookback)
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


def rolling_sum(values: np.ndarray, window: int, decay: float = 1.0) -> np.ndarray:
    """out[t] = sum(decay**k * values[t-k] for k in 0..window-1), along axis 0 (rows = sessions).

    NaN before the window is full and wherever the window holds a NaN. The sum is assembled from
    blocks of 1, 2, 4, ... rows (about 2 * log2(window) whole-array passes, no rows x window
    temporary), so row t is one fixed expression of its own window's values: the same bits whatever
    came before the window, and a NaN (a missing bar) stops mattering once it leaves the window.
    """
    if window < 1:
        raise ValueError(f"window {window!r} must be >= 1")
    block = np.asarray(values, dtype=float)
    size = 1
    total: np.ndarray | None = None
    covered = 0
    remaining = window
    while True:
        if remaining & 1:  # this block becomes the next-older part of the window
            total = block.copy() if total is None else total + decay ** covered * _shifted(block, covered)
            covered += size
        remaining >>= 1
        if not remaining:
            break
        block = block + decay ** size * _shifted(block, size)
        size *= 2
    assert total is not None
    return total


def rolling_mean(values: np.ndarray, window: int) -> np.ndarray:
    """Simple moving average over the trailing `window` rows, current row included (see rolling_sum)."""
    return rolling_sum(values, window) / window


def wilder_rsi(closes: np.ndarray, period: int, smoothing: int) -> np.ndarray:
    """Wilder's RSI(period) over a fixed trailing window, along axis 0.

        change[t] = close[t] - close[t-1];  up = max(change, 0);  down = max(-change, 0)
        seed[t]   = mean(up[t-period+1 .. t])                       (Wilder's first average)
        avg[t]    = ((period-1) * avg[t-1] + up[t]) / period,        applied `smoothing` times from seed[t-smoothing]
                  = b**m * seed[t-m] + a * sum(b**k * up[t-k], k < m),  a = 1/period, b = 1-a, m = smoothing
        RSI[t]    = 100 * avg_up[t] / (avg_up[t] + avg_down[t])      (= 100 - 100 / (1 + RS))

    Row t uses the last period + smoothing + 1 closes only, so the value is the same in a backtest
    over years of bars and in a live loop that fetched only that many. The seed's weight is
    b**smoothing (2**-smoothing for period 2), so with enough smoothing this is the textbook
    full-history value. NaN before the first full window, after a missing close for the window's
    length, and where the window had no price change at all.
    """
    if period < 1 or smoothing < 0:
        raise ValueError(f"RSI period {period!r} must be >= 1 and smoothing {smoothing!r} >= 0")
    close = np.asarray(closes, dtype=float)
    change = _shifted(close, 1)
    np.subtract(close, change, out=change)
    up, down = np.maximum(change, 0.0), np.maximum(-change, 0.0)  # NaN stays NaN
    averages = []
    for moves in (up, down):
        average = rolling_sum(moves, period) / period
        if smoothing:
            beta = (period - 1) / period
            average = beta ** smoothing * _shifted(average, smoothing) + rolling_sum(moves, smoothing, beta) / period
        averages.append(average)
    avg_up, avg_down = averages
    with np.errstate(invalid="ignore", divide="ignore"):
        rsi = 100.0 * avg_up / (avg_up + avg_down)
    rsi[~np.isfinite(rsi)] = np.nan
    return rsi


def _shifted(values: np.ndarray, rows: int) -> np.ndarray:
    """values moved down by `rows` along axis 0, NaN in the rows that open up."""
    out = np.full(values.shape, np.nan)
    if rows < values.shape[0]:
        out[rows:] = values[:values.shape[0] - rows]
    return out


def _as_columns(closes: np.ndarray, lookback: int) -> tuple[np.ndarray, bool]:
    """The closes as a float (rows x symbols) array, and whether a 1-D series was given."""
    if lookback < 2:
        raise ValueError(f"lookback {lookback!r} must be >= 2")
    values = np.asarray(closes, dtype=float)
    if values.ndim == 1:
        return values[:, None], True
    return values, False
