"""Fixtures for the simulated-market tests (tests/conftest.py belongs to the daemon's suite).

A test module enables them with `pytest_plugins = ("tests.sim_fixtures",)`.
"""

from __future__ import annotations

from typing import Any

import pytest

from core.clock import SimClock
from core.sim import SimMarket


@pytest.fixture
def market(sim: SimMarket) -> SimMarket:
    """The simulated market at START (Monday 11:00 New York, open); the same fixture as `sim`."""
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
