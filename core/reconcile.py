"""Reconcile-first start-up and the per-iteration book sync.

Start-up, before any trading:
1. fetch the broker's open orders;
2. resolve every PENDING intent by client_order_id (`resolve_pending_intents`, which every later
   iteration runs too while any is left): found -> SUBMITTED and its fill goes into the book as the
   daemon's own; surely absent and still for the current decision session -> submitted exactly once
   with the same id; absent but for an older session -> ABANDONED (never trade on a stale decision);
   the broker cannot say -> it stays PENDING and its symbol stays busy (no entry, no exit, no book
   change) until a later look-up answers; the daemon still starts;
3. refresh every order the store believes open (fills are applied from cumulative quantities); one
   the broker cannot report now stays open in the store, so its symbol stays busy too;
4. fetch the broker's positions (after 2 and 3, so no fill lands between the two) and explain them
   against the daemon's own book (`core.domain.ownership`): a split re-bases the book, shares that are not
   the daemon's are reported and never traded, a broker quantity below the daemon's own lowers it
   (the user sold; at zero the position is closed externally), an unknown position is adopted or
   only reported (UNKNOWN_POSITION_POLICY);
5. refuse to trade (exit 3) only for what cannot be explained: an open order carrying this
   strategy's client_order_id prefix that the journal does not know, or an order the journal holds
   open that the broker does not know. Nothing is changed in the book before such a refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

from config.settings import AppConfig
from core.domain.clock import Clock
from core.domain.errors import BrokerError, ReconciliationError
from core.domain.market_calendar import MarketCalendar, new_york_time
from core.domain.models import BrokerOrder, PositionView
from core.domain.ownership import (
    Cause,
    Explanation,
    SeenPosition,
    SplitEvent,
    baseline,
    explain,
    matching_split,
    unexplained_change,
)
from core.domain.ports import IntentRecord, IntentState, TradingGateway
from core.events import EventSink, NullEventSink
from core.loop_observers import announce_fill

if TYPE_CHECKING:
    from agents.execution_agent import ExecutionAgent
    from core.state.store import StateStore

log = structlog.get_logger("reconcile")
T = TypeVar("T")
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
    unresolved: list[str] = field(default_factory=list)     # client_order_ids the broker could not answer for
    rejected: list[str] = field(default_factory=list)       # resubmissions the broker refused for good
    rebased: dict[str, float] = field(default_factory=dict)  # symbol -> split ratio applied to the book
    outside: dict[str, float] = field(default_factory=dict)  # symbol -> shares at the broker that are not ours

    def summary(self) -> dict[str, Any]:
        return {
            "positions": sorted(self.positions), "intents_resolved": self.resolved,
            "intents_resubmitted": self.resubmitted, "intents_abandoned": self.abandoned,
            "intents_unresolved": self.unresolved, "intents_rejected": self.rejected,
            "closed_externally": self.closed_externally, "adopted": self.adopted, "flagged": self.flagged,
            "adjusted": self.adjusted, "rebased": self.rebased, "outside_shares": self.outside,
        }


class Reconciler:
    def __init__(self, config: AppConfig, gateway: TradingGateway, store: StateStore, execution: ExecutionAgent,
                 calendar: MarketCalendar, clock: Clock) -> None:
        self.config = config
        self.gateway = gateway
        self.store = store
        self.execution = execution
        self.calendar = calendar
        self.clock = clock
        self.events: EventSink = NullEventSink()

    # ------------------------------------------------------------------ start-up
    def reconcile(self, *, accept_broker_quantities: bool = False) -> ReconcileReport:
        """`accept_broker_quantities` (`--accept-broker-state`): shares of a held symbol that are not the
        daemon's become its own at this start-up (adopted), instead of being reported and left alone."""
        report = ReconcileReport()
        problems: list[str] = []
        now = self.clock.now()
        session = self.calendar.current_or_next_session(now)
        broker_open = self._startup_read(self.gateway.get_open_orders)

        self.resolve_pending_intents(session, report, at_startup=True)

        for stored in self.store.open_orders():
            try:
                order = self.gateway.get_order_by_client_id(stored.client_order_id)
            except BrokerError as exc:
                # Still open in the store, so its symbol stays busy; every iteration refreshes it again.
                report.unresolved.append(stored.client_order_id)
                log.warning("order_refresh_deferred", client_order_id=stored.client_order_id, symbol=stored.symbol,
                            reason=str(exc), effect="symbol busy until the broker reports the order")
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

        if problems:
            # Before the book is touched: what cannot be explained may mean the wrong state directory.
            raise ReconciliationError(
                "refusing to trade: the state database does not match the broker:\n  - " + "\n  - ".join(problems)
            )
        # Read after the intents and orders above: a fill they applied is in this answer too.
        positions = self._startup_read(self.gateway.get_positions)
        busy = self.busy_symbols()
        positions, unconfirmed = self.confirm_reductions(
            positions, busy, lambda: self._startup_read(self.gateway.get_positions))
        report.positions = positions
        self._reconcile_holdings(positions, session, report, busy=busy | unconfirmed,
                                 adopt_outside=accept_broker_quantities)
        self.store.record_position_snapshot(positions)
        return report

    @staticmethod
    def _startup_read(read: Callable[[], T]) -> T:
        try:
            return read()
        except BrokerError as exc:
            # Not exit 3 (a human must act): an outage at start-up is ridden out by systemd's restarts.
            raise BrokerError(f"not trading yet: cannot reconcile, the broker did not answer ({exc})",
                              status=exc.status, code=exc.code, endpoint=exc.endpoint) from exc

    # ------------------------------------------------------------------ pending intents
    def resolve_pending_intents(self, session: date, report: ReconcileReport | None = None, *,
                                at_startup: bool = False, may_submit: bool = True) -> ReconcileReport:
        """Look every PENDING intent up by client_order_id (no request when there is none).

        Runs at start-up and on every iteration while any is left, so an order whose submit answer
        and look-ups were lost (503s, a full disk) is found as soon as the broker answers.
        `may_submit=False` (an iteration outside market hours) defers the resubmission of one the
        broker surely does not have, as no new order is sent then either.
        """
        report = report if report is not None else ReconcileReport()
        pending = self.store.pending_intents()
        if not pending:
            return report
        decision_session = self.calendar.last_completed_session(self.clock.now())
        for intent in pending:
            self._resolve_intent(intent, session, decision_session, report, at_startup, may_submit)
        return report

    def _resolve_intent(self, intent: IntentRecord, session: date, decision_session: date, report: ReconcileReport,
                        at_startup: bool, may_submit: bool) -> None:
        cid = intent.client_order_id
        try:
            order = self.gateway.get_order_by_client_id(cid)
        except BrokerError as exc:
            report.unresolved.append(cid)
            log.warning("intent_unresolved", client_order_id=cid, symbol=intent.symbol, reason=str(exc),
                        effect="symbol busy (no entry, exit or book change) until the broker answers")
            return
        if order is not None:
            self.store.mark_intent(cid, IntentState.SUBMITTED, broker_order_id=order.id,
                                   message="found at start-up" if at_startup else "found by a later look-up")
            self.apply_order_update(order, session)
            report.resolved.append(cid)
            if not at_startup:
                log.info("intent_resolved", client_order_id=cid, symbol=intent.symbol, status=order.status.value,
                         filled_qty=order.filled_qty)
        elif intent.signal_session == decision_session and not may_submit:
            report.unresolved.append(cid)  # surely absent; sent at the next iteration in market hours
        elif intent.signal_session == decision_session and not self.execution.dry_run:
            placed = self.execution.resume_intent(intent)
            if placed is None:
                self._resubmission_not_placed(intent, report)
            else:
                self.apply_order_update(placed, session)
                report.resubmitted.append(cid)
        elif intent.signal_session == decision_session:
            report.unresolved.append(cid)
            log.warning("pending_intent_left", client_order_id=cid, reason="dry run: not resubmitting")
        else:
            self.store.mark_intent(cid, IntentState.ABANDONED,
                                   message=f"absent at the broker; decision of {intent.signal_session} is stale")
            report.abandoned.append(cid)

    def _resubmission_not_placed(self, intent: IntentRecord, report: ReconcileReport) -> None:
        """What became of a resubmission that placed no order: the broker refused it for good (the intent is
        final, with the broker's reason), or its outcome is still unknown (looked up again next time)."""
        cid = intent.client_order_id
        after = self.store.get_intent(cid)
        if after is not None and after.state != IntentState.PENDING:
            report.rejected.append(cid)
            log.warning("intent_resubmission_refused", client_order_id=cid, symbol=intent.symbol, side=intent.side,
                        state=after.state, reason=after.message or "refused by the broker",
                        effect="not sent; the decision is settled (no retry)")
            return
        report.unresolved.append(cid)
        log.warning("intent_unresolved", client_order_id=cid, symbol=intent.symbol,
                    reason="resubmission did not reach a known state", effect="looked up again next time")

    def busy_symbols(self) -> set[str]:
        """Symbols a fill of the daemon's may still change: an order open in the store or an unresolved intent.
        Their book is left alone and they get no new entry or exit until that is settled."""
        return {o.symbol for o in self.store.open_orders()} | self.unresolved_symbols()

    def unresolved_symbols(self) -> set[str]:
        return {intent.symbol for intent in self.store.pending_intents()}

    # ------------------------------------------------------------------ each iteration
    def sync_positions(self, positions: dict[str, PositionView], session: date) -> ReconcileReport:
        """Per-iteration sync: symbols with an open order or an unresolved intent of ours are left alone
        (a fill of ours may be in flight); the others are explained against the book."""
        busy = self.busy_symbols()
        positions, unconfirmed = self.confirm_reductions(positions, busy, self.gateway.get_positions)
        report = ReconcileReport(positions=positions)
        self._reconcile_holdings(positions, session, report, busy=busy | unconfirmed)
        return report

    def confirm_reductions(self, positions: dict[str, PositionView], busy: set[str],
                           read_again: Callable[[], dict[str, PositionView]]
                           ) -> tuple[dict[str, PositionView], set[str]]:
        """A held position that disappeared, or fell below the daemon's own quantity, is read once more
        before the book changes: one glitchy answer (an empty `GET /v2/positions`) must not disown it.

        One extra request, only on that event. Returns the positions to work with (a symbol whose two
        reads disagree takes the second read's position) and the symbols whose change is unconfirmed:
        their book and last observation are kept, and the next iteration looks again.
        """
        book = self.store.book()
        seen = self.store.seen_positions()
        suspects = []
        for symbol, mine in book.items():
            if symbol in busy or mine.qty <= QTY_TOLERANCE:
                continue
            theirs = positions.get(symbol)
            change = explain(mine.qty, seen.get(symbol), theirs.qty if theirs else 0.0,
                             theirs.avg_entry_price if theirs else 0.0, book_avg=mine.avg_entry_price)
            if change.cause in (Cause.GONE, Cause.OWN_REDUCED):
                suspects.append(symbol)
        if not suspects:
            return positions, set()
        second = read_again()
        merged = dict(positions)
        unconfirmed: set[str] = set()
        for symbol in suspects:
            first_qty = positions[symbol].qty if symbol in positions else 0.0
            again = second.get(symbol)
            second_qty = again.qty if again is not None else 0.0
            if abs(first_qty - second_qty) <= QTY_TOLERANCE:
                continue
            unconfirmed.add(symbol)
            if again is not None:
                merged[symbol] = again
            else:
                merged.pop(symbol, None)
            log.warning("position_change_unconfirmed", symbol=symbol, book_qty=book[symbol].qty,
                        first_read_qty=first_qty, second_read_qty=second_qty,
                        effect="the book is kept; the broker's positions are checked again at the next iteration")
        return merged, unconfirmed

    def apply_order_update(self, order: BrokerOrder, session: date | None = None) -> float:
        """Record the broker's view of an order; apply any new fill to the book. Returns the fill delta."""
        previous = self.store.order_by_client_id(order.client_order_id)
        prev_qty = previous.filled_qty if previous is not None else 0.0
        prev_avg = (previous.filled_avg_price or 0.0) if previous is not None else 0.0
        # The order's new cumulative fill and its book change commit together (or not at all): after a
        # crash between two commits the order would already count the fill and no refresh would apply it.
        with self.store.atomic():
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
        if order.submitted_at is not None:
            # A DAY order fills in the session it was sent in (or the next open, if sent while closed):
            # a fill learnt late (an intent resolved sessions later) keeps its real entry session.
            return self.calendar.current_or_next_session(order.submitted_at)
        day = new_york_time(self.clock.now()).date()
        if self.calendar.is_session(day):
            return day
        return session or self.calendar.current_or_next_session(self.clock.now())

    # ------------------------------------------------------------------ book vs broker (core.domain.ownership)
    def _reconcile_holdings(self, positions: dict[str, PositionView], session: date, report: ReconcileReport, *,
                            busy: set[str], adopt_outside: bool = False) -> None:
        book = self.store.book()
        seen = self.store.seen_positions()
        for symbol in sorted(set(book) | set(positions) | set(seen)):
            if symbol in busy:
                continue  # its last observation is kept: the fill in flight is explained once it lands
            mine = book.get(symbol)
            theirs = positions.get(symbol)
            own = mine.qty if mine is not None else 0.0
            broker_qty = max(theirs.qty, 0.0) if theirs is not None else 0.0
            broker_avg = theirs.avg_entry_price if theirs is not None else 0.0
            last = seen.get(symbol)
            if theirs is not None and mine is None and last is None and broker_qty > QTY_TOLERANCE \
                    and self.config.unknown_position_policy == "adopt":
                # A position seen for the first time, in a symbol the daemon does not hold: adopted.
                # Shares once reported as not the daemon's are never adopted silently later.
                self._adopt(symbol, theirs, "adopted", report)
                self._remember(symbol, last, broker_qty, broker_avg, broker_qty)
                continue
            book_avg = mine.avg_entry_price if mine is not None else None
            change = explain(own, last, broker_qty, broker_avg, book_avg=book_avg)
            confirmed_by: list[str] = []
            if change.cause is Cause.SPLIT:
                confirmed_by.append(f"broker position: qty x{change.ratio:g}, avg_entry_price /{change.ratio:g}")
            if unexplained_change(own, last, broker_qty, broker_avg, change.cause):
                # Something the daemon's own fills do not explain, in a symbol it holds: a split is suspected.
                last_avg = baseline(own, last, book_avg)[1]
                event, note = self._split_listed(symbol, last, mine.entry_session if mine else None, last_avg,
                                                 broker_avg)
                confirmed_by.append(note)
                if event is not None:  # listed and applied: authoritative, whatever else moved the quantity
                    change = explain(own, last, broker_qty, broker_avg, book_avg=book_avg, split=event.ratio)
            own_after = self._apply_change(symbol, own, change, theirs, session, report, confirmed_by)
            current = self.store.book().get(symbol) if adopt_outside else None  # after a re-base, if any
            if current is not None and change.outside_qty > QTY_TOLERANCE:
                self.store.set_position(symbol, broker_qty, current.avg_entry_price, current.entry_session,
                                        current.origin)
                report.adjusted.append(symbol)
                log.warning("outside_shares_adopted", symbol=symbol, own_qty=own_after, broker_qty=broker_qty,
                            reason="--accept-broker-state: the broker's quantity becomes the daemon's own")
                own_after = broker_qty
            outside = max(0.0, broker_qty - own_after)
            if outside > QTY_TOLERANCE:
                report.outside[symbol] = outside
                if own_after <= QTY_TOLERANCE:
                    report.flagged.append(symbol)
            self._remember(symbol, last, broker_qty, broker_avg, own_after)

    def _apply_change(self, symbol: str, own: float, change: Explanation, theirs: PositionView | None, session: date,
                      report: ReconcileReport, confirmed_by: list[str]) -> float:
        """Apply an explained change to the book; returns the daemon's own quantity after it."""
        broker_qty = max(theirs.qty, 0.0) if theirs is not None else 0.0
        if change.cause is Cause.SPLIT and change.ratio is not None:
            self.store.rebase_position(symbol, change.ratio, max_qty=broker_qty)
            report.rebased[symbol] = change.ratio
            log.warning("position_rebased", symbol=symbol, ratio=change.ratio, own_qty_before=own,
                        own_qty=change.own_qty, broker_qty=broker_qty, confirmed_by=confirmed_by,
                        residual=change.residual.value if change.residual else None,
                        effect="quantity x ratio, entry prices / ratio: exits use split-adjusted prices")
        elif change.cause is Cause.GONE:
            self.store.close_externally(symbol, session)
            report.closed_externally.append(symbol)
            log.warning("position_closed_externally", symbol=symbol, book_qty=own)
        elif change.cause is Cause.OWN_REDUCED:
            self.store.reduce_position(symbol, change.own_qty)
            report.adjusted.append(symbol)
            log.warning("own_position_reduced", symbol=symbol, own_qty_before=own, own_qty=change.own_qty,
                        broker_qty=broker_qty, reason="the broker holds less than the daemon's own shares: sold "
                        "outside the daemon (the user's own shares count as sold first)")
        if change.outside_changed:
            log.warning("outside_shares_changed", symbol=symbol, broker_qty=broker_qty, own_qty=change.own_qty,
                        outside_qty=change.outside_qty, previous_outside_qty=change.previous_outside_qty,
                        cause=(change.residual or change.cause).value,
                        effect="not the daemon's: reported, never traded by it")
        return change.own_qty

    def _adopt(self, symbol: str, theirs: PositionView, origin: str, report: ReconcileReport) -> None:
        entry_session = self.calendar.last_completed_session(self.clock.now())
        self.store.set_position(symbol, theirs.qty, theirs.avg_entry_price, entry_session, origin)
        report.adopted.append(symbol)
        log.warning("unknown_position", symbol=symbol, qty=theirs.qty, policy=self.config.unknown_position_policy,
                    effect="adopted: managed by the daemon as its own")

    def _split_listed(self, symbol: str, last: SeenPosition | None, entry_session: date | None, before_avg: float,
                      after_avg: float) -> tuple[SplitEvent | None, str]:
        """Ask the broker's corporate-actions data (one request, only when a split is suspected)."""
        today = new_york_time(self.clock.now()).date()
        if last is not None:
            since = new_york_time(last.seen_at).date()
        else:
            since = entry_session or today - timedelta(days=30)
        try:
            events = self.gateway.get_splits([symbol], since, today)
        except BrokerError as exc:
            return None, f"corporate actions: unavailable ({exc})"
        event = matching_split(events, symbol, since, today, before_avg, after_avg,
                               seen_on=new_york_time(last.seen_at).date() if last is not None else None)
        if event is None:
            return None, (f"corporate actions: no split of {symbol} listed between {since} and {today} that the "
                          "broker's avg_entry_price shows applied")
        return event, f"corporate actions: {event.describe()}"

    def _remember(self, symbol: str, last: SeenPosition | None, broker_qty: float, broker_avg: float,
                  own: float) -> None:
        """Store the observation when it changed (a steady iteration writes nothing)."""
        if last is None and broker_qty <= QTY_TOLERANCE and own <= QTY_TOLERANCE:
            return
        if last is not None and abs(last.qty - broker_qty) <= QTY_TOLERANCE and abs(last.own_qty - own) <= QTY_TOLERANCE \
                and abs(last.avg_entry_price - broker_avg) <= 1e-9 * max(1.0, broker_avg):
            return
        self.store.record_seen_position(symbol, broker_qty, broker_avg, own)
