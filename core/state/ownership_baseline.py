"""The broker's positions as last seen, with the daemon's own quantity then: the baseline that
explains the next change of the broker's position (core.domain.ownership).

Table `broker_positions_seen`: symbol PK, qty, avg_entry_price (the broker's), own_qty (the daemon's
own quantity then), seen_at. Shares the broker holds beyond `own_qty` are not the daemon's.
"""

from __future__ import annotations

from core.domain.ownership import SeenPosition
from core.state.database import Database, parse_timestamp
from core.state.orders import QTY_EPSILON


class OwnershipBaseline:
    def __init__(self, db: Database) -> None:
        self._db = db

    def seen_positions(self) -> dict[str, SeenPosition]:
        rows = self._db.query("SELECT symbol, qty, avg_entry_price, own_qty, seen_at FROM broker_positions_seen "
                              "ORDER BY symbol")
        return {row["symbol"]: SeenPosition(row["symbol"], float(row["qty"]), float(row["avg_entry_price"]),
                                            float(row["own_qty"]), parse_timestamp(row["seen_at"])) for row in rows}

    def record_seen_position(self, symbol: str, qty: float, avg_entry_price: float, own_qty: float) -> None:
        """Remember the broker's position in `symbol` (and the daemon's own quantity); none held forgets it."""
        with self._db.transaction() as conn:
            if qty <= QTY_EPSILON and own_qty <= QTY_EPSILON:
                conn.execute("DELETE FROM broker_positions_seen WHERE symbol = ?", (symbol,))
                return
            conn.execute(
                "INSERT INTO broker_positions_seen (symbol, qty, avg_entry_price, own_qty, seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, "
                "avg_entry_price = excluded.avg_entry_price, own_qty = excluded.own_qty, seen_at = excluded.seen_at",
                (symbol, float(qty), float(avg_entry_price), float(own_qty), self._db.now()),
            )
