"""NYSE sessions from exchange_calendars, precomputed into arrays for fast, pure look-ups.

`get_market_calendar()` loads them from core/domain/nyse_sessions.txt, exchange_calendars' table written
once by scripts/make_nyse_sessions.py (a test checks it against the installed exchange_calendars), so
no command pays for building the table (and importing exchange_calendars and pandas) at start-up.

Session dates are `datetime.date`; opens and closes are tz-aware UTC datetimes. Daily bars are
stamped at midnight New York time of their session date (as Alpaca stamps them), which
`bar_timestamp()` produces and `session_of_bar()` inverts.

Early closes (13:00 New York) and DST changes come from the calendar itself; nothing here
assumes a 16:00 close or a fixed UTC offset.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
CALENDAR_START = "2004-01-01"
CALENDAR_END = "2030-12-31"
SESSION_TABLE = Path(__file__).with_name("nyse_sessions.txt")
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
TABLE_HEADER = "# NYSE sessions (exchange_calendars XNYS): date, open and close in UTC. Written by scripts/make_nyse_sessions.py"


@lru_cache(maxsize=8192)  # pure; a backtest stamps every session it signals on
def bar_timestamp(session: date) -> datetime:
    """Alpaca's daily-bar stamp: midnight New York of the session date, in UTC."""
    return datetime.combine(session, time(0, 0), tzinfo=NEW_YORK).astimezone(UTC)


def session_of_bar(timestamp: datetime) -> date:
    """Session date of a daily bar stamped at midnight New York (any tz-aware timestamp)."""
    if timestamp.tzinfo is None:
        timestamp = timestamp.replace(tzinfo=UTC)
    return timestamp.astimezone(NEW_YORK).date()


class MarketCalendar:
    """Immutable NYSE session table. Build once with `get_market_calendar()`."""

    def __init__(self, start: str = CALENDAR_START, end: str = CALENDAR_END) -> None:
        import exchange_calendars as xcals

        cal = xcals.get_calendar("XNYS", start=start, end=end)
        self._load([ts.date() for ts in cal.sessions], [ts.to_pydatetime() for ts in cal.opens],
                   [ts.to_pydatetime() for ts in cal.closes])

    @classmethod
    def from_table(cls, path: Path = SESSION_TABLE) -> MarketCalendar:
        """The calendar from a session table written by `format_table` (one `YYYY-MM-DD HH:MM HH:MM` line
        per session, open and close in UTC)."""
        rows = [line for line in path.read_text(encoding="ascii").splitlines() if line and line[0] != "#"]
        sessions = [date.fromisoformat(line[:10]) for line in rows]
        # POSIX timestamps straight from the fields (exact whole seconds, as datetime.timestamp() gives them),
        # and the datetimes from those: a third faster than building each datetime from its fields.
        days = [(day.toordinal() - _EPOCH_ORDINAL) * 86400 for day in sessions]
        open_ts = [float(d + int(line[11:13]) * 3600 + int(line[14:16]) * 60) for d, line in zip(days, rows, strict=True)]
        close_ts = [float(d + int(line[17:19]) * 3600 + int(line[20:22]) * 60) for d, line in zip(days, rows, strict=True)]
        utc = ZoneInfo("UTC")   # the tzinfo exchange_calendars' timestamps carry
        at = datetime.fromtimestamp
        calendar = cls.__new__(cls)
        calendar._load(sessions, [at(t, utc) for t in open_ts], [at(t, utc) for t in close_ts], (open_ts, close_ts))
        return calendar

    def _load(self, sessions: list[date], opens: list[datetime], closes: list[datetime],
              timestamps: tuple[list[float], list[float]] | None = None) -> None:
        """Install a session table (sorted sessions with their opens and closes, UTC; `timestamps`: the same
        opens and closes as POSIX timestamps, if known)."""
        self._sessions: list[date] = sessions
        self._opens: list[datetime] = opens
        self._closes: list[datetime] = closes
        self._timestamps = timestamps
        self._index = {session: i for i, session in enumerate(self._sessions)}
        self.first_session = self._sessions[0]
        self.last_session = self._sessions[-1]

    def session_timestamps(self) -> tuple[list[float], list[float]]:
        """Every session's open and close as POSIX timestamps, in session order (do not modify them)."""
        if self._timestamps is None:
            self._timestamps = ([t.timestamp() for t in self._opens], [t.timestamp() for t in self._closes])
        return self._timestamps

    # --- sessions -----------------------------------------------------------------------
    def is_session(self, day: date) -> bool:
        return day in self._index

    def sessions_between(self, start: date, end: date) -> list[date]:
        lo = bisect.bisect_left(self._sessions, start)
        hi = bisect.bisect_right(self._sessions, end)
        return self._sessions[lo:hi]

    def session_open(self, session: date) -> datetime:
        return self._opens[self.index_of(session)]

    def session_close(self, session: date) -> datetime:
        return self._closes[self.index_of(session)]

    def is_early_close(self, session: date) -> bool:
        return self.session_close(session).astimezone(NEW_YORK).time() < time(16, 0)

    def previous_session(self, session: date) -> date:
        i = bisect.bisect_left(self._sessions, session) - 1
        self._check_range(i)
        return self._sessions[i]

    def next_session(self, day: date) -> date:
        """First session strictly after `day`."""
        i = bisect.bisect_right(self._sessions, day)
        self._check_range(i)
        return self._sessions[i]

    def sessions_back(self, session: date, count: int) -> date:
        """The session `count` sessions before `session` (0 gives `session` itself if it is one)."""
        i = bisect.bisect_right(self._sessions, session) - 1 - count
        self._check_range(i)
        return self._sessions[i]

    def session_distance(self, earlier: date, later: date) -> int:
        """Number of sessions after `earlier` up to and including `later`."""
        index = self._index
        if earlier in index and later in index:  # both sessions (the usual case): two look-ups, no search
            return index[later] - index[earlier]
        return bisect.bisect_right(self._sessions, later) - bisect.bisect_right(self._sessions, earlier)

    # --- instants -----------------------------------------------------------------------
    def is_open(self, now: datetime) -> bool:
        i = self._session_index_at_or_before(now)
        return i >= 0 and self._opens[i] <= now < self._closes[i]

    def current_or_next_session(self, now: datetime) -> date:
        """The session trading now, or the next one to open."""
        i = self._session_index_at_or_before(now)
        if i >= 0 and now < self._closes[i]:
            return self._sessions[i]
        self._check_range(i + 1)
        return self._sessions[i + 1]

    def last_completed_session(self, now: datetime) -> date:
        """Latest session whose close is at or before `now`."""
        i = bisect.bisect_right(self._closes, now) - 1
        self._check_range(i)
        return self._sessions[i]

    def next_open(self, now: datetime) -> datetime:
        i = bisect.bisect_right(self._opens, now)
        self._check_range(i)
        return self._opens[i]

    def next_close(self, now: datetime) -> datetime:
        i = bisect.bisect_right(self._closes, now)
        self._check_range(i)
        return self._closes[i]

    # --- internals ----------------------------------------------------------------------
    def _session_index_at_or_before(self, now: datetime) -> int:
        return bisect.bisect_right(self._opens, now) - 1

    def index_of(self, session: date) -> int:
        """The session's position in the calendar's table (ValueError when it is not an NYSE session)."""
        try:
            return self._index[session]
        except KeyError:
            raise ValueError(f"{session} is not an NYSE session") from None

    def _check_range(self, i: int) -> None:
        if not 0 <= i < len(self._sessions):
            raise ValueError(
                f"date outside the calendar's range {self.first_session}..{self.last_session}"
            )


@lru_cache(maxsize=1)
def get_market_calendar() -> MarketCalendar:
    if SESSION_TABLE.is_file():
        return MarketCalendar.from_table(SESSION_TABLE)
    return MarketCalendar()


def format_table(calendar: MarketCalendar) -> str:
    """The session table `MarketCalendar.from_table` reads."""
    rows = [TABLE_HEADER]
    for session, opened, closed in zip(calendar._sessions, calendar._opens, calendar._closes, strict=True):
        # Every NYSE open and close falls on its session's UTC date (09:30-16:00 New York).
        assert opened.astimezone(UTC).date() == session == closed.astimezone(UTC).date()
        rows.append(f"{session.isoformat()} {opened.astimezone(UTC):%H:%M} {closed.astimezone(UTC):%H:%M}")
    return "\n".join(rows) + "\n"


def new_york_time(now: datetime) -> datetime:
    return now.astimezone(NEW_YORK)


ONE_DAY = timedelta(days=1)
