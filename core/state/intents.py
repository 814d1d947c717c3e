"""Order intents: the journal written before every submit (`core.domain.ports.OrderJournal`).

Table `order_intents`: client_order_id PK, symbol, side, qty|NULL, notional|NULL, order_type,
time_in_force, signal_session, reason, state (IntentState), broker_order_id|NULL, message, created_at,
updated_at. Written PENDING before the submit; only PENDING -> anything and final -> final moves are
allowed, so a settled intent is never submitted again.
"""

from __future__ import annotations

import sqlite3
from datetime import date

from core.domain.errors import StateError
from core.domain.models import OrderSpec, Side
from core.domain.order_ids import DRY_RUN_KEY_PREFIX, dry_run_key
from core.domain.ports import IntentRecord, IntentState
from core.state.database import Database, float_or_none

INTENT_STATES = IntentState.OPEN_STATES | IntentState.FINAL_STATES
INTENT_COLUMNS = ("client_order_id, symbol, side, qty, notional, order_type, time_in_force, signal_session, "
                  "reason, state, broker_order_id, message")


class IntentJournal:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        """Insert a PENDING intent, or return the existing one unchanged (idempotent)."""
        now = self._db.now()
        with self._db.transaction() as conn:
            # A dry run of an older release journalled under the real id: set it aside (its own key; if a
            # later dry run already journalled it there, the old row goes).
            old = (spec.client_order_id, IntentState.DRY_RUN)
            conn.execute("UPDATE OR IGNORE order_intents SET client_order_id = ? || client_order_id "
                         "WHERE client_order_id = ? AND state = ?", (DRY_RUN_KEY_PREFIX, *old))
            conn.execute("DELETE FROM order_intents WHERE client_order_id = ? AND state = ?", old)
            conn.execute(
                "INSERT OR IGNORE INTO order_intents (client_order_id, symbol, side, qty, notional, order_type, "
                "time_in_force, signal_session, reason, state, broker_order_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, '', ?, ?)",
                (spec.client_order_id, spec.symbol, Side(spec.side).value, spec.qty, spec.notional,
                 spec.order_type, spec.time_in_force, signal_session.isoformat(), reason,
                 IntentState.PENDING, now, now),
            )
            row = conn.execute(f"SELECT {INTENT_COLUMNS} FROM order_intents WHERE client_order_id = ?",
                               (spec.client_order_id,)).fetchone()
        return intent_of(row)

    def record_dry_run(self, spec: OrderSpec, signal_session: date, reason: str) -> bool:
        """Journal what a dry run would send under its own key, already DRY_RUN; False if journalled before."""
        now = self._db.now()
        with self._db.transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO order_intents (client_order_id, symbol, side, qty, notional, order_type, "
                "time_in_force, signal_session, reason, state, broker_order_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'dry run: not sent', ?, ?)",
                (dry_run_key(spec.client_order_id), spec.symbol, Side(spec.side).value, spec.qty, spec.notional,
                 spec.order_type, spec.time_in_force, signal_session.isoformat(), reason, IntentState.DRY_RUN,
                 now, now),
            )
            return cursor.rowcount > 0

    def get(self, client_order_id: str) -> IntentRecord | None:
        row = self._db.query_one(f"SELECT {INTENT_COLUMNS} FROM order_intents WHERE client_order_id = ?",
                                 (client_order_id,))
        return intent_of(row) if row is not None else None

    def mark(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
             message: str = "") -> None:
        """Move an intent to `state`. A broker order id, once known, is kept when none is given.

        Only PENDING -> anything and final -> final are allowed: returning a settled intent to
        PENDING would make start-up reconciliation submit it again.
        """
        if state not in INTENT_STATES:
            raise ValueError(f"unknown intent state {state!r}; expected one of {sorted(INTENT_STATES)}")
        with self._db.transaction() as conn:
            row = conn.execute("SELECT state FROM order_intents WHERE client_order_id = ?",
                               (client_order_id,)).fetchone()
            if row is None:
                raise StateError(f"no order intent {client_order_id!r} in {self._db.path}")
            if state in IntentState.OPEN_STATES and row["state"] in IntentState.FINAL_STATES:
                raise StateError(f"intent {client_order_id} is already {row['state']}; it cannot become "
                                 f"{state} again (that would resubmit it)")
            conn.execute(
                "UPDATE order_intents SET state = ?, broker_order_id = COALESCE(?, broker_order_id), message = ?, "
                "updated_at = ? WHERE client_order_id = ?",
                (state, broker_order_id, message, self._db.now(), client_order_id),
            )

    def pending(self) -> list[IntentRecord]:
        rows = self._db.query(f"SELECT {INTENT_COLUMNS} FROM order_intents WHERE state = ? "
                              "ORDER BY created_at, rowid", (IntentState.PENDING,))
        return [intent_of(row) for row in rows]

    def for_session(self, session: date) -> list[IntentRecord]:
        rows = self._db.query(f"SELECT {INTENT_COLUMNS} FROM order_intents WHERE signal_session = ? "
                              "ORDER BY created_at, rowid", (session.isoformat(),))
        return [intent_of(row) for row in rows]

    def handled_signals(self, session: date, *, dry_run: bool = False) -> set[tuple[str, str]]:
        """(symbol, side) already acted on for this signal session. An ABANDONED intent does not count,
        nor does a PENDING one: its outcome is unknown (429, unanswered lookup), so the signal must
        reach the ExecutionAgent again, which looks the order up by client_order_id before any resend.
        A dry run's intent counts only for a dry run: it never makes a real decision look handled."""
        ignored = (IntentState.ABANDONED, IntentState.PENDING, "" if dry_run else IntentState.DRY_RUN)
        rows = self._db.query("SELECT DISTINCT symbol, side FROM order_intents WHERE signal_session = ? "
                              "AND state NOT IN (?, ?, ?)", (session.isoformat(), *ignored))
        return {(row["symbol"], row["side"]) for row in rows}


def intent_of(row: sqlite3.Row) -> IntentRecord:
    return IntentRecord(
        client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"],
        qty=float_or_none(row["qty"]), notional=float_or_none(row["notional"]), order_type=row["order_type"],
        time_in_force=row["time_in_force"], signal_session=date.fromisoformat(row["signal_session"]),
        reason=row["reason"], state=row["state"], broker_order_id=row["broker_order_id"], message=row["message"],
    )
