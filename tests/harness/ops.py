"""An in-process daemon wired exactly as `trading-daemon run` wires it (core.operations.Operations
around the Orchestrator), on the simulated market: for the notification, metrics and status-page
tests that need a daemon that is still running while they look at it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from datetime import time as dtime
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from core.daily_scan import scan
from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.iteration_result import IterationResult
from core.operations import Operations
from core.orchestrator import Orchestrator
from core.sim import SimMarket, start_sim_market
from core.state.store import StateStore
from tests.harness.config import make_config
from tests.harness.daemon import scanner_task
from tests.harness.market import gateway_for

CAL = get_market_calendar()
FIRST_SESSION = date(2025, 6, 2)
# Trades from the first session on: the whole universe, a shallow entry threshold, short holds.
TRADING_CONFIG: dict[str, Any] = {"use_scanner": False, "entry_z": 1.0, "max_holding_sessions": 2,
                                  "loop_interval_seconds": 900.0, "request_timeout_seconds": 5.0}


@dataclass
class OpsDaemon:
    config: AppConfig
    market: SimMarket
    clock: SimClock
    gateway: Any
    store: StateStore
    ops: Operations
    orchestrator: Orchestrator
    results: list[IterationResult] = field(default_factory=list)

    def run_sessions(self, count: int, first: date = FIRST_SESSION) -> list[date]:
        """Run the loop through `count` sessions, each until 16:10 New York (after the daily summary)."""
        sessions = [first if CAL.is_session(first) else CAL.next_session(first)]
        while len(sessions) < count:
            sessions.append(CAL.next_session(sessions[-1]))
        for session in sessions:
            self.run_until(datetime.combine(session, dtime(16, 10), tzinfo=NEW_YORK))
        return sessions

    def run_until(self, until: datetime) -> None:
        original = self.orchestrator.run_iteration

        def recorded(**kwargs: Any) -> IterationResult:
            result = original(**kwargs)
            self.results.append(result)
            return result

        self.orchestrator.run_iteration = recorded  # type: ignore[method-assign]  # observe, not replace
        try:
            self.orchestrator.run(until=until)
        finally:
            self.orchestrator.run_iteration = original  # type: ignore[method-assign]


@contextmanager
def ops_daemon(tmp_path: Path, *, start: datetime | None = None, scanner: bool = False,
               **overrides: Any) -> Iterator[OpsDaemon]:
    clock = SimClock(start or datetime.combine(FIRST_SESSION, dtime(9, 0), tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=42, initial_cash=10_000.0)
    config = make_config(tmp_path, **{**TRADING_CONFIG, **overrides})
    gateway = gateway_for(market, config)
    store = StateStore(Path(config.state_dir), clock)
    try:
        with Operations(config, store=store, gateway=gateway, clock=clock, calendar=CAL, mode="simulated",
                        dry_run=False, announce=lambda _: None) as ops:
            tasks = ops.scheduled_tasks()
            if scanner:  # as `run --sim` does: candidates.json at 16:05, and once before the first session
                tasks.append(scanner_task(config, gateway, clock, CAL))
                scan(config, gateway, clock, CAL)
            orchestrator = Orchestrator(config, gateway, store, clock, calendar=CAL, events=ops.events,
                                        scheduled=tasks)
            orchestrator.startup()
            ops.started(orchestrator)
            yield OpsDaemon(config, market, clock, gateway, store, ops, orchestrator)
    finally:
        store.close()
        market.stop()
