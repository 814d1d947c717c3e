"""What each command imports: `--help` answers from the standard library alone, commands that draw no
chart never import matplotlib, and commands that do not trade never import alpaca-py.

Each command runs in a fresh interpreter (a subprocess), so the modules it loads are its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.domain.clock import SystemClock
from core.state.store import StateStore
from tests.harness.config import REPO_ROOT

HEAVY = ("matplotlib", "alpaca", "pandas", "numpy", "pydantic", "exchange_calendars", "structlog")
SIM_MARKET = ("core.sim.exchange", "core.sim.server")   # the simulated brokerage and its HTTP server

_PROBE = """
import json, sys
from core.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps({"code": code, "loaded": sorted(m for m in HEAVY if m in sys.modules)}))
""".replace("HEAVY", repr(HEAVY + SIM_MARKET))


def _run(argv: list[str], tmp_path: Path) -> dict[str, object]:
    env = {**os.environ, "STATE_DIR": str(tmp_path / "state"), "PYTHONPATH": str(REPO_ROOT)}
    for key in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY", "JOURNAL_STREAM"):
        env.pop(key, None)
    result = subprocess.run([sys.executable, "-c", _PROBE, "--env-file", str(tmp_path / ".env"), *argv],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return report


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / ".env").write_text("")
    return tmp_path


@pytest.mark.parametrize("argv", [["--help"], ["backtest", "--help"], ["sweep", "--help"], ["download", "--help"],
                                  ["--version"]])
def test_help_and_version_load_nothing_heavy(argv: list[str], workdir: Path) -> None:
    report = _run(argv, workdir)
    assert report["code"] == 0 and report["loaded"] == []


@pytest.mark.parametrize("argv", [
    ["status"], ["halts"], ["strategies"], ["demo"],
    ["backtest", "--compare-seed", "--symbols", "SPY,QQQ", "--start", "2025-01-02", "--out", "cmp"],
])
def test_commands_that_draw_no_chart_and_send_no_order_import_neither_matplotlib_nor_alpaca(
        argv: list[str], workdir: Path) -> None:
    StateStore(workdir / "state", SystemClock()).close()   # without a database, status and halts stop at once
    report = _run(argv, workdir)
    assert report["code"] == 0
    loaded = report["loaded"]
    assert isinstance(loaded, list) and "matplotlib" not in loaded and "alpaca" not in loaded


def test_a_backtest_draws_its_charts_with_matplotlib_and_never_loads_the_sdk(workdir: Path) -> None:
    report = _run(["backtest", "--symbols", "SPY,QQQ", "--start", "2025-01-02", "--out", "bt"], workdir)
    assert report["code"] == 0
    loaded = report["loaded"]
    assert isinstance(loaded, list) and "matplotlib" in loaded and "alpaca" not in loaded
    assert (workdir / "bt" / "equity.png").stat().st_size > 0 and (workdir / "bt" / "exposure.png").is_file()
    # Its synthetic bars come from core.sim.bars alone: the package loads the simulated brokerage and its
    # HTTP server only when they are used (core/sim/__init__.py).
    assert not set(SIM_MARKET) & set(loaded)
