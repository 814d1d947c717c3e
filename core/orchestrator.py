"""The synchronous orchestrator loop.

One iteration, in order (stages never call each other; typed objects flow one way):

    market clock -> focus symbols -> open-order refresh -> DataAgent (1 batched request)
    -> positions (1 request) -> book sync -> SignalAgent -> SignalValidator
    -> [only if signals survive] account + open orders + asset flags -> RiskAgent -> ExecutionAgent
    -> iteration record + one `iteration_complete` log event

The focus merge and everything from the accepted signals to the orders (risk inputs, RiskAgent,
ExecutionAgent, stop-loss exits, halts) are the decision pipeline (core/decision_pipeline.py), the
same code the backtest runs. This loop plugs the live adapters into its ports: the state database
(durable stop-loss exits and halts), the account activities (deposits and withdrawals are netted out
of the loss figures: core/cash_flow_tracker.py), the broker's own price checked before an order is
sent (core/domain/price_guard.py; one latest-trade request when entries are about to go), the exits it has
committed to (core/exit_commitments.py), and the observers of another daemon's orders.

A steady-state iteration with no signals and no open orders costs 2 requests (bars, positions):
the clock is cached until its next boundary and the account is fetched only when a decision needs it.

Outside market hours the loop sleeps towards the next open in bounded steps. After an error it
backs off (core/domain/loop_backoff.py: until the broker's rate-limit reset, else exponentially, capped at
60 s) and always sleeps. SIGTERM/SIGINT set a stop flag that is checked
between stages; every write is committed as it happens, so stopping loses nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from typing import Protocol

import structlog

from agents.data_agent import DataAgent
from agents.execution_agent import ExecutionAgent
from agents.risk_agent import RiskAgent, RiskParams
from agents.signal_agent import SignalAgent
from config.settings import AppConfig
from config.universe import BASELINE_SYMBOLS
from core.broker_calendar import BrokerCalendar
from core.broker_time import BrokerTimeClock
from core.cash_flow_tracker import CashFlowTracker
from core.decision_pipeline import Decision, DecisionPipeline, merge_focus, signal_holdings
from core.domain.clock import Clock
from core.domain.errors import BrokerError, CandidatesError, ReconciliationError, TradingDaemonError
from core.domain.loop_backoff import loop_backoff_seconds
from core.domain.market_calendar import MarketCalendar, get_market_calendar
from core.domain.models import Signal
from core.domain.ports import TradingGateway
from core.domain.price_guard import PriceGuard
from core.domain.signal_validator import SignalValidator
from core.events import EventSink, IterationFailed, NullEventSink
from core.exit_commitments import ExitCommitments
from core.instance_guard import InstanceGuard
from core.iteration_result import IterationResult
from core.live_decision_ports import BrokerPriceGate, LiveBrokerWatch
from core.loop_observers import (
    HaltWatcher,
    MarketStateAnnouncer,
    iteration_completed,
    startup_refused,
)
from core.market_clock import MarketClock
from core.reconcile import Reconciler
from core.state.candidates import load_candidates
from core.state.store import StateStore

log = structlog.get_logger("orchestrator")

MAX_SLEEP_STEP_SECONDS = 300.0
RERUN_REJECTED_AFTER = timedelta(minutes=30)


class Notifier(Protocol):
    """The service manager's notifications (core/runtime/systemd_notify.py)."""

    def ready(self) -> bool: ...

    def watchdog(self) -> bool: ...

    def status(self, text: str) -> bool: ...

    def stopping(self) -> bool: ...


# What risk refused for (symbol, side, signal session): the portfolio it refused against, and when.
Fingerprint = tuple[tuple[tuple[str, float], ...], int]


class Orchestrator:
    def __init__(self, config: AppConfig, gateway: TradingGateway, store: StateStore, clock: Clock, *,
                 calendar: MarketCalendar | None = None, dry_run: bool = False, notifier: Notifier | None = None,
                 scheduled: list[ScheduledTask] | None = None, events: EventSink | None = None) -> None:
        self.config = config
        self.gateway = gateway
        self.store = store
        # The host's clock, measured against the broker's on every clock request (core/broker_time.py),
        # and a calendar the broker corrects and whose clock decides the session (core/broker_calendar.py).
        clock = self.clock = clock if isinstance(clock, BrokerTimeClock) else BrokerTimeClock(
            clock, config.max_clock_skew_seconds)   # shared with the store and the metrics: one time base
        self.calendar = BrokerCalendar(calendar or get_market_calendar(), self.clock.to_broker)
        self.dry_run = dry_run
        self.notifier = notifier
        self.scheduled = scheduled or []
        self.market_clock = MarketClock(gateway, self.calendar, broker_time=self.clock)
        self.data_agent = DataAgent(config, market=gateway, clock=clock, calendar=self.calendar)
        self.signal_agent = SignalAgent.from_config(config, self.calendar)
        self.validator = SignalValidator(self.calendar, config.max_price_drift_pct)
        self.risk_agent = RiskAgent(RiskParams.from_config(config), self.calendar)
        self.execution = ExecutionAgent(gateway, store, dry_run=dry_run,
                                        enable_fractional=config.enable_fractional_shares,
                                        min_notional=config.min_order_notional,
                                        stop_requested=lambda: self.stopping, strategy_id=config.order_id_prefix,
                                        instance_id=store.instance_id)
        self.instance_guard = InstanceGuard(config.order_id_prefix, store.instance_id, store.instance_created_at)
        self.reconciler = Reconciler(config, gateway, store, self.execution, self.calendar, clock)
        self.execution.order_sink = self.reconciler.apply_order_update
        self.cash_flows = CashFlowTracker(gateway, store, self.calendar)
        self.price_guard = PriceGuard.from_config(config)
        self.events: EventSink = events or NullEventSink()
        self.reconciler.events = self.events
        self._market_state = MarketStateAnnouncer(self.events)
        self._halt_watch = HaltWatcher(self.events)
        self.exits = ExitCommitments(store, clock, self.execution.client_order_id_for, enabled=not dry_run)
        self.execution.attempt_of = self.exits.attempt_of
        self.pipeline = DecisionPipeline(
            self.risk_agent, self.execution, gateway, store, self.cash_flows, clock=self.clock.now,
            gate=BrokerPriceGate(self.price_guard, gateway), exits=self.exits,
            watch=LiveBrokerWatch(self.events, self.clock, self.instance_guard, store),
            stop_requested=lambda: self.stopping)
        self.stopping = False
        self.iterations_run = 0
        self.last_result: IterationResult | None = None
        self._known_positions: set[str] = set()
        self._rejections: dict[tuple[str, str, date], tuple[Fingerprint, datetime]] = {}

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, reason: str = "signal") -> None:
        if not self.stopping:
            log.info("stop_requested", reason=reason)
        self.stopping = True
        self.clock.interrupt()

    def startup(self, *, accept_broker_quantities: bool = False) -> None:
        """Reconcile with the broker before anything else; raises ReconciliationError to refuse."""
        # The broker's clock first (cached for the loop's first step): a skewed host clock is corrected
        # before the reconciliation judges which decision is stale.
        self.market_clock.view(self.clock.now())
        recent_orders = self.gateway.get_orders("all")
        try:
            self.instance_guard.check_at_startup(recent_orders, self.store,
                                                 self.calendar.current_or_next_session(self.clock.now()))
            report = self.reconciler.reconcile(accept_broker_quantities=accept_broker_quantities)
        except ReconciliationError as exc:
            self.events.emit(startup_refused(exc, self.clock.now()))
            raise
        except BrokerError:
            if not self.stopping:
                raise
            # A stop during start-up left an intent unsent on purpose: exit cleanly, the next start resolves it.
            log.info("startup_interrupted", reason="stop requested; pending intents are resolved at the next start")
            return
        self._halt_watch.prime(self.store.active_halts())
        self._known_positions = set(report.positions)
        log.info("reconciled", **report.summary())

    def run(self, *, max_iterations: int | None = None, once: bool = False,
            until: datetime | None = None) -> int:
        """The daemon loop. Returns the number of iterations run."""
        failures = 0
        if self.notifier is not None:
            self.notifier.ready()
        while not self.stopping:
            now = self.clock.now()
            if until is not None and now >= until:
                break
            self._run_due_tasks(now)
            try:
                market = self.market_clock.view(now)
            except TradingDaemonError as exc:
                failures += 1
                self._backoff(failures, f"market clock unavailable: {exc}", exc)
                continue
            market_open = market.is_open
            self._market_state.observe(market_open, market.next_close if market_open else market.next_open, now)
            if not market_open and not once:
                self._ping_watchdog("market closed; waiting for the open")
                self._sleep_towards(market.next_open, until)
                continue
            try:
                self.last_result = self.run_iteration(market_open=market_open)
                failures = 0
                self._ping_watchdog("iteration complete")
            except (TradingDaemonError, InterruptedError) as exc:
                if self.stopping:
                    break
                failures += 1
                self._record_failure(exc)
                if once:
                    raise
                self._backoff(failures, str(exc), exc)
                continue
            self.iterations_run += 1
            if once or (max_iterations is not None and self.iterations_run >= max_iterations):
                break
            self._sleep(self.config.loop_interval_seconds, until)
        if self.notifier is not None:
            self.notifier.stopping()
        return self.iterations_run

    # ------------------------------------------------------------------ one iteration
    def run_iteration(self, *, market_open: bool | None = None) -> IterationResult:
        started = self.clock.now()
        wall0, cpu0 = time.perf_counter(), time.process_time()
        stats = self.gateway.stats
        stats.begin_iteration()
        number = self.store.next_iteration_number()
        if market_open is None:
            market_open = self.market_clock.is_open(started)
        trading_session = self.calendar.current_or_next_session(started)
        # A daily-loss halt lapses when its session ends, decision or not (HaltWatcher reports it). No request.
        self.store.clear_expired_halts(trading_session)

        self._refresh_open_orders(trading_session)
        self.reconciler.resolve_pending_intents(trading_session, may_submit=market_open)  # none: no request
        focus = self.load_focus_symbols()
        data = self.data_agent.process(focus, limit=self.signal_agent.bars_to_fetch)
        positions = self.gateway.get_positions()
        positions = self.reconciler.sync_positions(positions, trading_session).positions  # reductions re-read
        self._known_positions = set(positions)
        result = IterationResult(number=number, focus=focus, market_open=market_open, requests={},
                                 excluded=dict(data.excluded))
        book = self.store.book()
        unresolved = self.reconciler.unresolved_symbols()  # busy like an open order: no entry, no exit
        holdings = signal_holdings(book, positions, busy=unresolved)
        signals, _ = self.signal_agent.generate(data.panel(), holdings, symbols=focus)
        signals = [signal for signal in signals if signal.symbol not in unresolved]
        result.signals = len(signals)
        signal_session = data.as_of or self.calendar.last_completed_session(started)
        handled = self.store.handled_signals(signal_session, dry_run=self.dry_run)
        accepted, rejected = self.validator.validate(signals, started, data.current_prices, handled)
        accepted = self.exits.pursue(accepted, positions)
        result.rejected += len(rejected)
        fingerprint: Fingerprint = (tuple(sorted((s, round(p.qty, 9)) for s, p in positions.items())),
                                    len(self.store.open_orders()))
        accepted = self._without_recent_rejections(accepted, fingerprint, started)
        if accepted and not self.stopping:
            decision = self.pipeline.decide(accepted, positions, book, data.current_prices, trading_session,
                                            may_send=market_open)
            self._record_decision(decision, result)
            self._remember_rejections(result, fingerprint, started)
        result.duration_s = time.perf_counter() - wall0
        result.cpu_s = time.process_time() - cpu0
        result.requests = stats.iteration_snapshot()
        self.store.add_api_usage(stats.iteration_endpoints())
        self.store.record_iteration(
            n=number, started_at=started, duration_s=result.duration_s, focus_symbols=focus,
            requests=result.requests, signals=result.signals, submitted=result.submitted,
            rejected=result.rejected, status="ok", message="", dry_run=self.dry_run,
        )
        self._halt_watch.observe(self.store.active_halts(), self.clock.now())
        self.events.emit(iteration_completed(result, positions, self.clock.now(), dry_run=self.dry_run))
        log.info("iteration_complete", iteration=number, focus_symbols=focus, requests=result.requests,
                 signals=result.signals, orders_submitted=result.submitted, orders_rejected=result.rejected,
                 dry_run_orders=result.dry_run, market_open=market_open, excluded=len(result.excluded),
                 duration_s=round(result.duration_s, 4))
        return result

    @staticmethod
    def _record_decision(decision: Decision, result: IterationResult) -> None:
        result.risk_rejections = list(decision.settled)
        result.halts = list(decision.risk.halts)
        result.rejected += decision.rejected_count
        report = decision.report
        if report is not None:
            result.execution = report
            result.submitted += len(report.submitted)
            result.dry_run += len(report.dry_run)

    # ------------------------------------------------------------------ repeated rejections
    def _without_recent_rejections(self, signals: list[Signal], fingerprint: Fingerprint,
                                   now: datetime) -> list[Signal]:
        """Drop signals risk already refused while nothing that could change its answer has changed.

        Without this a refused signal (below the minimum notional, say) would cost an account and an
        open-orders request on every iteration of the session. A change of positions or open orders
        (which is what moves buying power, exposure and position counts) sends it through risk again at
        once; otherwise it is re-checked every RERUN_REJECTED_AFTER, since cash held by an order placed
        outside the daemon can come back without anything here changing. A new session starts afresh.
        """
        kept = []
        for signal in signals:
            seen = self._rejections.get((signal.symbol, signal.side.value, signal.session))
            if seen is not None and seen[0] == fingerprint and now - seen[1] < RERUN_REJECTED_AFTER:
                continue
            kept.append(signal)
        return kept

    def _remember_rejections(self, result: IterationResult, fingerprint: Fingerprint, now: datetime) -> None:
        session = self.calendar.last_completed_session(now)
        self._rejections = {k: v for k, v in self._rejections.items() if k[2] == session}
        for rejection in result.risk_rejections:
            self._rejections[(rejection.symbol, rejection.side.value, session)] = (fingerprint, now)

    # ------------------------------------------------------------------ focus symbols
    def load_focus_symbols(self) -> list[str]:
        """Scanner candidates (<= 10) + baseline + everything held or with an open order.

        Falls back to the whole universe, with a warning, when candidates.json is missing,
        corrupt or stale. Held symbols are always included so no exit is ever orphaned.
        """
        universe = self.config.symbols
        candidates: list[str] | None = None
        if self.config.use_scanner:
            try:
                candidates = load_candidates(self.config.candidates_path, set(universe), self.calendar,
                                             self.clock.now()).symbols
            except CandidatesError as exc:
                log.warning("candidates_fallback", reason=str(exc), fallback="whole configured universe")
        focus = merge_focus(candidates, baseline=BASELINE_SYMBOLS, held=set(self.store.book()) | self._known_positions,
                            open_orders=(order.symbol for order in self.store.open_orders()), universe=universe)
        assert focus is not None  # a concrete universe gives a concrete list
        return focus

    # ------------------------------------------------------------------ orders and fills
    def _refresh_open_orders(self, trading_session: date) -> None:
        """Bring every order we believe open up to date; fills update the position book."""
        open_orders = self.store.open_orders()
        if not open_orders:
            return
        for stored in open_orders:
            order = self.gateway.get_order_by_client_id(stored.client_order_id)
            if order is None:
                log.warning("order_vanished", client_order_id=stored.client_order_id)
                continue
            self.reconciler.apply_order_update(order, trading_session)

    # ------------------------------------------------------------------ scheduling, sleeping
    def _run_due_tasks(self, now: datetime) -> None:
        for task in self.scheduled:
            if task.due(now):
                try:
                    task.run(now)
                except (TradingDaemonError, OSError) as exc:
                    log.error("scheduled_task_failed", task=task.name, error=str(exc))
                task.schedule_next(now)

    def _next_task_time(self) -> datetime | None:
        times = [task.next_run for task in self.scheduled if task.next_run is not None]
        return min(times) if times else None

    def _sleep_towards(self, target: datetime, until: datetime | None) -> None:
        now = self.clock.now()
        deadline = target
        task_time = self._next_task_time()
        if task_time is not None and task_time > now:
            deadline = min(deadline, task_time)
        if until is not None:
            deadline = min(deadline, until)
        seconds = (deadline - now).total_seconds()
        self.clock.sleep(min(max(seconds, 1.0), MAX_SLEEP_STEP_SECONDS))

    def _sleep(self, seconds: float, until: datetime | None) -> None:
        now = self.clock.now()
        task_time = self._next_task_time()
        if task_time is not None and task_time > now:
            seconds = min(seconds, max(1.0, (task_time - now).total_seconds()))
        if until is not None:
            seconds = min(seconds, max(0.0, (until - now).total_seconds()))
        self.clock.sleep(max(seconds, 0.0))

    def _backoff(self, failures: int, reason: str, error: BaseException | None = None) -> None:
        delay = loop_backoff_seconds(failures, self.config.loop_interval_seconds, error, self.clock.now())
        log.warning("loop_backoff", failures=failures, sleep_s=delay, reason=reason)
        self.market_clock.invalidate()
        self.clock.sleep(delay)

    def _ping_watchdog(self, status: str) -> None:
        if self.notifier is not None:
            self.notifier.watchdog()
            self.notifier.status(status)

    def _record_failure(self, exc: BaseException) -> None:
        log.error("iteration_failed", error=str(exc), kind=type(exc).__name__)
        self.events.emit(IterationFailed(at=self.clock.now(), error=str(exc)[:500], error_type=type(exc).__name__))
        try:
            self.store.record_iteration(
                n=self.store.next_iteration_number(), started_at=self.clock.now(), duration_s=0.0,
                focus_symbols=[], requests={}, signals=0, submitted=0, rejected=0, status="error",
                message=str(exc)[:500],
            )
        except Exception as store_exc:  # noqa: BLE001 - a failing store must not mask the first error
            log.error("iteration_record_failed", error=str(store_exc))


class ScheduledTask:
    """A daily job at a New York wall-clock time on session days (the in-process scanner)."""

    def __init__(self, name: str, hour: int, minute: int, action: Callable[[datetime], object],
                 calendar: MarketCalendar, now: datetime) -> None:
        self.name = name
        self.hour = hour
        self.minute = minute
        self.action = action
        self.calendar = calendar
        self.next_run: datetime | None = None
        self.runs = 0
        self.schedule_next(now - timedelta(seconds=1))

    def schedule_next(self, now: datetime) -> None:
        from core.domain.market_calendar import NEW_YORK

        day = now.astimezone(NEW_YORK).date()
        for _ in range(15):
            if self.calendar.is_session(day):
                when = datetime(day.year, day.month, day.day, self.hour, self.minute, tzinfo=NEW_YORK)
                if when > now:
                    self.next_run = when
                    return
            day = day + timedelta(days=1)
        self.next_run = None

    def due(self, now: datetime) -> bool:
        return self.next_run is not None and now >= self.next_run

    def run(self, now: datetime) -> None:
        self.runs += 1
        log.info("scheduled_task_start", task=self.name, at=now.isoformat())
        self.action(now)

