"""The daemon's durable state: one SQLite database, `STATE_DIR/trading.db` (stdlib sqlite3).

Durability and safety
- WAL journal with `synchronous=FULL`: every commit is fsynced before `commit` returns, so an
  intent written before a submit is on disk even if the process or the machine dies right after.
- Autocommit: each write method is its own transaction and is committed before it returns;
  multi-row writes (an order and its fill, a closing sell and its `closed_positions` row) use one
  `BEGIN IMMEDIATE` transaction so a crash never leaves half of them.
- The directory is created 0700 and the database with its `-wal`/`-shm` files end up 0600 (a
  0077 umask while they are created, then a chmod, which also fixes files made by older code).
- No secret is ever stored: no table has a column for keys or credentials, and every text value
  written goes through `core.logging_setup.redact` first (`_RedactingConnection`, the one door of
  every write), because a broker's error body can echo the request, key included.
- All timestamps are ISO-8601 UTC from the injected clock; sessions are ISO dates.

Schema (versioned by `core.state.migrations`, `PRAGMA user_version`)
- `order_intents`      client_order_id PK, symbol, side, qty|NULL, notional|NULL, order_type,
                       time_in_force, signal_session, reason, state (IntentState), broker_order_id|NULL,
                       message, created_at, updated_at. Written PENDING before the submit.
- `orders`             id PK (broker order id), client_order_id UNIQUE, symbol, side, status, qty,
                       notional, filled_qty (broker's CUMULATIVE quantity), filled_avg_price,
                       order_type, submitted_at, updated_at.
- `fills`              id PK, order_id, client_order_id, symbol, side, delta_qty, price,
                       cumulative_qty, recorded_at; UNIQUE(order_id, cumulative_qty). One row per
                       increase of an order's cumulative filled quantity.
- `positions`          symbol PK, qty, avg_entry_price, entry_session, entry_price (first buy),
                       origin ('daemon' | 'adopted' | 'flagged'), sold_qty, sold_value (partial
                       sells, for the exit price), opened_at, updated_at. The daemon's own book.
- `closed_positions`   id PK, symbol, qty (sold), entry_price (average cost), exit_price (VWAP of
                       the sells; NULL when closed outside the daemon), entry_session, exit_session,
                       reason, origin, opened_at, closed_at.
- `exits`              id PK, symbol, session, reason, recorded_at: why the daemon exited (for the
                       stop-loss cool-down).
- `snapshots` + `position_snapshots`  a header row per snapshot, then one row per symbol
                       (recorded_at, symbol, qty, avg_entry_price, market_value, current_price); the
                       header makes an empty account a snapshot of its own.
- `risk_halts`         id PK, kind, reason, session, started_at, cleared_at|NULL, cleared_by|NULL,
                       clear_reason|NULL; at most one active halt per kind (partial unique index).
- `cash_flows`         id PK (the broker's activity id), kind (CSD/CSW/JNLC), amount (+ in, - out),
                       on_date, occurred_at|NULL, equity_seen, peak_before, peak_after, recorded_at:
                       deposits and withdrawals already netted out of the equity peak.
- `iterations`         n PK, started_at, duration_s, focus_symbols JSON, requests JSON, signals,
                       submitted, rejected, status, message.
- `kv`                 key PK, value TEXT (e.g. peak equity; `instance_id` and `instance_created_at`:
                       this state directory's identity in every client_order_id, written once when the
                       database is first opened and never changed, see core/order_ids.py).
- `api_usage`          (api, endpoint) PK, count: cumulative request counts.
- `equity_history`     id PK, recorded_at, session, equity, cash, last_equity, source: the broker's
                       equity whenever the daemon read the account ('decision', 'close').
- `iterations.dry_run` 1 for an iteration of a dry run (nothing sent).
- `broker_positions_seen`  symbol PK, qty, avg_entry_price (the broker's, as last seen), own_qty
                       (the daemon's own quantity then), seen_at: the baseline that explains the
                       next change of the broker's position (core.ownership). Shares the broker
                       holds beyond the book's are not the daemon's and are never in `positions`.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, cast, overload

from core.clock import Clock
from core.errors import StateError
from core.logging_setup import redact
from core.models import BrokerOrder, CashFlow, OrderSpec, OrderStatus, PositionView, Side
from core.order_ids import DRY_RUN_KEY_PREFIX, dry_run_key, is_instance_id, new_instance_id
from core.ownership import SeenPosition
from core.ports import IntentRecord, IntentState
from core.state.failures import state_failure
from core.state.migrations import LATEST_VERSION, migrate
from core.state.migrations import schema_version as read_schema_version

DB_NAME = "trading.db"
DIR_MODE = 0o700
FILE_MODE = 0o600
QTY_EPSILON = 1e-9
DEFAULT_BUSY_TIMEOUT_S = 5.0

ORIGINS = frozenset({"daemon", "adopted", "flagged"})
INTENT_STATES = IntentState.OPEN_STATES | IntentState.FINAL_STATES
# A daily-loss halt is about one session's P&L: it lapses with the session. Halts re-detected from the
# account at every decision (account_blocked, equity_not_positive, cash_flows_unknown) are cleared by the
# daemon when their condition is gone. Anything else (max_drawdown, the kill switch) stays until cleared
# on purpose.
SESSION_SCOPED_HALTS = frozenset({"daily_loss"})
STOP_LOSS_REASON = "exit_stop_loss"
DAEMON_EXIT_REASON = "sold by the daemon"
EXTERNAL_CLOSE_REASON = "closed outside the daemon"

_TERMINAL_STATUSES = tuple(sorted(status.value for status in OrderStatus if status.is_terminal))
_INTENT_COLUMNS = ("client_order_id, symbol, side, qty, notional, order_type, time_in_force, signal_session, "
                   "reason, state, broker_order_id, message")
_ORDER_COLUMNS = ("id, client_order_id, symbol, side, status, qty, notional, filled_qty, filled_avg_price, "
                  "submitted_at, order_type")


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


@dataclass(frozen=True, slots=True)
class Fill:
    order_id: str
    client_order_id: str
    symbol: str
    side: str
    delta_qty: float
    price: float | None
    cumulative_qty: float
    recorded_at: datetime


@dataclass(frozen=True, slots=True)
class Halt:
    kind: str
    reason: str
    session: date
    started_at: datetime
    cleared_at: datetime | None = None
    cleared_by: str | None = None
    clear_reason: str | None = None


class StateStore:
    """SQLite-backed `OrderJournal` plus the daemon's book, halts, iterations and counters.

    One connection, guarded by a lock: the daemon is single-threaded, but a helper thread (the
    watchdog, a signal handler) must not interleave statements of another thread's transaction.
    """

    def __init__(self, state_dir: Path, clock: Clock, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        self._clock = clock
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        conn = self._open(busy_timeout_s)
        try:
            migrate(conn, name=f"state database {self.path}")
            self.instance_id, self.instance_created_at = self._instance(conn)
            self._secure_files()
        except sqlite3.Error as exc:
            conn.close()
            raise state_failure(f"state database {self.path} cannot be used: {exc}", exc) from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    # ------------------------------------------------------------------ lifecycle
    def _open(self, busy_timeout_s: float) -> sqlite3.Connection:
        # umask is process-wide, so it is narrowed only for the few calls that create files: the
        # directory, the database and the -wal/-shm files that the first WAL access creates.
        previous_umask = os.umask(0o077)
        try:
            try:
                self.state_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
                conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None,
                                       check_same_thread=False)
            except (OSError, sqlite3.Error) as exc:
                raise state_failure(f"cannot open the state database {self.path}: {exc}", exc) from exc
            try:
                self._configure(conn, busy_timeout_s)
            except BaseException:
                conn.close()
                raise
        finally:
            os.umask(previous_umask)
        return conn

    def _configure(self, conn: sqlite3.Connection, busy_timeout_s: float) -> None:
        conn.row_factory = sqlite3.Row
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise StateError(f"state database {self.path} is damaged ({check}); restore it from a backup "
                                 "or move it away so the daemon starts afresh and reconciles with the broker")
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            if mode != "wal":
                raise StateError(f"state database {self.path}: WAL journaling is unavailable (got {mode!r}); "
                                 "put STATE_DIR on a local filesystem")
            # FULL (not NORMAL): in WAL mode only FULL fsyncs on every commit, and the intent must be
            # durable before the order leaves for the broker.
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            raise state_failure(f"state database {self.path} cannot be used: {exc}", exc) from exc

    def _instance(self, conn: sqlite3.Connection) -> tuple[str, datetime]:
        """This state directory's instance id and creation time, made on first use and then kept."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            conn.executemany("INSERT OR IGNORE INTO kv (key, value) VALUES (?, ?)",
                             [("instance_id", new_instance_id()), ("instance_created_at", self._now())])
            rows = dict(conn.execute("SELECT key, value FROM kv WHERE key IN ('instance_id', 'instance_created_at')")
                        .fetchall())
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        instance = str(rows["instance_id"])
        if not is_instance_id(instance):
            raise StateError(f"state database {self.path}: instance_id {instance!r} is not an instance id "
                             "(expected 'i' and 8 hex digits); it must never be edited")
        return instance, _datetime(str(rows["instance_created_at"]))

    def _secure_files(self) -> None:
        for path in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm")):
            try:
                if path.exists() and path.stat().st_mode & 0o777 != FILE_MODE:
                    os.chmod(path, FILE_MODE)
            except FileNotFoundError:
                continue  # -wal/-shm may vanish when another connection checkpoints and closes
            except OSError as exc:
                raise state_failure(f"cannot make {path} private (mode 0600): {exc}", exc) from exc

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        with self._lock:
            return read_schema_version(self._connection())

    # ------------------------------------------------------------------ plumbing
    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StateError(f"state database {self.path} is closed")
        return self._conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            # Every write method runs its statements through this proxy: the one place where text
            # is redacted before it is stored, whatever the table or column.
            writer = cast(sqlite3.Connection, _RedactingConnection(conn))
            if conn.in_transaction:
                # Inside `atomic()` (the lock is ours, so the open transaction is too): join it; the
                # outermost block commits, or rolls back everything if anything raises.
                yield writer
                return
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield writer
                except BaseException:
                    # SQLite may already have rolled back on its own (disk full, I/O error).
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                raise state_failure(f"state database {self.path}: write failed: {exc}", exc) from exc

    def atomic(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One transaction around several write methods: all of them are committed, or none.

        E.g. an order's new cumulative fill and the book change it causes: a crash between two
        separate commits would leave the fill counted in `orders` but missing from `positions`,
        and no later refresh would apply it again.
        """
        return self._transaction()

    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self._connection().execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise state_failure(f"state database {self.path}: read failed: {exc}", exc) from exc

    def _query_one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = self._query(sql, params)
        return rows[0] if rows else None

    def _now(self) -> str:
        return _iso(self._clock.now())

    # ------------------------------------------------------------------ order intents (OrderJournal)
    def record_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        """Insert a PENDING intent, or return the existing one unchanged (idempotent)."""
        now = self._now()
        with self._transaction() as conn:
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
            row = conn.execute(f"SELECT {_INTENT_COLUMNS} FROM order_intents WHERE client_order_id = ?",
                               (spec.client_order_id,)).fetchone()
        return _intent(row)

    def record_dry_run_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> bool:
        """Journal what a dry run would send under its own key, already DRY_RUN; False if journalled before."""
        now = self._now()
        with self._transaction() as conn:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO order_intents (client_order_id, symbol, side, qty, notional, order_type, "
                "time_in_force, signal_session, reason, state, broker_order_id, message, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, 'dry run: not sent', ?, ?)",
                (dry_run_key(spec.client_order_id), spec.symbol, Side(spec.side).value, spec.qty, spec.notional,
                 spec.order_type, spec.time_in_force, signal_session.isoformat(), reason, IntentState.DRY_RUN,
                 now, now),
            )
            return cursor.rowcount > 0

    def get_intent(self, client_order_id: str) -> IntentRecord | None:
        row = self._query_one(f"SELECT {_INTENT_COLUMNS} FROM order_intents WHERE client_order_id = ?",
                              (client_order_id,))
        return _intent(row) if row is not None else None

    def mark_intent(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
                    message: str = "") -> None:
        """Move an intent to `state`. A broker order id, once known, is kept when none is given.

        Only PENDING -> anything and final -> final are allowed: returning a settled intent to
        PENDING would make start-up reconciliation submit it again.
        """
        if state not in INTENT_STATES:
            raise ValueError(f"unknown intent state {state!r}; expected one of {sorted(INTENT_STATES)}")
        with self._transaction() as conn:
            row = conn.execute("SELECT state FROM order_intents WHERE client_order_id = ?",
                               (client_order_id,)).fetchone()
            if row is None:
                raise StateError(f"no order intent {client_order_id!r} in {self.path}")
            if state in IntentState.OPEN_STATES and row["state"] in IntentState.FINAL_STATES:
                raise StateError(f"intent {client_order_id} is already {row['state']}; it cannot become "
                                 f"{state} again (that would resubmit it)")
            conn.execute(
                "UPDATE order_intents SET state = ?, broker_order_id = COALESCE(?, broker_order_id), message = ?, "
                "updated_at = ? WHERE client_order_id = ?",
                (state, broker_order_id, message, self._now(), client_order_id),
            )

    def pending_intents(self) -> list[IntentRecord]:
        rows = self._query(f"SELECT {_INTENT_COLUMNS} FROM order_intents WHERE state = ? "
                           "ORDER BY created_at, rowid", (IntentState.PENDING,))
        return [_intent(row) for row in rows]

    def intents_for_session(self, session: date) -> list[IntentRecord]:
        rows = self._query(f"SELECT {_INTENT_COLUMNS} FROM order_intents WHERE signal_session = ? "
                           "ORDER BY created_at, rowid", (session.isoformat(),))
        return [_intent(row) for row in rows]

    def handled_signals(self, session: date, *, dry_run: bool = False) -> set[tuple[str, str]]:
        """(symbol, side) already acted on for this signal session. An ABANDONED intent does not count,
        nor does a PENDING one: its outcome is unknown (429, unanswered lookup), so the signal must
        reach the ExecutionAgent again, which looks the order up by client_order_id before any resend.
        A dry run's intent counts only for a dry run: it never makes a real decision look handled."""
        ignored = (IntentState.ABANDONED, IntentState.PENDING, "" if dry_run else IntentState.DRY_RUN)
        rows = self._query("SELECT DISTINCT symbol, side FROM order_intents WHERE signal_session = ? "
                           "AND state NOT IN (?, ?, ?)", (session.isoformat(), *ignored))
        return {(row["symbol"], row["side"]) for row in rows}

    # ------------------------------------------------------------------ orders and fills
    def record_order(self, order: BrokerOrder) -> float:
        """Upsert the broker's view of an order; returns the newly filled quantity (0.0 if none).

        The broker reports CUMULATIVE `filled_qty`/`filled_avg_price`; the increase over what is
        stored becomes one `fills` row priced at (new_cum*new_avg - old_cum*old_avg) / delta.
        Recording the same answer twice, or an older answer after a newer one, adds nothing.
        """
        now = self._now()
        with self._transaction() as conn:
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
            if stored is not None and _is_terminal(stored["status"]) and not order.status.is_terminal:
                # Terminal is final at the broker; an open status now can only be an out-of-order answer.
                status = stored["status"]
            conn.execute(
                f"INSERT INTO orders ({_ORDER_COLUMNS}, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET client_order_id = excluded.client_order_id, "
                "symbol = excluded.symbol, side = excluded.side, status = excluded.status, qty = excluded.qty, "
                "notional = excluded.notional, filled_qty = excluded.filled_qty, "
                "filled_avg_price = excluded.filled_avg_price, "
                "submitted_at = COALESCE(excluded.submitted_at, orders.submitted_at), "
                "order_type = excluded.order_type, updated_at = excluded.updated_at",
                (order.id, order.client_order_id, order.symbol, Side(order.side).value, status, order.qty,
                 order.notional, cum, avg, _iso(order.submitted_at) if order.submitted_at else None,
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

    def open_orders(self) -> list[BrokerOrder]:
        """Orders whose last stored status is not terminal."""
        marks = ", ".join("?" for _ in _TERMINAL_STATUSES)
        rows = self._query(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE status NOT IN ({marks}) "
                           "ORDER BY submitted_at, rowid", _TERMINAL_STATUSES)
        return [_order(row) for row in rows]

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        row = self._query_one(f"SELECT {_ORDER_COLUMNS} FROM orders WHERE client_order_id = ?", (client_order_id,))
        return _order(row) if row is not None else None

    def all_orders(self) -> list[BrokerOrder]:
        return [_order(row) for row in self._query(f"SELECT {_ORDER_COLUMNS} FROM orders ORDER BY rowid")]

    def fills_for(self, symbol: str) -> list[Fill]:
        rows = self._query("SELECT order_id, client_order_id, symbol, side, delta_qty, price, cumulative_qty, "
                           "recorded_at FROM fills WHERE symbol = ? ORDER BY id", (symbol,))
        return [Fill(row["order_id"], row["client_order_id"], row["symbol"], row["side"], float(row["delta_qty"]),
                     _float_or_none(row["price"]), float(row["cumulative_qty"]), _datetime(row["recorded_at"]))
                for row in rows]

    # ------------------------------------------------------------------ the position book
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
        now = self._now()
        with self._transaction() as conn:
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

    def book(self) -> dict[str, BookPosition]:
        return {row["symbol"]: _position(row) for row in self._query("SELECT * FROM positions ORDER BY symbol")}

    def set_position(self, symbol: str, qty: float, avg_entry_price: float, entry_session: date | None,
                     origin: str) -> None:
        """Write a position as given (adoption, or taking the broker's quantity). Keeps `opened_at`."""
        if origin not in ORIGINS:
            raise ValueError(f"unknown position origin {origin!r}; expected one of {sorted(ORIGINS)}")
        if abs(qty) < QTY_EPSILON:
            raise ValueError(f"{symbol}: a position of quantity {qty!r} is flat; use close_externally() instead")
        now = self._now()
        with self._transaction() as conn:
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
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            if row is None:
                return False
            self._close(conn, row, session, reason, exit_price=None, qty=float(row["qty"]))
        return True

    def closed_positions(self, symbol: str | None = None) -> list[ClosedPosition]:
        where, params = ("WHERE symbol = ?", (symbol,)) if symbol is not None else ("", ())
        rows = self._query(f"SELECT * FROM closed_positions {where} ORDER BY id", params)
        return [ClosedPosition(row["symbol"], float(row["qty"]), _float_or_none(row["entry_price"]),
                               _float_or_none(row["exit_price"]), _date_or_none(row["entry_session"]),
                               date.fromisoformat(row["exit_session"]), row["reason"], row["origin"],
                               _datetime(row["closed_at"])) for row in rows]

    # ------------------------------------------------------------------ ownership (core.ownership)
    def rebase_position(self, symbol: str, ratio: float, *, max_qty: float) -> BookPosition | None:
        """Re-base a position for a split of `ratio` new shares per old: quantities x ratio (capped at
        `max_qty`, what the broker holds), every stored price / ratio. Money amounts are unchanged."""
        if not (ratio > 0 and max_qty >= 0):
            raise ValueError(f"{symbol}: cannot re-base by ratio {ratio!r} capped at {max_qty!r}")
        with self._transaction() as conn:
            row = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
            if row is None:
                return None
            qty = min(float(row["qty"]) * ratio, max_qty)
            entry_price = row["entry_price"]
            conn.execute(
                "UPDATE positions SET qty = ?, avg_entry_price = ?, entry_price = ?, sold_qty = ?, updated_at = ? "
                "WHERE symbol = ?",
                (qty, float(row["avg_entry_price"]) / ratio, None if entry_price is None else float(entry_price) / ratio,
                 float(row["sold_qty"]) * ratio, self._now(), symbol),
            )
            updated = conn.execute("SELECT * FROM positions WHERE symbol = ?", (symbol,)).fetchone()
        return _position(updated)

    def reduce_position(self, symbol: str, qty: float) -> None:
        """Lower the daemon's own quantity to `qty` (> 0): the broker holds less than the book did and
        nothing of the daemon's explains it. Entry price and session are kept."""
        if not qty > QTY_EPSILON:
            raise ValueError(f"{symbol}: reduce to {qty!r}; a flat position is closed with close_externally()")
        with self._transaction() as conn:
            conn.execute("UPDATE positions SET qty = MIN(qty, ?), updated_at = ? WHERE symbol = ?",
                         (qty, self._now(), symbol))

    def seen_positions(self) -> dict[str, SeenPosition]:
        rows = self._query("SELECT symbol, qty, avg_entry_price, own_qty, seen_at FROM broker_positions_seen "
                           "ORDER BY symbol")
        return {row["symbol"]: SeenPosition(row["symbol"], float(row["qty"]), float(row["avg_entry_price"]),
                                            float(row["own_qty"]), _datetime(row["seen_at"])) for row in rows}

    def record_seen_position(self, symbol: str, qty: float, avg_entry_price: float, own_qty: float) -> None:
        """Remember the broker's position in `symbol` (and the daemon's own quantity); none held forgets it."""
        with self._transaction() as conn:
            if qty <= QTY_EPSILON and own_qty <= QTY_EPSILON:
                conn.execute("DELETE FROM broker_positions_seen WHERE symbol = ?", (symbol,))
                return
            conn.execute(
                "INSERT INTO broker_positions_seen (symbol, qty, avg_entry_price, own_qty, seen_at) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (symbol) DO UPDATE SET qty = excluded.qty, "
                "avg_entry_price = excluded.avg_entry_price, own_qty = excluded.own_qty, seen_at = excluded.seen_at",
                (symbol, float(qty), float(avg_entry_price), float(own_qty), self._now()),
            )

    def record_exit(self, symbol: str, session: date, reason: str) -> None:
        """Remember why the daemon exited `symbol` (e.g. "exit_stop_loss"), for cool-downs and the closed row."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO exits (symbol, session, reason, recorded_at) VALUES (?, ?, ?, ?)",
                         (symbol, session.isoformat(), reason, self._now()))

    def last_stop_loss_exit(self, symbol: str) -> date | None:
        row = self._query_one("SELECT MAX(session) AS session FROM exits WHERE symbol = ? AND reason = ?",
                              (symbol, STOP_LOSS_REASON))
        return _date_or_none(row["session"]) if row is not None else None

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
             reason, row["origin"], row["opened_at"], self._now()),
        )

    # ------------------------------------------------------------------ position snapshots
    def record_position_snapshot(self, positions: dict[str, PositionView]) -> int:
        """Store the broker's positions as one snapshot (an empty dict is a valid, empty snapshot)."""
        now = self._now()
        with self._transaction() as conn:
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
        rows = self._query("SELECT recorded_at, symbol, qty, avg_entry_price, market_value, current_price "
                           "FROM position_snapshots WHERE snapshot_id = (SELECT MAX(id) FROM snapshots) "
                           "ORDER BY symbol")
        return [dict(row) for row in rows]

    # ------------------------------------------------------------------ risk halts
    def add_halt(self, kind: str, reason: str, session: date) -> bool:
        """Start a halt; returns False if one of this kind is already active (it is kept as it was)."""
        with self._transaction() as conn:
            cursor = conn.execute("INSERT OR IGNORE INTO risk_halts (kind, reason, session, started_at) "
                                  "VALUES (?, ?, ?, ?)", (kind, reason, session.isoformat(), self._now()))
            return cursor.rowcount > 0

    def active_halts(self) -> list[Halt]:
        rows = self._query("SELECT kind, reason, session, started_at FROM risk_halts WHERE cleared_at IS NULL "
                           "ORDER BY id")
        return [_halt(row) for row in rows]

    def clear_halt(self, kind: str, *, by: str = "", reason: str = "") -> bool:
        """Clear the active halt of `kind`, recording who cleared it and why; False if none was active."""
        with self._transaction() as conn:
            cursor = conn.execute("UPDATE risk_halts SET cleared_at = ?, cleared_by = ?, clear_reason = ? "
                                  "WHERE kind = ? AND cleared_at IS NULL", (self._now(), by or None, reason or None, kind))
            return cursor.rowcount > 0

    def halts(self, recent: int = 20) -> list[Halt]:
        """Every active halt, then the `recent` most recently cleared ones (newest first)."""
        active = self._query("SELECT * FROM risk_halts WHERE cleared_at IS NULL ORDER BY id")
        cleared = self._query("SELECT * FROM risk_halts WHERE cleared_at IS NOT NULL ORDER BY cleared_at DESC, id DESC "
                              "LIMIT ?", (max(0, recent),))
        return [_halt(row) for row in [*active, *cleared]]

    def halt_kinds(self) -> set[str]:
        """Every kind of halt this database has ever recorded."""
        return {str(row["kind"]) for row in self._query("SELECT DISTINCT kind FROM risk_halts")}

    def clear_expired_halts(self, current_session: date) -> list[Halt]:
        """Clear session-scoped halts (daily_loss) started in an earlier session."""
        kinds = sorted(SESSION_SCOPED_HALTS)
        marks = ", ".join("?" for _ in kinds)
        where = f"cleared_at IS NULL AND kind IN ({marks}) AND session < ?"
        params = (*kinds, current_session.isoformat())
        with self._transaction() as conn:
            rows = conn.execute(f"SELECT kind, reason, session, started_at FROM risk_halts WHERE {where}",
                                params).fetchall()
            conn.execute(f"UPDATE risk_halts SET cleared_at = ?, cleared_by = 'daemon', "
                         f"clear_reason = 'the session it was about has ended' WHERE {where}", (self._now(), *params))
        return [_halt(row) for row in rows]

    # ------------------------------------------------------------------ cash flows
    def known_cash_flow_ids(self, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        known: set[str] = set()
        for start in range(0, len(wanted), 500):
            chunk = wanted[start:start + 500]
            marks = ", ".join("?" for _ in chunk)
            known |= {str(row["id"]) for row in self._query(f"SELECT id FROM cash_flows WHERE id IN ({marks})", chunk)}
        return known

    def apply_cash_flows(self, flows: list[CashFlow], *, equity: float, peak_before: float, peak_after: float,
                         checked_on: date) -> int:
        """Record newly seen flows and the equity peak they moved, in one transaction; returns how many were new."""
        now = self._now()
        with self._transaction() as conn:
            added = 0
            for flow in flows:
                cursor = conn.execute(
                    "INSERT OR IGNORE INTO cash_flows (id, kind, amount, on_date, occurred_at, equity_seen, peak_before, "
                    "peak_after, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (flow.id, flow.kind, flow.amount, flow.on.isoformat(),
                     _iso(flow.occurred_at) if flow.occurred_at else None, equity, peak_before, peak_after, now),
                )
                added += cursor.rowcount
            if flows:
                conn.execute("INSERT INTO kv (key, value) VALUES ('peak_equity', ?) "
                             "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (repr(peak_after),))
            conn.execute("INSERT INTO kv (key, value) VALUES ('cash_flows_checked_on', ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (checked_on.isoformat(),))
        return added

    def cash_flows_since(self, day: date) -> list[CashFlow]:
        """Flows dated on or after `day`, oldest first."""
        rows = self._query("SELECT id, kind, amount, on_date, occurred_at FROM cash_flows WHERE on_date >= ? "
                           "ORDER BY on_date, id", (day.isoformat(),))
        return [CashFlow(id=row["id"], kind=row["kind"], amount=float(row["amount"]),
                         on=date.fromisoformat(row["on_date"]),
                         occurred_at=_datetime(row["occurred_at"]) if row["occurred_at"] else None) for row in rows]

    # ------------------------------------------------------------------ iterations
    def record_iteration(self, *, n: int, started_at: datetime, duration_s: float, focus_symbols: list[str],
                         requests: dict[str, int], signals: int, submitted: int, rejected: int, status: str,
                         message: str = "") -> None:
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO iterations (n, started_at, duration_s, focus_symbols, requests, signals, submitted, "
                "rejected, status, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (n) DO UPDATE SET started_at = excluded.started_at, duration_s = excluded.duration_s, "
                "focus_symbols = excluded.focus_symbols, requests = excluded.requests, signals = excluded.signals, "
                "submitted = excluded.submitted, rejected = excluded.rejected, status = excluded.status, "
                "message = excluded.message",
                (n, _iso(started_at), float(duration_s), json.dumps(list(focus_symbols)),
                 json.dumps(dict(requests), sort_keys=True), signals, submitted, rejected, status, message),
            )

    def last_iteration(self) -> dict[str, Any] | None:
        row = self._query_one("SELECT * FROM iterations ORDER BY n DESC LIMIT 1")
        return _iteration(row) if row is not None else None

    def next_iteration_number(self) -> int:
        row = self._query_one("SELECT COALESCE(MAX(n), 0) + 1 AS n FROM iterations")
        return int(row["n"]) if row is not None else 1

    def iteration_requests(self, limit: int | None = None) -> list[dict[str, int]]:
        """Requests by API of each iteration, oldest first (the last `limit` if given)."""
        if limit is None:
            rows = self._query("SELECT requests FROM iterations ORDER BY n")
        else:
            rows = self._query("SELECT requests FROM (SELECT n, requests FROM iterations ORDER BY n DESC LIMIT ?) "
                               "ORDER BY n", (limit,))
        return [json.loads(row["requests"]) for row in rows]

    # ------------------------------------------------------------------ operations: equity history, dry runs
    def record_equity(self, *, session: date, equity: float, cash: float, last_equity: float | None,
                      source: str) -> None:
        """One point of the equity curve, as the broker reported it."""
        with self._transaction() as conn:
            conn.execute("INSERT INTO equity_history (recorded_at, session, equity, cash, last_equity, source) "
                         "VALUES (?, ?, ?, ?, ?, ?)",
                         (self._now(), session.isoformat(), float(equity), float(cash),
                          None if last_equity is None else float(last_equity), source))

    def mark_iteration_dry_run(self, n: int) -> None:
        with self._transaction() as conn:
            conn.execute("UPDATE iterations SET dry_run = 1 WHERE n = ?", (n,))

    # ------------------------------------------------------------------ key-value
    @overload
    def get_value(self, key: str) -> str | None: ...

    @overload
    def get_value(self, key: str, default: str) -> str: ...

    @overload
    def get_value(self, key: str, default: None) -> str | None: ...

    def get_value(self, key: str, default: str | None = None) -> str | None:
        row = self._query_one("SELECT value FROM kv WHERE key = ?", (key,))
        return str(row["value"]) if row is not None else default

    def set_value(self, key: str, value: str) -> None:
        with self._transaction() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, str(value)))

    # ------------------------------------------------------------------ API usage
    def add_api_usage(self, counts: dict[str, int], *, api: str | None = None) -> None:
        """Add request counts keyed by endpoint ("GET /v2/positions"). The API is inferred from the
        path unless given."""
        rows = [(api or api_of(endpoint), endpoint, int(count)) for endpoint, count in counts.items() if count]
        if not rows:
            return
        with self._transaction() as conn:
            conn.executemany("INSERT INTO api_usage (api, endpoint, count) VALUES (?, ?, ?) "
                             "ON CONFLICT (api, endpoint) DO UPDATE SET count = api_usage.count + excluded.count", rows)

    def api_usage(self) -> dict[str, int]:
        """Cumulative requests per endpoint."""
        rows = self._query("SELECT endpoint, SUM(count) AS count FROM api_usage GROUP BY endpoint ORDER BY endpoint")
        return {row["endpoint"]: int(row["count"]) for row in rows}

    def api_usage_by_api(self) -> dict[str, int]:
        rows = self._query("SELECT api, SUM(count) AS count FROM api_usage GROUP BY api ORDER BY api")
        return {row["api"]: int(row["count"]) for row in rows}


# ---------------------------------------------------------------------- helpers
class _RedactingConnection:
    """A connection whose `execute`/`executemany` redact every text parameter (see `redact`).

    Messages reach the store from broker answers (a rejected order's reason, a failed iteration's
    error), and a broker or proxy may echo the request with its key id and secret. Redacting here,
    rather than at each caller, covers every table and column, including ones added later.
    """

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, _redacted(params))

    def executemany(self, sql: str, rows: Iterable[Iterable[Any] | Mapping[str, Any]]) -> sqlite3.Cursor:
        return self._conn.executemany(sql, (_redacted(row) for row in rows))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def _redacted(params: Iterable[Any] | Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
    if isinstance(params, Mapping):
        return {name: redact(value) if isinstance(value, str) else value for name, value in params.items()}
    return tuple(redact(value) if isinstance(value, str) else value for value in params)


def api_of(endpoint: str) -> str:
    """'data' for Alpaca market-data paths, 'trading' for the rest."""
    path = endpoint.split(" ", 1)[-1]
    return "data" if path.startswith(("/v2/stocks", "/v1beta", "/v1/corporate-actions")) else "trading"


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise StateError(f"refusing to store a naive timestamp {moment!r}: state timestamps are UTC")
    return moment.astimezone(UTC).isoformat()


def _datetime(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _date_or_none(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def _float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


def _is_terminal(status: str) -> bool:
    return status in _TERMINAL_STATUSES


def _fill_price(old_cum: float, old_avg: float | None, new_cum: float, new_avg: float | None,
                delta: float) -> float | None:
    if new_avg is None:
        return None
    if old_cum <= 0.0 or old_avg is None:
        return float(new_avg)
    return (new_cum * new_avg - old_cum * old_avg) / delta


def _intent(row: sqlite3.Row) -> IntentRecord:
    return IntentRecord(
        client_order_id=row["client_order_id"], symbol=row["symbol"], side=row["side"],
        qty=_float_or_none(row["qty"]), notional=_float_or_none(row["notional"]), order_type=row["order_type"],
        time_in_force=row["time_in_force"], signal_session=date.fromisoformat(row["signal_session"]),
        reason=row["reason"], state=row["state"], broker_order_id=row["broker_order_id"], message=row["message"],
    )


def _order(row: sqlite3.Row) -> BrokerOrder:
    try:
        side, status = Side(row["side"]), OrderStatus(row["status"])
    except ValueError as exc:
        raise StateError(f"order {row['client_order_id']} has an unreadable side/status in the state database: "
                         f"{exc}") from exc
    return BrokerOrder(
        id=row["id"], client_order_id=row["client_order_id"], symbol=row["symbol"], side=side, status=status,
        qty=_float_or_none(row["qty"]), notional=_float_or_none(row["notional"]), filled_qty=float(row["filled_qty"]),
        filled_avg_price=_float_or_none(row["filled_avg_price"]),
        submitted_at=_datetime(row["submitted_at"]) if row["submitted_at"] else None, order_type=row["order_type"],
    )


def _position(row: sqlite3.Row) -> BookPosition:
    return BookPosition(symbol=row["symbol"], qty=float(row["qty"]), avg_entry_price=float(row["avg_entry_price"]),
                        entry_session=_date_or_none(row["entry_session"]), origin=row["origin"])


def _halt(row: sqlite3.Row) -> Halt:
    keys = row.keys()
    cleared_at = row["cleared_at"] if "cleared_at" in keys else None
    return Halt(kind=row["kind"], reason=row["reason"], session=date.fromisoformat(row["session"]),
                started_at=_datetime(row["started_at"]), cleared_at=_datetime(cleared_at) if cleared_at else None,
                cleared_by=row["cleared_by"] if "cleared_by" in keys else None,
                clear_reason=row["clear_reason"] if "clear_reason" in keys else None)


def _iteration(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["focus_symbols"] = json.loads(record["focus_symbols"])
    record["requests"] = json.loads(record["requests"])
    return record


__all__ = ["LATEST_VERSION", "BookPosition", "ClosedPosition", "Fill", "Halt", "StateStore", "api_of"]
