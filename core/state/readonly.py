"""A read-only view of a state database, for `status`, the status page and the metrics.

It opens `trading.db` with SQLite's `mode=ro` (and `immutable=1` when no -wal file exists, so it
creates no side files; see `connect_read_only`): no migration, no write, no lock, so it is safe
beside a running daemon (WAL readers never block the writer) and on a stopped daemon's directory,
a copy or a backup. A database older than this code is read as it is: a table or column a later
migration adds is reported as absent, not created. Each query returns plain dicts.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from types import TracebackType
from typing import Any

from core.domain.errors import StateError
from core.state.database import DB_NAME, connect_read_only
from core.state.orders import TERMINAL_STATUSES


class StateReader:
    def __init__(self, state_dir: Path, *, busy_timeout_s: float = 5.0) -> None:
        self.state_dir = Path(state_dir)
        self.path = self.state_dir / DB_NAME
        if not self.path.is_file():
            raise StateError(f"no state database at {self.path}")
        try:
            self._conn = connect_read_only(self.path, busy_timeout_s=busy_timeout_s)
            self._tables = {row[0]: self._columns(row[0]) for row in self._conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise StateError(f"cannot read the state database {self.path}: {exc}") from exc

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._conn.execute(f"PRAGMA table_info({table})")}

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> StateReader:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def has(self, table: str, column: str | None = None) -> bool:
        return table in self._tables and (column is None or column in self._tables[table])

    def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        try:
            return [dict(row) for row in self._conn.execute(sql, params).fetchall()]
        except sqlite3.Error as exc:
            raise StateError(f"state database {self.path}: read failed: {exc}") from exc

    # ------------------------------------------------------------------ queries
    def schema_version(self) -> int:
        return int(self._rows("PRAGMA user_version")[0]["user_version"])

    def book(self) -> list[dict[str, Any]]:
        if not self.has("positions"):
            return []
        return self._rows("SELECT symbol, qty, avg_entry_price, entry_session, origin, opened_at FROM positions "
                          "ORDER BY symbol")

    def outside_shares(self) -> list[dict[str, Any]]:
        """Shares the broker held, when last seen, beyond the daemon's own (core.domain.ownership): never traded by it."""
        if not self.has("broker_positions_seen"):
            return []
        return self._rows("SELECT symbol, qty, own_qty, qty - own_qty AS outside_qty, seen_at FROM broker_positions_seen "
                          "WHERE qty - own_qty > 1e-9 ORDER BY symbol")

    def latest_position_snapshot(self) -> list[dict[str, Any]]:
        if not self.has("position_snapshots"):
            return []
        return self._rows("SELECT recorded_at, symbol, qty, avg_entry_price, market_value, current_price "
                          "FROM position_snapshots WHERE snapshot_id = (SELECT MAX(id) FROM snapshots) ORDER BY symbol")

    def open_orders(self) -> list[dict[str, Any]]:
        if not self.has("orders"):
            return []
        marks = ", ".join("?" for _ in TERMINAL_STATUSES)
        return self._rows(f"SELECT * FROM orders WHERE status NOT IN ({marks}) ORDER BY submitted_at, rowid",
                          TERMINAL_STATUSES)

    def recent_orders(self, limit: int) -> list[dict[str, Any]]:
        if not self.has("orders"):
            return []
        return self._rows("SELECT * FROM orders ORDER BY rowid DESC LIMIT ?", (limit,))

    def order_counts_by_status(self) -> dict[str, int]:
        if not self.has("orders"):
            return {}
        return {r["status"]: int(r["n"]) for r in self._rows("SELECT status, COUNT(*) AS n FROM orders GROUP BY status")}

    def recent_fills(self, limit: int) -> list[dict[str, Any]]:
        if not self.has("fills"):
            return []
        return self._rows("SELECT f.*, i.reason AS reason FROM fills f LEFT JOIN order_intents i "
                          "ON i.client_order_id = f.client_order_id ORDER BY f.id DESC LIMIT ?", (limit,))

    def recent_closed_positions(self, limit: int) -> list[dict[str, Any]]:
        if not self.has("closed_positions"):
            return []
        return self._rows("SELECT * FROM closed_positions ORDER BY id DESC LIMIT ?", (limit,))

    def realised_pnl(self) -> float:
        if not self.has("closed_positions"):
            return 0.0
        rows = self._rows("SELECT COALESCE(SUM((exit_price - entry_price) * qty), 0) AS pnl FROM closed_positions "
                          "WHERE exit_price IS NOT NULL AND entry_price IS NOT NULL")
        return float(rows[0]["pnl"])

    def active_halts(self) -> list[dict[str, Any]]:
        if not self.has("risk_halts"):
            return []
        return self._rows("SELECT kind, reason, session, started_at FROM risk_halts WHERE cleared_at IS NULL "
                          "ORDER BY id")

    def recent_halts(self, recent: int) -> list[dict[str, Any]]:
        """Every active halt, then the `recent` most recently cleared ones (newest first), as `HaltLog.recent`."""
        if not self.has("risk_halts"):
            return []
        active = self._rows("SELECT * FROM risk_halts WHERE cleared_at IS NULL ORDER BY id")
        cleared = self._rows("SELECT * FROM risk_halts WHERE cleared_at IS NOT NULL "
                             "ORDER BY cleared_at DESC, id DESC LIMIT ?", (max(0, recent),))
        return [*active, *cleared]

    def recent_iterations(self, limit: int) -> list[dict[str, Any]]:
        if not self.has("iterations"):
            return []
        dry = "dry_run" if self.has("iterations", "dry_run") else "0 AS dry_run"
        return self._rows(f"SELECT n, started_at, duration_s, requests, signals, submitted, rejected, status, "
                          f"message, {dry} FROM iterations ORDER BY n DESC LIMIT ?", (limit,))

    def last_ok_iteration_at(self) -> str | None:
        if not self.has("iterations"):
            return None
        rows = self._rows("SELECT started_at FROM iterations WHERE status = 'ok' ORDER BY n DESC LIMIT 1")
        return rows[0]["started_at"] if rows else None

    def api_usage(self) -> list[dict[str, Any]]:
        if not self.has("api_usage"):
            return []
        return self._rows("SELECT api, endpoint, count FROM api_usage ORDER BY count DESC, endpoint")

    def value(self, key: str) -> str | None:
        if not self.has("kv"):
            return None
        rows = self._rows("SELECT value FROM kv WHERE key = ?", (key,))
        return str(rows[0]["value"]) if rows else None

    def equity_history(self, limit: int) -> list[dict[str, Any]]:
        """The last `limit` points, oldest first."""
        if not self.has("equity_history"):
            return []
        return self._rows("SELECT * FROM (SELECT recorded_at, session, equity, cash, last_equity, source FROM "
                          "equity_history ORDER BY id DESC LIMIT ?) ORDER BY recorded_at", (limit,))

    def last_fill_at(self) -> str | None:
        if not self.has("fills"):
            return None
        rows = self._rows("SELECT MAX(recorded_at) AS at FROM fills")
        return rows[0]["at"]
