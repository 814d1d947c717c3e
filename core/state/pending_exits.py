"""The `pending_exits` table (migration 6): exits the daemon has committed to and still pursues.

One row per committed exit; at most one `active` row per symbol (a partial unique index). A row
holds what is needed to rebuild the exit's signal after a restart (decision session, reason,
signal price, z-score) and how the pursuit went (refused attempts, the last refusal's cause, the
outcome). Broker messages are not stored here: only the classified cause (e.g. `trading_blocked`);
the intents table keeps each attempt's own message.

States: `active` (pursued every iteration while the market is open), `done` (filled, or the
position is gone), `given_up` (the broker refused it for a permanent reason).
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass
from datetime import date

from core.domain.clock import Clock
from core.state.database import Database, iso_utc

ACTIVE = "active"
DONE = "done"
GIVEN_UP = "given_up"

_COLUMNS = "id, symbol, decision_session, reason, signal_price, zscore, state, attempts, last_refusal, outcome"


@dataclass(frozen=True, slots=True)
class PendingExit:
    id: int
    symbol: str
    decision_session: date
    reason: str
    signal_price: float
    zscore: float
    state: str
    attempts: int          # attempts the broker refused so far
    last_refusal: str
    outcome: str


class PendingExitTable:
    """Reads and writes of `pending_exits` through the state database's connection and lock. Its times
    come from `clock`, the caller's (the orchestrator's clock, measured against the broker's)."""

    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    def _now(self) -> str:
        return iso_utc(self._clock.now())

    def active(self) -> dict[str, PendingExit]:
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM pending_exits WHERE state = ? ORDER BY id",
                                (ACTIVE,)).fetchall()
        return {row["symbol"]: _row(row) for row in rows}

    def all(self) -> list[PendingExit]:
        with self._db.transaction() as conn:
            rows = conn.execute(f"SELECT {_COLUMNS} FROM pending_exits ORDER BY id").fetchall()
        return [_row(row) for row in rows]

    def commit(self, symbol: str, decision_session: date, reason: str, signal_price: float,
               zscore: float) -> bool:
        """Record an active exit for `symbol` unless one is already active. True if a row was added."""
        now = self._now()
        z = zscore if math.isfinite(zscore) else None
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO pending_exits (symbol, decision_session, reason, signal_price, zscore, state, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (symbol, decision_session.isoformat(), reason, signal_price, z, ACTIVE, now, now),
            )
            return cursor.rowcount > 0

    def refused(self, exit_id: int, cause: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("UPDATE pending_exits SET attempts = attempts + 1, last_refusal = ?, updated_at = ? "
                         "WHERE id = ? AND state = ?", (cause, self._now(), exit_id, ACTIVE))

    def finish(self, exit_id: int, state: str, outcome: str) -> None:
        if state not in (DONE, GIVEN_UP):
            raise ValueError(f"a pending exit finishes as {DONE!r} or {GIVEN_UP!r}, not {state!r}")
        with self._db.transaction() as conn:
            conn.execute("UPDATE pending_exits SET state = ?, outcome = ?, updated_at = ? WHERE id = ? AND state = ?",
                         (state, outcome, self._now(), exit_id, ACTIVE))


def _row(row: sqlite3.Row) -> PendingExit:
    zscore = row["zscore"]
    return PendingExit(
        id=int(row["id"]), symbol=row["symbol"], decision_session=date.fromisoformat(row["decision_session"]),
        reason=row["reason"], signal_price=float(row["signal_price"]),
        zscore=float(zscore) if zscore is not None else math.nan, state=row["state"],
        attempts=int(row["attempts"]), last_refusal=row["last_refusal"], outcome=row["outcome"],
    )
