"""The daemon's session calendar: exchange_calendars, corrected by the broker, decided by its clock.

Two things the exchange calendar cannot know, and the broker does:
1. Unscheduled closures (a national day of mourning, a hurricane) and changed hours. The broker's
   calendar (`GET /v2/calendar`) replaces the table over the window it answers for
   (`apply_broker_days`), and a closed clock whose next open skips sessions closes them
   (`close_sessions_skipped_by`), so the day after a closure the last completed session is the one
   before the closure, and no symbol is "stale" because the closed day has no bar.
2. Which session is in progress right now. While the broker's latest clock answer still holds (it
   is valid until its own next open or close), that answer decides `last_completed_session` and
   `current_or_next_session`, on the broker's timeline: a host clock a few seconds or minutes off
   can never make the in-progress bar look complete, or a complete bar look in progress.

Everything else (sessions, opens, closes, distances) is the table, with the broker's corrections.
Agents receive this object as their `MarketCalendar`, so none of them changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime

import structlog

from core.domain.market_calendar import NEW_YORK, MarketCalendar
from core.domain.models import ClockView, MarketDay

log = structlog.get_logger("broker_calendar")

# More disagreement than this within one answer is not a closure but a broken answer: not applied.
MAX_CHANGED_SHARE = 0.10
MIN_CHANGES_ALLOWED = 3


class BrokerCalendar(MarketCalendar):
    def __init__(self, base: MarketCalendar,
                 to_broker_time: Callable[[datetime], datetime] = lambda moment: moment) -> None:
        # A copy of the base table: corrections never leak into the process-wide calendar.
        self._load(list(base._sessions), list(base._opens), list(base._closes))
        self._to_broker_time = to_broker_time
        self._view: ClockView | None = None
        self.closures: set[date] = set()
        # Closed by the clock's own next open: final (the daemon sleeps through them), so a calendar
        # answer that still lists one (late to publish the closure) does not bring it back.
        self._closed_by_clock: set[date] = set()

    # ------------------------------------------------------------------ the broker's clock decides
    def set_clock_view(self, view: ClockView) -> None:
        self._view = view

    def _view_at(self, now: datetime) -> ClockView | None:
        """The broker's latest clock answer if it still describes `now` (daemon time)."""
        view = self._view
        if view is None:
            return None
        moment = self._to_broker_time(now)
        valid_until = view.next_close if view.is_open else view.next_open
        return view if view.timestamp <= moment < valid_until else None

    def last_completed_session(self, now: datetime) -> date:
        view = self._view_at(now)
        if view is None:
            return super().last_completed_session(now)
        # Open: the session closing next is in progress. Closed: every session before the next open is done.
        boundary = view.next_close if view.is_open else view.next_open
        return self.previous_session(boundary.astimezone(NEW_YORK).date())

    def current_or_next_session(self, now: datetime) -> date:
        view = self._view_at(now)
        if view is None:
            return super().current_or_next_session(now)
        boundary = view.next_close if view.is_open else view.next_open
        return boundary.astimezone(NEW_YORK).date()

    def close_sessions_skipped_by(self, view: ClockView) -> list[date]:
        """Sessions the broker's clock says will not open: while closed, its next open skips them.

        Needs no request, and holds even when the broker's calendar is late to list a closure. A clock
        that skips more than a few sessions is not believed (a broken answer, not closures)."""
        if view.is_open:
            return []
        skipped = [s for s, opens in zip(self._sessions, self._opens, strict=True)
                   if view.timestamp < opens < view.next_open]
        if not skipped:
            return []
        if len(skipped) > MIN_CHANGES_ALLOWED:
            log.error("broker_clock_skip_refused", skipped=len(skipped), next_open=view.next_open.isoformat(),
                      effect="calendar unchanged: the clock's next open skips too many sessions")
            return []
        gone = set(skipped)
        keep = [i for i, s in enumerate(self._sessions) if s not in gone]
        self._load([self._sessions[i] for i in keep], [self._opens[i] for i in keep], [self._closes[i] for i in keep])
        self.closures |= gone
        self._closed_by_clock |= gone
        log.warning("calendar_corrected_by_broker", closures=[str(s) for s in skipped], added_or_retimed=[],
                    source="clock", effect="the broker's clock opens next at "
                    f"{view.next_open.isoformat()}: the sessions before it are closed")
        return skipped

    # ------------------------------------------------------------------ the broker's calendar corrects
    def apply_broker_days(self, days: Iterable[MarketDay], start: date, end: date) -> tuple[list[date], list[date]]:
        """Make the table agree with the broker's market days between `start` and `end`.

        Only the part of the window the answer covers is changed (from its first to its last day), so a
        short answer never closes the days it did not mention. Returns (sessions removed, sessions added
        or re-timed). An answer that disagrees on more than a tenth of the window is refused with a log line.
        """
        broker = {day.session: day for day in days
                  if start <= day.session <= end and day.session not in self._closed_by_clock}
        if not broker:
            log.warning("broker_calendar_empty", start=str(start), end=str(end), effect="calendar unchanged")
            return [], []
        lo, hi = min(broker), max(broker)
        mine = {s: (self._opens[self._index[s]], self._closes[self._index[s]])
                for s in self.sessions_between(lo, hi)}
        removed = sorted(s for s in mine if s not in broker)
        changed = sorted(s for s, day in broker.items() if mine.get(s) != (day.open, day.close))
        if not removed and not changed:
            return [], []
        limit = max(MIN_CHANGES_ALLOWED, int(MAX_CHANGED_SHARE * max(len(mine), len(broker))))
        if len(removed) + len(changed) > limit:
            log.error("broker_calendar_refused", start=str(lo), end=str(hi), removed=len(removed),
                      changed=len(changed), effect="calendar unchanged: the answer disagrees on too many days")
            return [], []
        table = {s: (o, c) for s, o, c in zip(self._sessions, self._opens, self._closes, strict=True)}
        for session in removed:
            del table[session]
        for session in changed:
            table[session] = (broker[session].open, broker[session].close)
        ordered = sorted(table)
        self._load(ordered, [table[s][0] for s in ordered], [table[s][1] for s in ordered])
        self.closures |= set(removed)
        self.closures -= set(changed)
        log.warning("calendar_corrected_by_broker", closures=[str(s) for s in removed],
                    added_or_retimed=[str(s) for s in changed], source="calendar",
                    effect="the broker's market days replace exchange_calendars' for these dates")
        return removed, changed
