"""The broker's orders as last seen, and their fills.

- `orders`: id PK (broker order id), client_order_id UNIQUE, symbol, side, status, qty, notional,
  filled_qty (the broker's CUMULATIVE quantity), filled_avg_price, order_type, submitted_at, updated_at.
- `fills`: id PK, order_id, client_order_id, symbol, side, delta_qty, price, cumulative_qty, recorded_at;
  UNIQUE(order_id, cumulative_qty). One row per increase of an order's cumulative filled quantity.
"""

from __future__ import annotations

import math
import sqlite3
from datetime import datetime

from core.domain.errors import StateError
from core.domain.models import BrokerOrder, Fill, OrderStatus, Side
from core.state.database import Database, float_or_none, iso_utc, parse_timestamp

QTY_EPSILON = 1e-9
TERMINAL_STATUSES = tuple(sorted(status.value for status in OrderStatus if status.is_terminal))
ORDER_COLUMNS = ("id, client_order_id, symbol, side, status, qty, notional, filled_qty, filled_avg_price, "
                 "submitted_at, order_type")


class OrderLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, order: BrokerOrder) -> float:
        """Upsert the broker's view of an order; returns the newly filled quantity (0.0 if none).

        The broker reports CUMULATIVE `filled_qty`/`filled_avg_price`; the increase over what is
        stored becomes one `fills` row priced at (new_cum*new_avg - old_cum*old_avg) / delta.
        Recording the same answer twice, or an older answer after a newer one, adds nothing.
        """
        now = self._db.now()
        with self._db.transaction() as conn:
            stored = conn.execute("SELECT status, filled_qty, filled_avg_price FROM orders WHERE id = ?",
                                  (order.id,)).fetchone()
            old_cum = float(stored["filled_qty"]) if stored is not None else 0.0
            old_avg = stored["filled_avg_price"] if stored is not None else None
            new_cum = float(order.filled_qty)
            delta = new_cum - old_cum
            if delta > QTY_EPSILON:
                cum, avg = new_cum, order.filled_avg_price
            else:
                # A stale answer (lower cumulative) must not rewind the fills already counted.
                delta = 0.0
                cum, avg = old_cum, (old_avg if stored is not None else order.filled_avg_price)
            status = order.status.value
            if stored is not None and stored["status"] in TERMINAL_STATUSES and not order.status.is_terminal:
                # Terminal is final at the broker; an open status now can only be an out-of-order answer.
                status = stored["status"]
            conn.execute(
                f"INSERT INTO orders ({ORDER_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET client_order_id = excluded.client_order_id, "
                "symbol = excluded.symbol, side = excluded.side, status = excluded.status, qty = excluded.qty, "
                "notional = excluded.notional, filled_qty = excluded.filled_qty, "
                "filled_avg_price = excluded.filled_avg_price, "
                "submitted_at = COALESCE(excluded.submitted_at, orders.submitted_at), "
                "order_type = excluded.order_type, updated_at = excluded.updated_at",
                (order.id, order.client_order_id, order.symbol, Side(order.side).value, status, order.qty,
                 order.notional, cum, avg, iso_utc(order.submitted_at) if order.submitted_at else None,
                 order.order_type, now),
            )
            if delta > 0.0:
                price = _fill_price(old_cum, old_avg, new_cum, order.filled_avg_price, delta)
                conn.execute(
                    "INSERT INTO fills (order_id, client_order_id, symbol, side, delta_qty, price, cumulative_qty, "
                    "recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (order.id, order.client_order_id, order.symbol, Side(order.side).value, delta, price, new_cum,
                     now),
                )
        return delta

    def open(self) -> list[BrokerOrder]:
        """Orders whose last stored status is not terminal."""
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        rows = self._db.query(f"SELECT {ORDER_COLUMNS} FROM orders WHERE status NOT IN ({marks}) "
                              "ORDER BY submitted_at, rowid", TERMINAL_STATUSES)
        return [_order(row) for row in rows]

    def by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        row = self._db.query_one(f"SELECT {ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return _order(row) if row is not None else None

    def submitted_between(self, start: datetime, end: datetime) -> list[BrokerOrder]:
        """Orders submitted in [start, end), oldest first (stored as UTC ISO text, which sorts as time does)."""
        rows = self._db.query(f"SELECT {ORDER_COLUMNS} FROM orders WHERE submitted_at >= ? AND submitted_at < ? "
                              "ORDER BY submitted_at, rowid", (iso_utc(start), iso_utc(end)))
        return [_order(row) for row in rows]

    def all(self) -> list[BrokerOrder]:
        return [_order(row) for row in self._db.query(f"SELECT {ORDER_COLUMNS} FROM orders ORDER BY rowid")]

    def fills_for(self, symbol: str) -> list[Fill]:
        rows = self._db.query("SELECT order_id, client_order_id, symbol, side, delta_qty, price, cumulative_qty, "
                              "recorded_at FROM fills WHERE symbol = ? ORDER BY id", (symbol,))
        return [Fill(row["order_id"], row["client_order_id"], row["symbol"], Side(row["side"]), float(row["delta_qty"]),
                     float(row["price"]) if row["price"] is not None else math.nan, parse_timestamp(row["recorded_at"]),
                     cumulative_qty=float(row["cumulative_qty"]))
                for row in rows]


def _fill_price(old_cum: float, old_avg: float | None, new_cum: float, new_avg: float | None,
                delta: float) -> float | None:
    if new_avg is None:
        return None
    if old_cum <= 0.0 or old_avg is None:
        return float(new_avg)
    return (new_cum * new_avg - old_cum * old_avg) / delta


def _order(row: sqlite3.Row) -> BrokerOrder:
    try:
        side, status = Side(row["side"]), OrderStatus(row["status"])
    except ValueError as exc:
        raise StateError(f"order {row['client_order_id']} has an unreadable side/status in the state database: "
                         f"{exc}") from exc
    return BrokerOrder(
        id=row["id"], client_order_id=row["client_order_id"], symbol=row["symbol"], side=side, status=status,
        qty=float_or_none(row["qty"]), notional=float_or_none(row["notional"]), filled_qty=float(row["filled_qty"]),
        filled_avg_price=float_or_none(row["filled_avg_price"]),
        submitted_at=parse_timestamp(row["submitted_at"]) if row["submitted_at"] else None,
        order_type=row["order_type"],
    )
