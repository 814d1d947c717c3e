"""Shared by every suite (unit, adapters, e2e; tests/README.md). The fixtures are the harness's
(tests/harness/fixtures.py). Every market is the project's simulated Alpaca server on 127.0.0.1,
driven by the real alpaca-py SDK; nothing here reaches beyond loopback."""

from __future__ import annotations

import pytest

from config.settings import AppConfig

pytest_plugins = ("tests.harness.fixtures",)


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's environment must not leak into configuration under test."""
    for name in AppConfig.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
