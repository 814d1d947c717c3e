"""ExecutionAgent: approved targets -> broker orders, at most one per decision, ever.

- `client_order_id` is derived from strategy, signal session, symbol and side, so a retry or a
  restart can only ever name the same order again; the broker refuses a second one (422). It also
  carries the state directory's instance id, so two daemons on one account can tell their orders
  apart (core/domain/order_ids.py, core/instance_guard.py).
- The intent is written to the journal BEFORE the POST. After any unclear outcome (timeout, 5xx,
  504, dropped connection) the order is looked up by client_order_id, and only an order that is
  surely absent (a 404 answer) is sent again. See docs/failure-policy.md for every outcome.
- An exit the broker refused for a transient reason is retried by the orchestrator as a NEW attempt:
  `attempt_of(target)` (set by the orchestrator) numbers it, and the attempt number goes into the
  client_order_id, since Alpaca never accepts an id twice. Every refusal is classified (transient or
  permanent, core/domain/broker_refusals.py) in the rejection's `meta["refusal"]`. A sale's asset flags are
  fetched fresh, so a halt that lifted is noticed.
- Whole shares go as `qty` orders. Fractional buys go as `notional` market DAY orders, only when
  the account allows fractional trading and the asset is fractionable (flags cached per session);
  otherwise whole shares, or a reasoned skip when that gives zero. Sells go by `qty`, never more
  than held; a fractional holding is sold fractional whenever the asset and the account allow it, even
  with ENABLE_FRACTIONAL_SHARES=false (that setting governs entries).
- Dry-run logs the exact request and sends nothing.
- Once a stop is requested (SIGTERM), no new order leaves: `stop_requested` is checked before every
  POST, including start-up resubmissions. A target not yet journalled is simply not sent (it is
  decided afresh after the restart); an intent already written stays PENDING for start-up to resolve.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date

import structlog

from core.domain.broker_refusals import NOT_TRADABLE_NOW, Refusal, RefusalKind, classify_refusal
from core.domain.errors import (
    AmbiguousBrokerError,
    BadBrokerResponseError,
    BrokerError,
    DuplicateClientOrderIdError,
    OrderRejectedError,
    RateLimitedError,
)
from core.domain.models import AssetInfo, BrokerOrder, OrderSpec, OrderTarget, Rejection, Side
from core.domain.order_ids import format_client_order_id
from core.domain.ports import BrokerPort, IntentRecord, IntentState, OrderJournal
from core.domain.tiered_position_sizer import FRACTIONAL_DECIMALS, floor_to

log = structlog.get_logger("execution_agent")

MAX_SUBMIT_ATTEMPTS = 3


def client_order_id(strategy: str, session: date, symbol: str, side: Side, instance: str | None = None,
                    attempt: int = 1) -> str:
    """Deterministic id for one decision (and attempt). Readable prefix plus a short hash of the full key.

    Attempt 1 is the decision's own id; a later attempt (an exit re-sent after a refusal) differs only
    in the hash, so the readable prefix still names one decision.
    """
    return format_client_order_id(strategy, session, symbol, side, instance, attempt)


@dataclass
class ExecutionReport:
    submitted: list[BrokerOrder] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)
    dry_run: list[OrderSpec] = field(default_factory=list)
    unresolved: list[str] = field(default_factory=list)   # client_order_ids left PENDING (ambiguous)
    not_sent: list[str] = field(default_factory=list)     # symbols left alone because a stop was requested
    fractional_orders: int = 0
    whole_share_orders: int = 0


class ExecutionAgent:
    def __init__(self, broker: BrokerPort, journal: OrderJournal, *, strategy_id: str = "zmr",
                 dry_run: bool = False, enable_fractional: bool = True, min_notional: float = 1.0,
                 order_sink: Callable[[BrokerOrder], object] | None = None,
                 stop_requested: Callable[[], bool] | None = None, instance_id: str | None = None) -> None:
        self.broker = broker
        self.instance_id = instance_id
        self.stop_requested: Callable[[], bool] = stop_requested or (lambda: False)
        self.journal = journal
        # Where every broker answer goes. The daemon points this at the reconciler, so a fill that is
        # already in the submit answer reaches the position book, not only the orders table.
        self.order_sink: Callable[[BrokerOrder], object] = order_sink or journal.record_order
        self.strategy_id = strategy_id
        self.dry_run = dry_run
        self.enable_fractional = enable_fractional
        self.min_notional = max(1.0, min_notional)
        self._assets: dict[str, AssetInfo] = {}
        self._assets_session: date | None = None
        self._account_fractional: bool | None = None
        # Which attempt of its decision a target is (1 unless an exit is being retried).
        self.attempt_of: Callable[[OrderTarget], int] = lambda target: 1

    # ------------------------------------------------------------------ asset flags
    def asset_flags(self, symbols: Iterable[str], session: date) -> dict[str, AssetInfo]:
        """Asset flags for `symbols`, fetched at most once per session per symbol."""
        if self._assets_session != session:
            self._assets.clear()
            self._account_fractional = None
            self._assets_session = session
        for symbol in symbols:
            if symbol not in self._assets:
                self._assets[symbol] = self.broker.get_asset(symbol)
        return {s: self._assets[s] for s in symbols if s in self._assets}

    def fresh_asset(self, symbol: str, session: date) -> AssetInfo:
        """Asset flags asked again now (for a sale: a halt that lifted must be seen at once)."""
        self.asset_flags((), session)
        self._assets[symbol] = self.broker.get_asset(symbol)
        return self._assets[symbol]

    def account_fractional(self, session: date) -> bool:
        if self._assets_session != session:
            self.asset_flags((), session)
        if self._account_fractional is None:
            self._account_fractional = self.broker.get_fractional_trading()
        return self._account_fractional

    # ------------------------------------------------------------------ main entry
    def execute(self, targets: Sequence[OrderTarget], session: date) -> ExecutionReport:
        report = ExecutionReport()
        for target in targets:
            if self.stop_requested():
                report.not_sent.append(target.symbol)
                log.info("order_not_sent", symbol=target.symbol, side=target.side.value, reason="stop requested")
                continue
            try:
                spec = self._build_spec(target, session)
            except _Skip as skip:
                report.rejected.append(Rejection(target.symbol, target.side, "execution", str(skip),
                                                 {"refusal": skip.refusal.kind.value, "cause": skip.refusal.cause}))
                log.info("order_skipped", symbol=target.symbol, side=target.side.value, reason=str(skip))
                self._journal_skipped_sale(target, skip)
                continue
            except BrokerError as exc:
                refusal = classify_refusal(exc)  # a 5xx passes; an asset the broker does not know does not
                report.rejected.append(Rejection(target.symbol, target.side, "execution",
                                                 f"asset or account flags unavailable: {exc}",
                                                 {"refusal": refusal.kind.value, "cause": refusal.cause}))
                continue
            self._place(spec, target, report)
        return report

    # ------------------------------------------------------------------ building the request
    def client_order_id_for(self, signal_session: date, symbol: str, side: Side, attempt: int = 1) -> str:
        """The id this agent gives the order for one decision (strategy, signal session, symbol, side),
        and for a later attempt of it (an exit re-sent after a transient refusal)."""
        return client_order_id(self.strategy_id, signal_session, symbol, side, self.instance_id, attempt)

    def _build_spec(self, target: OrderTarget, session: date) -> OrderSpec:
        cid = self.client_order_id_for(target.signal.session, target.symbol, target.side, self.attempt_of(target))
        if target.side is Side.SELL:
            asset = self.fresh_asset(target.symbol, session)
        else:
            asset = self.asset_flags([target.symbol], session)[target.symbol]
        if not asset.tradable:
            raise _Skip(f"{target.symbol} is not tradable at the broker", NOT_TRADABLE_NOW)
        fractional_ok = (self.enable_fractional and asset.fractionable and self.account_fractional(session))
        if target.side is Side.SELL:
            return OrderSpec(cid, target.symbol, Side.SELL, qty=self._sell_qty(target, asset, session))
        if target.fractional and fractional_ok:
            notional = floor_to(target.notional, 2)
            if notional < self.min_notional:
                raise _Skip(f"{target.symbol}: notional ${notional:.2f} is below the ${self.min_notional:.2f} minimum")
            return OrderSpec(cid, target.symbol, Side.BUY, notional=notional)
        whole = math.floor(target.qty + 1e-9) if not target.fractional else math.floor(target.notional / target.price)
        if whole < 1:
            why = "asset is not fractionable" if not asset.fractionable else "fractional trading is off"
            raise _Skip(f"{target.symbol}: {why} and ${target.notional:,.2f} buys zero whole shares at "
                        f"${target.price:,.2f}")
        return OrderSpec(cid, target.symbol, Side.BUY, qty=float(whole))

    def _journal_skipped_sale(self, target: OrderTarget, skip: _Skip) -> None:
        """A sale that can never go out as it is (a remnant under one share the broker cannot sell) is
        journalled SKIPPED under its id, so that decision counts as handled: it is tried, and given up,
        once per decision session instead of on every iteration. Never in a dry run."""
        if self.dry_run or target.side is not Side.SELL or skip.refusal.kind is not RefusalKind.PERMANENT:
            return
        cid = self.client_order_id_for(target.signal.session, target.symbol, Side.SELL, self.attempt_of(target))
        if self.journal.get_intent(cid) is not None:
            return
        self.journal.record_intent(OrderSpec(cid, target.symbol, Side.SELL, qty=target.qty), target.signal.session,
                                   target.signal.reason.value)
        self.journal.mark_intent(cid, IntentState.SKIPPED, message=str(skip))

    def _sell_qty(self, target: OrderTarget, asset: AssetInfo, session: date) -> float:
        """The quantity a sale goes out with. ENABLE_FRACTIONAL_SHARES governs entries: a fractional position
        the daemon holds (a reverse split's remnant, say) is sold as a fractional qty whenever the asset and
        the account allow it; otherwise its whole shares, and a remnant under one share is skipped with the
        true cause (permanent: it cannot be sold until the broker allows it)."""
        qty = target.qty
        if abs(qty - round(qty)) <= 1e-9:
            return float(round(qty))
        if not asset.fractionable:
            why, cause = "the asset is not fractionable at the broker", "asset_not_fractionable"
        elif not self.account_fractional(session):
            why, cause = "the account does not allow fractional trading", "account_not_fractional"
        else:
            return floor_to(qty, FRACTIONAL_DECIMALS)
        whole = float(math.floor(qty))
        if whole < 1:
            raise _Skip(f"cannot sell {qty:g} shares of {target.symbol}: under one share, and {why}",
                        Refusal(RefusalKind.PERMANENT, cause))
        return whole

    # ------------------------------------------------------------------ placing it exactly once
    def _place(self, spec: OrderSpec, target: OrderTarget, report: ExecutionReport) -> None:
        intent = self.journal.get_intent(spec.client_order_id)
        if intent is not None and intent.state == IntentState.DRY_RUN:
            intent = None   # an older release's dry run under this id: never a real decision (set aside below)
        if intent is not None and intent.state in IntentState.FINAL_STATES:
            report.rejected.append(Rejection(spec.symbol, spec.side, "execution",
                                             f"already handled ({intent.state}) as {spec.client_order_id}"))
            return
        if self.dry_run:
            # Under its own key (core.domain.order_ids.dry_run_key), never the real id: a dry run on the production
            # state directory leaves every real decision as it was. The log shows the exact request.
            self.journal.record_dry_run_intent(spec, target.signal.session, target.signal.reason.value)
            log.info("dry_run_order", request=spec.describe())
            report.dry_run.append(spec)
            return
        if intent is None:
            self.journal.record_intent(spec, target.signal.session, target.signal.reason.value)
        else:
            # A PENDING intent from an earlier attempt: it may be at the broker already.
            found = self._lookup(spec.client_order_id)
            if found is _UNKNOWN:
                report.unresolved.append(spec.client_order_id)
                return
            if isinstance(found, BrokerOrder):
                self._accept(found, report, spec, how="found_existing")
                return
        self._submit_until_known(spec, report)

    def resume_intent(self, intent: IntentRecord) -> BrokerOrder | None:
        """Finish a PENDING intent found at start-up that the broker surely does not have.

        Sends it with the SAME client_order_id, so even a late arrival of the first attempt can
        only produce a 422 duplicate, never a second order. Returns the order, or None if unresolved.
        """
        spec = OrderSpec(intent.client_order_id, intent.symbol, Side(intent.side), qty=intent.qty,
                         notional=intent.notional, order_type=intent.order_type,
                         time_in_force=intent.time_in_force)
        report = ExecutionReport()
        self._submit_until_known(spec, report)
        return report.submitted[0] if report.submitted else None

    def _submit_until_known(self, spec: OrderSpec, report: ExecutionReport) -> None:
        cid = spec.client_order_id
        for attempt in range(1, MAX_SUBMIT_ATTEMPTS + 1):
            if self.stop_requested():
                # Before any POST (a first one, a resend after a surely-absent lookup, a start-up
                # resubmission): the intent stays PENDING, and start-up resolves it by lookup.
                report.unresolved.append(cid)
                log.info("order_not_sent", client_order_id=cid, reason="stop requested; intent left pending")
                return
            try:
                order = self.broker.submit_order(spec)
            except DuplicateClientOrderIdError:
                found = self._lookup(cid)
                if isinstance(found, BrokerOrder):
                    self._accept(found, report, spec, how="duplicate_reconciled")
                else:
                    report.unresolved.append(cid)
                    log.warning("order_unresolved", client_order_id=cid, reason="422 duplicate but lookup failed")
                return
            except RateLimitedError as exc:
                # A 429 is a refusal: nothing was created. The intent stays PENDING for the next iteration.
                report.unresolved.append(cid)
                log.warning("order_deferred", client_order_id=cid, reason=str(exc))
                return
            except OrderRejectedError as exc:
                self.journal.mark_intent(cid, IntentState.REJECTED, message=str(exc))
                report.rejected.append(_refused(spec, exc))
                log.warning("order_rejected", client_order_id=cid, reason=str(exc))
                return
            except (AmbiguousBrokerError, BadBrokerResponseError) as exc:
                # A garbled answer (non-JSON, unknown status) is no rejection: the order may exist.
                log.warning("order_submit_ambiguous", client_order_id=cid, attempt=attempt, reason=str(exc))
                found = self._lookup(cid)
                if isinstance(found, BrokerOrder):
                    self._accept(found, report, spec, how="found_after_ambiguous")
                    return
                if found is _UNKNOWN:
                    report.unresolved.append(cid)
                    return
                continue  # surely absent: the same client_order_id may be sent again
            except BrokerError as exc:
                # Any other definitive broker answer: record it, never retry blindly.
                self.journal.mark_intent(cid, IntentState.REJECTED, message=str(exc))
                report.rejected.append(_refused(spec, exc))
                return
            self._accept(order, report, spec, how="submitted")
            return
        report.unresolved.append(cid)
        log.error("order_unresolved", client_order_id=cid, reason=f"no answer after {MAX_SUBMIT_ATTEMPTS} attempts")

    def _lookup(self, cid: str) -> BrokerOrder | None | object:
        """The order, None when surely absent (404), or _UNKNOWN when the broker cannot say."""
        try:
            return self.broker.get_order_by_client_id(cid)
        except BrokerError as exc:
            log.warning("order_lookup_failed", client_order_id=cid, reason=str(exc))
            return _UNKNOWN

    def _accept(self, order: BrokerOrder, report: ExecutionReport, spec: OrderSpec, how: str) -> None:
        # The order row first: a crash between the two leaves a PENDING intent whose order start-up
        # finds by client_order_id, never a SUBMITTED intent with no order to refresh.
        self.order_sink(order)
        self.journal.mark_intent(spec.client_order_id, IntentState.SUBMITTED, broker_order_id=order.id, message=how)
        report.submitted.append(order)
        if spec.notional is not None or (spec.qty is not None and abs(spec.qty - round(spec.qty)) > 1e-9):
            report.fractional_orders += 1
        else:
            report.whole_share_orders += 1
        # side and status are StrEnums: logged as their values
        log.info("order_placed", client_order_id=spec.client_order_id, symbol=spec.symbol, side=spec.side,
                 qty=spec.qty, notional=spec.notional, status=order.status, how=how)


def _refused(spec: OrderSpec, exc: BrokerError) -> Rejection:
    refusal = classify_refusal(exc)
    return Rejection(spec.symbol, spec.side, "broker", str(exc), {"refusal": refusal.kind.value, "cause": refusal.cause})


class _Skip(Exception):
    """Decided not to send. A skip is permanent for this attempt unless it says otherwise."""

    def __init__(self, message: str, refusal: Refusal | None = None) -> None:
        super().__init__(message)
        self.refusal = refusal or Refusal(RefusalKind.PERMANENT, "skipped")


_UNKNOWN = object()
