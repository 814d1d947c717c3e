"""The report's charts: drawn in a forked process (the command line, run as a program) or in this one,
byte for byte the same; a failure to write them is one clear error either way."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from config.settings import get_config
from core.backtest.charts import ChartData, ChartWorker, draw_charts
from core.backtest.data import synthetic_history
from core.backtest.engine import BacktestOptions, run_backtest
from core.backtest.report import chart_data, write_report
from core.domain.market_calendar import get_market_calendar
from tests.harness.config import REPO_ROOT

CAL = get_market_calendar()
SYMBOLS = ("SPY", "QQQ", "AAPL")


def _data() -> ChartData:
    config = get_config(env_file=None)
    history = synthetic_history(list(SYMBOLS), date(2023, 10, 2), date(2024, 12, 31), 42, calendar=CAL)
    result = run_backtest(history, config, BacktestOptions(start=date(2024, 1, 2), symbols=SYMBOLS,
                                                           show_progress=False), calendar=CAL)
    return chart_data(result)


_FORKED = """
import pickle, sys
from pathlib import Path
from core.backtest.charts import ChartWorker
data = pickle.loads(Path(sys.argv[1]).read_bytes())
worker = ChartWorker(parallel=True)
assert worker.forked, "a single-threaded program forks its chart process"
try:
    worker.draw(data, Path(sys.argv[2]), Path(sys.argv[3]))
except OSError as exc:
    print(f"OSError: {exc}")
    sys.exit(3)
"""


def _forked(data: ChartData, equity: Path, exposure: Path) -> subprocess.CompletedProcess[str]:
    import pickle

    job = equity.parent / "job.pickle"
    job.write_bytes(pickle.dumps(data))
    return subprocess.run([sys.executable, "-c", _FORKED, str(job), str(equity), str(exposure)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=300)


def test_charts_drawn_in_a_forked_process_are_the_ones_drawn_here(tmp_path: Path) -> None:
    data = _data()
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    draw_charts(data, here / "equity.png", here / "exposure.png")
    result = _forked(data, there / "equity.png", there / "exposure.png")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("equity.png", "exposure.png"):
        drawn = (here / name).read_bytes()
        assert drawn[:8] == b"\x89PNG\r\n\x1a\n" and len(drawn) > 10_000
        assert (there / name).read_bytes() == drawn


def test_a_chart_the_forked_process_cannot_write_is_an_error_in_the_parent(tmp_path: Path) -> None:
    (tmp_path / "equity.png").mkdir()          # a directory where the file should go
    result = _forked(_data(), tmp_path / "equity.png", tmp_path / "exposure.png")
    assert result.returncode == 3 and result.stdout.startswith("OSError: ") and "equity.png" in result.stdout


def test_a_chart_process_that_is_never_given_charts_ends_with_its_parent() -> None:
    code = ("from core.backtest.charts import ChartWorker\n"
            "import os\n"
            "worker = ChartWorker(parallel=True)\n"
            "pid = worker._pid\n"
            "worker.close()\n"
            "try:\n"
            "    os.kill(pid, 0)\n"
            "    print('alive')\n"
            "except ProcessLookupError:\n"
            "    print('gone')\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "gone"


def test_a_chart_the_second_chart_process_cannot_write_is_an_error_in_the_parent(tmp_path: Path) -> None:
    (tmp_path / "exposure.png").mkdir()        # exposure.png is drawn by the chart process's own child
    result = _forked(_data(), tmp_path / "equity.png", tmp_path / "exposure.png")
    assert result.returncode == 3 and result.stdout.startswith("OSError: ") and "exposure.png" in result.stdout
    assert (tmp_path / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_chart_process_that_cannot_load_matplotlib_says_so_in_the_parent(tmp_path: Path) -> None:
    import pickle

    job = tmp_path / "job.pickle"
    job.write_bytes(pickle.dumps(_data()))
    # A None entry in sys.modules makes `import matplotlib` fail, as on an installation without it.
    code = "import sys\nsys.modules['matplotlib'] = None\n" + _FORKED
    result = subprocess.run([sys.executable, "-c", code, str(job), str(tmp_path / "equity.png"),
                             str(tmp_path / "exposure.png")], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert result.stdout.startswith("OSError: ModuleNotFoundError: ") and "matplotlib" in result.stdout


_NEVER_GIVEN = """
import os, time
from pathlib import Path
from core.backtest.charts import ChartWorker
worker = ChartWorker(parallel=True)
children = Path(f"/proc/{worker._pid}/task/{worker._pid}/children")
deadline = time.monotonic() + 60
while not children.read_text().split() and time.monotonic() < deadline:
    time.sleep(0.02)           # the second drawer is forked once matplotlib is imported
(second,) = [int(p) for p in children.read_text().split()]
deadline = time.monotonic() + 30      # ends at once: it only waits for a job
worker.close()
while time.monotonic() < deadline:
    try:
        os.kill(second, 0)
        stat = Path(f"/proc/{second}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":   # ended, not yet reaped by its new parent
            break
    except (ProcessLookupError, FileNotFoundError):
        break
    time.sleep(0.02)
else:
    print("alive")
    raise SystemExit(1)
print("gone")
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads the process tree from /proc")
def test_the_second_chart_process_ends_too_when_no_charts_are_given() -> None:
    result = subprocess.run([sys.executable, "-c", _NEVER_GIVEN], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "gone"


def test_in_this_process_the_worker_draws_directly_and_reports_a_bad_path(tmp_path: Path) -> None:
    worker = ChartWorker()                     # the default: no child
    assert not worker.forked
    (tmp_path / "exposure.png").mkdir()
    with pytest.raises(OSError):
        worker.draw(_data(), tmp_path / "equity.png", tmp_path / "exposure.png")


def test_the_command_run_as_a_program_writes_the_report_an_in_process_run_writes(tmp_path: Path) -> None:
    config = get_config(env_file=None)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "STATE_DIR": str(tmp_path / "state")}
    for key in ("ALPACA_API_KEY", "ALPACA_SECRET_KEY"):
        env.pop(key, None)
    (tmp_path / ".env").write_text("")
    argv = ["backtest", "--symbols", ",".join(SYMBOLS), "--start", "2024-01-02", "--end", "2024-12-31",
            "--out", str(tmp_path / "program")]
    result = subprocess.run([sys.executable, "-m", "core.cli", "--env-file", str(tmp_path / ".env"), *argv],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    from core.backtest.cli import load_data, options_from_args
    from core.cli import build_parser

    args = build_parser().parse_args(argv[:-2])
    history, options = load_data(options_from_args(args), config, None, CAL)
    write_report(run_backtest(history, config, options, calendar=CAL), tmp_path / "here")
    for name in ("trades.csv", "summary.json", "equity.png", "exposure.png"):
        assert (tmp_path / "program" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name
    assert np.isfinite(chart_data(run_backtest(history, config, options, calendar=CAL)).equity).all()
