"""The decision pipeline (core/decision_pipeline.py): one module for the daemon and the backtest.

Driven with the backtest's broker and journal (in process, no network) and, where the live adapter
matters, the real StateStore; hand-worked numbers throughout.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent, RiskParams
from core.backtest.broker import BacktestBroker
from core.backtest.data import History
from core.decision_pipeline import (
    MAX_FOCUS_CANDIDATES,
    Decision,
    DecisionPipeline,
    merge_focus,
    signal_holdings,
)
from core.decision_ports import (
    OPEN_GATE,
    BrokerView,
    FlowFigures,
    GateResult,
    MemoryRiskLedger,
    RiskLedger,
    RunningPeak,
)
from core.domain.clock import SimClock
from core.domain.market_calendar import bar_timestamp, get_market_calendar
from core.domain.models import AccountView, OrderSpec, OrderTarget, Rejection, Side, Signal, SignalReason
from core.state.memory_journal import MemoryJournal
from core.state.store import StateStore
from tests.harness.config import REPO_ROOT

CAL = get_market_calendar()
SESSIONS = CAL.sessions_between(date(2024, 3, 4), date(2024, 3, 15))


# ---------------------------------------------------------------------------------------------
# The focus merge
# ---------------------------------------------------------------------------------------------
def test_focus_is_ten_candidates_then_the_baseline_then_held_and_open_order_symbols() -> None:
    candidates = [f"C{i:02d}" for i in range(12)]
    focus = merge_focus(candidates, baseline=("SPY", "QQQ"), held={"ZZZ", "C03"}, open_orders=["AAA", "SPY"],
                        universe=["IGNORED"])
    assert MAX_FOCUS_CANDIDATES == 10
    # C10 and C11 are cut; held/open symbols come sorted after, each once (C03 and SPY are already in).
    assert focus == [f"C{i:02d}" for i in range(10)] + ["SPY", "QQQ", "AAA", "ZZZ"]


def test_without_candidates_the_focus_is_the_universe_plus_held_symbols_outside_it() -> None:
    focus = merge_focus(None, baseline=("SPY",), held={"OLD"}, open_orders={"B"}, universe=["A", "B", "C"])
    assert focus == ["A", "B", "C", "OLD"]          # no baseline added: the universe has every symbol anyway
    # The backtest's universe is every column of its panel (held ones included): "all of them".
    assert merge_focus(None, baseline=(), held={"A"}, open_orders=(), universe=None) is None


def test_holdings_for_the_signal_step_skip_busy_symbols_and_ones_the_broker_does_not_hold() -> None:
    book = {"A": _Own(5.0, 10.0, SESSIONS[0]), "B": _Own(2.0, 20.0, None), "C": _Own(1.0, 30.0, SESSIONS[1])}
    holdings = signal_holdings(book, positions={"A", "B"}, busy={"B"})
    assert list(holdings) == ["A"]
    assert (holdings["A"].entry_price, holdings["A"].entry_session) == (10.0, SESSIONS[0])


def test_neither_the_orchestrator_nor_the_backtest_engine_holds_a_copy_of_the_decision_steps() -> None:
    for path in ("core/orchestrator.py", "core/backtest/engine.py"):
        tree = ast.parse((REPO_ROOT / path).read_text())
        calls = {node.func.attr for node in ast.walk(tree)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}
        names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
        assert {"evaluate", "execute", "record_exit"}.isdisjoint(calls), path   # risk and execution: the pipeline's
        assert "decide" in calls and "merge_focus" in names, path
        assert "MAX_FOCUS_CANDIDATES" not in names and "RiskContext" not in names, path


# ---------------------------------------------------------------------------------------------
# decide(): the same steps, whichever ports are plugged in
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Own:
    qty: float
    avg_entry_price: float
    entry_session: date | None


def _history() -> History:
    closes = np.array([[100.0, 50.0], [100.0, 50.0], [90.0, 50.0], [90.0, 50.0], [95.0, 50.0]])
    sessions = SESSIONS[: len(closes)]
    return History(sessions, ["AAA", "BBB"], closes, closes, closes, closes, np.zeros_like(closes))


def _params(**over: object) -> RiskParams:
    base: dict[str, object] = {"symbol_tiers": {}, "tier_allocations": {"TIER1": 1.0},
                               "enable_tiered_allocation": False, "stop_loss_cooldown_sessions": 3}
    base.update(over)
    return RiskParams(**base)  # type: ignore[arg-type]


class _Setup:
    """A backtest broker at the close of session `row`, with the real agents wired into one pipeline."""

    def __init__(self, *, ledger: RiskLedger | None = None, peak: float | None = None, **pipeline: object) -> None:
        self.broker = BacktestBroker(_history(), initial_cash=10_000.0, calendar=CAL)
        self.execution = ExecutionAgent(self.broker, MemoryJournal())
        self.ledger: RiskLedger = ledger if ledger is not None else MemoryRiskLedger()
        self.peak = _FixedPeak(peak) if peak is not None else RunningPeak(10_000.0)
        self.pipeline = DecisionPipeline(RiskAgent(_params(), CAL), self.execution, self.broker, self.ledger,
                                         self.peak, clock=lambda: datetime(2024, 3, 20), **pipeline)  # type: ignore[arg-type]
        self.row = -1
        self.advance()

    def advance(self) -> None:
        self.row += 1
        self.broker.start_session(self.row)
        self.broker.mark(self.row)

    @property
    def session(self) -> date:
        return SESSIONS[self.row]

    def decide(self, *signals: Signal, book: dict[str, _Own] | None = None, may_send: bool = True) -> Decision:
        positions = self.broker.get_positions()
        if book is None:
            book = {s: _Own(p.qty, p.avg_entry_price, SESSIONS[0]) for s, p in positions.items()}
        return self.pipeline.decide(list(signals), positions, book, self.broker.last_prices, SESSIONS[self.row + 1],
                                    may_send=may_send)

    def signal(self, symbol: str, side: Side, reason: SignalReason) -> Signal:
        price = self.broker.last_price(symbol)
        return Signal(symbol, side, price, bar_timestamp(self.session), self.session, -2.5 if side is Side.BUY else 0.0,
                      reason)

    def hold(self, symbol: str, qty: float) -> None:
        self.broker.submit_order(OrderSpec(f"setup-{symbol}", symbol, Side.BUY, qty=qty))
        self.advance()


class _FixedPeak:
    def __init__(self, peak: float) -> None:
        self.peak = peak

    def update(self, account: AccountView, now: datetime) -> FlowFigures:
        return FlowFigures(peak=self.peak, flows_today=0.0)


def test_an_entry_is_sized_risk_approved_and_placed_at_the_broker() -> None:
    s = _Setup()
    decision = s.decide(s.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD))
    # Equal weight: 10,000 / 10 positions = $1,000, a notional order (AAA is fractionable).
    assert [(t.symbol, t.notional) for t in decision.approved] == [("AAA", 1_000.0)]
    assert decision.report is not None and [o.notional for o in decision.report.submitted] == [1_000.0]
    assert decision.rejected_count == 0 and decision.held_back == ""


def test_a_stop_loss_exit_is_recorded_and_cools_the_next_entry_of_that_symbol_down() -> None:
    s = _Setup()
    s.hold("AAA", 10)
    s.advance()                                          # AAA closes at 90: 10 % under the entry at 100
    decision = s.decide(s.signal("AAA", Side.SELL, SignalReason.EXIT_STOP_LOSS))
    assert decision.report is not None and [o.qty for o in decision.report.submitted] == [10.0]
    assert s.ledger.last_stop_loss_exit("AAA") == s.session
    s.advance()                                          # the sale fills; one session after the stop
    refused = s.decide(s.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD))
    assert refused.report is None
    (rejection,) = refused.risk.rejected
    assert "cooling down after a stop-loss exit" in rejection.reason and refused.settled == [rejection]


def test_a_mean_reversion_exit_starts_no_cooldown() -> None:
    s = _Setup()
    s.hold("AAA", 10)
    s.decide(s.signal("AAA", Side.SELL, SignalReason.EXIT_MEAN_REVERTED))
    assert s.ledger.last_stop_loss_exit("AAA") is None


def test_an_exit_sells_only_the_daemons_own_shares() -> None:
    s = _Setup()
    s.hold("AAA", 5)
    decision = s.decide(s.signal("AAA", Side.SELL, SignalReason.EXIT_MEAN_REVERTED),
                        book={"AAA": _Own(3.0, 100.0, SESSIONS[0])})   # 2 of the 5 shares are the user's
    assert decision.report is not None and [o.qty for o in decision.report.submitted] == [3.0]


class _ForeignOrdersWatch:
    """A broker watch for which no open order is the daemon's own; it keeps what risk refused."""

    def __init__(self) -> None:
        self.refused: list[Rejection] = []

    def account_read(self, account: AccountView, session: date) -> None:
        return None

    def open_orders_read(self, open_orders: object, session: date) -> None:
        return None

    def own_order_ids(self, open_orders: object) -> frozenset[str]:
        return frozenset()

    def risk_refused(self, rejections: list[Rejection], session: date) -> None:
        self.refused += rejections


def test_an_open_buy_that_is_not_the_daemons_blocks_its_exit_and_the_watch_is_told() -> None:
    watch = _ForeignOrdersWatch()
    s = _Setup(watch=watch)
    s.hold("AAA", 5)
    s.broker.submit_order(OrderSpec("user-buy-AAA", "AAA", Side.BUY, qty=1.0))   # open until the next session
    decision = s.decide(s.signal("AAA", Side.SELL, SignalReason.EXIT_MEAN_REVERTED))
    (rejection,) = decision.risk.rejected
    assert rejection.meta.get("foreign_open_buy") == "user-buy-AAA" and "not the daemon's" in rejection.reason
    assert watch.refused == [rejection] and decision.report is None
    # The backtest's watch counts every open order as its own: the same buy holds the exit back as its own entry.
    own = _Setup()
    own.hold("AAA", 5)
    own.broker.submit_order(OrderSpec("own-buy-AAA", "AAA", Side.BUY, qty=1.0))
    (mine,) = own.decide(own.signal("AAA", Side.SELL, SignalReason.EXIT_MEAN_REVERTED)).risk.rejected
    assert "foreign_open_buy" not in mine.meta and "an entry order for AAA is still open" in mine.reason


def test_nothing_is_sent_while_the_market_is_closed_or_a_stop_is_requested() -> None:
    s = _Setup()
    closed = s.decide(s.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD), may_send=False)
    assert closed.held_back == "market closed" and closed.report is None and len(closed.risk.approved) == 1
    stopping = _Setup(stop_requested=lambda: True)
    held = stopping.decide(stopping.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD))
    assert held.held_back == "stop requested" and held.report is None
    assert s.broker.get_open_orders() == [] and stopping.broker.get_open_orders() == []


def test_a_halt_is_kept_by_a_durable_ledger_and_judged_afresh_by_the_backtests(tmp_path: Path) -> None:
    # Peak 20,000, equity 10,000: a 50 % drawdown trips the kill switch in both.
    with StateStore(tmp_path, SimClock(datetime(2024, 3, 5, 21, 0, tzinfo=UTC))) as store:
        live = _Setup(ledger=store, peak=20_000.0)
        first = live.decide(live.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD))
        assert [h.split(":")[0] for h in first.risk.halts] == ["max_drawdown"]
        assert [h.kind for h in store.active_halts()] == ["max_drawdown"]
        live.peak = live.pipeline.peak = _FixedPeak(10_000.0)          # the drawdown is gone...
        again = live.decide(live.signal("BBB", Side.BUY, SignalReason.ENTRY_OVERSOLD))
        assert again.report is None and "entries halted: max_drawdown" in again.risk.rejected[0].reason  # ...kept
    backtest = _Setup(peak=20_000.0)
    assert backtest.decide(backtest.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD)).risk.halts
    backtest.pipeline.peak = _FixedPeak(10_000.0)
    assert backtest.decide(backtest.signal("BBB", Side.BUY, SignalReason.ENTRY_OVERSOLD)).report is not None


class _RefuseEntries:
    """A send gate that refuses every entry (as the live price check does on a bad print)."""

    def __init__(self) -> None:
        self.seen: list[list[str]] = []

    def check(self, targets: list[OrderTarget], view: BrokerView, session: date) -> GateResult:
        self.seen.append([t.symbol for t in targets])
        refused = [Rejection(t.symbol, t.side, "gate", "refused") for t in targets if t.side is Side.BUY]
        return GateResult(approved=[t for t in targets if t.side is Side.SELL], refused=refused, settled=refused)


def test_the_send_gate_judges_approved_orders_and_its_refusals_are_reported_and_settled() -> None:
    gate = _RefuseEntries()
    s = _Setup(gate=gate)
    s.hold("BBB", 4)
    decision = s.decide(s.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD),
                        s.signal("BBB", Side.SELL, SignalReason.EXIT_MAX_HOLDING))
    assert gate.seen == [["BBB", "AAA"]]                 # exits first, as risk approved them
    assert [r.symbol for r in decision.refused] == ["AAA"] and decision.settled == decision.refused
    assert decision.report is not None and [o.symbol for o in decision.report.submitted] == ["BBB"]
    assert decision.rejected_count == 1
    assert _Setup(gate=OPEN_GATE).decide(_Setup().signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD)).refused == []


def test_risk_refusals_are_not_settled_while_the_cash_flows_are_unreadable() -> None:
    class _Unknown:
        def update(self, account: AccountView, now: datetime) -> FlowFigures:
            return FlowFigures(peak=account.equity, flows_today=0.0, unknown="activities unavailable")

    s = _Setup()
    s.pipeline.peak = _Unknown()
    decision = s.decide(s.signal("AAA", Side.BUY, SignalReason.ENTRY_OVERSOLD))
    assert decision.risk.rejected and decision.settled == []   # read again next iteration, not remembered


def test_the_backtest_ledger_keeps_stop_losses_and_no_halt() -> None:
    ledger = MemoryRiskLedger()
    ledger.record_exit("AAA", SESSIONS[2], SignalReason.EXIT_STOP_LOSS.value)
    assert ledger.last_stop_loss_exit("AAA") == SESSIONS[2] and ledger.last_stop_loss_exit("BBB") is None
    assert ledger.add_halt("max_drawdown", "max_drawdown: x", SESSIONS[2]) is False and ledger.active_halts() == ()
    peak = RunningPeak(100.0)
    peak.observe(120.0)
    peak.observe(110.0)
    assert peak.update(AccountView(115.0, 115.0, 115.0, 115.0), datetime(2024, 3, 5)).peak == 120.0
    assert peak.update(AccountView(130.0, 130.0, 130.0, 130.0), datetime(2024, 3, 5) + timedelta(days=1)).peak == 130.0


def test_types_the_project_shares_are_defined_once() -> None:
    import core.backtest.broker as backtest_broker
    import core.domain.models as models
    import core.sim.account as sim_account
    import core.sim.exchange as exchange
    import core.state.orders as state_orders
    import core.state.store as store
    from config import universe
    from core.broker import alpaca_gateway
    from core.domain import ports

    assert exchange.Fill is sim_account.Fill is store.Fill is state_orders.Fill is backtest_broker.Fill is models.Fill
    assert exchange.DEFAULT_NON_FRACTIONABLE is backtest_broker.DEFAULT_NON_FRACTIONABLE is universe.DEFAULT_NON_FRACTIONABLE
    assert not hasattr(alpaca_gateway, "RawBars") or alpaca_gateway.RawBars is ports.RawBars
    # And in the source: one class statement or assignment each, wherever a module may be split later.
    homes: dict[str, list[str]] = {"Fill": [], "RawBars": [], "DEFAULT_NON_FRACTIONABLE": []}
    for package in ("agents", "core", "config"):
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            for node in ast.parse(path.read_text(encoding="utf-8")).body:
                names = ([node.name] if isinstance(node, ast.ClassDef) else
                         [t.id for t in node.targets if isinstance(t, ast.Name)] if isinstance(node, ast.Assign) else
                         [node.target.id] if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                         else [])
                for name in names:
                    if name in homes:
                        homes[name].append(str(path.relative_to(REPO_ROOT)))
    assert homes == {"Fill": ["core/domain/models.py"], "RawBars": ["core/domain/ports.py"],
                     "DEFAULT_NON_FRACTIONABLE": ["config/universe.py"]}


@pytest.mark.parametrize("method", ["get_account", "get_fractional_trading", "get_positions", "get_open_orders",
                                    "get_order_by_client_id", "submit_order", "cancel_order", "get_asset",
                                    "get_clock", "get_calendar"])
def test_the_backtest_broker_implements_the_whole_broker_port_clock_included(method: str) -> None:
    broker = BacktestBroker(_history(), initial_cash=1_000.0, calendar=CAL)
    assert callable(getattr(broker, method))
    broker.start_session(1)
    clock = broker.get_clock()
    # A minute after the close of the current session; the next open is the next session's.
    assert clock.timestamp == CAL.session_close(SESSIONS[1]) + timedelta(minutes=1) and not clock.is_open
    assert clock.next_open == CAL.session_open(SESSIONS[2])
    assert [d.session for d in broker.get_calendar(SESSIONS[0], SESSIONS[2])] == SESSIONS[:3]
