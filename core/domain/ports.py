"""Narrow interfaces the agents depend on. `AlpacaGateway` implements them for the live daemon;
the backtest's in-process broker implements them too, so no agent knows which one it talks to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Protocol

from core.domain.models import (
    AccountView,
    AssetInfo,
    BrokerOrder,
    CashFlow,
    ClockView,
    LatestPrice,
    MarketDay,
    OrderSpec,
    PositionView,
)

if TYPE_CHECKING:
    from core.domain.ownership import SplitEvent
    from core.domain.request_stats import RequestStats

RawBars = dict[str, list[dict[str, Any]]]


class BarsAnswer(dict[str, list[dict[str, Any]]]):
    """`RawBars`, plus how many HTTP requests the answer took (URL batches x pages, retries included),
    so that the DataAgent counts requests rather than calls."""

    def __init__(self, bars: dict[str, list[dict[str, Any]]] | None = None, *, requests: int = 1) -> None:
        super().__init__(bars or {})
        self.requests = requests


class MarketDataPort(Protocol):
    def get_daily_bars(self, symbols: list[str], start: datetime, end: datetime | None = None) -> RawBars: ...


class BrokerPort(Protocol):
    def get_account(self) -> AccountView: ...

    def get_fractional_trading(self) -> bool: ...

    def get_positions(self) -> dict[str, PositionView]: ...

    def get_open_orders(self) -> list[BrokerOrder]: ...

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None: ...

    def submit_order(self, spec: OrderSpec) -> BrokerOrder: ...

    def cancel_order(self, order_id: str) -> None: ...

    def get_asset(self, symbol: str) -> AssetInfo: ...

    # The clock and the calendar: the broker's answer decides whether the market is open and which
    # session is in progress (core/market_clock.py); the exchange calendar only cross-checks it.
    def get_clock(self) -> ClockView: ...

    def get_calendar(self, start: date, end: date) -> list[MarketDay]: ...


class TradingGateway(BrokerPort, MarketDataPort, Protocol):
    """Everything the live daemon asks the broker (`core.broker.alpaca_gateway.AlpacaGateway`).

    The orchestrator, the reconciler and the cash-flow tracker are wired with this type, so each
    call they make is checked here rather than probed at run time."""

    @property
    def stats(self) -> RequestStats: ...

    def get_orders(self, status: str = "open", symbols: list[str] | None = None,
                   after: datetime | None = None, limit: int = 500) -> list[BrokerOrder]: ...

    def get_latest_prices(self, symbols: list[str]) -> dict[str, LatestPrice]: ...

    def get_cash_flows(self, after: date) -> list[CashFlow]: ...

    def get_splits(self, symbols: list[str], start: date, end: date) -> list[SplitEvent]: ...


class IntentState:
    """Life of an order intent in the journal. Written BEFORE the submit, so a crash between the
    write and the broker's answer leaves a PENDING intent that start-up reconciliation resolves."""

    PENDING = "pending"        # written, submit outcome unknown (may or may not be at the broker)
    SUBMITTED = "submitted"    # the broker has it (acknowledged or found by client_order_id)
    REJECTED = "rejected"      # definitive broker rejection; never retried blindly
    SKIPPED = "skipped"        # decided not to send (zero shares, not tradable...)
    DRY_RUN = "dry_run"        # logged, never sent
    ABANDONED = "abandoned"    # pending at reconciliation and surely absent at the broker, not resent

    OPEN_STATES = frozenset({PENDING})
    FINAL_STATES = frozenset({SUBMITTED, REJECTED, SKIPPED, DRY_RUN, ABANDONED})


@dataclass(frozen=True, slots=True)
class IntentRecord:
    client_order_id: str
    symbol: str
    side: str
    qty: float | None
    notional: float | None
    order_type: str
    time_in_force: str
    signal_session: date
    reason: str
    state: str
    broker_order_id: str | None = None
    message: str = ""


class OrderJournal(Protocol):
    """Durable record of what the daemon decided to send and what became of it."""

    def get_intent(self, client_order_id: str) -> IntentRecord | None: ...

    def record_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        """Insert a PENDING intent, or return the existing one unchanged (idempotent)."""
        ...

    def mark_intent(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
                    message: str = "") -> None: ...

    def record_order(self, order: BrokerOrder) -> float:
        """Upsert the broker's view of an order; returns the new fill quantity from cumulative filled_qty."""
        ...

    def pending_intents(self) -> list[IntentRecord]: ...

    def record_dry_run_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> bool:
        """Journal what a dry run would send, under its own key (`core.domain.order_ids.dry_run_key`), already
        DRY_RUN (never PENDING: nothing may ever resubmit it); False if it was journalled before."""
        ...
