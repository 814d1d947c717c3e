"""In-memory `OrderJournal` for the backtest and unit tests: same contract as the SQLite store,
without durability (a backtest has no crash to survive)."""

from __future__ import annotations

from datetime import date

from core.domain.models import BrokerOrder, OrderSpec
from core.domain.order_ids import dry_run_key
from core.domain.ports import IntentRecord, IntentState


class MemoryJournal:
    def __init__(self) -> None:
        self._records: dict[str, IntentRecord] = {}
        # A later state (state, broker order id, message), folded into the record when it is read: the
        # backtest marks every order it sends and reads almost none of them back.
        self._marks: dict[str, tuple[str, str | None, str]] = {}
        self.orders: dict[str, BrokerOrder] = {}
        self._filled: dict[str, float] = {}

    @property
    def intents(self) -> dict[str, IntentRecord]:
        return {cid: self._current(cid) for cid in self._records}

    def _current(self, client_order_id: str) -> IntentRecord:
        record = self._records[client_order_id]
        mark = self._marks.pop(client_order_id, None)
        if mark is not None:
            r = record
            record = self._records[client_order_id] = IntentRecord(
                r.client_order_id, r.symbol, r.side, r.qty, r.notional, r.order_type, r.time_in_force,
                r.signal_session, r.reason, *mark)
        return record

    def get_intent(self, client_order_id: str) -> IntentRecord | None:
        return self._current(client_order_id) if client_order_id in self._records else None

    def record_intent(self, spec: OrderSpec, signal_session: date, reason: str) -> IntentRecord:
        if spec.client_order_id in self._records:
            return self._current(spec.client_order_id)
        record = IntentRecord(spec.client_order_id, spec.symbol, str(spec.side), spec.qty, spec.notional,
                              spec.order_type, spec.time_in_force, signal_session, reason, IntentState.PENDING)
        self._records[spec.client_order_id] = record
        return record

    def mark_intent(self, client_order_id: str, state: str, *, broker_order_id: str | None = None,
                    message: str = "") -> None:
        record = self._records[client_order_id]
        previous = self._marks.get(client_order_id)
        known = previous[1] if previous is not None else record.broker_order_id
        self._marks[client_order_id] = (state, broker_order_id or known, message)

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
        if key in self._records:
            return False
        self._records[key] = IntentRecord(key, spec.symbol, spec.side.value, spec.qty, spec.notional, spec.order_type,
                                         spec.time_in_force, signal_session, reason, IntentState.DRY_RUN,
                                         message="dry run: not sent")
        return True

    def handled_signals(self, session: date, *, dry_run: bool = False) -> set[tuple[str, str]]:
        ignored = {IntentState.ABANDONED, IntentState.PENDING} | (set() if dry_run else {IntentState.DRY_RUN})
        return {(r.symbol, r.side) for r in self.intents.values()
                if r.signal_session == session and r.state not in ignored}
