"""The ports of the decision pipeline (core/decision_pipeline.py), and their non-live implementations.

The pipeline's steps are the same code in the daemon and in the backtest. What differs is behind
these ports; each has a live adapter (the state database, the broker) and a backtest one (in memory)
or a null one (a concern the backtest does not have):

| port          | live                                         | backtest                                 |
|---------------|----------------------------------------------|------------------------------------------|
| `RiskLedger`  | `StateStore`: stop-loss exits and halts,     | `MemoryRiskLedger`: stop-loss exits; no  |
|               | durable; a halt stays until it is cleared    | halt is kept (re-judged every session)   |
| `EquityPeak`  | `CashFlowTracker`: the peak net of deposits  | `RunningPeak`: the highest equity seen   |
|               | and withdrawals (one activities request)     | (a backtest has no cash flows)           |
| `BrokerWatch` | `LiveBrokerWatch`: the account event, another| `NO_WATCH`                               |
|               | daemon's open orders halt entries, which open| (every open order is the backtest's own) |
|               | orders are the daemon's own, an exit blocked |                                          |
|               | by another's open buy is told once a session |                                          |
| `SendGate`    | `BrokerPriceGate`: the broker's latest price | `OPEN_GATE`: the bars are the broker's   |
|               | confirms each order (core/domain/price_guard.py)    | prices, there is no second source        |
| `ExitPursuit` | `ExitCommitments`: an approved exit is       | `NO_PURSUIT`: the backtest broker's      |
|               | pursued until filled or refused for good     | refusals are final; signals decide again |

The live adapters are in core/live_decision_ports.py (and the modules named above).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Protocol

from core.domain.models import AccountView, BrokerOrder, OrderTarget, PositionView, Rejection

if TYPE_CHECKING:
    from agents.execution_agent import ExecutionReport


# ---------------------------------------------------------------------------------------------
# What the pipeline reads of the daemon's own book
# ---------------------------------------------------------------------------------------------
class OwnPosition(Protocol):
    """A position as the daemon's own book holds it: its own shares, their average price, the fill session."""

    @property
    def qty(self) -> float: ...

    @property
    def avg_entry_price(self) -> float: ...

    @property
    def entry_session(self) -> date | None: ...


class HaltRecord(Protocol):
    @property
    def kind(self) -> str: ...

    @property
    def reason(self) -> str: ...


# ---------------------------------------------------------------------------------------------
# Ports
# ---------------------------------------------------------------------------------------------
class RiskLedger(Protocol):
    """What risk remembers between decisions: stop-loss exits (for the cooldown) and halts."""

    def last_stop_loss_exit(self, symbol: str) -> date | None: ...

    def record_exit(self, symbol: str, session: date, reason: str) -> None: ...

    def active_halts(self) -> Sequence[HaltRecord]: ...

    def add_halt(self, kind: str, reason: str, session: date) -> bool:
        """Record a halt that starts now; False when one of that kind is already active (or none is kept)."""
        ...

    def clear_halt(self, kind: str, *, by: str = "", reason: str = "") -> bool: ...


@dataclass(frozen=True, slots=True)
class FlowFigures:
    peak: float                 # the equity peak to judge the drawdown against
    flows_today: float          # net deposits (+) / withdrawals (-) since the previous close
    unknown: str | None = None  # why the flows could not be read (then both figures are unreliable)


class EquityPeak(Protocol):
    """The equity peak and the day's net cash flows, brought up to date with the account just read."""

    def update(self, account: AccountView, now: datetime) -> FlowFigures: ...


class BrokerWatch(Protocol):
    """Observers of what a decision read from the broker (events, another daemon's orders), and which
    open orders are the daemon's own (None: all of them)."""

    def account_read(self, account: AccountView, session: date) -> None: ...

    def open_orders_read(self, open_orders: Sequence[BrokerOrder], session: date) -> None: ...

    def own_order_ids(self, open_orders: Sequence[BrokerOrder]) -> frozenset[str] | None: ...

    def risk_refused(self, rejections: Sequence[Rejection], session: date) -> None: ...


@dataclass(frozen=True, slots=True)
class BrokerView:
    """What the decision read from the broker and the book, for the last check before sending."""

    account: AccountView
    positions: Mapping[str, PositionView]
    open_orders: Sequence[BrokerOrder]
    entry_prices: Mapping[str, float]           # the daemon's own average entry price per held symbol
    current_prices: Mapping[str, float]         # the prices the orders were sized from


@dataclass
class GateResult:
    approved: list[OrderTarget] = field(default_factory=list)
    refused: list[Rejection] = field(default_factory=list)
    # The refusals that stand until the portfolio changes (a failed price fetch does not: it is retried).
    settled: list[Rejection] = field(default_factory=list)


class SendGate(Protocol):
    """The last check of orders about to be sent."""

    def check(self, targets: list[OrderTarget], view: BrokerView, session: date) -> GateResult: ...


class ExitPursuit(Protocol):
    """Exits the daemon has committed to and keeps sending until they are filled or refused for good."""

    def split_pursued(self, targets: Iterable[OrderTarget]) -> tuple[list[OrderTarget], list[OrderTarget]]:
        """(exits already committed in an earlier iteration, everything else), order kept."""
        ...

    def commit(self, targets: Iterable[OrderTarget]) -> None: ...

    def after_execution(self, targets: Iterable[OrderTarget], report: ExecutionReport) -> None: ...


# ---------------------------------------------------------------------------------------------
# Backtest and null implementations
# ---------------------------------------------------------------------------------------------
class MemoryRiskLedger:
    """The backtest's ledger: stop-loss exits in memory; halts are not kept.

    A halt found in one session is not carried into the next: the protections are judged afresh from
    each session's account (there is no one to clear a kill switch by hand in a backtest)."""

    def __init__(self) -> None:
        self.stop_loss_exits: dict[str, date] = {}

    def last_stop_loss_exit(self, symbol: str) -> date | None:
        return self.stop_loss_exits.get(symbol)

    def record_exit(self, symbol: str, session: date, reason: str) -> None:
        self.stop_loss_exits[symbol] = session

    def active_halts(self) -> Sequence[HaltRecord]:
        return ()

    def add_halt(self, kind: str, reason: str, session: date) -> bool:
        return False

    def clear_halt(self, kind: str, *, by: str = "", reason: str = "") -> bool:
        return False


class RunningPeak:
    """The highest equity seen, for a run without deposits or withdrawals (the backtest)."""

    def __init__(self, initial: float) -> None:
        self.peak = initial

    def observe(self, equity: float) -> None:
        if equity > self.peak:
            self.peak = equity

    def update(self, account: AccountView, now: datetime) -> FlowFigures:
        self.peak = max(self.peak, account.equity)
        return FlowFigures(peak=self.peak, flows_today=0.0)


class _NoWatch:
    def account_read(self, account: AccountView, session: date) -> None:
        return None

    def open_orders_read(self, open_orders: Sequence[BrokerOrder], session: date) -> None:
        return None

    def own_order_ids(self, open_orders: Sequence[BrokerOrder]) -> frozenset[str] | None:
        return None

    def risk_refused(self, rejections: Sequence[Rejection], session: date) -> None:
        return None


class _OpenGate:
    def check(self, targets: list[OrderTarget], view: BrokerView, session: date) -> GateResult:
        return GateResult(approved=targets)


class _NoPursuit:
    def split_pursued(self, targets: Iterable[OrderTarget]) -> tuple[list[OrderTarget], list[OrderTarget]]:
        return [], list(targets)

    def commit(self, targets: Iterable[OrderTarget]) -> None:
        return None

    def after_execution(self, targets: Iterable[OrderTarget], report: ExecutionReport) -> None:
        return None


NO_WATCH: BrokerWatch = _NoWatch()
OPEN_GATE: SendGate = _OpenGate()
NO_PURSUIT: ExitPursuit = _NoPursuit()
