"""Client-side sliding-window rate limiter, one window per API (trading, data).

Alpaca allows 200 requests a minute per API and account. The daemon must never be the cause of a
429, so every request waits here for a free slot first. The window is slightly longer than the
broker's (61 s) so that a request stamped here a moment before the broker stamps it cannot land
in the broker's window twice. A 429 that arrives anyway (another client on the same account)
blocks the API until its `X-RateLimit-Reset`.

Time comes from the injected clock, so a simulated clock makes a 1,000-call burst take no real time.
"""

from __future__ import annotations

import threading
from collections import deque

from core.domain.clock import Clock

WINDOW_SECONDS = 61.0
MAX_BLOCK_SECONDS = 65.0  # Alpaca's window is 60 s; a reset further away than this is not believed


class RateLimiter:
    def __init__(self, clock: Clock, per_minute: int = 200) -> None:
        if per_minute < 1:
            raise ValueError(f"per_minute {per_minute!r} must be >= 1")
        self._clock = clock
        self._limit = per_minute
        self._stamps: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()
        self.waited_seconds = 0.0

    @property
    def per_minute(self) -> int:
        return self._limit

    def acquire(self, api: str) -> None:
        """Block (on the clock) until `api` has a free slot, then take it."""
        while True:
            with self._lock:
                now = self._clock.now().timestamp()
                stamps = self._stamps.setdefault(api, deque())
                while stamps and stamps[0] <= now - WINDOW_SECONDS:
                    stamps.popleft()
                wait = max(0.0, self._blocked_until.get(api, 0.0) - now)
                if wait == 0.0 and len(stamps) >= self._limit:
                    wait = stamps[0] + WINDOW_SECONDS - now
                if wait <= 0.0:
                    stamps.append(now)
                    return
            self.waited_seconds += wait
            if not self._clock.sleep(min(wait, 5.0)):
                raise InterruptedError("shutdown requested while waiting for the rate limiter")

    def usage(self) -> dict[str, int]:
        """Requests per API inside the current window: what counts against the per-minute budget now."""
        with self._lock:
            since = self._clock.now().timestamp() - WINDOW_SECONDS
            return {api: sum(1 for stamp in stamps if stamp > since) for api, stamps in self._stamps.items()}

    def block_until(self, api: str, reset_epoch: float) -> None:
        """Hold `api` until `reset_epoch` (a 429's X-RateLimit-Reset), but never longer than
        MAX_BLOCK_SECONDS from now: a bogus or hostile reset must not stall the loop (and starve the
        watchdog) for an hour. A broker that still refuses after that answers 429 again."""
        with self._lock:
            reset_epoch = min(reset_epoch, self._clock.now().timestamp() + MAX_BLOCK_SECONDS)
            self._blocked_until[api] = max(self._blocked_until.get(api, 0.0), reset_epoch)

    def used(self, api: str) -> int:
        with self._lock:
            now = self._clock.now().timestamp()
            return sum(1 for stamp in self._stamps.get(api, ()) if stamp > now - WINDOW_SECONDS)
