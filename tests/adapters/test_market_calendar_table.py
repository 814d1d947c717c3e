"""The bundled NYSE session table (core/domain/nyse_sessions.txt) is exchange_calendars' XNYS calendar, and
loading it imports neither exchange_calendars nor pandas."""

from __future__ import annotations

import subprocess
import sys

from core.domain.market_calendar import (
    CALENDAR_END,
    CALENDAR_START,
    SESSION_TABLE,
    MarketCalendar,
    format_table,
)
from tests.harness.config import REPO_ROOT


def test_the_bundled_table_is_exchange_calendars_xnys_session_for_session() -> None:
    built = MarketCalendar(CALENDAR_START, CALENDAR_END)        # exchange_calendars, as installed
    loaded = MarketCalendar.from_table(SESSION_TABLE)
    # If this fails after an exchange_calendars upgrade: .venv/bin/python scripts/make_nyse_sessions.py
    assert SESSION_TABLE.read_text() == format_table(built)
    first, last = built.first_session, built.last_session
    assert (loaded.first_session, loaded.last_session) == (first, last)
    assert loaded.sessions_between(first, last) == built.sessions_between(first, last)
    for session in built.sessions_between(first, last):
        assert loaded.session_open(session) == built.session_open(session)
        assert loaded.session_close(session) == built.session_close(session)


def test_the_session_timestamps_are_the_opens_and_closes_of_both_calendars() -> None:
    built = MarketCalendar(CALENDAR_START, CALENDAR_END)
    loaded = MarketCalendar.from_table(SESSION_TABLE)       # computed from the table's fields
    sessions = built.sessions_between(built.first_session, built.last_session)
    opens = [built.session_open(s).timestamp() for s in sessions]
    closes = [built.session_close(s).timestamp() for s in sessions]
    assert loaded.session_timestamps() == built.session_timestamps() == (opens, closes)
    assert {str(loaded.session_open(s).tzinfo) for s in sessions} == {"UTC"}


def test_loading_the_calendar_imports_neither_exchange_calendars_nor_pandas() -> None:
    code = ("import sys\nfrom core.domain.market_calendar import get_market_calendar\n"
            "calendar = get_market_calendar()\nassert calendar.is_session(calendar.first_session)\n"
            "print(sorted(m for m in ('exchange_calendars', 'pandas') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
