"""In-memory `OrderJournal` for the backtest and unit tests: same contract as the SQLite store,
without durability (a backtest has no crash to survive)."""

from __future__ import annotations

from datetime import date

from core.models import BrokerOrder, OrderSpec
from core.ports import IntentRecord, IntentState


class MemoryJournal:
    def __init__(self) -> None:
        self.intents: dict[str, IntentRecord] = {}
        self.orders: dict[str, BrokerOrder] = {}
        self._filled: dict[str, float] = {}

    def get_intent(self, client_order_id: str) -> IntentRecord | None:
        return self.intents.get(client_order_id)

    def record_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        existing = self.intents.get(spec.client_order_id)
        if existing is not None:
            return existing
        record = IntentRecord(spec.client_order_id, spec.symbol, spec.side.value, spec.qty, spec.notional,
                              spec.order_type, spec.time_in_force, signal_session, reason, IntentState.PENDING)
        self.intents[spec.client_order_id] = record
        return record

    def mark_intent(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
                    message: str = "") -> None:
        r = self.intents[client_order_id]
        # Built directly (not dataclasses.replace): the backtest marks every order it sends.
        self.intents[client_order_id] = IntentRecord(r.client_order_id, r.symbol, r.side, r.qty, r.notional,
                                                     r.order_type, r.time_in_force, r.signal_session, r.reason,
                                                     state, broker_order_id or r.broker_order_id, message)

    def record_order(self, order: BrokerOrder) -> float:
        previous = self._filled.get(order.id, 0.0)
        self.orders[order.id] = order
        delta = max(0.0, order.filled_qty - previous)
        self._filled[order.id] = max(previous, order.filled_qty)
        return delta

    def pending_intents(self) -> list[IntentRecord]:
        return [r for r in self.intents.values() if r.state == IntentState.PENDING]

    def handled_signals(self, session: date) -> set[tuple[str, str]]:
        return {(r.symbol, r.side) for r in self.intents.values()
                if r.signal_session == session and r.state not in (IntentState.ABANDONED, IntentState.PENDING)}
