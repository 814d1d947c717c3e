"""One decision pipeline: the steps from a session's signals to orders, for the live daemon and the backtest.

The live orchestrator (core/orchestrator.py) and the backtest engine (core/backtest/engine.py) both
call this module; neither has a copy of any step. Per decision:

    focus     merge_focus(): scanner candidates[:10] + baseline + every held symbol + every symbol with
              an open order (the whole universe when there are no candidates)
    holdings  signal_holdings(): what the SignalAgent knows of each held position it may exit
    decide    DecisionPipeline.decide(accepted signals):
      1. the broker's account and open orders (the `BrokerWatch` sees both)
      2. the entries' asset flags and the account's fractional flag (ExecutionAgent, once per session)
      3. the equity peak and the day's net cash flows (`EquityPeak`)
      4. the risk inputs: a RiskContext (prices, flags, peak, stop-loss cooldowns and carried halts from
         the `RiskLedger`, cash flows) and a PortfolioSnapshot (account, positions, open orders and which
         of them are its own, and the daemon's own book: it never sells a share that is not its own)
      5. RiskAgent.evaluate; its refusals go to the `BrokerWatch` (an exit blocked by another's open buy
         is told), the halts it found are recorded, re-detected ones that are gone cleared
      6. unless orders may not go out now (market closed, stop requested): exits committed earlier are
         kept apart (`ExitPursuit`), the rest pass the `SendGate`, approved exits are committed, the
         ExecutionAgent places the orders, and the commitments learn how it went
      7. every approved stop-loss exit is recorded in the ledger (the cooldown of later entries)

Risk exits. The stop-loss and the maximum holding time are judged in the signal step
(`SignalAgent._exit_reason`), before the strategy's own exit, for every strategy unless it lists them in
`own_exits`; the pipeline records the stop-loss exits (step 7), and the live send gate confirms a
stop-loss against the broker's price. Both callers therefore apply the same risk exits.

What differs between live and backtest sits behind the ports of core/decision_ports.py; see the table there.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime

import structlog

from agents.execution_agent import ExecutionAgent, ExecutionReport
from agents.risk_agent import REDETECTED_HALTS, RiskAgent, RiskContext
from agents.signal_agent import Holding
from core.decision_ports import (
    NO_PURSUIT,
    NO_WATCH,
    OPEN_GATE,
    BrokerView,
    BrokerWatch,
    EquityPeak,
    ExitPursuit,
    OwnPosition,
    RiskLedger,
    SendGate,
)
from core.domain.models import (
    AccountView,
    OrderTarget,
    PortfolioSnapshot,
    PositionView,
    Rejection,
    RiskDecision,
    Side,
    Signal,
    SignalReason,
)
from core.domain.ports import BrokerPort

log = structlog.get_logger("decision_pipeline")

MAX_FOCUS_CANDIDATES = 10


def merge_focus(candidates: Sequence[str] | None, *, baseline: Sequence[str], held: Iterable[str],
                open_orders: Iterable[str], universe: Sequence[str] | None) -> list[str] | None:
    """The symbols judged for an entry: candidates[:MAX_FOCUS_CANDIDATES] + baseline, then every held symbol
    and every symbol with an open order (sorted), each once; so no exit is ever orphaned.

    `candidates` None (no scanner, or its file unusable): the whole `universe` plus held and open-order
    symbols outside it. `universe` None stands for "every symbol the signal step has bars for", which
    holds every held symbol (the backtest's panel): the answer is then None, all of them.
    """
    if candidates is None:
        if universe is None:
            return None
        focus = list(universe)
    else:
        focus = list(candidates[:MAX_FOCUS_CANDIDATES]) + list(baseline)
    extra = set(held)
    extra.update(open_orders)
    return list(dict.fromkeys(focus + sorted(extra)))


def signal_holdings(book: Mapping[str, OwnPosition], positions: Collection[str],
                    busy: Collection[str] = ()) -> dict[str, Holding]:
    """The held positions the signal step may exit: in the daemon's own book and at the broker, and not busy
    (a symbol whose order outcome is still unknown gets no exit until it is known)."""
    return {symbol: Holding(entry_price=own.avg_entry_price, entry_session=own.entry_session)
            for symbol, own in book.items() if symbol in positions and symbol not in busy}


@dataclass
class Decision:
    """What one pass of `decide` did."""

    account: AccountView
    risk: RiskDecision
    approved: list[OrderTarget] = field(default_factory=list)      # sent to the ExecutionAgent, in order
    report: ExecutionReport | None = None
    refused: list[Rejection] = field(default_factory=list)         # by the send gate
    # Refusals that stand until the portfolio changes: risk's (unless the cash flows were unreadable,
    # then the next pass reads them again) and the send gate's settled ones.
    settled: list[Rejection] = field(default_factory=list)
    held_back: str = ""                                             # why nothing was sent, if so

    @property
    def rejected_count(self) -> int:
        return (len(self.risk.rejected) + len(self.refused)
                + (len(self.report.rejected) if self.report is not None else 0))


class DecisionPipeline:
    def __init__(self, risk: RiskAgent, execution: ExecutionAgent, broker: BrokerPort, ledger: RiskLedger,
                 peak: EquityPeak, *, clock: Callable[[], datetime], gate: SendGate = OPEN_GATE,
                 exits: ExitPursuit = NO_PURSUIT, watch: BrokerWatch = NO_WATCH,
                 stop_requested: Callable[[], bool] = lambda: False) -> None:
        self.risk = risk
        self.execution = execution
        self.broker = broker
        self.ledger = ledger
        self.peak = peak
        self.clock = clock
        self.gate = gate
        self.exits = exits
        self.watch = watch
        self.stop_requested = stop_requested

    def decide(self, accepted: Sequence[Signal], positions: dict[str, PositionView],
               book: Mapping[str, OwnPosition], current_prices: Mapping[str, float], trading_session: date, *,
               may_send: bool = True) -> Decision:
        """Risk and execution for `accepted` (validated signals of one session, at least one)."""
        account = self.broker.get_account()
        self.watch.account_read(account, trading_session)
        open_orders = self.broker.get_open_orders()
        self.watch.open_orders_read(open_orders, trading_session)
        context = self._context(accepted, account, current_prices, trading_session)
        snapshot = PortfolioSnapshot(account=account, positions=positions, open_orders=tuple(open_orders),
                                     entry_sessions={s: p.entry_session for s, p in book.items() if p.entry_session},
                                     entry_prices={s: p.avg_entry_price for s, p in book.items()},
                                     own_qty={s: p.qty for s, p in book.items()},
                                     own_order_ids=self.watch.own_order_ids(open_orders))
        decision = self.risk.evaluate(list(accepted), snapshot, context)
        self.watch.risk_refused(decision.rejected, trading_session)
        self._record_halts(decision, len(context.active_halts), trading_session)
        outcome = Decision(account, decision,
                           settled=list(decision.rejected) if context.cash_flows_unknown is None else [])
        if not decision.approved:
            return outcome
        if not may_send:
            outcome.held_back = "market closed"
            log.info("market_closed_no_submit", targets=[f"{t.side.value} {t.symbol}" for t in decision.approved],
                     reason="outside market hours: decided and logged, nothing submitted")
            return outcome
        if self.stop_requested():
            outcome.held_back = "stop requested"
            return outcome
        # A pursued exit's reason was confirmed by the gate when it was committed: it is not judged again.
        pursued, fresh = self.exits.split_pursued(decision.approved)
        if fresh:
            view = BrokerView(account, positions, open_orders, snapshot.entry_prices, current_prices)
            checked = self.gate.check(fresh, view, trading_session)
            fresh = checked.approved
            outcome.refused = checked.refused
            outcome.settled += checked.settled
        approved = pursued + fresh
        outcome.approved = approved
        if not approved:
            return outcome
        self.exits.commit(approved)
        report = self.execution.execute(approved, trading_session)
        self.exits.after_execution(approved, report)
        for target in approved:
            if target.side is Side.SELL and target.signal.reason is SignalReason.EXIT_STOP_LOSS:
                self.ledger.record_exit(target.symbol, target.signal.session, target.signal.reason.value)
        outcome.report = report
        return outcome

    # ------------------------------------------------------------------ risk inputs
    def _context(self, accepted: Sequence[Signal], account: AccountView, current_prices: Mapping[str, float],
                 trading_session: date) -> RiskContext:
        entry_symbols = [s.symbol for s in accepted if s.side is Side.BUY]
        flags = self.execution.asset_flags(entry_symbols, trading_session) if entry_symbols else {}
        account_fractional = self.execution.account_fractional(trading_session) if entry_symbols else True
        figures = self.peak.update(account, self.clock())
        ledger = self.ledger   # halts of an ended session were lapsed by the loop at the start of the iteration
        return RiskContext(
            session=accepted[0].session, current_prices=current_prices,
            fractionable={s: a.fractionable and a.tradable for s, a in flags.items()},
            account_fractional=account_fractional, peak_equity=figures.peak,
            last_stop_loss_exits={s: d for s in entry_symbols if (d := ledger.last_stop_loss_exit(s))},
            active_halts=tuple(h.reason for h in ledger.active_halts() if h.kind not in REDETECTED_HALTS),
            flows_today=figures.flows_today, cash_flows_unknown=figures.unknown,
        )

    def _record_halts(self, decision: RiskDecision, carried: int, trading_session: date) -> None:
        """Record the halts found in this pass (logged once, when they start); clear re-detected ones that are gone.

        `decision.halts` holds the `carried` stored halts first, then what this pass found.
        """
        found = decision.halts[carried:]
        ledger = self.ledger
        for halt in found:
            kind = halt.split(":", 1)[0]
            if ledger.add_halt(kind, halt, trading_session):
                log.warning("halt_started", kind=kind, reason=halt, effect="no new entries; exits go on")
        found_kinds = {halt.split(":", 1)[0] for halt in found}
        for active in ledger.active_halts():
            if active.kind in REDETECTED_HALTS and active.kind not in found_kinds:
                ledger.clear_halt(active.kind, by="daemon", reason="the condition no longer holds")
                log.info("halt_cleared", kind=active.kind, by="daemon", reason="the condition no longer holds")
