"""Paths and configuration of the tests: the repository, a test's `AppConfig`, child environments."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from config.settings import AppConfig, get_config

REPO_ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = REPO_ROOT / "tests" / "corpus"
SIM_START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York, market open


def make_config(tmp_path: Path, **overrides: Any) -> AppConfig:
    """A configuration with its state and candidates under `tmp_path` (no .env is read)."""
    overrides.setdefault("state_dir", tmp_path / "state")
    overrides.setdefault("candidates_path", tmp_path / "candidates.json")
    return get_config(env_file=None, **overrides)


def venv_env() -> dict[str, str]:
    """Environment for running the seed's commands verbatim: `python` is this interpreter."""
    env = dict(os.environ)
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


def clean_env(**extra: str) -> dict[str, str]:
    """Environment of a daemon child process: no Alpaca keys and no systemd socket from the machine,
    the repository importable, output unbuffered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALPACA_") and k != "NOTIFY_SOCKET"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def command_env(state_dir: Path, **settings: str) -> dict[str, str]:
    """Environment of a `trading-daemon` command run as a subprocess: none of the machine's settings,
    this virtualenv's commands first on PATH, STATE_DIR set, output unbuffered, then `settings`."""
    env = {k: v for k, v in os.environ.items() if k.lower() not in AppConfig.model_fields}
    env.update({"STATE_DIR": str(state_dir), "PYTHONUNBUFFERED": "1",
                "PATH": os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")})
    env.update(settings)
    return env
