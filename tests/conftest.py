"""Shared fixtures. Every market is the project's simulated Alpaca server on 127.0.0.1, driven by
the real alpaca-py SDK; nothing here reaches beyond loopback."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from config.settings import AppConfig, get_config

REPO_ROOT = Path(__file__).resolve().parent.parent
SIM_START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York, market open


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's environment must not leak into configuration under test."""
    for name in AppConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)


def make_config(tmp_path: Path, **overrides: Any) -> AppConfig:
    overrides.setdefault("state_dir", tmp_path / "state")
    overrides.setdefault("candidates_path", tmp_path / "candidates.json")
    return get_config(env_file=None, **overrides)


@pytest.fixture
def sim() -> Iterator[Any]:
    from core.clock import SimClock
    from core.sim import start_sim_market

    market = start_sim_market(clock=SimClock(SIM_START), seed=42, initial_cash=10_000.0)
    try:
        yield market
    finally:
        market.stop()


def gateway_for(sim: Any, config: AppConfig) -> Any:
    from core.broker.alpaca_gateway import AlpacaGateway

    return AlpacaGateway(config, sim.clock, api_key=sim.api_key, secret_key=sim.secret_key,
                         trading_url=sim.url, data_url=sim.url)


@pytest.fixture
def config(tmp_path: Path) -> AppConfig:
    return make_config(tmp_path, request_timeout_seconds=2.0, retry_backoff_seconds=0.05)


@pytest.fixture
def gateway(sim: Any, config: AppConfig) -> Any:
    return gateway_for(sim, config)


def venv_env() -> dict[str, str]:
    """Environment for running the seed's commands verbatim: `python` is this interpreter."""
    import sys

    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env
