"""The state database's plumbing: one SQLite file, `STATE_DIR/trading.db` (stdlib sqlite3), its
connection, transactions and the redaction of everything written. The tables are read and written
by one module per aggregate (core/state/*.py); `core.state.store.StateStore` puts them together.

Durability and safety
- WAL journal with `synchronous=FULL`: every commit is fsynced before `commit` returns, so an
  intent written before a submit is on disk even if the process or the machine dies right after.
- Autocommit: each write method is its own transaction and is committed before it returns;
  multi-row writes (an order and its fill, a closing sell and its `closed_positions` row) use one
  `BEGIN IMMEDIATE` transaction so a crash never leaves half of them.
- The directory is created 0700 and the database with its `-wal`/`-shm` files end up 0600 (a
  0077 umask while they are created, then a chmod, which also fixes files made by older code).
- No secret is ever stored: no table has a column for keys or credentials, and every text value
  written goes through `core.runtime.logging_setup.redact` first (`RedactingConnection`, the one door of
  every write), because a broker's error body can echo the request, key included.
- All timestamps are ISO-8601 UTC from the injected clock; sessions are ISO dates.
- The schema is versioned by `core.state.migrations` (`PRAGMA user_version`); opening migrates it.
- `kv.instance_id` and `kv.instance_created_at` are this state directory's identity in every
  client_order_id (core/domain/order_ids.py): written once when the database is first opened, never changed.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import quote

from core.domain.clock import Clock
from core.domain.errors import StateError
from core.domain.order_ids import is_instance_id, new_instance_id
from core.runtime.logging_setup import redact
from core.state.failures import state_failure
from core.state.migrations import migrate
from core.state.migrations import schema_version as read_schema_version

DB_NAME = "trading.db"
DIR_MODE = 0o700
FILE_MODE = 0o600
DEFAULT_BUSY_TIMEOUT_S = 5.0


class Database:
    """The daemon's read-write connection, guarded by a lock: the daemon is single-threaded, but a
    helper thread (the watchdog, a signal handler) must not interleave statements of another
    thread's transaction. Opening it migrates the schema and fixes the instance id."""

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
                             [("instance_id", new_instance_id()), ("instance_created_at", self.now())])
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
        return instance, parse_timestamp(str(rows["instance_created_at"]))

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

    @property
    def schema_version(self) -> int:
        with self._lock:
            return read_schema_version(self.connection())

    # ------------------------------------------------------------------ statements
    def connection(self) -> sqlite3.Connection:
        """The open connection itself (for PRAGMAs and checks); writes go through `transaction()`."""
        if self._conn is None:
            raise StateError(f"state database {self.path} is closed")
        return self._conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (`BEGIN IMMEDIATE` ... `COMMIT`, rolled back if anything raises).
        Inside another one it joins it: the outermost block commits, or rolls back everything."""
        with self._lock:
            conn = self.connection()
            # Every write method runs its statements through this proxy: the one place where text
            # is redacted before it is stored, whatever the table or column.
            writer = cast(sqlite3.Connection, RedactingConnection(conn))
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

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            try:
                return self.connection().execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise state_failure(f"state database {self.path}: read failed: {exc}", exc) from exc

    def query_one(self, sql: str, params: Iterable[Any] = ()) -> sqlite3.Row | None:
        rows = self.query(sql, params)
        return rows[0] if rows else None

    def now(self) -> str:
        """The clock's now, as stored."""
        return iso_utc(self._clock.now())


def connect_read_only(path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> sqlite3.Connection:
    """A `mode=ro` connection: no migration, no write, no lock, so it is safe beside a running daemon
    (WAL readers never block the writer). Rows come back as `sqlite3.Row`."""
    # A reader may have to create the -wal/-shm files of a cleanly closed database: keep them
    # private like every other state file.
    previous = os.umask(0o077)
    # No -wal file: no connection has the database open (the last one to close checkpoints and deletes
    # it), so nothing can change under the reader and `immutable=1` is safe. It also keeps a reader from
    # creating -wal/-shm files there: run as root (sudo status), they would be root's and stop the daemon.
    # With a -wal file, a writer may be active: plain mode=ro, which shares its -shm.
    options = "mode=ro" if Path(f"{path}-wal").exists() else "mode=ro&immutable=1"
    try:
        conn = sqlite3.connect(f"file:{quote(str(Path(path).resolve()))}?{options}", uri=True,
                               timeout=busy_timeout_s, check_same_thread=False)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()  # the first read opens -wal/-shm
        except BaseException:
            conn.close()
            raise
        return conn
    finally:
        os.umask(previous)


class RedactingConnection:
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


# ---------------------------------------------------------------------- stored values
def iso_utc(moment: datetime) -> str:
    """A timestamp as stored: ISO-8601 in UTC. A naive one is refused (whose time zone would it be?)."""
    if moment.tzinfo is None:
        raise StateError(f"refusing to store a naive timestamp {moment!r}: state timestamps are UTC")
    return moment.astimezone(UTC).isoformat()


def parse_timestamp(text: str) -> datetime:
    return datetime.fromisoformat(text)


def date_or_none(text: str | None) -> date | None:
    return date.fromisoformat(text) if text else None


def float_or_none(value: Any) -> float | None:
    return float(value) if value is not None else None


__all__ = ["DB_NAME", "DEFAULT_BUSY_TIMEOUT_S", "DIR_MODE", "FILE_MODE", "Database", "RedactingConnection",
           "connect_read_only", "date_or_none", "float_or_none", "iso_utc", "parse_timestamp"]
