"""The backtest loop: the daemon's own agents, session by session, against `BacktestBroker`.

For each session t of the period (row t of the history), in this order:

    a. open:  the broker fills the orders decided at t-1 at t's open (fill_at="next_open")
    b. close: positions are marked at t's close; equity, cash and tier exposure are recorded
    c. scan:  rank_candidates() over row t of the precomputed score panel (whole universe) gives the
              candidates the live daemon would load from candidates.json for the decision on bar t;
              the decision pipeline's merge_focus() adds the baseline, held and open-order symbols
              (whole universe with --no-scanner)
    d. SignalAgent.signals_at(panel, t, holdings, focus)
    e. SignalValidator.validate(signals, now = close of t + 1 minute, current prices = last closes)
    f. DecisionPipeline.decide(): risk inputs, RiskAgent, ExecutionAgent, stop-loss exits -> orders at
       the broker; the same code as the live daemon's (core/decision_pipeline.py), with the backtest's
       ports: an in-memory ledger (no halt is kept), the running equity peak, no price gate (the bars
       are the broker's prices) and no exit pursuit (the broker's refusals are final)

With fill_at="next_open" no decision is made on the period's last session (its orders could not
fill inside the period). The z-scores are computed once for the whole history (causal: row t uses
rows <= t), so the per-session Python work is the decisions themselves. Log events below ERROR are
dropped during the run: the agents log every rejection at info level, which would dominate the
run time and flood the terminal.
"""

from __future__ import annotations

import bisect
import logging
import math
import sys
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

import numpy as np
import structlog

from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent, RiskParams
from agents.signal_agent import Holding, SignalAgent
from agents.strategies.loader import strategy_from_config
from config.settings import AppConfig
from config.universe import BASELINE_SYMBOLS, DEFAULT_NON_FRACTIONABLE
from core.backtest.broker import DECISION_DELAY, BacktestBroker, CostModel, FillAt
from core.backtest.data import SYNTHETIC_SOURCE_PREFIX, History
from core.backtest.errors import BacktestOptionsError
from core.decision_pipeline import DecisionPipeline, merge_focus, signal_holdings
from core.decision_ports import MemoryRiskLedger, RunningPeak
from core.domain.bar_panel import BarPanel
from core.domain.market_calendar import MarketCalendar, get_market_calendar
from core.domain.models import Fill, OrderTarget, PositionView, Rejection, Side, Signal
from core.domain.signal_validator import SignalValidator
from core.domain.tier_exposure_tracker import UNTIERED
from core.scanner import rank_candidates
from core.state.memory_journal import MemoryJournal

DEFAULT_END_CUTOFF = date(2026, 11, 1)
DEFAULT_YEARS = 10
PROGRESS_MIN_SESSIONS = 250
BARS_REQUESTS_PER_ITERATION = 1    # the DataAgent's one batched bars request (modelled, no data port here)
BARE_MIN_NOTIONAL = 0.01
TIER_COLUMNS: tuple[str, ...] = ("TIER1", "TIER2", "TIER3", UNTIERED)
BENCHMARK_SYMBOL = "SPY"           # the report's buy-and-hold line, when the data holds it
BUYING_POWER_REFUSAL = "insufficient buying power for "


@dataclass(frozen=True)
class BacktestOptions:
    """What to run. `None` means "from the configuration" (or the default period)."""

    start: date | None = None
    end: date | None = None
    symbols: tuple[str, ...] | None = None
    initial_cash: float | None = None
    use_scanner: bool | None = None
    fractional: bool | None = None
    bare: bool = False
    position_notional: float | None = None
    commission: float = 0.0            # dollars per order
    commission_bps: float = 0.0        # of each fill's value
    slippage_bps: float = 0.0
    fill_at: FillAt = "next_open"
    seed: int | None = None
    show_progress: bool = True


@dataclass(frozen=True)
class RunSpec:
    """Options resolved against the configuration: every value concrete."""

    start: date
    end: date
    symbols: tuple[str, ...]
    initial_cash: float
    use_scanner: bool
    fractional: bool
    bare: bool
    position_notional: float | None
    commission: float
    commission_bps: float
    slippage_bps: float
    fill_at: FillAt
    seed: int
    symbol_tiers: dict[str, str]

    def describe(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat(), "end": self.end.isoformat(), "symbols": list(self.symbols),
            "initial_cash": self.initial_cash, "use_scanner": self.use_scanner, "fractional": self.fractional,
            "bare": self.bare, "position_notional": self.position_notional, "commission": self.commission,
            "commission_bps": self.commission_bps, "slippage_bps": self.slippage_bps, "fill_at": self.fill_at,
            "seed": self.seed,
        }


@dataclass
class Trade:
    """One round trip (or a position still open at the end, with no exit)."""

    symbol: str
    entry_date: date
    entry_price: float
    shares: float
    tier: str | None
    fractional: bool
    entry_commission: float
    exit_date: date | None = None
    exit_price: float | None = None
    exit_reason: str = ""
    exit_commission: float = 0.0
    pnl: float = 0.0
    holding_sessions: int | None = None

    @property
    def is_open(self) -> bool:
        return self.exit_date is None


@dataclass(frozen=True, slots=True)
class OwnShares:
    """A position in the backtest's own book: every share at its broker is the backtest's own."""

    qty: float
    avg_entry_price: float
    entry_session: date | None


@dataclass(frozen=True, slots=True)
class OrderRecord:
    """A submitted order with the decision behind it (for the report and the invariant tests)."""

    session: date
    symbol: str
    side: Side
    reason: str
    tier: str | None
    fractional_order: bool
    qty: float | None
    notional: float | None
    target_notional: float
    price: float
    equity: float
    client_order_id: str


@dataclass
class BacktestResult:
    spec: RunSpec
    source: str
    sessions: list[date]
    equity: np.ndarray
    cash: np.ndarray
    open_positions: np.ndarray
    exposure: dict[str, np.ndarray]          # tier -> market value / equity, per session
    trades: list[Trade]
    orders: list[OrderRecord]
    fills: list[Fill]
    requests: list[int]                      # per decision iteration
    request_totals: dict[str, int]
    counts: Counter[str]
    rejection_kinds: Counter[str]
    halted_sessions: int                     # sessions whose signals met halted entries (a kill switch, a loss)
    min_cash: float
    elapsed_s: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)
    zero_share_symbols: Counter[str] = field(default_factory=Counter)
    benchmark_closes: np.ndarray | None = None   # BENCHMARK_SYMBOL's close per session, when in the data
    first_halt: tuple[date, str] | None = None   # the first halted session and its reason
    last_halted_session: date | None = None

    @property
    def final_equity(self) -> float:
        return float(self.equity[-1])


# ---------------------------------------------------------------------------------------------
# Options
# ---------------------------------------------------------------------------------------------
def default_period(calendar: MarketCalendar, end: date | None = None, start: date | None = None) -> tuple[date, date]:
    """Missing ends of the period: the end defaults to the last session before 2026-11-01 (fixed, so
    runs are reproducible), the start to the day after the same date ten years before the end."""
    if end is None:
        end = calendar.previous_session(DEFAULT_END_CUTOFF)
    if start is None:
        start = years_before(end, DEFAULT_YEARS) + timedelta(days=1)
    return start, end


def years_before(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def warmup_sessions(config: AppConfig) -> int:
    """Bars fetched before the start: as many as the live DataAgent asks for (2 x bars needed, >= 40)."""
    return max(2 * strategy_from_config(config).bars_needed(), 40)


def resolve(options: BacktestOptions, config: AppConfig, history: History | None = None,
            calendar: MarketCalendar | None = None) -> RunSpec:
    """Concrete run settings. For file data (a `History` not from the synthetic market) a missing
    --end is the file's last session and a missing --start the later of the file's first session
    and ten years before the end; bars before --start serve as warm-up."""
    calendar = calendar or get_market_calendar()
    symbols = tuple(options.symbols) if options.symbols else tuple(config.symbols)
    if len(set(symbols)) != len(symbols):
        raise BacktestOptionsError(f"--symbols lists a symbol twice: {', '.join(symbols)}")
    if history is not None and not is_synthetic(history):
        end = options.end or history.sessions[-1]
        start = options.start
        if start is None:
            # No signal can come before `lookback` bars exist, so starting at the first bar is safe.
            start = max(history.sessions[0], default_period(calendar, end)[0])
    else:
        start, end = default_period(calendar, options.end, options.start)
    if start > end:
        raise BacktestOptionsError(f"--start {start} is after --end {end}")
    if end > calendar.last_session or start < calendar.first_session:
        raise BacktestOptionsError(
            f"the period {start} .. {end} leaves the NYSE calendar this build knows "
            f"({calendar.first_session} .. {calendar.last_session})")
    for name, value in (("--initial-cash", options.initial_cash), ("--position-notional", options.position_notional)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise BacktestOptionsError(f"{name} {value!r}: expected a positive amount")
    for name, value in (("--commission", options.commission), ("--commission-bps", options.commission_bps),
                        ("--slippage-bps", options.slippage_bps)):
        if not (math.isfinite(value) and value >= 0):
            raise BacktestOptionsError(f"{name} {value!r}: expected a number >= 0")
    if options.fill_at not in ("next_open", "close"):
        raise BacktestOptionsError(f"--fill-at {options.fill_at!r}: expected next_open or close")
    bare = options.bare
    use_scanner = (config.use_scanner if options.use_scanner is None else options.use_scanner) and not bare
    fractional = (config.enable_fractional_shares if options.fractional is None else options.fractional) and not bare
    # A run over --symbols behaves like a daemon whose SYMBOL_TIERS lists just those symbols: tier
    # slots are counted over them; symbols without a configured tier size by equal weight.
    tiers = {s: config.symbol_tiers[s] for s in symbols if s in config.symbol_tiers}
    return RunSpec(
        start=start, end=end, symbols=symbols,
        initial_cash=float(options.initial_cash if options.initial_cash is not None else config.sim_initial_cash),
        use_scanner=use_scanner, fractional=fractional, bare=bare,
        position_notional=options.position_notional, commission=float(options.commission),
        commission_bps=float(options.commission_bps), slippage_bps=float(options.slippage_bps),
        fill_at=options.fill_at, seed=int(options.seed if options.seed is not None else config.sim_seed),
        symbol_tiers=tiers,
    )


def is_synthetic(history: History) -> bool:
    return history.source.startswith(SYNTHETIC_SOURCE_PREFIX)


def risk_params(spec: RunSpec, config: AppConfig) -> RiskParams:
    base = RiskParams.from_config(config)
    params = replace(base, symbol_tiers=dict(spec.symbol_tiers), enable_fractional_shares=spec.fractional,
                     fixed_position_notional=spec.position_notional)
    if spec.bare:
        params = replace(params, enable_tiered_allocation=False, enforce_position_limit=False,
                         enforce_cooldown=False, enforce_halts=False, buying_power_buffer_pct=0.0,
                         # One cent, not zero: the RiskAgent builds a TieredPositionSizer even with
                         # tiers off, and the sizer refuses a minimum that is not positive.
                         min_order_notional=BARE_MIN_NOTIONAL)
    return params


# ---------------------------------------------------------------------------------------------
# Logging and progress
# ---------------------------------------------------------------------------------------------
# The agents that log once per order or refusal. Their module loggers are structlog's lazy proxies, which
# build a new logger on every call (3-4 us even when the event is dropped); during a quiet run each gets
# one logger bound to the quiet configuration instead, and its proxy back afterwards.
HOT_LOGGERS: tuple[str, ...] = ("agents.risk_agent", "agents.execution_agent", "core.decision_pipeline")


@contextmanager
def quiet_logs(level: int = logging.ERROR) -> Iterator[None]:
    """Make structlog calls below `level` no-ops for the duration, then restore the configuration."""
    previous = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level), cache_logger_on_first_use=False)
    swapped = []
    for name in HOT_LOGGERS:
        module = sys.modules.get(name)
        proxy = vars(module).get("log") if module is not None else None
        if proxy is not None:
            bound = proxy.bind()
            module.log = bound  # type: ignore[union-attr]
            swapped.append((module, proxy, bound))
    try:
        yield
    finally:
        for module, proxy, bound in swapped:
            if vars(module).get("log") is bound:
                module.log = proxy  # type: ignore[union-attr]
        structlog.configure(**previous)


class _Progress:
    """A transient rich progress bar, or nothing when not on a TTY or for short runs."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled = enabled and total >= PROGRESS_MIN_SESSIONS and sys.stderr.isatty()
        self._bar: Any = None
        self._task: Any = None
        self.total = total

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("backtest"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                 transient=True, console=Console(stderr=True))
            self._bar.__enter__()
            self._task = self._bar.add_task("sessions", total=self.total)
        return self

    def advance(self, done: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------
def classify_rejection(reason: str) -> str:
    """A short, stable kind for a rejection reason (the reasons themselves carry numbers)."""
    if reason.startswith(BUYING_POWER_REFUSAL):
        # The RiskAgent's "insufficient buying power for SYM: need N, usable N (available N after open buys,
        # buffer N%)", by far the most frequent refusal on a large universe: no earlier needle can occur in it.
        return "buying_power"
    text = reason.lower()
    for needle, kind in (
        ("zero-share", "zero_share"), ("zero whole shares", "zero_share"), ("rounds to zero", "zero_share"),
        ("below the minimum notional", "min_notional"), ("below the $", "min_notional"),
        ("max open positions", "max_positions"), ("would exceed its budget", "tier_budget"),
        ("insufficient buying power", "buying_power"), ("cooling down", "cooldown"),
        ("entries halted", "halted"), ("already held", "already_held"), ("already has an open order", "already_held"),
        ("open (", "order_open"), ("stale signal", "stale"), ("drifted", "drift"), ("duplicate", "duplicate"),
        ("not held", "not_held"),
    ):
        if needle in text:
            return kind
    return "other"


def run_backtest(history: History, config: AppConfig, options: BacktestOptions, *,
                 calendar: MarketCalendar | None = None) -> BacktestResult:
    calendar = calendar or get_market_calendar()
    spec = resolve(options, config, history, calendar)
    return _Engine(history, config, spec, calendar, options.show_progress).run()


def _benchmark_closes(history: History, sessions: list[date]) -> np.ndarray | None:
    """The benchmark's closes on the run's sessions, read from the whole data (it need not be traded)."""
    if BENCHMARK_SYMBOL not in history.symbols or not sessions:
        return None
    column = history.close[:, history.symbols.index(BENCHMARK_SYMBOL)]
    lo = bisect.bisect_left(history.sessions, sessions[0])
    return np.array(column[lo:lo + len(sessions)], dtype=float)


class _Engine:
    def __init__(self, history: History, config: AppConfig, spec: RunSpec, calendar: MarketCalendar,
                 show_progress: bool) -> None:
        self.config = config
        self.spec = spec
        self.calendar = calendar
        self.show_progress = show_progress
        missing = [s for s in spec.symbols if s not in history.symbols]
        if missing:
            raise BacktestOptionsError(f"{history.source or 'the data'} has no bars for {', '.join(missing)}")
        hist = history.select(list(spec.symbols)).between(history.sessions[0], spec.end)
        first = bisect.bisect_left(hist.sessions, spec.start)
        if first >= hist.n_sessions:
            raise BacktestOptionsError(
                f"no bars between {spec.start} and {spec.end} in {history.source or 'the data'} "
                f"(its bars run from {history.sessions[0]} to {history.sessions[-1]})")
        self.history = hist
        self.first_row = first
        self.benchmark_closes = _benchmark_closes(history, hist.sessions[first:])
        self.signal_agent = SignalAgent.from_config(config, calendar)
        # Read-only views, as the live DataAgent's panel: a strategy that writes into its bars fails the same way
        # in both, and never changes the prices the broker fills at.
        self.panel = self.signal_agent.prepare(
            BarPanel(hist.sessions, hist.symbols, *(_read_only(a) for a in (hist.open, hist.high, hist.low, hist.close,
                                                                             hist.volume))))
        if spec.bare:
            self.validator = SignalValidator(calendar, config.max_price_drift_pct, check_freshness=False,
                                             check_drift=False)
        else:
            self.validator = SignalValidator(calendar, config.max_price_drift_pct)
        self.risk = RiskAgent(risk_params(spec, config), calendar)
        self.broker = BacktestBroker(
            hist, initial_cash=spec.initial_cash,
            costs=CostModel(spec.commission, spec.commission_bps, spec.slippage_bps),
            fill_at=spec.fill_at, fractional_trading=spec.fractional, non_fractionable=DEFAULT_NON_FRACTIONABLE,
            calendar=calendar)
        self.journal = MemoryJournal()
        self.execution = ExecutionAgent(self.broker, self.journal, enable_fractional=spec.fractional,
                                        min_notional=1.0 if spec.bare else config.min_order_notional)
        self.ledger = MemoryRiskLedger()
        self.peak = RunningPeak(spec.initial_cash)
        self._decision_time = calendar.session_close(hist.sessions[first]) + DECISION_DELAY
        self.pipeline = DecisionPipeline(self.risk, self.execution, self.broker, self.ledger, self.peak,
                                         clock=lambda: self._decision_time)
        universe = set(spec.symbols)
        self.baseline = [] if spec.bare else [s for s in BASELINE_SYMBOLS if s in universe]
        self.tier_of = {s: spec.symbol_tiers.get(s, UNTIERED) for s in spec.symbols}

    # ------------------------------------------------------------------ main loop
    def run(self) -> BacktestResult:
        spec, hist, broker = self.spec, self.history, self.broker
        rows = range(self.first_row, hist.n_sessions)
        n = len(rows)
        equity = np.empty(n)
        cash = np.empty(n)
        positions = np.zeros(n, dtype=int)
        exposure = {tier: np.zeros(n) for tier in TIER_COLUMNS}
        self.trades: list[Trade] = []
        self.open_trades: dict[str, Trade] = {}
        self.orders: list[OrderRecord] = []
        self.order_meta: dict[str, OrderRecord] = {}
        self.requests: list[int] = []
        self.counts: Counter[str] = Counter()
        self.kinds: Counter[str] = Counter()
        self.zero_share_symbols: Counter[str] = Counter()
        self._rejection_keys: dict[tuple[str, str], tuple[str, str]] = {}
        self.entry_sessions: dict[str, date] = {}
        self.halted_sessions = 0
        self.first_halt: tuple[date, str] | None = None
        self.last_halted_session: date | None = None
        self._fills_seen = 0
        self._book_key: tuple[int, int] | None = None
        self._book: dict[str, OwnShares] = {}
        self._holdings: dict[str, Holding] = {}
        tier_of = self.tier_of
        last_row = hist.n_sessions - 1
        decide_last = spec.fill_at == "close"
        started = time.perf_counter()
        with quiet_logs(), _Progress(n, self.show_progress) as progress:
            for k, row in enumerate(rows):
                broker.start_session(row)
                self._book_fills()
                eq = broker.mark(row)
                if row < last_row or decide_last:
                    self._decide(row)
                    eq = broker.equity
                equity[k] = eq
                cash[k] = broker.cash
                positions[k] = len(broker.positions)
                if broker.positions and eq > 0:
                    held: dict[str, float] = {}
                    for symbol, value in broker.position_values():
                        tier = tier_of[symbol]
                        held[tier] = held.get(tier, 0.0) + value / eq
                    for tier, share in held.items():
                        exposure[tier][k] = share
                self.peak.observe(eq)
                if k & 63 == 0:
                    progress.advance(k)
        elapsed = time.perf_counter() - started
        self._close_open_trades(hist.n_sessions - 1)
        return BacktestResult(
            spec=spec, source=hist.source, sessions=list(hist.sessions[self.first_row:]), equity=equity, cash=cash,
            open_positions=positions, exposure=exposure, trades=self.trades, orders=self.orders,
            fills=list(broker.fills), requests=self.requests, request_totals=dict(broker.calls.totals),
            counts=self.counts, rejection_kinds=self.kinds, halted_sessions=self.halted_sessions,
            min_cash=broker.min_cash, elapsed_s=elapsed, zero_share_symbols=self.zero_share_symbols,
            benchmark_closes=self.benchmark_closes, first_halt=self.first_halt,
            last_halted_session=self.last_halted_session,
            params={"name": self.signal_agent.strategy.name, **self.signal_agent.strategy.params.model_dump(),
                    "stop_loss_pct": self.signal_agent.exits.stop_loss_pct,
                    "max_holding_sessions": self.signal_agent.exits.max_holding_sessions,
                    "max_open_positions": self.config.max_open_positions,
                    "min_order_notional": self.config.min_order_notional,
                    "tier_allocations": self.config.tier_allocations,
                    "scanner_top_n": self.config.scanner_top_n},
        )

    # ------------------------------------------------------------------ one decision
    def _decide(self, row: int) -> None:
        hist, broker = self.history, self.broker
        session = hist.sessions[row]
        broker.calls.reset()
        positions = broker.get_positions()
        # Live, open orders come from the state store, not from a broker call.
        open_symbols = broker.open_order_symbols()
        focus = merge_focus(self._candidates(row), baseline=self.baseline, held=positions, open_orders=open_symbols,
                            universe=None)
        book = self._own_book(positions)
        signals = self.signal_agent.signals_at(self.panel, row, self._holdings, focus)
        if signals:
            self.counts["signals"] += len(signals)
            prices = broker.last_prices
            self._decision_time = now = self.calendar.session_close(session) + DECISION_DELAY
            # One iteration per session: nothing was handled earlier for this bar (live, the store says so).
            accepted, rejected = self.validator.validate(signals, now, prices, ())
            self._count_rejections(rejected)
            if accepted:
                self._decide_orders(row, accepted, positions, book, prices)
        self.requests.append(BARS_REQUESTS_PER_ITERATION + sum(broker.calls.current.values()))
        broker.calls.reset()

    def _own_book(self, positions: dict[str, PositionView]) -> dict[str, OwnShares]:
        """The backtest's own book (every share at its broker is its own) and the signal step's holdings.

        Both change only with a fill (or with the fill's booking, which sets the entry session), so they
        are rebuilt then, not every session."""
        key = (len(self.broker.fills), self._fills_seen)
        if key != self._book_key:
            self._book_key = key
            self._book = {s: OwnShares(p.qty, p.avg_entry_price, self.entry_sessions.get(s))
                          for s, p in positions.items()}
            self._holdings = signal_holdings(self._book, positions)
        return self._book

    def _candidates(self, row: int) -> list[str] | None:
        """The scanner's candidates for the decision on bar `row` (None without the scanner)."""
        if not self.spec.use_scanner:
            return None
        # Only symbols below the oversold threshold can be selected, so handing rank_candidates just
        # those (found in one vectorised comparison; NaN compares False) selects exactly the same
        # symbols as the whole row would, without formatting an exclusion reason for every other
        # symbol each session (that formatting was 40% of the scanner run's time).
        return rank_candidates(self.signal_agent.candidates_at(self.panel, row), top_n=self.config.scanner_top_n,
                               oversold_z=self.signal_agent.scan_threshold, baseline=self.baseline).symbols

    def _decide_orders(self, row: int, accepted: list[Signal], positions: dict[str, PositionView],
                       book: dict[str, OwnShares], prices: Mapping[str, float]) -> None:
        hist = self.history
        trading_session = hist.sessions[row + 1] if self.spec.fill_at == "next_open" else hist.sessions[row]
        decision = self.pipeline.decide(accepted, positions, book, prices, trading_session)
        if decision.risk.halts:
            self.halted_sessions += 1
            self.last_halted_session = hist.sessions[row]
            if self.first_halt is None:
                self.first_halt = (hist.sessions[row], decision.risk.halts[0])
        self._count_rejections(decision.risk.rejected)
        report = decision.report
        if report is None:
            return
        self._count_rejections(report.rejected)
        self.counts["fractional_orders"] += report.fractional_orders
        self.counts["whole_share_orders"] += report.whole_share_orders
        by_key = {(t.symbol, t.side): t for t in decision.approved}
        equity = decision.account.equity
        for order in report.submitted:
            target: OrderTarget = by_key[(order.symbol, order.side)]
            fractional_order = order.notional is not None or (
                order.qty is not None and abs(order.qty - round(order.qty)) > 1e-9)
            record = OrderRecord(
                session=hist.sessions[row], symbol=order.symbol, side=order.side, reason=target.signal.reason.value,
                tier=target.tier, fractional_order=fractional_order, qty=order.qty, notional=order.notional,
                target_notional=target.notional, price=target.price, equity=equity,
                client_order_id=order.client_order_id)
            self.orders.append(record)
            self.order_meta[order.id] = record
            self.counts["orders_" + order.side.value] += 1
        self._book_fills()

    def _count_rejections(self, rejections: Sequence[Rejection]) -> None:
        keys = self._rejection_keys
        for rejection in rejections:
            kind = classify_rejection(rejection.reason)
            pair = keys.get((rejection.stage, kind))
            if pair is None:
                pair = keys[(rejection.stage, kind)] = (f"{rejection.stage}:{kind}", f"rejected_{rejection.stage}")
            self.kinds[pair[0]] += 1
            self.counts[pair[1]] += 1
            if kind == "zero_share":
                self.counts["zero_share_skips"] += 1
                self.zero_share_symbols[rejection.symbol] += 1

    # ------------------------------------------------------------------ bookkeeping
    def _book_fills(self) -> None:
        fills = self.broker.fills
        while self._fills_seen < len(fills):
            fill = fills[self._fills_seen]
            self._fills_seen += 1
            meta = self.order_meta.get(fill.order_id)
            if fill.side is Side.BUY:
                self._open_trade(fill, meta)
            else:
                self._close_trade(fill, meta)

    def _open_trade(self, fill: Fill, meta: OrderRecord | None) -> None:
        trade = self.open_trades.get(fill.symbol)
        if trade is None:
            fill_session = _session_of(fill)
            self.open_trades[fill.symbol] = Trade(
                symbol=fill.symbol, entry_date=fill_session, entry_price=fill.price, shares=fill.qty,
                tier=meta.tier if meta else None, fractional=meta.fractional_order if meta else False,
                entry_commission=fill.commission)
            self.entry_sessions[fill.symbol] = fill_session
            return
        # A second buy of a held symbol cannot come from the RiskAgent; kept correct regardless.
        total = trade.shares + fill.qty
        trade.entry_price = (trade.entry_price * trade.shares + fill.price * fill.qty) / total
        trade.shares = total
        trade.entry_commission += fill.commission

    def _close_trade(self, fill: Fill, meta: OrderRecord | None) -> None:
        trade = self.open_trades.get(fill.symbol)
        if trade is None:
            return
        if fill.qty < trade.shares - 1e-9:
            # Partial exit: split the round trip so each row keeps its own shares and P&L.
            share = fill.qty / trade.shares
            closed = replace(trade, shares=fill.qty, entry_commission=trade.entry_commission * share)
            trade.shares -= fill.qty
            trade.entry_commission -= closed.entry_commission
            trade = closed
        else:
            del self.open_trades[fill.symbol]
            self.entry_sessions.pop(fill.symbol, None)
        fill_session = _session_of(fill)
        trade.exit_date = fill_session
        trade.exit_price = fill.price
        trade.exit_commission = fill.commission
        trade.exit_reason = meta.reason if meta else "unknown"
        trade.pnl = (fill.price - trade.entry_price) * trade.shares - trade.entry_commission - fill.commission
        trade.holding_sessions = self.calendar.session_distance(trade.entry_date, fill_session)
        self.trades.append(trade)

    def _close_open_trades(self, last_row: int) -> None:
        """Positions open at the end stay open: no exit, P&L marked at the last close (unrealised)."""
        last_session = self.history.sessions[last_row]
        for symbol in sorted(self.open_trades):
            trade = self.open_trades[symbol]
            mark = self.broker.last_price(symbol)
            trade.pnl = (mark - trade.entry_price) * trade.shares - trade.entry_commission
            trade.holding_sessions = self.calendar.session_distance(trade.entry_date, last_session)
            self.trades.append(trade)
        self.trades.sort(key=lambda t: (t.entry_date, t.symbol, t.exit_date or date.max))


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view


def _session_of(fill: Fill) -> date:
    """The session a backtest fill happened in (the backtest's broker always records it)."""
    assert fill.session is not None
    return fill.session
