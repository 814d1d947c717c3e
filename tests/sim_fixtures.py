"""Fixtures for the simulated-market tests (tests/conftest.py belongs to the daemon's suite).

A test module enables them with `pytest_plugins = ("tests.sim_fixtures",)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from core.clock import SimClock
from core.sim import SimMarket, start_sim_market

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York: the market is open


@pytest.fixture
def market() -> Iterator[SimMarket]:
    sim = start_sim_market(clock=SimClock(START), seed=42, initial_cash=10_000.0)
    try:
        yield sim
    finally:
        sim.stop()


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
