"""Typed objects passed between the stages. The orchestrator hands these from agent to agent;
agents never import each other.

    bars -> Signal -> (SignalValidator) -> Signal -> (RiskAgent) -> OrderTarget | Rejection
         -> (ExecutionAgent) -> OrderSpec -> BrokerOrder

Frozen dataclasses with slots: cheap to build in the backtest's per-session loop, impossible to
mutate by accident between stages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Any


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class SignalReason(StrEnum):
    ENTRY_OVERSOLD = "entry_oversold"
    EXIT_MEAN_REVERTED = "exit_mean_reverted"
    EXIT_STOP_LOSS = "exit_stop_loss"
    EXIT_MAX_HOLDING = "exit_max_holding"
    # A plug-in strategy's own rules, when neither oversold nor mean-reverted describes them.
    ENTRY_SIGNAL = "entry_signal"
    EXIT_SIGNAL = "exit_signal"

    @property
    def is_exit(self) -> bool:
        return self.value.startswith("exit_")


@dataclass(frozen=True, slots=True)
class Signal:
    symbol: str
    side: Side
    price: float            # the close of the bar the signal was computed on
    bar_time: datetime      # that bar's timestamp (midnight New York, UTC)
    session: date           # that bar's session date
    zscore: float           # the strategy's score (lower = more attractive); the z-score strategy's z
    reason: SignalReason


@dataclass(frozen=True, slots=True)
class Rejection:
    symbol: str
    side: Side
    stage: str              # "validator", "risk", "execution"
    reason: str
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountView:
    equity: float
    cash: float
    buying_power: float
    last_equity: float
    fractional_trading: bool = True
    trading_blocked: bool = False


@dataclass(frozen=True, slots=True)
class PositionView:
    symbol: str
    qty: float
    avg_entry_price: float
    market_value: float
    current_price: float

    @property
    def is_fractional(self) -> bool:
        return abs(self.qty - round(self.qty)) > 1e-9


class OrderStatus(StrEnum):
    NEW = "new"
    ACCEPTED = "accepted"
    PENDING_NEW = "pending_new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    DONE_FOR_DAY = "done_for_day"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REPLACED = "replaced"
    PENDING_CANCEL = "pending_cancel"
    PENDING_REPLACE = "pending_replace"
    REJECTED = "rejected"
    SUSPENDED = "suspended"
    STOPPED = "stopped"
    CALCULATED = "calculated"
    ACCEPTED_FOR_BIDDING = "accepted_for_bidding"
    HELD = "held"
    PENDING_REVIEW = "pending_review"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.EXPIRED,
                       OrderStatus.REPLACED, OrderStatus.REJECTED})


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker reports it, converted from the SDK model at the adapter boundary."""

    id: str
    client_order_id: str
    symbol: str
    side: Side
    status: OrderStatus
    qty: float | None
    notional: float | None
    filled_qty: float
    filled_avg_price: float | None
    submitted_at: datetime | None = None
    order_type: str = "market"

    @property
    def is_open(self) -> bool:
        return not self.status.is_terminal

    def reserved_notional(self, price: float) -> float:
        """Cash an open buy still holds back: unfilled qty at `price`, or the unfilled notional."""
        if self.side is not Side.BUY or not self.is_open:
            return 0.0
        if self.notional is not None:
            filled_value = self.filled_qty * (self.filled_avg_price or price)
            return max(0.0, self.notional - filled_value)
        return max(0.0, (self.qty or 0.0) - self.filled_qty) * price


@dataclass(frozen=True, slots=True)
class Fill:
    """One execution of (part of) an order: `qty` shares at `price`.

    The one fill type of the project: the daemon's journal (`fills_for`), the simulated exchange and
    the backtest's broker all record this. `price` is NaN only for a journal row whose broker answer
    carried no average price.
    """

    order_id: str
    client_order_id: str
    symbol: str
    side: Side
    qty: float
    price: float
    at: datetime                        # when it was recorded (journal, simulated exchange) or happened
    session: date | None = None         # the session it filled in, where the recorder knows it (backtest)
    cumulative_qty: float | None = None  # the order's filled quantity after it, where known (journal)
    commission: float = 0.0             # dollars paid on it (the backtest's cost model)

    @property
    def value(self) -> float:
        return self.qty * self.price


@dataclass(frozen=True, slots=True)
class AssetInfo:
    symbol: str
    tradable: bool
    fractionable: bool


@dataclass(frozen=True, slots=True)
class PortfolioSnapshot:
    """What risk needs to know about the account, fetched once per iteration by the orchestrator."""

    account: AccountView
    positions: dict[str, PositionView]
    open_orders: tuple[BrokerOrder, ...]
    entry_sessions: dict[str, date] = field(default_factory=dict)   # from the state store
    entry_prices: dict[str, float] = field(default_factory=dict)
    # The daemon's own quantity per symbol (its book). None: every share at the broker is its own
    # (the backtest). Otherwise exits sell at most this, never the user's shares next to it.
    own_qty: dict[str, float] | None = None
    # client_order_ids of the open orders that are the daemon's own (its prefix and instance). None: every
    # open order is its own (the backtest). Another's open sell never blocks the daemon's exit.
    own_order_ids: frozenset[str] | None = None

    def open_order_symbols(self) -> set[str]:
        return {order.symbol for order in self.open_orders}


@dataclass(frozen=True, slots=True)
class OrderTarget:
    """A sized, risk-approved order to place. `qty` is whole for whole-share targets."""

    symbol: str
    side: Side
    qty: float
    notional: float
    price: float
    fractional: bool
    tier: str | None
    signal: Signal
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RiskDecision:
    approved: tuple[OrderTarget, ...]
    rejected: tuple[Rejection, ...]
    halts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderSpec:
    """Exactly what is sent to the broker. Built by the ExecutionAgent, logged in dry-run."""

    client_order_id: str
    symbol: str
    side: Side
    qty: float | None = None
    notional: float | None = None
    order_type: str = "market"
    time_in_force: str = "day"
    limit_price: float | None = None

    def describe(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "client_order_id": self.client_order_id, "symbol": self.symbol, "side": self.side.value,
            "type": self.order_type, "time_in_force": self.time_in_force,
        }
        if self.qty is not None:
            body["qty"] = self.qty
        if self.notional is not None:
            body["notional"] = self.notional
        if self.limit_price is not None:
            body["limit_price"] = self.limit_price
        return body


@dataclass(frozen=True, slots=True)
class ClockView:
    timestamp: datetime
    is_open: bool
    next_open: datetime
    next_close: datetime
    # The host's clock just before the answering request left and just after its answer arrived:
    # the skew between the broker and the host is measured against their midpoint.
    sent_at: datetime | None = None
    received_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class MarketDay:
    """One day of the broker's market calendar: a session and its open and close (UTC)."""

    session: date
    open: datetime
    close: datetime


@dataclass(frozen=True, slots=True)
class LatestPrice:
    """The broker's own latest price of a symbol (a trade, or a quote's midpoint): the independent
    price an order's size is checked against before it is sent (core/domain/price_guard.py)."""

    symbol: str
    price: float
    at: datetime
    source: str             # "trade" or "quote"


@dataclass(frozen=True, slots=True)
class CashFlow:
    """Money moved into (+) or out of (-) the account: not a trading gain or loss.

    From Alpaca's account activities: CSD (deposit), CSW (withdrawal), JNLC (cash journal).
    `occurred_at` is when it happened if the broker says (the activity id's time stamp), else None.
    """

    id: str
    kind: str
    amount: float
    on: date
    occurred_at: datetime | None = None
