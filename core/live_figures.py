"""The running daemon's in-memory figures, kept current by the event stream.

The status page, `/status.json` and `/metrics` of a running daemon combine the state database
with these: the latest positions and prices the loop saw, the latest account it read, whether
the market is open, and the request budget in use right now (read from the gateway's rate
limiter). All of it is already in the process; nothing here asks the broker.

The loop thread writes (through `emit`), the HTTP server's threads read (`snapshot()`), both under
one lock; a snapshot is an immutable copy.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime

from core.domain.models import PositionView
from core.events import (
    AccountObserved,
    Event,
    IterationCompleted,
    MarketStateChanged,
    OrderFilled,
    PositionMark,
)


@dataclass(frozen=True)
class LiveSnapshot:
    mode: str
    dry_run: bool
    version: str
    pid: int
    started_at: datetime
    now: datetime
    positions: tuple[PositionMark, ...] | None = None
    positions_at: datetime | None = None
    account: AccountObserved | None = None
    market_open: bool | None = None
    market_next_change: datetime | None = None
    last_iteration: IterationCompleted | None = None
    last_fill_at: datetime | None = None
    requests_last_minute: dict[str, int] = field(default_factory=dict)


class LiveFigures:
    def __init__(self, *, mode: str, dry_run: bool, version: str, clock_now: Callable[[], datetime],
                 requests_last_minute: Callable[[], dict[str, int]] | None = None) -> None:
        self._clock_now = clock_now
        self._requests_last_minute = requests_last_minute
        self._lock = threading.Lock()
        self._state = LiveSnapshot(mode=mode, dry_run=dry_run, version=version, pid=os.getpid(),
                                   started_at=clock_now(), now=clock_now())

    def emit(self, event: Event) -> None:
        with self._lock:
            s = self._state
            if isinstance(event, IterationCompleted):
                self._state = replace(s, last_iteration=event, positions=event.positions, positions_at=event.at,
                                      market_open=event.market_open)
            elif isinstance(event, AccountObserved):
                self._state = replace(s, account=event)
            elif isinstance(event, MarketStateChanged):
                self._state = replace(s, market_open=event.is_open, market_next_change=event.next_change)
            elif isinstance(event, OrderFilled):
                self._state = replace(s, last_fill_at=event.at)

    def snapshot(self) -> LiveSnapshot:
        usage: dict[str, int] = {}
        if self._requests_last_minute is not None:
            try:
                usage = dict(self._requests_last_minute())
            except Exception:  # noqa: BLE001 - a figure for a page, never worth an error
                usage = {}
        with self._lock:
            return replace(self._state, now=self._clock_now(), requests_last_minute=usage)


def position_views(marks: Iterable[PositionMark]) -> dict[str, PositionView]:
    """The loop's last position marks as the store's position snapshot takes them."""
    return {m.symbol: PositionView(symbol=m.symbol, qty=m.qty, avg_entry_price=m.avg_entry_price,
                                   market_value=m.market_value, current_price=m.current_price) for m in marks}
