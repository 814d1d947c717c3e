"""Small named values (table `kv`: key PK, value TEXT), e.g. the equity peak (`peak_equity`) and this
state directory's `instance_id` / `instance_created_at` (written once, by core.state.database)."""

from __future__ import annotations

from typing import overload

from core.state.database import Database


class KeyValues:
    def __init__(self, db: Database) -> None:
        self._db = db

    @overload
    def get(self, key: str) -> str | None: ...

    @overload
    def get(self, key: str, default: str) -> str: ...

    @overload
    def get(self, key: str, default: None) -> str | None: ...

    def get(self, key: str, default: str | None = None) -> str | None:
        row = self._db.query_one("SELECT value FROM kv WHERE key = ?", (key,))
        return str(row["value"]) if row is not None else default

    def set(self, key: str, value: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("INSERT INTO kv (key, value) VALUES (?, ?) "
                         "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, str(value)))
