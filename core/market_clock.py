"""Is the market open? The broker's clock decides; the exchange calendar cross-checks.

`GET /v2/clock` is cached until its own next boundary (next_close while open, next_open while
closed), so a steady-state iteration costs no clock request. When the calendar disagrees with the
broker (an unscheduled closure, a calendar bug), the broker wins and a warning is logged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

import structlog

from core.market_calendar import MarketCalendar
from core.models import ClockView

log = structlog.get_logger("market_clock")


class ClockSource(Protocol):
    def get_clock(self) -> ClockView: ...


class MarketClock:
    def __init__(self, source: ClockSource, calendar: MarketCalendar) -> None:
        self._source = source
        self._calendar = calendar
        self._cached: ClockView | None = None
        self.disagreements = 0

    def _valid_until(self, view: ClockView) -> datetime:
        return view.next_close if view.is_open else view.next_open

    def view(self, now: datetime) -> ClockView:
        cached = self._cached
        if cached is None or now >= self._valid_until(cached) or now < cached.timestamp:
            cached = self._source.get_clock()
            self._cached = cached
            calendar_open = self._calendar.is_open(now)
            if calendar_open != cached.is_open:
                self.disagreements += 1
                log.warning("clock_disagreement", broker_is_open=cached.is_open, calendar_is_open=calendar_open,
                            now=now.isoformat(), resolution="broker clock wins")
        return cached

    def is_open(self, now: datetime) -> bool:
        return self.view(now).is_open

    def next_open(self, now: datetime) -> datetime:
        return self.view(now).next_open

    def invalidate(self) -> None:
        self._cached = None
