"""Building blocks for the end-to-end fault scenarios (tests/test_fault_scenarios.py).

A `Scenario` is one simulated market (the project's Alpaca-compatible server on 127.0.0.1, spoken
to by the unchanged alpaca-py SDK) plus one daemon "process": an `AlpacaGateway`, a `StateStore`
in the test's own directory and an in-process `Orchestrator`. `restart()` throws the process away
and boots a new one on the same state directory, as systemd would after a crash.

Every scenario ends by looking at three things: the broker (`sim.exchange`), the state database,
and `assert_no_duplicate_orders()`. Nothing here mocks or patches the SDK: faults are injected by
the simulated server, and time is a `ScenarioClock` (a SimClock that records its sleeps and can
run an action when simulated time passes a mark).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from config.settings import AppConfig
from core.clock import SimClock
from core.indicators import rolling_zscore
from core.market_calendar import NEW_YORK, MarketCalendar, get_market_calendar
from core.orchestrator import Orchestrator
from core.order_ids import parse_client_order_id
from core.sim import SimMarket, SimOrder, start_sim_market
from core.sim.server import RequestRecord
from core.state.store import StateStore
from tests.conftest import gateway_for, make_config

ORDERS_PATH = "/v2/orders"
BARS_PATH = "/v2/stocks/bars"
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


def ny(year: int, month: int, day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A New York wall-clock instant (DST-aware)."""
    return datetime(year, month, day, hour, minute, tzinfo=NEW_YORK)


class ScenarioClock(SimClock):
    """A SimClock that records every sleep and fires alarms when simulated time passes a mark."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self.sleeps: list[tuple[datetime, float]] = []
        self._alarms: list[tuple[datetime, Callable[[], None]]] = []

    def at(self, when: datetime, action: Callable[[], None]) -> None:
        """Run `action` once, as soon as the clock reaches `when` (checked on every advance)."""
        self._alarms.append((when, action))
        self._alarms.sort(key=lambda item: item[0])

    def sleep(self, seconds: float) -> bool:
        self.sleeps.append((self.now(), seconds))
        return super().sleep(seconds)

    def advance(self, seconds: float) -> datetime:
        now = super().advance(seconds)
        while self._alarms and self._alarms[0][0] <= now:
            _, action = self._alarms.pop(0)
            action()
        return now


class SkewedClock:
    """A host clock that is `offset` off the market's: now() = market clock + offset, while sleep()
    advances the market's clock (so the simulated server keeps the true time and its alarms fire).
    `offset` may be changed at any time, as an NTP step would change a host's clock."""

    def __init__(self, market_clock: ScenarioClock, offset: timedelta) -> None:
        self.market_clock = market_clock
        self.offset = offset

    def now(self) -> datetime:
        return self.market_clock.now() + self.offset

    def sleep(self, seconds: float) -> bool:
        return self.market_clock.sleep(seconds)

    def interrupt(self) -> None:
        self.market_clock.interrupt()

    def monotonic(self) -> float:
        return self.market_clock.monotonic()


@dataclass
class Daemon:
    """One daemon process: its gateway (own limiter and stats), store and orchestrator."""

    gateway: Any
    store: StateStore
    orchestrator: Orchestrator


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

    # ------------------------------------------------------------------ daemon processes
    def boot(self, *, startup: bool = True, wrap_gateway: Callable[[Any], Any] | None = None,
             notifier: Any = None, scheduled: list[Any] | None = None,
             config: AppConfig | None = None, host_clock: Any = None, events: Any = None) -> Daemon:
        """Start a daemon process on the scenario's state directory (reconcile first unless told not to).

        `host_clock` is the daemon host's clock (e.g. a `SkewedClock`); by default the market's."""
        cfg = config or self.config
        clock = host_clock or self.clock
        gateway = gateway_for(self.sim, cfg)
        if host_clock is not None:
            from core.broker.alpaca_gateway import AlpacaGateway

            gateway = AlpacaGateway(cfg, host_clock, api_key=self.sim.api_key, secret_key=self.sim.secret_key,
                                    trading_url=self.sim.url, data_url=self.sim.url)
        if wrap_gateway is not None:
            gateway = wrap_gateway(gateway)
        store = StateStore(cfg.state_dir, clock)
        orchestrator = Orchestrator(cfg, gateway, store, clock, calendar=self.calendar, notifier=notifier,
                                    scheduled=scheduled, events=events)
        daemon = Daemon(gateway, store, orchestrator)
        self._daemons.append(daemon)
        if startup:
            orchestrator.startup()
        return daemon

    def kill(self, daemon: Daemon) -> None:
        """The process is gone: nothing else of it runs. (Committed SQLite writes survive.)"""
        daemon.store.close()

    def close(self) -> None:
        for daemon in self._daemons:
            daemon.store.close()
        self.sim.server.faults.clear()
        self.sim.stop()

    # ------------------------------------------------------------------ the broker
    @property
    def faults(self) -> Any:
        return self.sim.server.faults

    def broker_orders(self, *, source: str | None = "api") -> list[SimOrder]:
        return [o for o in self.sim.exchange.all_orders() if source is None or o.source == source]

    def broker_positions(self) -> dict[str, float]:
        return {symbol: pos.qty for symbol, pos in self.sim.exchange.positions().items()}

    def requests(self, *, method: str | None = None, path_prefix: str | None = None,
                 since: int = 0) -> list[RequestRecord]:
        log = list(self.sim.server.request_log)[since:]
        return [r for r in log if (method is None or r.method == method)
                and (path_prefix is None or r.path.startswith(path_prefix))]

    def order_posts(self, since: int = 0) -> list[RequestRecord]:
        return [r for r in self.requests(method="POST", since=since) if r.path == ORDERS_PATH]

    def log_mark(self) -> int:
        return len(self.sim.server.request_log)

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        """Wait (wall time) for a server thread to finish something, e.g. a hung request."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError("timed out waiting for the simulated server")
            time.sleep(0.01)

    # ------------------------------------------------------------------ the state database
    def _db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(Path(self.config.state_dir) / "trading.db")
        conn.row_factory = sqlite3.Row
        return conn

    def db_rows(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        conn = self._db()
        try:
            return [dict(row) for row in conn.execute(sql, tuple(params)).fetchall()]
        finally:
            conn.close()

    def intents(self) -> dict[str, dict[str, Any]]:
        return {row["client_order_id"]: row for row in self.db_rows("SELECT * FROM order_intents ORDER BY rowid")}

    def iterations(self) -> list[dict[str, Any]]:
        rows = self.db_rows("SELECT * FROM iterations ORDER BY n")
        for row in rows:
            row["started_at"] = datetime.fromisoformat(row["started_at"])
        return rows

    def fills(self) -> list[dict[str, Any]]:
        return self.db_rows("SELECT * FROM fills ORDER BY id")

    # ------------------------------------------------------------------ signals (preconditions)
    def zscores(self, symbols: list[str], session: date, lookback: int = 20) -> dict[str, float]:
        """The z-score each symbol has at the close of `session`, as the SignalAgent computes it."""
        sessions = [self.calendar.sessions_back(session, k) for k in range(2 * lookback, -1, -1)]
        closes = self.sim.bars.matrix(symbols, sessions)["close"]
        last = rolling_zscore(closes, lookback)[-1]
        return {symbol: float(value) for symbol, value in zip(symbols, np.asarray(last), strict=True)}


def set_instance_id(state_dir: Path, clock: SimClock, instance_id: str) -> None:
    """Create the state database (if new) and give it `instance_id` (a test fixture's, not a random one)."""
    StateStore(state_dir, clock).close()
    conn = sqlite3.connect(state_dir / "trading.db")
    try:
        with conn:
            conn.execute("UPDATE kv SET value = ? WHERE key = 'instance_id'", (instance_id,))
    finally:
        conn.close()


# ---------------------------------------------------------------------- assertions
def assert_no_duplicate_orders(scenario: Scenario, store: StateStore | None = None) -> None:
    """Each client_order_id was created at most once at the broker, and the journal agrees with it."""
    orders = scenario.broker_orders(source=None)
    cids = [o.client_order_id for o in orders]
    assert len(cids) == len(set(cids)), f"duplicate client_order_id at the broker: {sorted(cids)}"
    for cid in cids:
        assert scenario.sim.exchange.orders_for_client_id(cid) == 1, cid
    # One decision (strategy, session, symbol, side) -> at most one order, whichever instance sent it
    # and in either id format (with or without the instance).
    parsed = [parse_client_order_id(cid) for cid in cids if cid.startswith(f"{scenario.config.order_id_prefix}-")]
    assert all(p is not None for p in parsed), f"an id of this strategy in no known format: {sorted(cids)}"
    decisions = [p.decision for p in parsed if p is not None]
    assert len(decisions) == len(set(decisions)), f"two orders for one decision: {sorted(decisions)}"
    by_cid = {o.client_order_id: o for o in orders}
    for cid, intent in scenario.intents().items():
        count = scenario.sim.exchange.orders_for_client_id(cid)
        if intent["state"] == "submitted":
            assert count == 1, f"SUBMITTED intent {cid} has {count} orders at the broker"
            assert intent["broker_order_id"] == by_cid[cid].id
        elif intent["state"] in ("rejected", "abandoned", "skipped", "dry_run"):
            assert count == 0, f"{intent['state']} intent {cid} has an order at the broker"
    if store is not None:
        for stored in store.all_orders():
            assert stored.client_order_id in by_cid, f"{stored.client_order_id} is unknown to the broker"
            assert by_cid[stored.client_order_id].id == stored.id


def assert_book_matches_broker(scenario: Scenario, store: StateStore,
                               outside: dict[str, float] | None = None) -> None:
    """The broker holds exactly the daemon's own book plus `outside`: the shares that are not the
    daemon's (the user's), which the daemon must also know as not its own (its last observation)."""
    outside = outside or {}
    book = {symbol: pos.qty for symbol, pos in store.book().items()}
    broker = scenario.broker_positions()
    assert set(book) <= set(broker), f"book {book} holds symbols the broker does not: {broker}"
    assert set(broker) == set(book) | {s for s, q in outside.items() if q > 1e-9}, f"book {book} vs broker {broker}"
    for symbol, qty in broker.items():
        own = book.get(symbol, 0.0)
        assert own <= qty + 1e-6, f"{symbol}: the daemon's own {own} exceeds the broker's {qty}"
        expected = outside.get(symbol, 0.0)
        assert abs(qty - own - expected) < 1e-6, f"{symbol}: broker {qty} = own {own} + outside {expected}?"
    seen = store.seen_positions()
    for symbol, qty in outside.items():
        assert symbol in seen and abs(seen[symbol].outside_qty - qty) < 1e-6, (
            f"{symbol}: the daemon does not know that {qty} shares are not its own ({seen.get(symbol)})")
