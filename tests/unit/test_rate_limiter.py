"""The client-side limiter never lets more than the limit through in any 60 s window."""

from __future__ import annotations

from datetime import UTC, datetime

from core.broker.rate_limiter import WINDOW_SECONDS, RateLimiter
from core.domain.clock import SimClock


def test_burst_of_1000_stays_under_limit_per_window() -> None:
    clock = SimClock(datetime(2025, 3, 10, 15, tzinfo=UTC))
    limiter = RateLimiter(clock, per_minute=200)
    stamps = []
    for _ in range(1000):
        limiter.acquire("data")
        stamps.append(clock.now().timestamp())
    j = 0
    for i, stamp in enumerate(stamps):
        while stamps[j] <= stamp - 60.0:
            j += 1
        assert i - j + 1 <= 200
    assert stamps[-1] - stamps[0] >= 4 * WINDOW_SECONDS - 1  # it really waited
    assert limiter.waited_seconds > 0


def test_apis_are_limited_separately_and_reset_blocks() -> None:
    clock = SimClock(datetime(2025, 3, 10, 15, tzinfo=UTC))
    limiter = RateLimiter(clock, per_minute=2)
    for _ in range(2):
        limiter.acquire("trading")
    t0 = clock.now()
    limiter.acquire("data")
    assert clock.now() == t0
    limiter.block_until("data", t0.timestamp() + 30)
    limiter.acquire("data")
    assert (clock.now() - t0).total_seconds() >= 30
