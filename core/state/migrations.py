"""Versioned schema migrations for the state database, tracked with `PRAGMA user_version`.

`MIGRATIONS` is append-only: a released migration is never edited, because a database that has
already applied it would silently keep the old shape. A schema change is a new entry with the
next version number.

All pending migrations run in ONE `BEGIN IMMEDIATE` transaction together with the `user_version`
bump (SQLite DDL and `user_version` are transactional): a crash or error mid-way leaves the
database exactly at its old version, which the previous code still understands. The version is
re-read after the write lock is taken, so two processes opening the same file cannot both apply
a migration.

A database whose version is newer than this code knows was written by a newer trading-daemon;
it is refused (StateError) rather than used, since old code could misread or damage it.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from core.domain.errors import StateError
from core.state.failures import state_failure


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    description: str
    script: str


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "order journal: intents, broker orders, fills", """
        CREATE TABLE order_intents (
            client_order_id TEXT PRIMARY KEY,
            symbol          TEXT NOT NULL,
            side            TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
            qty             REAL,
            notional        REAL,
            order_type      TEXT NOT NULL,
            time_in_force   TEXT NOT NULL,
            signal_session  TEXT NOT NULL,
            reason          TEXT NOT NULL,
            state           TEXT NOT NULL,
            broker_order_id TEXT,
            message         TEXT NOT NULL DEFAULT '',
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL
        );
        CREATE INDEX order_intents_state ON order_intents (state);
        CREATE INDEX order_intents_session ON order_intents (signal_session);

        CREATE TABLE orders (
            id               TEXT PRIMARY KEY,
            client_order_id  TEXT NOT NULL UNIQUE,
            symbol           TEXT NOT NULL,
            side             TEXT NOT NULL CHECK (side IN ('buy', 'sell')),
            status           TEXT NOT NULL,
            qty              REAL,
            notional         REAL,
            filled_qty       REAL NOT NULL DEFAULT 0,
            filled_avg_price REAL,
            order_type       TEXT NOT NULL DEFAULT 'market',
            submitted_at     TEXT,
            updated_at       TEXT NOT NULL
        );
        CREATE INDEX orders_status ON orders (status);

        CREATE TABLE fills (
            id              INTEGER PRIMARY KEY,
            order_id        TEXT NOT NULL,
            client_order_id TEXT NOT NULL,
            symbol          TEXT NOT NULL,
            side            TEXT NOT NULL,
            delta_qty       REAL NOT NULL CHECK (delta_qty > 0),
            price           REAL,
            cumulative_qty  REAL NOT NULL,
            recorded_at     TEXT NOT NULL,
            -- a cumulative quantity is reached once per order: a second row would double-count
            UNIQUE (order_id, cumulative_qty)
        );
        CREATE INDEX fills_symbol ON fills (symbol);
    """),
    Migration(2, "position book: positions, closed positions, exit reasons, snapshots", """
        CREATE TABLE positions (
            symbol          TEXT PRIMARY KEY,
            qty             REAL NOT NULL,
            avg_entry_price REAL NOT NULL,
            entry_session   TEXT,
            entry_price     REAL,
            origin          TEXT NOT NULL CHECK (origin IN ('daemon', 'adopted', 'flagged')),
            sold_qty        REAL NOT NULL DEFAULT 0,
            sold_value      REAL NOT NULL DEFAULT 0,
            opened_at       TEXT NOT NULL,
            updated_at      TEXT NOT NULL
        );

        CREATE TABLE closed_positions (
            id            INTEGER PRIMARY KEY,
            symbol        TEXT NOT NULL,
            qty           REAL NOT NULL,
            entry_price   REAL,
            exit_price    REAL,
            entry_session TEXT,
            exit_session  TEXT NOT NULL,
            reason        TEXT NOT NULL,
            origin        TEXT,
            opened_at     TEXT,
            closed_at     TEXT NOT NULL
        );
        CREATE INDEX closed_positions_symbol ON closed_positions (symbol);

        CREATE TABLE exits (
            id          INTEGER PRIMARY KEY,
            symbol      TEXT NOT NULL,
            session     TEXT NOT NULL,
            reason      TEXT NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX exits_symbol_reason ON exits (symbol, reason, session);

        CREATE TABLE snapshots (
            id          INTEGER PRIMARY KEY,
            recorded_at TEXT NOT NULL
        );
        CREATE TABLE position_snapshots (
            snapshot_id     INTEGER NOT NULL REFERENCES snapshots (id),
            recorded_at     TEXT NOT NULL,
            symbol          TEXT NOT NULL,
            qty             REAL NOT NULL,
            avg_entry_price REAL NOT NULL,
            market_value    REAL NOT NULL,
            current_price   REAL NOT NULL,
            PRIMARY KEY (snapshot_id, symbol)
        );
    """),
    Migration(3, "operations: risk halts, iterations, key-value settings, API usage", """
        CREATE TABLE risk_halts (
            id         INTEGER PRIMARY KEY,
            kind       TEXT NOT NULL,
            reason     TEXT NOT NULL,
            session    TEXT NOT NULL,
            started_at TEXT NOT NULL,
            cleared_at TEXT
        );
        -- at most one ACTIVE halt per kind, enforced by the database rather than by callers
        CREATE UNIQUE INDEX risk_halts_one_active ON risk_halts (kind) WHERE cleared_at IS NULL;

        CREATE TABLE iterations (
            n             INTEGER PRIMARY KEY,
            started_at    TEXT NOT NULL,
            duration_s    REAL NOT NULL,
            focus_symbols TEXT NOT NULL,
            requests      TEXT NOT NULL,
            signals       INTEGER NOT NULL,
            submitted     INTEGER NOT NULL,
            rejected      INTEGER NOT NULL,
            status        TEXT NOT NULL,
            message       TEXT NOT NULL DEFAULT ''
        );

        CREATE TABLE kv (
            key   TEXT PRIMARY KEY,
            value TEXT NOT NULL
        );

        CREATE TABLE api_usage (
            api      TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            count    INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (api, endpoint)
        );
    """),
    Migration(4, "ownership: the broker's position last seen per symbol; the book keeps only the daemon's own", """
        -- The broker's quantity and avg_entry_price as last seen, with the daemon's own quantity at that
        -- moment: a later change the daemon's fills do not explain (a split, the user's trade) is
        -- explained against it (core.domain.ownership).
        CREATE TABLE broker_positions_seen (
            symbol          TEXT PRIMARY KEY,
            qty             REAL NOT NULL,
            avg_entry_price REAL NOT NULL,
            own_qty         REAL NOT NULL,
            seen_at         TEXT NOT NULL
        );
        -- A 'flagged' row held the broker's quantity of shares the daemon never traded: they are not
        -- the daemon's, so they leave its book and become the first observation of that symbol.
        INSERT INTO broker_positions_seen (symbol, qty, avg_entry_price, own_qty, seen_at)
            SELECT symbol, qty, avg_entry_price, 0, updated_at FROM positions WHERE origin = 'flagged';
        DELETE FROM positions WHERE origin = 'flagged';
    """),
    Migration(5, "cash flows applied to the equity peak; who cleared a halt and why", """
        -- one row per deposit/withdrawal the daemon has netted out: the broker's activity id makes
        -- applying it twice impossible
        CREATE TABLE cash_flows (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            amount      REAL NOT NULL,
            on_date     TEXT NOT NULL,
            occurred_at TEXT,
            equity_seen REAL NOT NULL,
            peak_before REAL NOT NULL,
            peak_after  REAL NOT NULL,
            recorded_at TEXT NOT NULL
        );
        CREATE INDEX cash_flows_on_date ON cash_flows (on_date);

        ALTER TABLE risk_halts ADD COLUMN cleared_by TEXT;
        ALTER TABLE risk_halts ADD COLUMN clear_reason TEXT;
    """),
    Migration(6, "pending exits: an exit risk approved stays committed until filled, gone or refused for good", """
        CREATE TABLE pending_exits (
            id               INTEGER PRIMARY KEY,
            symbol           TEXT NOT NULL,
            decision_session TEXT NOT NULL,
            reason           TEXT NOT NULL,
            signal_price     REAL NOT NULL,
            zscore           REAL,
            state            TEXT NOT NULL CHECK (state IN ('active', 'done', 'given_up')),
            attempts         INTEGER NOT NULL DEFAULT 0,
            last_refusal     TEXT NOT NULL DEFAULT '',
            outcome          TEXT NOT NULL DEFAULT '',
            created_at       TEXT NOT NULL,
            updated_at       TEXT NOT NULL
        );
        -- at most one exit in pursuit per symbol, enforced by the database rather than by callers
        CREATE UNIQUE INDEX pending_exits_one_active ON pending_exits (symbol) WHERE state = 'active';
    """),
    Migration(7, "operations: equity history for the status page's curve; dry-run iterations marked", """
        -- Equity as the broker reported it whenever the daemon read the account anyway (a decision,
        -- the daily summary after the close): never an estimate. source: 'decision' or 'close'.
        CREATE TABLE equity_history (
            id          INTEGER PRIMARY KEY,
            recorded_at TEXT NOT NULL,
            session     TEXT NOT NULL,
            equity      REAL NOT NULL,
            cash        REAL NOT NULL,
            last_equity REAL,
            source      TEXT NOT NULL
        );
        CREATE INDEX equity_history_recorded_at ON equity_history (recorded_at);

        ALTER TABLE iterations ADD COLUMN dry_run INTEGER NOT NULL DEFAULT 0;
    """),
)

LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def split_statements(script: str) -> list[str]:
    """Split a script into single statements for `execute()`.

    `executescript()` cannot be used: it COMMITs any open transaction first, which would break
    the all-or-nothing migration. `sqlite3.complete_statement` knows about string literals and
    trigger bodies, so a `;` inside them does not end a statement.
    """
    statements: list[str] = []
    buffer = ""
    for piece in script.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if _strip_comments(buffer).strip(" \t\r\n;"):
                statements.append(buffer.strip())
            buffer = ""
    if _strip_comments(buffer).strip(" \t\r\n;"):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {buffer.strip()[:80]!r}")
    return statements


def _strip_comments(sql: str) -> str:
    # Used only to recognise a chunk that holds nothing but whole-line `--` comments.
    return "\n".join(line for line in sql.splitlines() if not line.strip().startswith("--"))


def migrate(conn: sqlite3.Connection, target: int | None = None, *, name: str = "state database") -> int:
    """Bring the database to `target` (default: latest). Returns the version it ends at.

    `conn` must be in autocommit mode (`isolation_level=None`) so this function owns the
    transaction. `target` below the latest exists for tests that build an older database.
    """
    latest = MIGRATIONS[-1].version
    target = latest if target is None else target
    if not 0 <= target <= latest:
        raise ValueError(f"target version {target} is outside 0..{latest}")
    _check_not_newer(schema_version(conn), latest, name)
    if schema_version(conn) >= target:
        return schema_version(conn)
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        _check_not_newer(current, latest, name)
        for migration in MIGRATIONS:
            if current < migration.version <= target:
                try:
                    for statement in split_statements(migration.script):
                        conn.execute(statement)
                except sqlite3.Error as exc:
                    raise state_failure(f"{name}: migration {migration.version} ({migration.description}) "
                                        f"failed: {exc}; the database was left at version {current}", exc) from exc
                conn.execute(f"PRAGMA user_version = {int(migration.version)}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return schema_version(conn)


def _check_not_newer(version: int, latest: int, name: str) -> None:
    if version > latest:
        raise StateError(
            f"{name} is at schema version {version}, but this trading-daemon only knows versions up to "
            f"{latest}: it was written by a newer release. Run that release (or newer), or point "
            "STATE_DIR at another directory; this database was left untouched."
        )
    if version < 0:
        raise StateError(f"{name} has an invalid schema version {version}; it is not a trading-daemon database")
