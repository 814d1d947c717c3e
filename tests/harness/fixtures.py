"""The pytest fixtures of every suite (tests/conftest.py registers this module as a plugin).

- `sim` / `market`: a running simulated market on a SimClock at SIM_START (Monday 11:00 New York, open);
  `clock`, `trading`, `data`: its clock and the SDK's clients on it (no SDK retries: they sleep 3 s each).
- `config`, `gateway`: a test's configuration (short timeouts) and the daemon's adapter on `sim`.
- `markets`, `daemons`: factories of markets (at a chosen time) and in-process daemons, closed after the test.
- `scenario`: a factory of `Scenario`s; a module sets their defaults by overriding `scenario_config`.
- `logbuf`: the daemon's JSON log in memory; `reset_logging`: forget a test's logging set-up afterwards.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import AppConfig
from core.broker.alpaca_gateway import AlpacaGateway
from core.domain.clock import SimClock
from core.sim import SimMarket, start_sim_market
from tests.harness import logs
from tests.harness.config import SIM_START, make_config
from tests.harness.daemon import Daemon, build_daemon
from tests.harness.market import gateway_for
from tests.harness.scenario import Scenario


# ---------------------------------------------------------------------- one market
@pytest.fixture
def sim() -> Iterator[SimMarket]:
    market = start_sim_market(clock=SimClock(SIM_START), seed=42, initial_cash=10_000.0)
    try:
        yield market
    finally:
        market.stop()


@pytest.fixture
def market(sim: SimMarket) -> SimMarket:
    """The simulated market at SIM_START (Monday 11:00 New York, open); the same fixture as `sim`."""
    return sim


@pytest.fixture
def trading(market: SimMarket) -> Any:
    client = market.trading_client()
    client._retry = 0  # the SDK's own 429/504 retries sleep 3 s each
    return client


@pytest.fixture
def data(market: SimMarket) -> Any:
    client = market.data_client()
    client._retry = 0
    return client


@pytest.fixture
def clock(market: SimMarket) -> SimClock:
    assert isinstance(market.clock, SimClock)
    return market.clock


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return make_config(tmp_path, request_timeout_seconds=2.0, retry_backoff_seconds=0.05)


@pytest.fixture
def gateway(sim: SimMarket, config: AppConfig) -> AlpacaGateway:
    return gateway_for(sim, config)


# ---------------------------------------------------------------------- markets and daemons on demand
@pytest.fixture
def markets() -> Iterator[Callable[..., SimMarket]]:
    """start(at, seed=42): a market whose SimClock starts at `at`, with $10,000; stopped after the test."""
    started: list[SimMarket] = []

    def start(at: datetime, seed: int = 42) -> SimMarket:
        market = start_sim_market(clock=SimClock(at), seed=seed, initial_cash=10_000.0)
        started.append(market)
        return market

    yield start
    for market in started:
        market.stop()


@pytest.fixture
def daemons() -> Iterator[Callable[..., Daemon]]:
    """build(market, config, **options): an in-process daemon (tests.harness.daemon.build_daemon),
    not started; every one is stopped after the test."""
    built: list[Daemon] = []

    def build(market: SimMarket, config: AppConfig, **options: Any) -> Daemon:
        daemon = build_daemon(market, config, **options)
        built.append(daemon)
        return daemon

    yield build
    for daemon in built:
        daemon.stop()


@pytest.fixture
def scenario_config() -> dict[str, Any]:
    """Settings every scenario of a module starts from (a module overrides this fixture)."""
    return {}


@pytest.fixture
def scenario(tmp_path: Path, scenario_config: dict[str, Any]) -> Iterator[Callable[..., Scenario]]:
    """make(start, *, initial_cash=10_000.0, closures=(), **settings): a Scenario on the test's
    directory, with `scenario_config` then `settings` over the fast defaults; closed after the test."""
    made: list[Scenario] = []

    def make(start: datetime, *, initial_cash: float = 10_000.0, closures: tuple[Any, ...] = (),
             **overrides: Any) -> Scenario:
        scn = Scenario(tmp_path, start, initial_cash=initial_cash, config_overrides={**scenario_config, **overrides},
                       closures=list(closures))
        made.append(scn)
        return scn

    yield make
    for scn in made:
        scn.close()


# ---------------------------------------------------------------------- logs
@pytest.fixture
def logbuf() -> Iterator[io.StringIO]:
    """The daemon's structlog output as JSON lines in memory."""
    with logs.json_log() as buffer:
        yield buffer


@pytest.fixture
def reset_logging() -> Iterator[None]:
    """For a test that configures logging (a command's `main()` does): its stream, which pytest closes
    after the test, and its secrets are forgotten afterwards."""
    yield
    logs.reset_logging()
