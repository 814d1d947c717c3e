"""How long the daemon loop waits after a failed iteration (or market-clock check).

- Capped at `MAX_BACKOFF_SECONDS` (60 s): a strategy on daily bars loses nothing by retrying once a
  minute, and after a long outage the loop must be back within a minute of the broker's recovery
  (a 900 s cap once kept it idle for up to 15 minutes after a 429 storm had ended).
- A rate-limit failure (a `RateLimitedError` anywhere in the exception's cause chain, e.g. under a
  `DataError`) waits until the reset the broker announced (`X-RateLimit-Reset`), within
  [MIN_RATE_LIMIT_WAIT_SECONDS, MAX_BACKOFF_SECONDS]: waiting longer buys nothing, growing the
  delay with each failure would only overshoot the reset.
- Any other failure grows from the loop interval, doubling per consecutive failure, to the cap.
"""

from __future__ import annotations

from datetime import datetime

from core.domain.errors import RateLimitedError

MAX_BACKOFF_SECONDS = 60.0
MIN_RATE_LIMIT_WAIT_SECONDS = 1.0


def loop_backoff_seconds(failures: int, loop_interval_s: float, error: BaseException | None,
                         now: datetime) -> float:
    reset_at = rate_limit_reset(error)
    if reset_at is not None:
        return min(max(reset_at - now.timestamp(), MIN_RATE_LIMIT_WAIT_SECONDS), MAX_BACKOFF_SECONDS)
    return min(loop_interval_s * (2 ** min(max(failures, 1) - 1, 10)), MAX_BACKOFF_SECONDS)


def rate_limit_reset(error: BaseException | None) -> float | None:
    """The broker's reset time (epoch seconds) if `error` is, or was caused by, a rate-limit answer."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, RateLimitedError) and error.reset_at is not None:
            return error.reset_at
        error = error.__cause__ or error.__context__
    return None
