"""Risk halts: what stops new entries, who cleared one, when and why.

Table `risk_halts`: id PK, kind, reason, session, started_at, cleared_at|NULL, cleared_by|NULL,
clear_reason|NULL; at most one active halt per kind (a partial unique index).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.state.database import Database, parse_timestamp

# A daily-loss halt is about one session's P&L: it lapses with the session. Halts re-detected from the
# account at every decision (account_blocked, equity_not_positive, cash_flows_unknown) are cleared by the
# daemon when their condition is gone. Anything else (max_drawdown, the kill switch) stays until cleared
# on purpose.
SESSION_SCOPED_HALTS = frozenset({"daily_loss"})


@dataclass(frozen=True, slots=True)
class Halt:
    kind: str
    reason: str
    session: date
    started_at: datetime
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    clear_reason: str | None = None


class HaltLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, kind: str, reason: str, session: date) -> bool:
        """Start a halt; returns False if one of this kind is already active (it is kept as it was)."""
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO risk_halts (kind, reason, session, started_at) "
                                  "VALUES (?, ?, ?, ?)", (kind, reason, session.isoformat(), self._db.now()))
            return cursor.rowcount > 0

    def active(self) -> list[Halt]:
        rows = self._db.query("SELECT kind, reason, session, started_at FROM risk_halts WHERE cleared_at IS NULL "
                              "ORDER BY id")
        return [halt_from_row(row) for row in rows]

    def clear(self, kind: str, *, by: str = "", reason: str = "") -> bool:
        """Clear the active halt of `kind`, recording who cleared it and why; False if none was active."""
        with self._db.transaction() as conn:
            cursor = conn.execute("UPDATE risk_halts SET cleared_at = ?, cleared_by = ?, clear_reason = ? "
                                  "WHERE kind = ? AND cleared_at IS NULL",
                                  (self._db.now(), by or None, reason or None, kind))
            return cursor.rowcount > 0

    def recent(self, recent: int = 20) -> list[Halt]:
        """Every active halt, then the `recent` most recently cleared ones (newest first)."""
        active = self._db.query("SELECT * FROM risk_halts WHERE cleared_at IS NULL ORDER BY id")
        cleared = self._db.query("SELECT * FROM risk_halts WHERE cleared_at IS NOT NULL "
                                 "ORDER BY cleared_at DESC, id DESC LIMIT ?", (max(0, recent),))
        return [halt_from_row(row) for row in [*active, *cleared]]

    def clear_expired(self, current_session: date) -> list[Halt]:
        """Clear session-scoped halts (daily_loss) started in an earlier session."""
        kinds = sorted(SESSION_SCOPED_HALTS)
        marks = ", ".join("?" for _ in kinds)
        where = f"cleared_at IS NULL AND kind IN ({marks}) AND session < ?"
        params = (*kinds, current_session.isoformat())
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT kind, reason, session, started_at FROM risk_halts WHERE {where}",
                                params).fetchall()
            conn.execute(f"UPDATE risk_halts SET cleared_at = ?, cleared_by = 'daemon', "
                         f"clear_reason = 'the session it was about has ended' WHERE {where}",
                         (self._db.now(), *params))
        return [halt_from_row(row) for row in rows]


def halt_from_row(row: sqlite3.Row | Mapping[str, Any]) -> Halt:
    """A `risk_halts` row (an sqlite3.Row or a read-only reader's dict; an older schema lacks the clear columns)."""
    keys = row.keys()
    cleared_at = row["cleared_at"] if "cleared_at" in keys else None
    return Halt(kind=row["kind"], reason=row["reason"], session=date.fromisoformat(row["session"]),
                started_at=parse_timestamp(row["started_at"]),
                cleared_at=parse_timestamp(cleared_at) if cleared_at else None,
                cleared_by=row["cleared_by"] if "cleared_by" in keys else None,
                clear_reason=row["clear_reason"] if "clear_reason" in keys else None)
