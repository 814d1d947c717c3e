"""What the daemon does for its operator around the trading loop, wired in one place.

`Operations` owns the event stream (`events`, given to the Orchestrator) and its consumers:
- `LiveFigures`: the in-memory figures the status page and metrics add to the database;
- `EquityRecorder`: every account the loop reads anyway becomes a point of the equity curve;
- the apprise `Notifier` when NOTIFY_URLS is set;
- `DaemonMetrics` and the loopback HTTP server (page, /metrics, /status.json) when HTTP_PORT is set;
and the daily summary task (one account request per session, after the close).

Use:

    with Operations(config, store=store, gateway=gateway, clock=clock, calendar=calendar, mode="paper",
                    dry_run=False) as ops:
        orchestrator = Orchestrator(..., events=ops.events, scheduled=[*ops.scheduled_tasks()])
        orchestrator.startup()
        ops.started(orchestrator)
        orchestrator.run()

Leaving the block announces `stopped`, or `fatal` with the error (a refused start-up was already
announced by the orchestrator), stores the loop's last positions as a snapshot for the page of the
stopped daemon, lets queued notifications go out for a few seconds, and stops the HTTP server.
None of it can stop the loop: a port that cannot be bound is logged and trading goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any

import structlog

from config.settings import AppConfig
from core.daily_summary import DailySummaryReporter, daily_summary_task
from core.domain.errors import ReconciliationError
from core.domain.market_calendar import MarketCalendar
from core.events import AccountObserved, DaemonFatal, DaemonStarted, DaemonStopped, Event, EventBus
from core.live_figures import LiveFigures, position_views
from core.runtime.version import version
from core.status_data import collect_status

log = structlog.get_logger("operations")


class EquityRecorder:
    """Persists each account reading as a point of the equity curve (state database)."""

    def __init__(self, store: Any) -> None:
        self.store = store

    def emit(self, event: Event) -> None:
        if isinstance(event, AccountObserved):
            self.store.record_equity(session=event.session, equity=event.equity, cash=event.cash,
                                     last_equity=event.last_equity, source=event.source)


class Operations:
    def __init__(self, config: AppConfig, *, store: Any, gateway: Any, clock: Any, calendar: MarketCalendar,
                 mode: str, dry_run: bool, announce: Callable[[str], None] = print) -> None:
        from core.notify import build_notifier

        self.config = config
        self.store = store
        self.gateway = gateway
        self.clock = clock
        self.calendar = calendar
        self.mode = mode
        self.dry_run = dry_run
        self._announce = announce
        self._orchestrator: Any = None
        limiter = getattr(gateway, "limiter", None)
        self.live = LiveFigures(mode=mode, dry_run=dry_run, version=version(), clock_now=clock.now,
                                requests_last_minute=limiter.usage if limiter is not None else None)
        self.bus = EventBus([self.live, EquityRecorder(store)])
        self.notifier = build_notifier(config, "DRY RUN " + mode if dry_run else mode)
        if self.notifier is not None:
            self.bus.subscribe(self.notifier)
        self.metrics: Any = None
        self.http: Any = None
        self.reporter = DailySummaryReporter(gateway, store, self.bus, self.live)

    @property
    def events(self) -> EventBus:
        return self.bus

    def status(self) -> dict[str, Any]:
        return collect_status(self.config, live=self.live.snapshot())

    def scheduled_tasks(self) -> list[Any]:
        return [daily_summary_task(self.reporter, self.calendar, self.clock.now())]

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Operations:
        if self.notifier is not None:
            self.notifier.start()
            log.info("notifications_on", urls=[s.url for s in self.notifier.services],
                     events=sorted(self.notifier.selected))
        if self.config.http_port is not None:
            self._start_http(self.config.http_port)
        return self

    def _start_http(self, port: int) -> None:
        from core.metrics import DaemonMetrics
        from core.ops_http import OpsHttpServer
        from core.status_page import render_page

        stats = getattr(self.gateway, "stats", None)
        self.metrics = DaemonMetrics(self.status, request_totals=stats.totals if stats is not None else None,
                                     notifier=self.notifier,
                                     info={"version": version(), "mode": self.mode, "dry_run": str(self.dry_run).lower()})
        self.bus.subscribe(self.metrics)
        try:
            self.http = OpsHttpServer(port, page=lambda: render_page(self.status()), metrics=self.metrics.render,
                                      status_json=self.status).start()
        except OSError as exc:
            # The page is for the operator; it is never a reason not to trade. Alerts on absent metrics catch it.
            log.error("http_server_failed", port=port, error=str(exc), effect="no status page or /metrics; trading "
                      "continues")
            self._announce(f"Status page and metrics: NOT available, 127.0.0.1:{port} cannot be used ({exc}).")
            return
        log.info("http_server_started", url=self.http.url)
        self._announce(f"Status page: {self.http.url}  metrics: {self.http.url}metrics  (read-only, loopback only)")

    def started(self, orchestrator: Any) -> None:
        self._orchestrator = orchestrator
        halts = tuple(h.kind for h in self.store.active_halts())
        self.bus.emit(DaemonStarted(at=self.clock.now(), mode=self.mode, dry_run=self.dry_run, version=version(),
                                    positions=len(self.store.book()), open_orders=len(self.store.open_orders()),
                                    active_halts=halts))

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            self._finish(exc)
        finally:
            if self.notifier is not None:
                self.notifier.close()
            if self.http is not None:
                self.http.stop()
                self.http = None

    def _finish(self, exc: BaseException | None) -> None:
        now = self.clock.now()
        iterations = self._orchestrator.iterations_run if self._orchestrator is not None else 0
        if exc is None or isinstance(exc, KeyboardInterrupt):
            stopping = self._orchestrator is not None and self._orchestrator.stopping
            reason = "stop requested (SIGTERM/SIGINT)" if stopping else "run finished"
            self.bus.emit(DaemonStopped(at=now, reason=reason, iterations=iterations))
        elif not isinstance(exc, ReconciliationError):
            self.bus.emit(DaemonFatal(at=now, error=str(exc)[:1000], error_type=type(exc).__name__))
        self._store_last_positions()

    def _store_last_positions(self) -> None:
        marks = self.live.snapshot().positions
        if not marks:
            return
        try:
            self.store.record_position_snapshot(position_views(marks))
        except Exception as exc:  # noqa: BLE001 - on the way out; the page shows older prices instead
            log.warning("last_positions_not_stored", error=str(exc))
