"""In-memory `OrderJournal` for the backtest and unit tests: same contract as the SQLite store,
without durability (a backtest has no crash to survive)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

from core.models import BrokerOrder, OrderSpec
from core.order_ids import dry_run_key
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
        record = self.intents[client_order_id]
        self.intents[client_order_id] = replace(record, state=state, broker_order_id=broker_order_id or record.broker_order_id,
                                                message=message)

    def record_order(self, order: BrokerOrder) -> float:
        previous = self._filled.get(order.id, 0.0)
        self.orders[order.id] = order
        delta = max(0.0, order.filled_qty - previous)
        self._filled[order.id] = max(previous, order.filled_qty)
        return delta

    def pending_intents(self) -> list[IntentRecord]:
        return [r for r in self.intents.values() if r.state == IntentState.PENDING]

    def record_dry_run_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> bool:
        key = dry_run_key(spec.client_order_id)
        if key in self.intents:
            return False
        self.intents[key] = IntentRecord(key, spec.symbol, spec.side.value, spec.qty, spec.notional, spec.order_type,
                                         spec.time_in_force, signal_session, reason, IntentState.DRY_RUN,
                                         message="dry run: not sent")
        return True

    def handled_signals(self, session: date, *, dry_run: bool = False) -> set[tuple[str, str]]:
        ignored = {IntentState.ABANDONED, IntentState.PENDING} | (set() if dry_run else {IntentState.DRY_RUN})
        return {(r.symbol, r.side) for r in self.intents.values()
                if r.signal_session == session and r.state not in ignored}
