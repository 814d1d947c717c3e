"""The daemon's operational events, defined once, and the port they are emitted through.

The orchestrator and the reconciler emit typed, immutable events through an `EventSink`;
notifications, metrics, the in-memory figures of the status page and the equity history are
consumers of that one stream. Nothing here knows any consumer.

The contract of `emit()`: it never raises into the loop, never blocks it and never makes a
broker request. `EventBus` enforces the first for every consumer (a failing consumer is logged
and skipped); consumers keep the rest (the notifier only enqueues, for instance).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import ClassVar, Protocol

import structlog

log = structlog.get_logger("events")


# ---------------------------------------------------------------------- trading
@dataclass(frozen=True, slots=True)
class OrderFilled:
    """A new (partial) fill of one of the daemon's orders."""

    KIND: ClassVar[str] = "order_filled"
    at: datetime
    symbol: str
    side: str
    qty: float                 # this fill's quantity (the increase of the cumulative filled quantity)
    price: float
    reason: str                # the signal's reason: entry_zscore, exit_stop_loss, ...
    client_order_id: str
    order_status: str          # filled, partially_filled
    cumulative_qty: float


@dataclass(frozen=True, slots=True)
class PositionExited:
    """A position of the daemon's book was closed by its own sell; the round trip's P&L."""

    KIND: ClassVar[str] = "position_exited"
    at: datetime
    symbol: str
    qty: float
    entry_price: float | None
    exit_price: float | None
    reason: str
    entry_session: date | None
    exit_session: date

    @property
    def pnl(self) -> float | None:
        if self.entry_price is None or self.exit_price is None:
            return None
        return (self.exit_price - self.entry_price) * self.qty

    @property
    def pnl_pct(self) -> float | None:
        if self.entry_price is None or self.exit_price is None or self.entry_price <= 0:
            return None
        return self.exit_price / self.entry_price - 1.0


@dataclass(frozen=True, slots=True)
class HaltTripped:
    KIND: ClassVar[str] = "halt_tripped"
    at: datetime
    kind: str
    reason: str
    session: date


@dataclass(frozen=True, slots=True)
class HaltCleared:
    KIND: ClassVar[str] = "halt_cleared"
    at: datetime
    kind: str
    reason: str


@dataclass(frozen=True, slots=True)
class ExitBlocked:
    """An exit of the daemon's cannot go out until the owner acts (e.g. their own open buy order in the
    symbol: the broker refuses a sell against it as a potential wash trade). Once per symbol and session."""

    KIND: ClassVar[str] = "exit_blocked"
    at: datetime
    symbol: str
    reason: str
    session: date


# ---------------------------------------------------------------------- lifecycle
@dataclass(frozen=True, slots=True)
class StartupRefused:
    """Reconcile-first start-up found differences it cannot explain; the daemon does not trade."""

    KIND: ClassVar[str] = "startup_refused"
    at: datetime
    message: str
    differences: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class DaemonStarted:
    KIND: ClassVar[str] = "started"
    at: datetime
    mode: str                  # paper, live, simulated
    dry_run: bool
    version: str
    positions: int
    open_orders: int
    active_halts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class DaemonStopped:
    KIND: ClassVar[str] = "stopped"
    at: datetime
    reason: str
    iterations: int


@dataclass(frozen=True, slots=True)
class DaemonFatal:
    """The daemon is exiting on an error (systemd restarts it unless the exit code says not to)."""

    KIND: ClassVar[str] = "fatal"
    at: datetime
    error: str
    error_type: str


# ---------------------------------------------------------------------- the day
@dataclass(frozen=True, slots=True)
class PositionLine:
    symbol: str
    qty: float
    market_value: float | None
    unrealised_pnl: float | None


@dataclass(frozen=True, slots=True)
class DailySummary:
    KIND: ClassVar[str] = "daily_summary"
    at: datetime
    session: date
    equity: float | None
    cash: float | None
    day_pnl: float | None      # equity against the previous close's equity (the broker's last_equity)
    positions: tuple[PositionLine, ...]
    orders_submitted: int
    orders_filled: int
    requests: tuple[tuple[str, int], ...]   # (api, requests since the previous summary)

    @property
    def day_pnl_pct(self) -> float | None:
        if self.day_pnl is None or self.equity is None or self.equity - self.day_pnl <= 0:
            return None
        return self.day_pnl / (self.equity - self.day_pnl)


# ---------------------------------------------------------------------- internal figures (not notified)
@dataclass(frozen=True, slots=True)
class AccountObserved:
    """The daemon read the account anyway (a decision, the daily summary): equity for the curve."""

    KIND: ClassVar[str] = "account_observed"
    at: datetime
    session: date
    equity: float
    cash: float
    last_equity: float
    source: str                # decision, close


@dataclass(frozen=True, slots=True)
class PositionMark:
    symbol: str
    qty: float
    avg_entry_price: float
    current_price: float
    market_value: float


@dataclass(frozen=True, slots=True)
class IterationCompleted:
    KIND: ClassVar[str] = "iteration_completed"
    at: datetime
    number: int
    duration_s: float
    requests: tuple[tuple[str, int], ...]   # (api, count) of this iteration
    signals: int
    submitted: int
    rejected: int
    dry_run: bool
    market_open: bool
    positions: tuple[PositionMark, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class IterationFailed:
    KIND: ClassVar[str] = "iteration_failed"
    at: datetime
    error: str
    error_type: str


@dataclass(frozen=True, slots=True)
class MarketStateChanged:
    KIND: ClassVar[str] = "market_state"
    at: datetime
    is_open: bool
    next_change: datetime | None


Event = (OrderFilled | PositionExited | HaltTripped | HaltCleared | StartupRefused | DaemonStarted | DaemonStopped
         | DaemonFatal | DailySummary | AccountObserved | IterationCompleted | IterationFailed | MarketStateChanged
         | ExitBlocked)
NOTIFIABLE_KINDS: tuple[str, ...] = tuple(cls.KIND for cls in (
    OrderFilled, PositionExited, HaltTripped, HaltCleared, StartupRefused, DaemonStarted, DaemonStopped, DaemonFatal,
    DailySummary, ExitBlocked))


# ---------------------------------------------------------------------- the port
class EventSink(Protocol):
    def emit(self, event: Event) -> None:
        """Hand an event over. Must not raise, block, or make a broker request."""
        ...


class NullEventSink:
    """The default: events go nowhere (tests, the backtest, a daemon with nothing configured)."""

    def emit(self, event: Event) -> None:
        return None


class EventBus:
    """Fans each event out to its consumers, in order; a consumer that raises is logged and skipped."""

    def __init__(self, consumers: Iterable[EventSink] = ()) -> None:
        self._consumers: list[EventSink] = list(consumers)
        self.failures = 0

    def subscribe(self, consumer: EventSink) -> None:
        self._consumers.append(consumer)

    def emit(self, event: Event) -> None:
        for consumer in self._consumers:
            try:
                consumer.emit(event)
            except Exception as exc:  # noqa: BLE001 - a consumer's bug must never reach the trading loop
                self.failures += 1
                log.warning("event_consumer_failed", consumer=type(consumer).__name__, kind=event.KIND,
                            error=f"{type(exc).__name__}: {exc}"[:300])
