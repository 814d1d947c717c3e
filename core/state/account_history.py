"""What the broker showed of the account: snapshots of its positions and the equity curve.

- `snapshots` + `position_snapshots`: a header row per snapshot, then one row per symbol (recorded_at,
  symbol, qty, avg_entry_price, market_value, current_price); the header makes an empty account a
  snapshot of its own.
- `equity_history`: id PK, recorded_at, session, equity, cash, last_equity, source: the broker's equity
  whenever the daemon read the account ('decision', 'close').
"""

from __future__ import annotations

from datetime import date
from typing import Any

from core.domain.models import PositionView
from core.state.database import Database


class AccountHistory:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record_position_snapshot(self, positions: dict[str, PositionView]) -> int:
        """Store the broker's positions as one snapshot (an empty dict is a valid, empty snapshot)."""
        now = self._db.now()
        with self._db.transaction() as conn:
            cursor = conn.execute("INSERT INTO snapshots (recorded_at) VALUES (?)", (now,))
            snapshot_id = int(cursor.lastrowid or 0)
            conn.executemany(
                "INSERT INTO position_snapshots (snapshot_id, recorded_at, symbol, qty, avg_entry_price, market_value, "
                "current_price) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(snapshot_id, now, symbol, p.qty, p.avg_entry_price, p.market_value, p.current_price)
                 for symbol, p in sorted(positions.items())],
            )
        return snapshot_id

    def latest_snapshot(self) -> list[dict[str, Any]]:
        rows = self._db.query("SELECT recorded_at, symbol, qty, avg_entry_price, market_value, current_price "
                              "FROM position_snapshots WHERE snapshot_id = (SELECT MAX(id) FROM snapshots) "
                              "ORDER BY symbol")
        return [dict(row) for row in rows]

    def record_equity(self, *, session: date, equity: float, cash: float, last_equity: float | None,
                      source: str) -> None:
        """One point of the equity curve, as the broker reported it."""
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO equity_history (recorded_at, session, equity, cash, last_equity, source) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (self._db.now(), session.isoformat(), float(equity), float(cash),
                          None if last_equity is None else float(last_equity), source))
