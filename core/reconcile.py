"""Reconcile-first start-up and the per-iteration book sync.

Start-up, before any trading:
1. fetch positions and open orders from the broker;
2. resolve every PENDING intent by client_order_id: found -> SUBMITTED; surely absent and still
   for the current decision session -> submitted exactly once; absent but for an older session ->
   ABANDONED (never trade on a stale decision); the broker cannot say -> refuse to trade for now
   (a `BrokerError`, exit 1: transient, systemd's restart retries; not exit 3, which needs a human);
3. refresh every order the store believes open (fills are applied from cumulative quantities);
4. compare the daemon's position book with the broker: a position gone at the broker is recorded
   as closed externally; a position the daemon does not know is adopted or flagged
   (UNKNOWN_POSITION_POLICY); a quantity that differs, or an open order carrying this strategy's
   client_order_id prefix that the journal does not know, cannot be explained -> refuse to trade
   with a message listing every difference (`--accept-broker-state` takes the broker's quantities).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import structlog

from config.settings import AppConfig
from core.clock import Clock
from core.errors import BrokerError, ReconciliationError
from core.events import EventSink, NullEventSink
from core.loop_observers import announce_fill
from core.market_calendar import MarketCalendar, new_york_time
from core.models import BrokerOrder, PositionView
from core.ports import IntentState

log = structlog.get_logger("reconcile")
QTY_TOLERANCE = 1e-6


@dataclass
class ReconcileReport:
    positions: dict[str, PositionView] = field(default_factory=dict)
    resolved: list[str] = field(default_factory=list)
    resubmitted: list[str] = field(default_factory=list)
    abandoned: list[str] = field(default_factory=list)
    closed_externally: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    flagged: list[str] = field(default_factory=list)
    adjusted: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "positions": sorted(self.positions), "intents_resolved": self.resolved,
            "intents_resubmitted": self.resubmitted, "intents_abandoned": self.abandoned,
            "closed_externally": self.closed_externally, "adopted": self.adopted, "flagged": self.flagged,
            "adjusted": self.adjusted,
        }


class Reconciler:
    def __init__(self, config: AppConfig, gateway: Any, store: Any, execution: Any, calendar: MarketCalendar,
                 clock: Clock) -> None:
        self.config = config
        self.gateway = gateway
        self.store = store
        self.execution = execution
        self.calendar = calendar
        self.clock = clock
        self.events: EventSink = NullEventSink()

    # ------------------------------------------------------------------ start-up
    def reconcile(self, *, accept_broker_quantities: bool = False) -> ReconcileReport:
        report = ReconcileReport()
        problems: list[str] = []
        unconfirmed: list[str] = []  # the broker could not answer now: transient, a restart retries
        now = self.clock.now()
        session = self.calendar.current_or_next_session(now)
        decision_session = self.calendar.last_completed_session(now)
        try:
            positions = self.gateway.get_positions()
            broker_open = self.gateway.get_open_orders()
        except BrokerError as exc:
            # Not exit 3 (a human must act): an outage at start-up is ridden out by systemd's restarts.
            raise BrokerError(f"not trading yet: cannot reconcile, the broker did not answer ({exc})",
                              status=exc.status, code=exc.code, endpoint=exc.endpoint) from exc
        report.positions = positions

        for intent in self.store.pending_intents():
            cid = intent.client_order_id
            try:
                order = self.gateway.get_order_by_client_id(cid)
            except BrokerError as exc:
                unconfirmed.append(f"intent {cid}: the broker cannot say whether it exists ({exc})")
                continue
            if order is not None:
                self.store.mark_intent(cid, IntentState.SUBMITTED, broker_order_id=order.id, message="found at start-up")
                self.apply_order_update(order, session)
                report.resolved.append(cid)
            elif intent.signal_session == decision_session and not self.execution.dry_run:
                placed = self.execution.resume_intent(intent)
                if placed is None:
                    unconfirmed.append(f"intent {cid}: resubmission did not reach a known state")
                else:
                    self.apply_order_update(placed, session)
                    report.resubmitted.append(cid)
            elif intent.signal_session == decision_session:
                log.warning("pending_intent_left", client_order_id=cid, reason="dry run: not resubmitting")
            else:
                self.store.mark_intent(cid, IntentState.ABANDONED,
                                       message=f"absent at the broker; decision of {intent.signal_session} is stale")
                report.abandoned.append(cid)

        for stored in self.store.open_orders():
            try:
                order = self.gateway.get_order_by_client_id(stored.client_order_id)
            except BrokerError as exc:
                unconfirmed.append(f"order {stored.client_order_id}: cannot refresh ({exc})")
                continue
            if order is None:
                problems.append(f"order {stored.client_order_id} is open in the state database but unknown to the broker")
                continue
            self.apply_order_update(order, session)

        prefix = f"{self.execution.strategy_id}-"
        for order in broker_open:
            if not order.client_order_id.startswith(prefix):
                continue
            intent = self.store.get_intent(order.client_order_id)
            if intent is None:
                problems.append(
                    f"broker has open order {order.client_order_id} ({order.side.value} {order.symbol}) from this "
                    "strategy that the state database does not know (was STATE_DIR replaced?)"
                )
            elif self.store.order_by_client_id(order.client_order_id) is None:
                # A POST that reached the broker late (after its intent was abandoned or resolved as absent):
                # it is ours, so track it rather than let its fill appear as an unknown position.
                self.store.mark_intent(order.client_order_id, IntentState.SUBMITTED, broker_order_id=order.id,
                                       message="arrived at the broker late; tracked at start-up")
                self.apply_order_update(order, session)
                report.resolved.append(order.client_order_id)

        if unconfirmed:
            # Raised before the book comparison: a fill not yet applied would otherwise make a broker
            # position look unknown (and be adopted or flagged), and every difference may only be an
            # effect of what could not be confirmed. A restart retries.
            raise BrokerError("not trading yet: the broker could not confirm the state at start-up (a restart "
                              "retries):\n  - " + "\n  - ".join(unconfirmed + problems))
        problems += self._compare_book(positions, session, report, strict=not accept_broker_quantities)
        if problems:
            raise ReconciliationError(
                "refusing to trade: the state database does not match the broker:\n  - " + "\n  - ".join(problems)
            )
        self.store.record_position_snapshot(positions)
        return report

    # ------------------------------------------------------------------ each iteration
    def sync_positions(self, positions: dict[str, PositionView], session: date) -> None:
        """Lenient per-iteration sync: symbols with an open order of ours are left alone (a fill may be in flight)."""
        report = ReconcileReport()
        busy = {order.symbol for order in self.store.open_orders()}
        self._compare_book(positions, session, report, strict=False, skip=busy)

    def apply_order_update(self, order: BrokerOrder, session: date | None = None) -> float:
        """Record the broker's view of an order; apply any new fill to the book. Returns the fill delta."""
        previous = self.store.order_by_client_id(order.client_order_id)
        prev_qty = previous.filled_qty if previous is not None else 0.0
        prev_avg = (previous.filled_avg_price or 0.0) if previous is not None else 0.0
        atomic = getattr(self.store, "atomic", None)
        # The order's new cumulative fill and its book change commit together (or not at all): after a
        # crash between two commits the order would already count the fill and no refresh would apply it.
        with atomic() if atomic is not None else contextlib.nullcontext():
            delta = self.store.record_order(order)
            price = 0.0
            if delta > QTY_TOLERANCE and order.filled_avg_price:
                price = (order.filled_qty * order.filled_avg_price - prev_qty * prev_avg) / delta
                self.store.apply_fill(order.symbol, order.side.value, delta, price,
                                      self._fill_session(order, session))
        if delta > QTY_TOLERANCE and order.filled_avg_price:
            log.info("fill_applied", symbol=order.symbol, side=order.side.value, delta_qty=delta,
                     price=round(price, 4), cumulative_qty=order.filled_qty, status=order.status.value)
            announce_fill(self.events, self.store, order, delta, price, self.clock.now())
        return delta

    def _fill_session(self, order: BrokerOrder, session: date | None) -> date:
        day = new_york_time(self.clock.now()).date()
        if self.calendar.is_session(day):
            return day
        return session or self.calendar.current_or_next_session(self.clock.now())

    # ------------------------------------------------------------------ book vs broker
    def _compare_book(self, positions: dict[str, PositionView], session: date, report: ReconcileReport, *,
                      strict: bool, skip: set[str] | None = None) -> list[str]:
        problems: list[str] = []
        skip = skip or set()
        book = self.store.book()
        for symbol, mine in book.items():
            if symbol in skip:
                continue
            theirs = positions.get(symbol)
            if theirs is None or abs(theirs.qty) < QTY_TOLERANCE:
                self.store.close_externally(symbol, session)
                report.closed_externally.append(symbol)
                log.warning("position_closed_externally", symbol=symbol, book_qty=mine.qty)
            elif abs(theirs.qty - mine.qty) > QTY_TOLERANCE:
                if strict:
                    problems.append(f"{symbol}: the daemon's book holds {mine.qty:g}, the broker holds {theirs.qty:g}")
                else:
                    self.store.set_position(symbol, theirs.qty, mine.avg_entry_price, mine.entry_session, mine.origin)
                    report.adjusted.append(symbol)
                    log.warning("position_adjusted_to_broker", symbol=symbol, book_qty=mine.qty, broker_qty=theirs.qty)
        for symbol, theirs in positions.items():
            if symbol in book or symbol in skip or abs(theirs.qty) < QTY_TOLERANCE:
                continue
            policy = self.config.unknown_position_policy
            origin = "adopted" if policy == "adopt" else "flagged"
            entry_session = self.calendar.last_completed_session(self.clock.now())
            self.store.set_position(symbol, theirs.qty, theirs.avg_entry_price, entry_session, origin)
            (report.adopted if origin == "adopted" else report.flagged).append(symbol)
            log.warning("unknown_position", symbol=symbol, qty=theirs.qty, policy=policy,
                        effect="managed by the daemon" if origin == "adopted" else "held but never traded by the daemon")
        return problems
