"""The live daemon's adapters for two ports of the decision pipeline (core/decision_ports.py).

- `BrokerPriceGate` (`SendGate`): every order about to be sent is checked against the broker's own
  price (core/domain/price_guard.py). Exits against the positions' `current_price` (already fetched); entries
  cost one batched latest-trade request, and only then: an iteration that sends no entry asks nothing.
- `LiveBrokerWatch` (`BrokerWatch`): the account a decision read becomes an `account_observed` event
  (the status page's equity), another daemon's open order halts entries and only the daemon's own open
  orders count as its own (core/instance_guard.py), and an exit held back by an open buy that is not the
  daemon's is told once per symbol and session (core/exit_blockers.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import structlog

from core.decision_ports import BrokerView, GateResult
from core.domain.clock import Clock
from core.domain.errors import TradingDaemonError
from core.domain.models import AccountView, BrokerOrder, LatestPrice, OrderTarget, Rejection, Side
from core.domain.ports import TradingGateway
from core.domain.price_guard import PriceGuard
from core.events import EventSink
from core.exit_blockers import ExitBlockerWatch
from core.instance_guard import HaltStore, InstanceGuard
from core.loop_observers import account_observed

log = structlog.get_logger("orchestrator")


class BrokerPriceGate:
    def __init__(self, guard: PriceGuard, gateway: TradingGateway) -> None:
        self.guard = guard
        self.gateway = gateway

    def check(self, targets: list[OrderTarget], view: BrokerView, session: date) -> GateResult:
        checked = self.guard.check_exits(targets, view.positions, view.entry_prices)
        result = GateResult(approved=checked.approved, refused=list(checked.rejected), settled=list(checked.rejected))
        if any(t.side is Side.BUY for t in result.approved):
            wanted = {t.symbol for t in result.approved if t.side is Side.BUY}
            wanted |= {o.symbol for o in view.open_orders if o.side is Side.BUY}
            prices: dict[str, LatestPrice] = {}
            unavailable = None
            try:
                prices = self.gateway.get_latest_prices(sorted(wanted))
            except TradingDaemonError as exc:
                unavailable = f"latest trades unavailable: {exc}"
            entries = self.guard.check_entries(
                result.approved, prices, equity=view.account.equity, positions=view.positions,
                open_orders=view.open_orders, session=session, bar_prices=view.current_prices, unavailable=unavailable)
            result.approved = entries.approved
            result.refused += entries.rejected
            if unavailable is None:  # a failed fetch is retried next iteration, not remembered as a refusal
                result.settled += entries.rejected
        for rejection in result.refused:
            log.warning("order_refused_by_price_check", symbol=rejection.symbol, side=rejection.side.value,
                        reason=rejection.reason)
        return result


class LiveBrokerWatch:
    def __init__(self, events: EventSink, clock: Clock, instance_guard: InstanceGuard, halts: HaltStore) -> None:
        self.events = events
        self.clock = clock
        self.instance_guard = instance_guard
        self.halts = halts
        self.exit_blockers = ExitBlockerWatch(events)

    def account_read(self, account: AccountView, session: date) -> None:
        self.events.emit(account_observed(account, session, self.clock.now(), "decision"))

    def open_orders_read(self, open_orders: Sequence[BrokerOrder], session: date) -> None:
        self.instance_guard.halt_if_present(open_orders, self.halts, session)

    def own_order_ids(self, open_orders: Sequence[BrokerOrder]) -> frozenset[str] | None:
        return self.instance_guard.own_ids(open_orders)

    def risk_refused(self, rejections: Sequence[Rejection], session: date) -> None:
        self.exit_blockers.observe(rejections, session, self.clock.now())
