"""A `Scenario`: one simulated market (the project's Alpaca-compatible server on 127.0.0.1, spoken
to by the unchanged alpaca-py SDK) plus daemon "processes" (tests.harness.daemon) booted on one state
directory. `boot()` again after `kill()` is what systemd does after a crash.

Every scenario ends by looking at three things: the broker (`sim.exchange`), the state database
(`tests.harness.state`), and `assert_no_duplicate_orders()`. Nothing here mocks or patches the SDK:
faults are injected by the simulated server, and time is a `ScenarioClock` (a SimClock that records
its sleeps and can run an action when simulated time passes a mark).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.settings import AppConfig
from core.domain.indicators import rolling_zscore
from core.domain.market_calendar import MarketCalendar, get_market_calendar
from core.sim import SimMarket, SimOrder, start_sim_market
from core.sim.server import RequestRecord
from core.state.store import StateStore
from tests.harness import assertions
from tests.harness import market as broker
from tests.harness.clocks import ScenarioClock
from tests.harness.config import make_config
from tests.harness.daemon import Daemon, build_daemon
from tests.harness.state import StateDb, set_instance_id

# The instance id of a scenario's state directory (random in production): a fixed one lets tests name
# the exact client_order_id of a decision, e.g. client_order_id("zmr", session, "JNJ", BUY, SCENARIO_INSTANCE).
SCENARIO_INSTANCE = "i5ce7a710"

# Fast, deterministic defaults: wall-clock timeouts are short, backoffs are simulated time.
FAST_CONFIG: dict[str, Any] = {
    "request_timeout_seconds": 0.5,
    "retry_backoff_seconds": 0.05,
    "retry_backoff_max_seconds": 0.4,
    "use_scanner": False,
    "loop_interval_seconds": 60.0,
}


@dataclass
class Scenario:
    tmp_path: Path
    start: datetime
    initial_cash: float = 10_000.0
    config_overrides: dict[str, Any] = field(default_factory=dict)
    calendar: MarketCalendar = field(default_factory=get_market_calendar)
    closures: list[date] = field(default_factory=list)   # unscheduled closures of the simulated market

    def __post_init__(self) -> None:
        self.clock = ScenarioClock(self.start)
        self.sim: SimMarket = start_sim_market(clock=self.clock, seed=42, initial_cash=self.initial_cash,
                                               closures=self.closures)
        self.config: AppConfig = make_config(self.tmp_path, **{**FAST_CONFIG, **self.config_overrides})
        self._daemons: list[Daemon] = []
        set_instance_id(Path(self.config.state_dir), self.clock, SCENARIO_INSTANCE)
        self.state = StateDb(Path(self.config.state_dir))

    # ------------------------------------------------------------------ daemon processes
    def boot(self, *, startup: bool = True, wrap_gateway: Callable[[Any], Any] | None = None,
             notifier: Any = None, scheduled: list[Any] | None = None,
             config: AppConfig | None = None, host_clock: Any = None, events: Any = None) -> Daemon:
        """Start a daemon process on the scenario's state directory (reconcile first unless told not to).

        `host_clock` is the daemon host's clock (e.g. a `SkewedClock`); by default the market's."""
        cfg = config or self.config
        gateway = broker.gateway_for(self.sim, cfg, host_clock)
        if wrap_gateway is not None:
            gateway = wrap_gateway(gateway)
        daemon = build_daemon(self.sim, cfg, host_clock=host_clock, calendar=self.calendar, gateway=gateway,
                              notifier=notifier, scheduled=scheduled, events=events)
        self._daemons.append(daemon)
        if startup:
            daemon.orchestrator.startup()
        return daemon

    def settle(self, daemon: Daemon, minutes: float = 2.0) -> Any:
        """Let `minutes` pass on the market's clock (the market fills what is open), then run one
        iteration of `daemon` (it learns about it)."""
        self.clock.advance(minutes * 60)
        return daemon.orchestrator.run_iteration()

    def advance_to(self, when: datetime) -> None:
        seconds = (when - self.clock.now()).total_seconds()
        assert seconds >= 0, f"{when} is in the scenario's past"
        self.clock.advance(seconds)

    def daemon_holding(self, symbol: str) -> tuple[Daemon, float]:
        """A daemon booted, whose first iteration bought `symbol` (filled): it and its own quantity."""
        daemon = self.boot()
        daemon.orchestrator.run_iteration()
        self.settle(daemon)
        own = daemon.store.book()[symbol].qty
        assert self.broker_positions() == {symbol: pytest.approx(own)} and own > 0
        return daemon, own

    def kill(self, daemon: Daemon) -> None:
        """The process is gone: nothing else of it runs. (Committed SQLite writes survive.)"""
        daemon.stop()

    def close(self) -> None:
        for daemon in self._daemons:
            daemon.stop()
        self.sim.server.faults.clear()
        self.sim.stop()

    # ------------------------------------------------------------------ the broker
    @property
    def faults(self) -> Any:
        return self.sim.server.faults

    def broker_orders(self, *, source: str | None = "api") -> list[SimOrder]:
        return broker.broker_orders(self.sim, source=source)

    def broker_positions(self) -> dict[str, float]:
        return broker.broker_positions(self.sim)

    def requests(self, *, method: str | None = None, path_prefix: str | None = None,
                 since: int = 0) -> list[RequestRecord]:
        return broker.requests(self.sim, method=method, path_prefix=path_prefix, since=since)

    def order_posts(self, since: int = 0) -> list[RequestRecord]:
        return broker.order_posts(self.sim, since)

    def log_mark(self) -> int:
        return len(self.sim.server.request_log)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        broker.wait_for(predicate, timeout)

    # ------------------------------------------------------------------ the state database
    def db_rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        return self.state.rows(sql, params)

    def intents(self) -> dict[str, dict[str, Any]]:
        return self.state.intents()

    def iterations(self) -> list[dict[str, Any]]:
        return self.state.iterations()

    def fills(self) -> list[dict[str, Any]]:
        return self.state.fills()

    # ------------------------------------------------------------------ signals (preconditions)
    def zscores(self, symbols: list[str], session: date, lookback: int = 20) -> dict[str, float]:
        """The z-score each symbol has at the close of `session`, as the SignalAgent computes it."""
        sessions = [self.calendar.sessions_back(session, k) for k in range(2 * lookback, -1, -1)]
        closes = self.sim.bars.matrix(symbols, sessions)["close"]
        last = rolling_zscore(closes, lookback)[-1]
        return {symbol: float(value) for symbol, value in zip(symbols, np.asarray(last), strict=True)}


# ---------------------------------------------------------------------- assertions on a scenario
def assert_no_duplicate_orders(scenario: Scenario, store: StateStore | None = None) -> None:
    """Each client_order_id was created at most once at the broker, one decision made at most one order,
    and the journal agrees with the broker (see tests.harness.assertions)."""
    assertions.assert_no_duplicate_orders(scenario.sim, prefix=scenario.config.order_id_prefix,
                                          state=scenario.state, store=store)


def assert_book_matches_broker(scenario: Scenario, store: StateStore,
                               outside: dict[str, float] | None = None) -> None:
    """The broker holds exactly the daemon's own book plus `outside` (the user's shares)."""
    assertions.assert_book_matches_broker(scenario.sim, store, outside)
