"""Read-only readers of a daemon's state database, for assertions (never through the StateStore
under test, so a test sees what is on disk)."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from core.domain.clock import Clock
from core.state.store import DB_NAME, StateStore


class StateDb:
    """Plain rows of `state_dir/trading.db`, each query on its own read-only connection."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / DB_NAME

    def rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.path}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]

    def intents(self) -> dict[str, dict[str, Any]]:
        """Every order intent by client_order_id, in the order they were written."""
        return {row["client_order_id"]: row for row in self.rows("SELECT * FROM order_intents ORDER BY rowid")}

    def iterations(self) -> list[dict[str, Any]]:
        """Every iteration row, oldest first, `started_at` as a datetime."""
        rows = self.rows("SELECT * FROM iterations ORDER BY n")
        for row in rows:
            row["started_at"] = datetime.fromisoformat(row["started_at"])
        return rows

    def fills(self) -> list[dict[str, Any]]:
        return self.rows("SELECT * FROM fills ORDER BY id")


def set_instance_id(state_dir: Path, clock: Clock, instance_id: str) -> None:
    """Create the state database (if new) and give it `instance_id` (a test fixture's, not a random one)."""
    StateStore(state_dir, clock).close()
    with contextlib.closing(sqlite3.connect(Path(state_dir) / DB_NAME)) as conn, conn:
        conn.execute("UPDATE kv SET value = ? WHERE key = 'instance_id'", (instance_id,))
