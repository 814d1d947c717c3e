"""Is the market open? The broker's clock decides; the exchange calendar cross-checks.

`GET /v2/clock` is cached until its own next boundary (next_close while open, next_open while
closed), so a steady-state iteration costs no clock request. The cache is judged on the broker's
timeline (host time + the measured skew), so a host clock that is off never makes it expire early
or late.

Each answer also
- measures the host's skew against the broker (`BrokerTimeClock.observe`, see core/broker_time.py);
- becomes the session authority of a `BrokerCalendar` (which session is in progress, which is done);
- is compared with the calendar: when the broker's open/closed state or its next open or close
  disagrees (an unscheduled closure, changed hours), sessions its next open skips are closed at
  once, and the broker's calendar (`GET /v2/calendar`) is fetched and corrects the daemon's
  calendar. The broker wins either way, and a warning is logged.
  The broker's calendar is also read once per trading day, at the first open answer of that day,
  so a closure that happened while the daemon was stopped is known before it decides anything.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

import structlog

from core.broker_calendar import BrokerCalendar
from core.broker_time import HOST_STEP_SECONDS, BrokerTimeClock
from core.domain.errors import BrokerError
from core.domain.market_calendar import NEW_YORK
from core.domain.models import ClockView
from core.domain.ports import BrokerPort

log = structlog.get_logger("market_clock")

CALENDAR_PAST_DAYS = 120      # covers the bar window (2 x lookback sessions) and the holding period
CALENDAR_FUTURE_DAYS = 30
CALENDAR_RESYNC_AFTER = timedelta(hours=1)   # at most one disagreement-driven calendar read per hour


class MarketClock:
    def __init__(self, source: BrokerPort, calendar: BrokerCalendar, *, broker_time: BrokerTimeClock) -> None:
        self._source = source
        self._calendar = calendar
        self._time = broker_time
        self._cached: ClockView | None = None
        self._fetched_for: datetime | None = None
        self._calendar_synced_on: date | None = None  # New York date of the last read of the broker's calendar
        self._calendar_synced_at: datetime | None = None
        self.disagreements = 0

    def _valid_until(self, view: ClockView) -> datetime:
        return view.next_close if view.is_open else view.next_open

    def view(self, now: datetime) -> ClockView:
        cached = self._cached
        # The same `now` that fetched the answer is answered by it (start-up then the first step, or a frozen
        # clock): a skew correction that the answer itself changed must not make that `now` look stale.
        if cached is None or (now != self._fetched_for and self._expired(cached, now)):
            cached = self._fetch()
            self._fetched_for = now
        return cached

    def _expired(self, cached: ClockView, now: datetime) -> bool:
        broker_now = self._time.to_broker(now)
        # Before the answer's own timestamp (beyond a step's tolerance): time went backwards.
        return (broker_now >= self._valid_until(cached)
                or broker_now < cached.timestamp - timedelta(seconds=HOST_STEP_SECONDS)
                or self._time.host_stepped(now))

    def _fetch(self) -> ClockView:
        view = self._source.get_clock()
        if view.sent_at is not None and view.received_at is not None:
            self._time.observe(view.timestamp, view.sent_at, view.received_at)
        self._cached = view
        self._calendar.set_clock_view(view)
        disagreement = self._disagreement(view)
        if disagreement:
            self.disagreements += 1
            log.warning("clock_disagreement", broker=_describe(view), calendar=disagreement,
                        now=view.timestamp.isoformat(), resolution="broker clock wins")
            self._calendar.close_sessions_skipped_by(view)
        self._maybe_sync_calendar(view, disagreement is not None)
        return view

    def _disagreement(self, view: ClockView) -> str | None:
        """What the calendar says instead of the broker at the broker's own timestamp, or None."""
        at = view.timestamp
        try:
            calendar_open = self._calendar.is_open(at)
            if calendar_open != view.is_open:
                return "open" if calendar_open else "closed"
            if view.is_open and self._calendar.next_close(at) != view.next_close:
                return f"closes at {self._calendar.next_close(at).isoformat()}"
            if not view.is_open and self._calendar.next_open(at) != view.next_open:
                return f"opens at {self._calendar.next_open(at).isoformat()}"
        except ValueError as exc:  # outside the calendar's range
            return str(exc)
        return None

    def _maybe_sync_calendar(self, view: ClockView, disagreement: bool) -> None:
        today = view.timestamp.astimezone(NEW_YORK).date()
        daily = view.is_open and self._calendar_synced_on != today
        recent = (self._calendar_synced_at is not None
                  and view.timestamp - self._calendar_synced_at < CALENDAR_RESYNC_AFTER)
        if not (daily or (disagreement and not recent)):
            return
        start, end = today - timedelta(days=CALENDAR_PAST_DAYS), today + timedelta(days=CALENDAR_FUTURE_DAYS)
        self._calendar_synced_at = view.timestamp
        try:
            days = self._source.get_calendar(start, end)
        except BrokerError as exc:
            log.warning("calendar_sync_failed", error=str(exc),
                        effect="the exchange calendar is used until the next read; the broker's clock still decides")
            return
        self._calendar_synced_on = today
        self._calendar.apply_broker_days(days, start, end)

    def is_open(self, now: datetime) -> bool:
        return self.view(now).is_open

    def invalidate(self) -> None:
        self._cached = None
        self._fetched_for = None


def _describe(view: ClockView) -> str:
    if view.is_open:
        return f"open until {view.next_close.isoformat()}"
    return f"closed until {view.next_open.isoformat()}"
