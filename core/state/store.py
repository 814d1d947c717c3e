"""The daemon's durable state: one SQLite database, `STATE_DIR/trading.db`, behind one facade.

`StateStore` is what the rest of the code uses (`core.domain.ports.OrderJournal` and more). It is composed
of one object per aggregate, each in its own module with its tables:

| module | aggregate | tables |
|---|---|---|
| `database.py` | connection, transactions, redaction of every write, migrations, file modes | all |
| `intents.py` | `IntentJournal`: intents written before every submit | `order_intents` |
| `orders.py` | `OrderLog`: the broker's orders and the fills they add up to | `orders`, `fills` |
| `book.py` | `PositionBook`: the daemon's own positions, closed positions, exit reasons | `positions`, `closed_positions`, `exits` |
| `ownership_baseline.py` | `OwnershipBaseline`: the broker's positions as last seen | `broker_positions_seen` |
| `account_history.py` | `AccountHistory`: position snapshots, the equity curve | `snapshots`, `position_snapshots`, `equity_history` |
| `halts.py` | `HaltLog`: risk halts and who cleared them | `risk_halts` |
| `cash_flow_ledger.py` | `CashFlowLedger`: deposits and withdrawals netted out of the peak | `cash_flows` |
| `iterations.py` | `IterationLog`, `ApiUsage`: the loop's iterations and request counts | `iterations`, `api_usage` |
| `kv.py` | `KeyValues`: small named values (the equity peak, the instance id) | `kv` |
| `pending_exits.py` | `PendingExitTable`: exits still pursued (used by core/exit_commitments.py) | `pending_exits` |
| `readonly.py` | `StateReader`: a read-only view for `status`, the page and the metrics | all, read-only |

The schema's history is `core.state.migrations` (append-only; `PRAGMA user_version`).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterable
from datetime import date, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, overload

from core.domain.clock import Clock
from core.domain.models import BrokerOrder, CashFlow, Fill, OrderSpec, PositionView
from core.domain.ownership import SeenPosition
from core.domain.ports import IntentRecord
from core.state.account_history import AccountHistory
from core.state.book import (
    DAEMON_EXIT_REASON,
    EXTERNAL_CLOSE_REASON,
    ORIGINS,
    STOP_LOSS_REASON,
    BookPosition,
    ClosedPosition,
    PositionBook,
)
from core.state.cash_flow_ledger import CashFlowLedger
from core.state.database import DB_NAME, DEFAULT_BUSY_TIMEOUT_S, DIR_MODE, FILE_MODE, Database
from core.state.halts import SESSION_SCOPED_HALTS, Halt, HaltLog
from core.state.intents import INTENT_STATES, IntentJournal
from core.state.iterations import ApiUsage, IterationLog, api_of
from core.state.kv import KeyValues
from core.state.migrations import LATEST_VERSION
from core.state.orders import QTY_EPSILON, OrderLog
from core.state.ownership_baseline import OwnershipBaseline


class StateStore:
    """SQLite-backed `OrderJournal` plus the daemon's book, halts, iterations and counters: a facade
    over the aggregates (the module docstring lists them), all on one `Database` connection."""

    def __init__(self, state_dir: Path, clock: Clock, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.database = Database(state_dir, clock, busy_timeout_s=busy_timeout_s)
        self.state_dir = self.database.state_dir
        self.path = self.database.path
        self.instance_id = self.database.instance_id
        self.instance_created_at = self.database.instance_created_at
        self._intents = IntentJournal(self.database)
        self._orders = OrderLog(self.database)
        self._book = PositionBook(self.database)
        self._baseline = OwnershipBaseline(self.database)
        self._account = AccountHistory(self.database)
        self._halts = HaltLog(self.database)
        self._cash_flows = CashFlowLedger(self.database)
        self._iterations = IterationLog(self.database)
        self._usage = ApiUsage(self.database)
        self._values = KeyValues(self.database)

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.database.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    @property
    def schema_version(self) -> int:
        return self.database.schema_version

    def atomic(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        """One transaction around several write methods: all of them are committed, or none.

        E.g. an order's new cumulative fill and the book change it causes: a crash between two
        separate commits would leave the fill counted in `orders` but missing from `positions`,
        and no later refresh would apply it again.
        """
        return self.database.transaction()

    # ------------------------------------------------------------------ order intents (OrderJournal)
    def record_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        """Insert a PENDING intent, or return the existing one unchanged (idempotent)."""
        return self._intents.record(spec, signal_session, reason)

    def get_intent(self, client_order_id: str) -> IntentRecord | None:
        return self._intents.get(client_order_id)

    def mark_intent(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
                    message: str = "") -> None:
        """Move an intent to `state` (only PENDING -> anything and final -> final; see IntentJournal.mark)."""
        self._intents.mark(client_order_id, state, broker_order_id=broker_order_id, message=message)

    def pending_intents(self) -> list[IntentRecord]:
        return self._intents.pending()

    def intents_for_session(self, session: date) -> list[IntentRecord]:
        return self._intents.for_session(session)

    def record_dry_run_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> bool:
        """Journal what a dry run would send under its own key, already DRY_RUN; False if journalled before."""
        return self._intents.record_dry_run(spec, signal_session, reason)

    def handled_signals(self, session: date, *, dry_run: bool = False) -> set[tuple[str, str]]:
        """(symbol, side) already acted on for this signal session (not ABANDONED, not PENDING; a dry
        run's intents only for a dry run)."""
        return self._intents.handled_signals(session, dry_run=dry_run)

    # ------------------------------------------------------------------ orders and fills
    def record_order(self, order: BrokerOrder) -> float:
        """Upsert the broker's view of an order; returns the newly filled quantity (0.0 if none)."""
        return self._orders.record(order)

    def open_orders(self) -> list[BrokerOrder]:
        """Orders whose last stored status is not terminal."""
        return self._orders.open()

    def order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        return self._orders.by_client_id(client_order_id)

    def all_orders(self) -> list[BrokerOrder]:
        return self._orders.all()

    def orders_submitted_between(self, start: datetime, end: datetime) -> list[BrokerOrder]:
        return self._orders.submitted_between(start, end)

    def fills_for(self, symbol: str) -> list[Fill]:
        return self._orders.fills_for(symbol)

    # ------------------------------------------------------------------ the position book
    def apply_fill(self, symbol: str, side: str, delta_qty: float, price: float, session: date) -> BookPosition | None:
        """Apply a fill to the book. Returns the position after it, or None when it is (now) flat."""
        return self._book.apply_fill(symbol, side, delta_qty, price, session)

    def book(self) -> dict[str, BookPosition]:
        return self._book.positions()

    def set_position(self, symbol: str, qty: float, avg_entry_price: float, entry_session: date | None,
                     origin: str) -> None:
        """Write a position as given (adoption, or taking the broker's quantity). Keeps `opened_at`."""
        self._book.set_position(symbol, qty, avg_entry_price, entry_session, origin)

    def close_externally(self, symbol: str, session: date, reason: str = EXTERNAL_CLOSE_REASON) -> bool:
        """Drop a position that is gone at the broker; returns False if the book did not hold it."""
        return self._book.close_externally(symbol, session, reason)

    def closed_positions(self, symbol: str | None = None) -> list[ClosedPosition]:
        return self._book.closed_positions(symbol)

    def rebase_position(self, symbol: str, ratio: float, *, max_qty: float) -> BookPosition | None:
        """Re-base a position for a split of `ratio` new shares per old (capped at `max_qty`)."""
        return self._book.rebase_position(symbol, ratio, max_qty=max_qty)

    def reduce_position(self, symbol: str, qty: float) -> None:
        """Lower the daemon's own quantity to `qty` (> 0); entry price and session are kept."""
        self._book.reduce_position(symbol, qty)

    def record_exit(self, symbol: str, session: date, reason: str) -> None:
        """Remember why the daemon exited `symbol` (e.g. "exit_stop_loss"), for cool-downs and the closed row."""
        self._book.record_exit(symbol, session, reason)

    def last_stop_loss_exit(self, symbol: str) -> date | None:
        return self._book.last_stop_loss_exit(symbol)

    # ------------------------------------------------------------------ ownership (core.domain.ownership)
    def seen_positions(self) -> dict[str, SeenPosition]:
        return self._baseline.seen_positions()

    def record_seen_position(self, symbol: str, qty: float, avg_entry_price: float, own_qty: float) -> None:
        """Remember the broker's position in `symbol` (and the daemon's own quantity); none held forgets it."""
        self._baseline.record_seen_position(symbol, qty, avg_entry_price, own_qty)

    # ------------------------------------------------------------------ snapshots and equity
    def record_position_snapshot(self, positions: dict[str, PositionView]) -> int:
        """Store the broker's positions as one snapshot (an empty dict is a valid, empty snapshot)."""
        return self._account.record_position_snapshot(positions)

    def latest_snapshot(self) -> list[dict[str, Any]]:
        return self._account.latest_snapshot()

    def record_equity(self, *, session: date, equity: float, cash: float, last_equity: float | None,
                      source: str) -> None:
        """One point of the equity curve, as the broker reported it."""
        self._account.record_equity(session=session, equity=equity, cash=cash, last_equity=last_equity,
                                    source=source)

    # ------------------------------------------------------------------ risk halts
    def add_halt(self, kind: str, reason: str, session: date) -> bool:
        """Start a halt; returns False if one of this kind is already active (it is kept as it was)."""
        return self._halts.add(kind, reason, session)

    def active_halts(self) -> list[Halt]:
        return self._halts.active()

    def clear_halt(self, kind: str, *, by: str = "", reason: str = "") -> bool:
        """Clear the active halt of `kind`, recording who cleared it and why; False if none was active."""
        return self._halts.clear(kind, by=by, reason=reason)

    def halts(self, recent: int = 20) -> list[Halt]:
        """Every active halt, then the `recent` most recently cleared ones (newest first)."""
        return self._halts.recent(recent)

    def clear_expired_halts(self, current_session: date) -> list[Halt]:
        """Clear session-scoped halts (daily_loss) started in an earlier session."""
        return self._halts.clear_expired(current_session)

    # ------------------------------------------------------------------ cash flows
    def known_cash_flow_ids(self, ids: Iterable[str]) -> set[str]:
        return self._cash_flows.known_ids(ids)

    def apply_cash_flows(self, flows: list[CashFlow], *, equity: float, peak_before: float, peak_after: float,
                         checked_on: date) -> int:
        """Record newly seen flows and the equity peak they moved, in one transaction; returns how many were new."""
        return self._cash_flows.apply(flows, equity=equity, peak_before=peak_before, peak_after=peak_after,
                                      checked_on=checked_on)

    def cash_flows_since(self, day: date) -> list[CashFlow]:
        """Flows dated on or after `day`, oldest first."""
        return self._cash_flows.since(day)

    # ------------------------------------------------------------------ iterations
    def record_iteration(self, *, n: int, started_at: datetime, duration_s: float, focus_symbols: list[str],
                         requests: dict[str, int], signals: int, submitted: int, rejected: int, status: str,
                         message: str = "", dry_run: bool = False) -> None:
        self._iterations.record(n=n, started_at=started_at, duration_s=duration_s, focus_symbols=focus_symbols,
                                requests=requests, signals=signals, submitted=submitted, rejected=rejected,
                                status=status, message=message, dry_run=dry_run)

    def last_iteration(self) -> dict[str, Any] | None:
        return self._iterations.last()

    def next_iteration_number(self) -> int:
        return self._iterations.next_number()

    def iteration_requests(self, limit: int | None = None) -> list[dict[str, int]]:
        """Requests by API of each iteration, oldest first (the last `limit` if given)."""
        return self._iterations.requests(limit)

    # ------------------------------------------------------------------ key-value
    @overload
    def get_value(self, key: str) -> str | None: ...

    @overload
    def get_value(self, key: str, default: str) -> str: ...

    @overload
    def get_value(self, key: str, default: None) -> str | None: ...

    def get_value(self, key: str, default: str | None = None) -> str | None:
        return self._values.get(key, default)

    def set_value(self, key: str, value: str) -> None:
        self._values.set(key, value)

    # ------------------------------------------------------------------ API usage
    def add_api_usage(self, counts: dict[str, int], *, api: str | None = None) -> None:
        """Add request counts keyed by endpoint ("GET /v2/positions"). The API is inferred from the
        path unless given."""
        self._usage.add(counts, api=api)

    def api_usage(self) -> dict[str, int]:
        """Cumulative requests per endpoint."""
        return self._usage.by_endpoint()

    def api_usage_by_api(self) -> dict[str, int]:
        return self._usage.by_api()


__all__ = ["DAEMON_EXIT_REASON", "DB_NAME", "DEFAULT_BUSY_TIMEOUT_S", "DIR_MODE", "EXTERNAL_CLOSE_REASON",
           "FILE_MODE", "INTENT_STATES", "LATEST_VERSION", "ORIGINS", "QTY_EPSILON", "SESSION_SCOPED_HALTS",
           "STOP_LOSS_REASON", "BookPosition", "ClosedPosition", "Fill", "Halt", "StateStore", "api_of"]
