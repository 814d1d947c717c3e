"""An in-process daemon "process" on a simulated market: its own gateway (own limiter and request
counts), a StateStore on its state directory and an Orchestrator, wired as `trading-daemon run`
wires them. Dropping one (`stop()`) and building another on the same directory is a restart."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from core.domain.clock import Clock
from core.domain.market_calendar import MarketCalendar, get_market_calendar
from core.orchestrator import Orchestrator, ScheduledTask
from core.sim import SimMarket
from core.state.store import StateStore
from tests.harness.market import gateway_for


@dataclass
class Daemon:
    """One daemon process: its configuration, gateway, store and orchestrator."""

    config: AppConfig
    gateway: Any
    store: StateStore
    orchestrator: Orchestrator
    scanner: ScheduledTask | None = None

    def stop(self) -> None:
        """The process is gone: nothing else of it runs. (Committed SQLite writes survive.)"""
        self.store.close()


def scanner_task(config: AppConfig, gateway: Any, clock: Clock, calendar: MarketCalendar) -> ScheduledTask:
    """The scanner at 16:05 New York, as `run --sim` schedules it."""
    from core.daily_scan import scan

    return ScheduledTask("scanner", 16, 5, lambda now: scan(config, gateway, clock, calendar), calendar, clock.now())


def build_daemon(market: SimMarket, config: AppConfig, *, host_clock: Clock | None = None,
                 calendar: MarketCalendar | None = None, scanner: bool = False, gateway: Any = None,
                 scheduled: list[ScheduledTask] | None = None, **orchestrator_options: Any) -> Daemon:
    """A daemon on `market` with the state directory of `config`; not started (call
    `daemon.orchestrator.startup()`). `host_clock` is the daemon host's clock (by default the
    market's); `gateway` replaces the adapter (e.g. a wrapped one); `scanner` adds the 16:05 scan
    to `scheduled`; `orchestrator_options` go to the Orchestrator (notifier, events, dry_run)."""
    clock = host_clock or market.clock
    calendar = calendar or get_market_calendar()
    gateway = gateway if gateway is not None else gateway_for(market, config, host_clock)
    store = StateStore(Path(config.state_dir), clock)
    task = scanner_task(config, gateway, clock, calendar) if scanner else None
    tasks = [*(scheduled or []), *([task] if task else [])]
    orchestrator = Orchestrator(config, gateway, store, clock, calendar=calendar, scheduled=tasks,
                                **orchestrator_options)
    return Daemon(config, gateway, store, orchestrator, task)
