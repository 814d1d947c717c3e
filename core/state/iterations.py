"""The loop's iterations and the requests they cost.

- `iterations`: n PK, started_at, duration_s, focus_symbols JSON, requests JSON, signals, submitted,
  rejected, status, message, dry_run (1 for an iteration of a dry run: nothing sent).
- `api_usage`: (api, endpoint) PK, count: cumulative request counts.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime
from typing import Any

from core.state.database import Database, iso_utc


class IterationLog:
    def __init__(self, db: Database) -> None:
        self._db = db

    def record(self, *, n: int, started_at: datetime, duration_s: float, focus_symbols: list[str],
               requests: dict[str, int], signals: int, submitted: int, rejected: int, status: str,
               message: str = "", dry_run: bool = False) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO iterations (n, started_at, duration_s, focus_symbols, requests, signals, submitted, "
                "rejected, status, message, dry_run) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (n) DO UPDATE SET started_at = excluded.started_at, duration_s = excluded.duration_s, "
                "focus_symbols = excluded.focus_symbols, requests = excluded.requests, signals = excluded.signals, "
                "submitted = excluded.submitted, rejected = excluded.rejected, status = excluded.status, "
                "message = excluded.message, dry_run = excluded.dry_run",
                (n, iso_utc(started_at), float(duration_s), json.dumps(list(focus_symbols)),
                 json.dumps(dict(requests), sort_keys=True), signals, submitted, rejected, status, message,
                 int(dry_run)),
            )

    def last(self) -> dict[str, Any] | None:
        row = self._db.query_one("SELECT * FROM iterations ORDER BY n DESC LIMIT 1")
        return _iteration(row) if row is not None else None

    def next_number(self) -> int:
        row = self._db.query_one("SELECT COALESCE(MAX(n), 0) + 1 AS n FROM iterations")
        return int(row["n"]) if row is not None else 1

    def requests(self, limit: int | None = None) -> list[dict[str, int]]:
        """Requests by API of each iteration, oldest first (the last `limit` if given)."""
        if limit is None:
            rows = self._db.query("SELECT requests FROM iterations ORDER BY n")
        else:
            rows = self._db.query("SELECT requests FROM (SELECT n, requests FROM iterations ORDER BY n DESC LIMIT ?) "
                                  "ORDER BY n", (limit,))
        return [json.loads(row["requests"]) for row in rows]


class ApiUsage:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(self, counts: dict[str, int], *, api: str | None = None) -> None:
        """Add request counts keyed by endpoint ("GET /v2/positions"). The API is inferred from the
        path unless given."""
        rows = [(api or api_of(endpoint), endpoint, int(count)) for endpoint, count in counts.items() if count]
        if not rows:
            return
        with self._db.transaction() as conn:
            conn.executemany("INSERT INTO api_usage (api, endpoint, count) VALUES (?, ?, ?) "
                             "ON CONFLICT (api, endpoint) DO UPDATE SET count = api_usage.count + excluded.count", rows)

    def by_endpoint(self) -> dict[str, int]:
        """Cumulative requests per endpoint."""
        rows = self._db.query("SELECT endpoint, SUM(count) AS count FROM api_usage GROUP BY endpoint ORDER BY endpoint")
        return {row["endpoint"]: int(row["count"]) for row in rows}

    def by_api(self) -> dict[str, int]:
        rows = self._db.query("SELECT api, SUM(count) AS count FROM api_usage GROUP BY api ORDER BY api")
        return {row["api"]: int(row["count"]) for row in rows}


def api_of(endpoint: str) -> str:
    """'data' for Alpaca market-data paths, 'trading' for the rest."""
    path = endpoint.split(" ", 1)[-1]
    return "data" if path.startswith(("/v2/stocks", "/v1beta", "/v1/corporate-actions")) else "trading"


def _iteration(row: sqlite3.Row) -> dict[str, Any]:
    record = dict(row)
    record["focus_symbols"] = json.loads(record["focus_symbols"])
    record["requests"] = json.loads(record["requests"])
    return record
