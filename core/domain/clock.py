"""Time sources. The daemon never calls `datetime.now()` or `time.sleep()` directly.

`SystemClock` is wall time. `SimClock` is a caller-controlled clock shared by the simulated market
and the daemon in simulation: `sleep()` advances it instantly, so months of sessions run in seconds.
Both `sleep()`s return early when `interrupt()` is called (SIGTERM handling).
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> bool:
        """Sleep up to `seconds`; returns False if interrupted."""
        ...

    def interrupt(self) -> None: ...

    def monotonic(self) -> float: ...


class SystemClock:
    def __init__(self) -> None:
        self._stop = threading.Event()

    def now(self) -> datetime:
        return datetime.now(UTC)

    def sleep(self, seconds: float) -> bool:
        return not self._stop.wait(max(0.0, seconds))

    def interrupt(self) -> None:
        self._stop.set()

    def monotonic(self) -> float:
        return time.monotonic()


class SimClock:
    """Thread-safe simulated clock; `sleep()` jumps forward instead of waiting."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("SimClock start must be timezone-aware")
        self._now = start.astimezone(UTC)
        self._lock = threading.Lock()
        self._interrupted = False
        self.slept_seconds = 0.0

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def set(self, when: datetime) -> None:
        with self._lock:
            self._now = when.astimezone(UTC)

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now = self._now + timedelta(seconds=max(0.0, seconds))
            return self._now

    def sleep(self, seconds: float) -> bool:
        if self._interrupted:
            return False
        self.advance(seconds)
        with self._lock:
            self.slept_seconds += max(0.0, seconds)
        return True

    def interrupt(self) -> None:
        self._interrupted = True

    def monotonic(self) -> float:
        with self._lock:
            return self._now.timestamp()
