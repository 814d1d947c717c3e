"""Regenerate core/domain/nyse_sessions.txt, the NYSE session table the daemon and the backtest load at start-up.

    .venv/bin/python scripts/make_nyse_sessions.py

The table is exchange_calendars' XNYS calendar (sessions, opens and closes in UTC) over the range
`core.domain.market_calendar` covers, written once so that no command builds it at run time (building it
took about 0.2 s of every start). tests/test_market_calendar_table.py fails when the installed
exchange_calendars disagrees with the file: regenerate it then (a new holiday, a wider range).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.domain.market_calendar import (  # noqa: E402
    CALENDAR_END,
    CALENDAR_START,
    SESSION_TABLE,
    MarketCalendar,
    format_table,
)


def main() -> int:
    calendar = MarketCalendar(CALENDAR_START, CALENDAR_END)
    SESSION_TABLE.write_text(format_table(calendar))
    print(f"wrote {SESSION_TABLE} ({len(calendar.sessions_between(calendar.first_session, calendar.last_session))} "
          f"sessions, {calendar.first_session} .. {calendar.last_session})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
