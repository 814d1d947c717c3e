"""Walk-forward windows: a rolling in-sample (train) period followed by its out-of-sample (test)
period, the pair rolled forward by the test length, so the test periods tile the timeline without
overlapping and their results can be stitched into one out-of-sample equity curve.

Lengths are calendar durations (`3y`, `18m`, `26w`, `90d`). For window k (k = 0, 1, ...):

    train from   start + k x test                  (first session on or after)
    train to     train from + train - 1 day        (last session on or before)
    test from    the session after train to
    test to      test from + test - 1 day          (last session on or before)

A window is kept only when its whole test period lies within the data: no session of the calendar
falls between the period's end and the test's nominal last day. Pure: no I/O.
"""

from __future__ import annotations

import calendar as _calendar
import re
from dataclasses import dataclass
from datetime import date, timedelta

from core.domain.market_calendar import MarketCalendar

_DURATION = re.compile(r"^\s*(\d+)\s*([ymwd])\s*$", re.IGNORECASE)
UNITS = {"y": "years", "m": "months", "w": "weeks", "d": "days"}


@dataclass(frozen=True)
class Duration:
    count: int
    unit: str          # y, m, w or d

    def __str__(self) -> str:
        return f"{self.count}{self.unit}"

    def after(self, day: date) -> date:
        """`day` moved forward by this duration (month ends clamp: 31 Jan + 1m = 28/29 Feb)."""
        if self.unit == "d":
            return day + timedelta(days=self.count)
        if self.unit == "w":
            return day + timedelta(weeks=self.count)
        months = self.count * (12 if self.unit == "y" else 1)
        year, month = divmod(day.month - 1 + months, 12)
        year += day.year
        month += 1
        return date(year, month, min(day.day, _calendar.monthrange(year, month)[1]))


def parse_duration(text: str, name: str = "duration") -> Duration:
    match = _DURATION.match(str(text))
    if not match or int(match.group(1)) < 1:
        raise ValueError(f"{name} {text!r}: expected a positive length such as 3y, 18m, 26w or 90d")
    return Duration(int(match.group(1)), match.group(2).lower())


@dataclass(frozen=True)
class Window:
    index: int
    train_start: date
    train_end: date
    test_start: date
    test_end: date

    def describe(self) -> str:
        return f"train {self.train_start} .. {self.train_end}, test {self.test_start} .. {self.test_end}"


def walk_forward_windows(start: date, end: date, train: Duration, test: Duration,
                         calendar: MarketCalendar) -> list[Window]:
    """Every full window in [start, end] (sessions of `calendar`), in time order."""
    windows: list[Window] = []
    anchor = start
    while True:
        train_start = _on_or_after(anchor, calendar)
        train_last_day = train.after(anchor) - timedelta(days=1)
        test_last_day = test.after(train_last_day + timedelta(days=1)) - timedelta(days=1)
        if train_start > end or train_last_day >= end:
            break
        if test_last_day > end and calendar.sessions_between(end + timedelta(days=1), test_last_day):
            break  # the test period would run past the data
        train_end = _on_or_before(train_last_day, calendar)
        test_start = calendar.next_session(train_end)
        test_end = _on_or_before(min(test_last_day, end), calendar)
        if test_start > test_end or train_start > train_end:
            break
        windows.append(Window(len(windows), train_start, train_end, test_start, test_end))
        anchor = test.after(anchor)
    return windows


def _on_or_after(day: date, calendar: MarketCalendar) -> date:
    return day if calendar.is_session(day) else calendar.next_session(day)


def _on_or_before(day: date, calendar: MarketCalendar) -> date:
    return day if calendar.is_session(day) else calendar.previous_session(day)
