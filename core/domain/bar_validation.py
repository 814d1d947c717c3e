"""Pure validation of one symbol's daily bars. Returns a reason string when the set is unusable.

A symbol with a single bad bar is excluded as a whole: sizing from a series with a hole, a NaN or
an impossible OHLC is exactly the "sized from bad data" failure the daemon must not have.
"""

from __future__ import annotations

from datetime import date

import numpy as np

REQUIRED_KEYS = ("t", "o", "h", "l", "c", "v", "n", "vw")  # n and vw: required by Alpaca's schema


def ohlc_inconsistent(opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray) -> np.ndarray:
    """Per bar: the high below the open or the close, or the low above them (or above the high)."""
    body_hi = np.maximum(opens, closes)
    body_lo = np.minimum(opens, closes)
    return (highs < body_hi - 1e-9) | (lows > body_lo + 1e-9) | (lows > highs + 1e-9)


def validate_ohlc(opens: np.ndarray, highs: np.ndarray, lows: np.ndarray, closes: np.ndarray) -> str | None:
    for name, values in (("open", opens), ("high", highs), ("low", lows), ("close", closes)):
        if not np.all(np.isfinite(values)):
            return f"non-finite {name} price (NaN or inf)"
        if np.any(values <= 0):
            return f"zero or negative {name} price"
    bad = ohlc_inconsistent(opens, highs, lows, closes)
    if np.any(bad):
        i = int(np.argmax(bad))
        return (f"inconsistent OHLC at bar {i}: open={opens[i]}, high={highs[i]}, low={lows[i]}, "
                f"close={closes[i]}")
    return None


def validate_order(timestamps_ns: np.ndarray) -> str | None:
    if timestamps_ns.size > 1:
        diffs = np.diff(timestamps_ns)
        if np.any(diffs == 0):
            return "duplicate bar timestamps"
        if np.any(diffs < 0):
            return "bar timestamps out of order"
    return None


def validate_freshness(last_session: date, expected_session: date) -> str | None:
    if last_session < expected_session:
        return f"stale: last bar is for {last_session}, expected the last completed session {expected_session}"
    return None
