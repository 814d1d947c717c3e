"""Clocks of the tests: New York instants, and three `core.domain.clock.Clock`s beside the plain `SimClock`.

- `ScenarioClock`: a SimClock that records its sleeps and runs an action when simulated time passes a mark.
- `SkewedClock`: a daemon host's clock that is off the market's by an offset (the market keeps the truth).
- `RemoteSimClock`: a child process's clock, read and advanced over the simulated market's `/_sim/`
  control endpoints, so a daemon in another process shares the parent's simulated time.
"""

from __future__ import annotations

import http.client
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK


def ny(year: int, month: int, day: int, hour: int = 10, minute: int = 0, second: float = 0.0) -> datetime:
    """A New York wall-clock instant (DST-aware)."""
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK) + timedelta(seconds=second)


class ScenarioClock(SimClock):
    """A SimClock that records every sleep and fires alarms when simulated time passes a mark."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps: list[tuple[datetime, float]] = []
        self._alarms: list[tuple[datetime, Callable[[], None]]] = []

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Run `action` once, as soon as the clock reaches `when` (checked on every advance)."""
        self._alarms.append((when, action))
        self._alarms.sort(key=lambda item: item[0])

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append((self.now(), seconds))
        return super().sleep(seconds)

    def advance(self, seconds: float) -> datetime:
        now = super().advance(seconds)
        while self._alarms and self._alarms[0][0] <= now:
            _, action = self._alarms.pop(0)
            action()
        return now


class SkewedClock:
    """A host clock that is `offset` off the market's: now() = market clock + offset, while sleep()
    advances the market's clock (so the simulated server keeps the true time and its alarms fire).
    `offset` may be changed at any time, as an NTP step would change a host's clock."""

    def __init__(self, market_clock: ScenarioClock, offset: timedelta) -> None:
        self.market_clock = market_clock
        self.offset = offset

    def now(self) -> datetime:
        return self.market_clock.now() + self.offset

    def sleep(self, seconds: float) -> bool:
        return self.market_clock.sleep(seconds)

    def interrupt(self) -> None:
        self.market_clock.interrupt()

    def monotonic(self) -> float:
        return self.market_clock.monotonic()


class RemoteSimClock:
    """The `core.domain.clock.Clock` protocol over a simulated market's control endpoints.

    now(): GET /_sim/clock. sleep(s): POST /_sim/advance, so a sleep jumps the shared clock as
    `SimClock.sleep` does; it returns False once `interrupt()` was called. monotonic(): simulated
    epoch seconds, like `SimClock.monotonic`, so the rate limiter's window matches the server's.
    """

    def __init__(self, url: str, api_key: str, secret_key: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError(f"RemoteSimClock talks to a loopback simulated market only, not {url!r}")
        self._host = parts.hostname
        self._port = parts.port or 80
        self._headers = {"APCA-API-KEY-ID": api_key, "APCA-API-SECRET-KEY": secret_key,
                         "Content-Type": "application/json"}
        self._timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()
        self._interrupted = threading.Event()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> datetime:
        payload = json.dumps(body).encode() if body is not None else None
        with self._lock:
            for attempt in (1, 2):  # one reconnect: the server closes idle keep-alive connections
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout)
                try:
                    self._conn.request(method, path, body=payload, headers=self._headers)
                    response = self._conn.getresponse()
                    data = response.read()
                except (OSError, http.client.HTTPException):
                    self._conn.close()
                    self._conn = None
                    if attempt == 2:
                        raise
                    continue
                if response.status != 200:
                    raise RuntimeError(f"{method} {path}: HTTP {response.status}: {data[:200]!r}")
                return datetime.fromisoformat(json.loads(data)["now"])
        raise AssertionError("unreachable")

    def now(self) -> datetime:
        return self._call("GET", "/_sim/clock")

    def sleep(self, seconds: float) -> bool:
        if self._interrupted.is_set():
            return False
        self._call("POST", "/_sim/advance", {"seconds": max(0.0, float(seconds))})
        return not self._interrupted.is_set()

    def interrupt(self) -> None:
        self._interrupted.set()

    def monotonic(self) -> float:
        return self.now().timestamp()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
