"""The daemon's own position book, the positions it closed and why it exited.

- `positions`: symbol PK, qty, avg_entry_price, entry_session, entry_price (first buy), origin
  ('daemon' | 'adopted' | 'flagged'), sold_qty, sold_value (partial sells, for the exit price),
  opened_at, updated_at. Shares the broker holds beyond these are not the daemon's and are never here.
- `closed_positions`: id PK, symbol, qty (sold), entry_price (average cost), exit_price (VWAP of the
  sells; NULL when closed outside the daemon), entry_session, exit_session, reason, origin, opened_at,
  closed_at.
- `exits`: id PK, symbol, session, reason, recorded_at: why the daemon exited (for the stop-loss
  cool-down and the closed row's reason).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import date, datetime

from core.domain.models import Side
from core.state.database import Database, date_or_none, float_or_none, parse_timestamp
from core.state.orders import QTY_EPSILON

ORIGINS = frozenset({"daemon", "adopted", "flagged"})
STOP_LOSS_REASON = "exit_stop_loss"
DAEMON_EXIT_REASON = "sold by the daemon"
EXTERNAL_CLOSE_REASON = "closed outside the daemon"


@dataclass(frozen=True, slots=True)
class BookPosition:
    symbol: str
    qty: float
    avg_entry_price: float
    entry_session: date | None
    origin: str


@dataclass(frozen=True, slots=True)
class ClosedPosition:
    symbol: str
    qty: float
    entry_price: float | None
    exit_price: float | None
    entry_session: date | None
    exit_session: date
    reason: str
    origin: str | None
    closed_at: datetime


class PositionBook:
    def __init__(self, db: Database) -> None:
        self._db = db

    def apply_fill(self, symbol: str, side: str, delta_qty: float, price: float, session: date) -> BookPosition | None:
        """Apply a fill to the book. Returns the position after it, or None when it is (now) flat.

        Buys average into the cost (average-cost method); the first buy of a flat symbol sets the
        entry session and price. Sells reduce the quantity at unchanged average cost; a sell that
        leaves ~0 closes the position into `closed_positions`. A sell for a symbol not in the book
        is ignored: the daemon is long-only and the start-up reconciliation reports the mismatch.
        """
        direction = Side(side)
        if not delta_qty > 0:
            raise ValueError(f"fill quantity must be positive, got {delta_qty!r}")
        now = self._db.now()
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            if direction is Side.BUY:
                if row is None:
                    conn.execute(
                        "INSERT INTO positions (symbol, qty, avg_entry_price, entry_session, entry_price, origin, "
                        "opened_at, updated_at) VALUES (?, ?, ?, ?, ?, 'daemon', ?, ?)",
                        (symbol, delta_qty, price, session.isoformat(), price, now, now),
                    )
                else:
                    qty = float(row["qty"]) + delta_qty
                    avg = (float(row["qty"]) * float(row["avg_entry_price"]) + delta_qty * price) / qty
                    conn.execute("UPDATE positions SET qty = ?, avg_entry_price = ?, updated_at = ? WHERE symbol = ?",
                                 (qty, avg, now, symbol))
            else:
                if row is None:
                    return None
                qty = float(row["qty"]) - delta_qty
                sold = min(delta_qty, float(row["qty"]))
                sold_qty = float(row["sold_qty"]) + sold
                sold_value = float(row["sold_value"]) + sold * price
                if qty < QTY_EPSILON:
                    reason = self._exit_reason(conn, symbol, row["opened_at"])
                    self._close(conn, row, session, reason, exit_price=sold_value / sold_qty, qty=sold_qty)
                    return None
                conn.execute("UPDATE positions SET qty = ?, sold_qty = ?, sold_value = ?, updated_at = ? "
                             "WHERE symbol = ?", (qty, sold_qty, sold_value, now, symbol))
            updated = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        return _position(updated)

    def positions(self) -> dict[str, BookPosition]:
        return {row["symbol"]: _position(row) for row in self._db.query("SELECT * FROM positions ORDER BY symbol")}

    def set_position(self, symbol: str, qty: float, avg_entry_price: float, entry_session: date | None,
                     origin: str) -> None:
        """Write a position as given (adoption, or taking the broker's quantity). Keeps `opened_at`."""
        if origin not in ORIGINS:
            raise ValueError(f"unknown position origin {origin!r}; expected one of {sorted(ORIGINS)}")
        if abs(qty) < QTY_EPSILON:
            raise ValueError(f"{symbol}: a position of quantity {qty!r} is flat; use close_externally() instead")
        now = self._db.now()
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO positions (symbol, qty, avg_entry_price, entry_session, entry_price, origin, opened_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, avg_entry_price = excluded.avg_entry_price, "
                "entry_session = excluded.entry_session, origin = excluded.origin, updated_at = excluded.updated_at",
                (symbol, qty, avg_entry_price, entry_session.isoformat() if entry_session else None,
                 avg_entry_price, origin, now, now),
            )

    def close_externally(self, symbol: str, session: date, reason: str = EXTERNAL_CLOSE_REASON) -> bool:
        """Drop a position that is gone at the broker; returns False if the book did not hold it."""
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            if row is None:
                return False
            self._close(conn, row, session, reason, exit_price=None, qty=float(row["qty"]))
        return True

    def closed_positions(self, symbol: str | None = None) -> list[ClosedPosition]:
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol is not None else ("", ())
        rows = self._db.query(f"SELECT * FROM closed_positions {where} ORDER BY id", params)
        return [ClosedPosition(row["symbol"], float(row["qty"]), float_or_none(row["entry_price"]),
                               float_or_none(row["exit_price"]), date_or_none(row["entry_session"]),
                               date.fromisoformat(row["exit_session"]), row["reason"], row["origin"],
                               parse_timestamp(row["closed_at"])) for row in rows]

    # ------------------------------------------------------------------ what ownership changes (core.domain.ownership)
    def rebase_position(self, symbol: str, ratio: float, *, max_qty: float) -> BookPosition | None:
        """Re-base a position for a split of `ratio` new shares per old: quantities x ratio (capped at
        `max_qty`, what the broker holds), every stored price / ratio. Money amounts are unchanged."""
        if not (ratio > 0 and max_qty >= 0):
            raise ValueError(f"{symbol}: cannot re-base by ratio {ratio!r} capped at {max_qty!r}")
        with self._db.transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            if row is None:
                return None
            qty = min(float(row["qty"]) * ratio, max_qty)
            entry_price = row["entry_price"]
            conn.execute(
                "UPDATE positions SET qty = ?, avg_entry_price = ?, entry_price = ?, sold_qty = ?, updated_at = ? "
                "WHERE symbol = ?",
                (qty, float(row["avg_entry_price"]) / ratio, None if entry_price is None else float(entry_price) / ratio,
                 float(row["sold_qty"]) * ratio, self._db.now(), symbol),
            )
            updated = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        return _position(updated)

    def reduce_position(self, symbol: str, qty: float) -> None:
        """Lower the daemon's own quantity to `qty` (> 0): the broker holds less than the book did and
        nothing of the daemon's explains it. Entry price and session are kept."""
        if not qty > QTY_EPSILON:
            raise ValueError(f"{symbol}: reduce to {qty!r}; a flat position is closed with close_externally()")
        with self._db.transaction() as conn:
            conn.execute("UPDATE positions SET qty = MIN(qty, ?), updated_at = ? WHERE symbol = ?",
                         (qty, self._db.now(), symbol))

    # ------------------------------------------------------------------ exits
    def record_exit(self, symbol: str, session: date, reason: str) -> None:
        """Remember why the daemon exited `symbol` (e.g. "exit_stop_loss"), for cool-downs and the closed row."""
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO exits (symbol, session, reason, recorded_at) VALUES (?, ?, ?, ?)",
                         (symbol, session.isoformat(), reason, self._db.now()))

    def last_stop_loss_exit(self, symbol: str) -> date | None:
        row = self._db.query_one("SELECT MAX(session) AS session FROM exits WHERE symbol = ? AND reason = ?",
                                 (symbol, STOP_LOSS_REASON))
        return date_or_none(row["session"]) if row is not None else None

    def _exit_reason(self, conn: sqlite3.Connection, symbol: str, opened_at: str) -> str:
        # Only an exit recorded while THIS position was open explains its close.
        row = conn.execute("SELECT reason FROM exits WHERE symbol = ? AND recorded_at >= ? ORDER BY id DESC LIMIT 1",
                           (symbol, opened_at)).fetchone()
        return str(row["reason"]) if row is not None else DAEMON_EXIT_REASON

    def _close(self, conn: sqlite3.Connection, row: sqlite3.Row, session: date, reason: str, *,
               exit_price: float | None, qty: float) -> None:
        conn.execute("DELETE FROM positions WHERE symbol = ?", (row["symbol"],))
        conn.execute(
            "INSERT INTO closed_positions (symbol, qty, entry_price, exit_price, entry_session, exit_session, reason, "
            "origin, opened_at, closed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row["symbol"], qty, row["avg_entry_price"], exit_price, row["entry_session"], session.isoformat(),
             reason, row["origin"], row["opened_at"], self._db.now()),
        )


def _position(row: sqlite3.Row) -> BookPosition:
    return BookPosition(symbol=row["symbol"], qty=float(row["qty"]), avg_entry_price=float(row["avg_entry_price"]),
                        entry_session=date_or_none(row["entry_session"]), origin=row["origin"])
