"""Deposits and withdrawals already netted out of the equity peak (core/domain/cash_flows.py does the math).

Table `cash_flows`: id PK (the broker's activity id), kind (CSD/CSW/JNLC), amount (+ in, - out),
on_date, occurred_at|NULL, equity_seen, peak_before, peak_after, recorded_at. With each batch, the
`kv` rows `peak_equity` (the peak they moved) and `cash_flows_checked_on` are written in the same
transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

from core.domain.models import CashFlow
from core.state.database import Database, iso_utc, parse_timestamp

ID_BATCH = 500  # ids per `IN (...)` query, below SQLite's bound-parameter limit


class CashFlowLedger:
    def __init__(self, db: Database) -> None:
        self._db = db

    def known_ids(self, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        known: set[str] = set()
        for start in range(0, len(wanted), ID_BATCH):
            chunk = wanted[start:start + ID_BATCH]
            marks = ", ".join("?" for _ in chunk)
            known |= {str(row["id"]) for row in self._db.query(f"SELECT id FROM cash_flows WHERE id IN ({marks})",
                                                               chunk)}
        return known

    def apply(self, flows: list[CashFlow], *, equity: float, peak_before: float, peak_after: float,
              checked_on: date) -> int:
        """Record newly seen flows and the equity peak they moved, in one transaction; returns how many were new."""
        now = self._db.now()
        with self._db.transaction() as conn:
            added = 0
            for flow in flows:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO cash_flows (id, kind, amount, on_date, occurred_at, equity_seen, peak_before, "
                    "peak_after, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (flow.id, flow.kind, flow.amount, flow.on.isoformat(),
                     iso_utc(flow.occurred_at) if flow.occurred_at else None, equity, peak_before, peak_after, now),
                )
                added += cursor.rowcount
            if flows:
                conn.execute("INSERT INTO kv (key, value) VALUES ('peak_equity', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (repr(peak_after),))
            conn.execute("INSERT INTO kv (key, value) VALUES ('cash_flows_checked_on', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (checked_on.isoformat(),))
        return added

    def since(self, day: date) -> list[CashFlow]:
        """Flows dated on or after `day`, oldest first."""
        rows = self._db.query("SELECT id, kind, amount, on_date, occurred_at FROM cash_flows WHERE on_date >= ? "
                              "ORDER BY on_date, id", (day.isoformat(),))
        return [CashFlow(id=row["id"], kind=row["kind"], amount=float(row["amount"]),
                         on=date.fromisoformat(row["on_date"]),
                         occurred_at=parse_timestamp(row["occurred_at"]) if row["occurred_at"] else None)
                for row in rows]
