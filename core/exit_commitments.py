"""Once risk approves an exit, the daemon is committed to it.

An approved sale is recorded (`pending_exits`, durable) before its first POST. From then on it is
pursued on every iteration while the market is open, until
- it is filled, or the position is gone at the broker (`done`), or
- the broker refuses it for a permanent reason (`given_up`, one error line naming the position).
A transient refusal (trading blocked, asset halted, ...; see core/domain/broker_refusals.py) leaves it
active, and the next iteration sends a NEW attempt.

Attempts. Alpaca never accepts a client_order_id twice, so attempt n of a decision has its own
deterministic id (`client_order_id(..., attempt=n)`). The next attempt is the first whose intent is
absent or still pending; an attempt is passed over only when it is surely dead: REJECTED (refused,
nothing created), ABANDONED (looked up and absent), SKIPPED (never sent), or SUBMITTED with an order
that ended unfilled (cancelled, expired). A pending attempt is looked up again by the ExecutionAgent
before anything is sent, so two attempts can never be live at once and no sale is duplicated.

Across sessions. A committed exit is pursued in later sessions too, whatever the later signals
say: a stop-loss that fired is a risk decision and stays one when the price bounces, a max-holding
exit only gets older, and a mean-reversion exit that could not go out leaves the book in a state the
strategy already left. The exit keeps its decision session and reason; a fresh sell signal for the
same symbol is folded into it (one decision per exit, never two sales). The broker's price check
(core/domain/price_guard.py) judged the exit before it was committed; `split_pursued` keeps pursued exits
from being judged again.

No requests: everything here reads the state database and the iteration's positions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date
from typing import TYPE_CHECKING

import structlog

from agents.execution_agent import ExecutionReport
from core.domain.clock import Clock
from core.domain.market_calendar import bar_timestamp
from core.domain.models import OrderStatus, OrderTarget, PositionView, Side, Signal, SignalReason
from core.domain.ports import IntentRecord, IntentState
from core.state.pending_exits import DONE, GIVEN_UP, PendingExit, PendingExitTable

if TYPE_CHECKING:
    from core.state.store import StateStore

log = structlog.get_logger("exit_commitments")

QTY_EPSILON = 1e-9
_DEAD_INTENTS = frozenset({IntentState.REJECTED, IntentState.ABANDONED, IntentState.SKIPPED})


class ExitCommitments:
    """The live `ExitPursuit` of the decision pipeline (core/decision_ports.py)."""

    def __init__(self, store: StateStore, clock: Clock, client_order_id_for: Callable[[date, str, Side, int], str], *,
                 enabled: bool = True) -> None:
        self.store = store
        self.table = PendingExitTable(store.database, clock)
        self.client_order_id_for = client_order_id_for   # (signal session, symbol, side, attempt) -> id
        self.enabled = enabled   # off in dry run: nothing is sent, so nothing can be pursued
        self._active: dict[str, PendingExit] = {}

    # ------------------------------------------------------------------ before risk
    def pursue(self, accepted: Sequence[Signal], positions: dict[str, PositionView]) -> list[Signal]:
        """The signals to send through risk: `accepted`, where every exit still pursued stands in for any
        fresh sell of its symbol, plus those pursued exits that need a new attempt now."""
        if not self.enabled:
            return list(accepted)
        active = self.table.active()
        kept = [s for s in accepted if not (s.side is Side.SELL and s.symbol in active)]
        self._active = {}
        for symbol, pending in active.items():
            held = positions.get(symbol)
            attempt, working, filled = self._progress(pending)
            if held is None or held.qty <= QTY_EPSILON or filled:
                outcome = "filled" if filled else "position gone at the broker"
                self.table.finish(pending.id, DONE, outcome)
                log.info("exit_completed", symbol=symbol, reason=pending.reason, decided=str(pending.decision_session),
                         refused_attempts=pending.attempts, outcome=outcome)
                continue
            self._active[symbol] = pending
            if not working:
                kept.append(self._signal(pending))
        return kept

    def attempt_of(self, target: OrderTarget) -> int:
        """The attempt number a target's order goes out as (1 for anything not pursued)."""
        pending = self._active.get(target.symbol)
        if (target.side is not Side.SELL or pending is None
                or pending.decision_session != target.signal.session):
            return 1
        return self._progress(pending)[0]

    def split_pursued(self, targets: Iterable[OrderTarget]) -> tuple[list[OrderTarget], list[OrderTarget]]:
        """(exits already committed in an earlier iteration, everything else), order kept."""
        pursued: list[OrderTarget] = []
        fresh: list[OrderTarget] = []
        for target in targets:
            pending = self._active.get(target.symbol)
            is_pursued = (self.enabled and target.side is Side.SELL and pending is not None
                          and pending.decision_session == target.signal.session)
            (pursued if is_pursued else fresh).append(target)
        return pursued, fresh

    # ------------------------------------------------------------------ around execution
    def commit(self, targets: Iterable[OrderTarget]) -> None:
        """Record every approved sale as pursued BEFORE it is sent (a crash after the POST keeps it)."""
        if not self.enabled:
            return
        for target in targets:
            if target.side is not Side.SELL or target.symbol in self._active:
                continue
            signal = target.signal
            if self.table.commit(target.symbol, signal.session, signal.reason.value, signal.price, signal.zscore):
                log.info("exit_committed", symbol=target.symbol, reason=signal.reason.value, decided=str(signal.session))
        self._active = self.table.active()

    def after_execution(self, targets: Iterable[OrderTarget], report: ExecutionReport) -> None:
        """A transient refusal keeps the exit for the next iteration; a permanent one ends it."""
        if not self.enabled:
            return
        refusals = {r.symbol: r for r in report.rejected if r.side is Side.SELL and "refusal" in r.meta}
        for target in targets:
            pending = self._active.get(target.symbol)
            rejection = refusals.get(target.symbol)
            if target.side is not Side.SELL or pending is None or rejection is None:
                continue
            cause = str(rejection.meta.get("cause", ""))
            if rejection.meta["refusal"] == "transient":
                self.table.refused(pending.id, cause)
                log.warning("exit_refused_will_retry", symbol=target.symbol, reason=pending.reason, cause=cause,
                            refused_attempts=pending.attempts + 1, broker=rejection.reason,
                            action="a new attempt goes out on the next iteration while the market is open")
            else:
                self.table.finish(pending.id, GIVEN_UP, cause)
                log.error("exit_given_up", symbol=target.symbol, reason=pending.reason, cause=cause,
                          broker=rejection.reason,
                          action="the broker refused this sale for good; the position stays open until a human acts")
        self._active = self.table.active()

    # ------------------------------------------------------------------ internals
    def _progress(self, pending: PendingExit) -> tuple[int, bool, bool]:
        """(next attempt number, an attempt's order is working at the broker, an attempt filled)."""
        intents: dict[str, IntentRecord] = {
            i.client_order_id: i for i in self.store.intents_for_session(pending.decision_session)
            if i.symbol == pending.symbol and i.side == Side.SELL.value
        }
        attempt = 1
        while True:
            cid = self.client_order_id_for(pending.decision_session, pending.symbol, Side.SELL, attempt)
            intent = intents.get(cid)
            if intent is None or intent.state in (IntentState.PENDING, IntentState.DRY_RUN):  # a dry run sent none
                return attempt, False, False
            if intent.state == IntentState.SUBMITTED:
                order = self.store.order_by_client_id(cid)
                if order is None or order.is_open:
                    return attempt, True, False
                if order.status is OrderStatus.FILLED:
                    return attempt, False, True
            elif intent.state not in _DEAD_INTENTS:
                # DRY_RUN, or a state this code does not know: never guess past it.
                return attempt, True, False
            attempt += 1

    @staticmethod
    def _signal(pending: PendingExit) -> Signal:
        return Signal(pending.symbol, Side.SELL, pending.signal_price, bar_timestamp(pending.decision_session),
                      pending.decision_session, pending.zscore, SignalReason(pending.reason))
