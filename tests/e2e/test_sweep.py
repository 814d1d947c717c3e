"""The sweep: pure parts on hand-worked numbers (windows, deflated Sharpe, points), one message for a
bad setting, a point equal byte for byte to `trading-daemon backtest`, and the whole walk-forward
sweep (9 points x 4 windows) on a local Dask cluster, killed mid-way and resumed."""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest

from core.backtest.deflated_sharpe import (
    ReturnMoments,
    deflated_sharpe,
    expected_max_sharpe,
    moments,
    probabilistic_sharpe,
)
from core.backtest.engine import BacktestOptions
from core.backtest.sweep import DataSource, SweepTask, run_task, task_key
from core.backtest.sweep_report import spearman
from core.backtest.sweep_space import (
    SweepSpaceError,
    Universe,
    base_values,
    build_points,
    parse_grid,
    parse_ranges,
    parse_universes,
)
from core.backtest.walk_forward import Window, parse_duration, walk_forward_windows
from core.domain.market_calendar import get_market_calendar
from tests.harness.config import REPO_ROOT, make_config, venv_env

CAL = get_market_calendar()


# `main()` configures structlog to print to the stream of the moment (pytest's capture, closed after the
# test): every test here puts the defaults back so later tests do not log into a closed file.
pytestmark = pytest.mark.usefixtures("reset_logging")


# ------------------------------------------------------------------------------------------------
# Pure parts
# ------------------------------------------------------------------------------------------------
def test_walk_forward_windows_by_hand() -> None:
    # 2016-01-04 .. 2020-12-31, train 2y, test 1y. Window k starts at 2016-01-04 + k years:
    #   0: train 2016-01-04 .. 2018-01-03, test 2018-01-04 .. 2019-01-03 (nominal 2019-01-03, a Thursday)
    #   1: train 2017-01-04 .. 2019-01-03, test 2019-01-04 .. 2020-01-03
    #   2: train 2018-01-04 .. 2020-01-03, test 2020-01-06 (04 is a Saturday) .. nominal 2021-01-03:
    #      after 2020-12-31 come 01-01 (holiday), 01-02 and 01-03 (weekend): no session, so it is kept
    #   3: its test would start on 2021-01-04, after the data: not a window
    windows = walk_forward_windows(date(2016, 1, 4), date(2020, 12, 31), parse_duration("2y"),
                                   parse_duration("1y"), CAL)
    assert windows == [
        Window(0, date(2016, 1, 4), date(2018, 1, 3), date(2018, 1, 4), date(2019, 1, 3)),
        Window(1, date(2017, 1, 4), date(2019, 1, 3), date(2019, 1, 4), date(2020, 1, 3)),
        Window(2, date(2018, 1, 4), date(2020, 1, 3), date(2020, 1, 6), date(2020, 12, 31)),
    ]
    # One session short of the third test period: only two windows.
    assert len(walk_forward_windows(date(2016, 1, 4), date(2020, 12, 30), parse_duration("2y"),
                                    parse_duration("1y"), CAL)) == 2
    # Months clamp at the month's end: 2024-01-31 + 1m = 2024-02-29.
    assert parse_duration("1m").after(date(2024, 1, 31)) == date(2024, 2, 29)
    assert parse_duration("6W").after(date(2024, 1, 1)) == date(2024, 2, 12)
    for bad in ("0y", "3", "y", "3q", "-1y"):
        with pytest.raises(ValueError, match="expected a positive length"):
            parse_duration(bad, "--train")


def test_deflated_sharpe_by_hand() -> None:
    # Four returns 0.01, -0.02, 0.03, 0: mean 0.005, deviations +-0.005, +-0.025; sum of squares 0.0013.
    m = moments([0.01, -0.02, 0.03, 0.0])
    assert m is not None and m.n == 4
    assert m.sharpe == pytest.approx(0.005 / math.sqrt(0.0013 / 3), rel=1e-12)       # 0.240192
    assert m.skew == pytest.approx(0.0, abs=1e-12)                                   # symmetric
    assert m.kurtosis == pytest.approx(1.95625e-7 / 0.000325 ** 2, rel=1e-12)        # 1.852071
    assert moments([0.01, 0.01, 0.01]) is None and moments([0.01, 0.02]) is None
    # PSR with SR 0.1 per session over 101 normal returns: z = 0.1 x 10 / sqrt(1 + 2/4 x 0.01) = 0.997509.
    assert probabilistic_sharpe(0.1, 101, 0.0, 3.0) == pytest.approx(0.840741, abs=1e-6)
    # SR0 for 10 trials with a Sharpe variance of 0.0001: 0.01 x (0.422784 x 1.281552 + 0.577216 x 1.789242).
    assert expected_max_sharpe(10, 0.0001) == pytest.approx(0.01 * (0.4227843351 * 1.2815516 + 0.5772156649 * 1.7892418),
                                                            abs=1e-8)
    assert expected_max_sharpe(1, 0.0001) == 0.0 and expected_max_sharpe(10, 0.0) == 0.0
    # DSR = PSR against SR0: trials 0.00, 0.01, 0.02 (variance 0.0001, N = 3).
    selected = ReturnMoments(n=101, sharpe=0.1, skew=0.0, kurtosis=3.0)
    dsr, sr0 = deflated_sharpe(selected, [0.0, 0.01, 0.02])
    assert sr0 == pytest.approx(expected_max_sharpe(3, 0.0001))
    assert dsr == pytest.approx(probabilistic_sharpe(0.1, 101, 0.0, 3.0, sr0)) and dsr < 0.840741


def test_spearman_by_hand() -> None:
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [40, 30, 20, 10]) == pytest.approx(-1.0)
    # Ranks 1,2,3,4 against 2,1,4,3: d^2 = 4, rho = 1 - 6 x 4 / (4 x 15) = 0.6
    assert spearman([1, 2, 3, 4], [2, 1, 4, 3]) == pytest.approx(0.6)
    assert spearman([1, 2], [1, 2]) is None


def test_points_grid_random_and_universes(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    universes = parse_universes(["etfs=spy,qqq", "TIER1+TIER2"], config)
    assert universes[0] == Universe("etfs", ("SPY", "QQQ"))
    assert universes[1].name == "TIER1+TIER2" and "XLK" in universes[1].symbols and "AAPL" not in universes[1].symbols
    grid = parse_grid(["entry_z=1.5,2", "ZSCORE_LOOKBACK=10,20,40"])
    points = build_points(grid, [], universes)
    assert len(points) == 12 and points[0].label == "ENTRY_Z=1.5 ZSCORE_LOOKBACK=10 [etfs]"
    assert points[11].overrides() == {"entry_z": "2", "zscore_lookback": "40"}
    ranges = parse_ranges(["ENTRY_Z=1.5:3", "ZSCORE_LOOKBACK=10:60"])
    drawn = build_points([], ranges, universes[:1], random_points=5, seed=7)
    again = build_points([], ranges, universes[:1], random_points=5, seed=7)
    assert [p.settings for p in drawn] == [p.settings for p in again]       # seeded
    for p in drawn:
        s = dict(p.settings)
        assert 1.5 <= float(s["ENTRY_Z"]) <= 3 and s["ZSCORE_LOOKBACK"].isdigit() and 10 <= int(s["ZSCORE_LOOKBACK"]) <= 60
    with pytest.raises(SweepSpaceError, match="unknown setting"):
        parse_grid(["ENTRYZ=1"])
    with pytest.raises(SweepSpaceError, match="not a strategy or risk setting"):
        parse_grid(["ALPACA_API_KEY=x"])
    with pytest.raises(SweepSpaceError, match="needs --random"):
        build_points([], ranges, universes)


def test_a_task_carries_a_description_not_bars(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    window = Window(0, date(2020, 1, 2), date(2020, 12, 31), date(2021, 1, 4), date(2021, 6, 30))
    source = DataSource(kind="synthetic", seed=42, symbols=tuple(config.symbols), first=date(2019, 10, 1),
                        last=date(2021, 6, 30))
    values = base_values(config)
    task = SweepTask(task_key(values, ("SPY",), window, BacktestOptions(), source), 0, "x", window, values, ("SPY",),
                     BacktestOptions(), source)
    assert len(pickle.dumps(task)) < 4096                      # 29 symbols x 440 sessions of bars would be ~500 kB
    assert "alpaca_api_key" not in values


def test_a_scheduler_without_workers_is_one_error_not_a_wait_forever(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from dask.distributed import LocalCluster

    from core.backtest import sweep

    config = make_config(tmp_path)
    window = Window(0, date(2020, 1, 2), date(2020, 12, 31), date(2021, 1, 4), date(2021, 6, 30))
    source = DataSource(kind="synthetic", seed=42, symbols=("SPY",), first=date(2019, 10, 1), last=date(2021, 6, 30))
    values = base_values(config)
    task = SweepTask(task_key(values, ("SPY",), window, BacktestOptions(), source), 0, "x", window, values, ("SPY",),
                     BacktestOptions(), source)
    monkeypatch.setattr(sweep, "SCHEDULER_WORKER_WAIT_S", 1.0)
    with (LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty,
          pytest.raises(sweep.SweepRunError, match=r"has no worker \(waited 1 s\): start one with `dask worker")):
        sweep.execute([task], sweep.ResultsFile(tmp_path / "results.jsonl"), scheduler=empty.scheduler_address,
                      workers=None, step=lambda _: None)
    assert not (tmp_path / "results.jsonl").exists() or (tmp_path / "results.jsonl").read_text() == ""


# ------------------------------------------------------------------------------------------------
# Bad settings: one message, exit 2
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("argv", "message"), [
    (["--grid", "ENTRY_Z=abc"], "ENTRY_Z='abc': expected a number"),
    (["--grid", "ENTRY_Z=20"], "ENTRY_Z='20': expected a number <= 10"),
    (["--grid", "FOO=1"], "--grid FOO: unknown setting"),
    (["--grid", "STATE_DIR=/tmp"], "not a strategy or risk setting"),
    (["--grid", "TIER1_ALLOCATION=0.9"], "expected a sum of at most 1"),
    (["--metric", "luck"], "--metric 'luck': expected one of sharpe"),
    (["--train", "3x"], "--train '3x': expected a positive length"),
    (["--start", "2026-01-02"], "holds no window of --train 3y followed by --test 1y"),
    (["--universe", "x=SPY,NOT_A_TICKER"], "--universe"),
])
def test_bad_sweep_arguments_exit_2_with_one_message(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     argv: list[str], message: str) -> None:
    from core.cli import main

    env = tmp_path / "empty.env"
    env.write_text(f"STATE_DIR={tmp_path / 'state'}\n")
    assert main(["--env-file", str(env), "sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(("env_lines", "argv", "message"), [
    ("STRATEGY=rsi2\n", ["--grid", "ENTRY_Z=1.5,2,2.5"],
     "ENTRY_Z: the selected strategy 'rsi2' does not read ENTRY_Z"),
    ("STRATEGY=rsi2\n", ["--random", "3", "--range", "ZSCORE_LOOKBACK=10:40"],
     "ZSCORE_LOOKBACK: the selected strategy 'rsi2' does not read ZSCORE_LOOKBACK"),
    ("STRATEGY_PARAMS={\"entry_z\": 2.5}\n", ["--grid", "ENTRY_Z=1.5,2"],
     "ENTRY_Z: STRATEGY_PARAMS sets 'entry_z' of strategy 'zscore', which overrides ENTRY_Z"),
])
def test_a_setting_the_selected_strategy_ignores_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                            env_lines: str, argv: list[str], message: str) -> None:
    """Points differing only in a setting the strategy never reads would be identical: exit 2, one line."""
    from core.cli import main

    env = tmp_path / "strategy.env"
    env.write_text(f"STATE_DIR={tmp_path / 'state'}\n{env_lines}")
    assert main(["--env-file", str(env), "sweep", *argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_risk_settings_sweep_for_every_strategy(tmp_path: Path) -> None:
    from core.backtest.sweep_space import refuse_settings_the_strategy_ignores

    rsi2 = make_config(tmp_path, strategy="rsi2")
    refuse_settings_the_strategy_ignores(["STOP_LOSS_PCT", "MAX_OPEN_POSITIONS", "SCANNER_TOP_N"], rsi2)
    refuse_settings_the_strategy_ignores(["ENTRY_Z", "EXIT_Z", "ZSCORE_LOOKBACK", "SCANNER_OVERSOLD_Z"],
                                         make_config(tmp_path))
    with pytest.raises(SweepSpaceError, match="SCANNER_OVERSOLD_Z: the selected strategy 'rsi2'"):
        refuse_settings_the_strategy_ignores(["SCANNER_OVERSOLD_Z"], rsi2)


# ------------------------------------------------------------------------------------------------
# A point equals a single backtest, byte for byte
# ------------------------------------------------------------------------------------------------
def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_point_equals_cli_backtest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.backtest.sweep_space import Point, point_config
    from core.cli import main

    config = make_config(tmp_path)
    symbols = ("SPY", "QQQ", "AAPL", "MSFT", "AVGO", "XLE")
    point = Point(0, (("ENTRY_Z", "1.5"), ("ZSCORE_LOOKBACK", "10")), Universe("six", symbols))
    values = {**base_values(config), **point.overrides()}
    window = Window(0, date(2021, 1, 4), date(2022, 12, 30), date(2023, 1, 3), date(2023, 12, 29))
    source = DataSource(kind="synthetic", seed=42, symbols=(*symbols,), first=date(2020, 6, 1), last=date(2023, 12, 29))
    task = SweepTask("k", 0, point.label, window, values, symbols, BacktestOptions(), source)
    row = run_task(task)
    assert "error" not in row and point_config(base_values(config), point).entry_z == 1.5
    monkeypatch.setenv("ENTRY_Z", "1.5")
    monkeypatch.setenv("ZSCORE_LOOKBACK", "10")
    env = tmp_path / "cli.env"
    env.write_text(f"STATE_DIR={tmp_path / 'state'}\nCANDIDATES_PATH={tmp_path / 'candidates.json'}\n")
    for phase, (start, end) in (("in_sample", (window.train_start, window.train_end)),
                                ("out_of_sample", (window.test_start, window.test_end))):
        out = tmp_path / phase
        assert main(["--env-file", str(env), "backtest", "--start", str(start), "--end", str(end), "--symbols",
                     ",".join(symbols), "--out", str(out)]) == 0
        assert row[phase]["trades_sha256"] == _sha(out / "trades.csv")
        assert row[phase]["summary_sha256"] == _sha(out / "summary.json")
        summary = json.loads((out / "summary.json").read_text())
        assert row[phase]["trades"] == summary["metrics"]["trades"] > 0
        assert summary["strategy"]["entry_z"] == 1.5 and summary["strategy"]["lookback"] == 10


# ------------------------------------------------------------------------------------------------
# The whole sweep on a local Dask cluster: killed mid-way, resumed, equal to single backtests
# ------------------------------------------------------------------------------------------------
SWEEP_ARGS = ["sweep", "--grid", "ENTRY_Z=1.5,2,2.5", "--grid", "ZSCORE_LOOKBACK=10,20,40",
              "--start", "2019-10-31", "--train", "3y", "--test", "1y", "--workers", "2"]


def _lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


@pytest.mark.timeout(300)
def test_walk_forward_sweep_on_dask_resumes_after_a_kill(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    env = {**venv_env(), "STATE_DIR": str(tmp_path / "state")}
    env_file = tmp_path / "sweep.env"
    env_file.write_text("")
    command = [sys.executable, "-m", "core.cli", "--env-file", str(env_file), *SWEEP_ARGS, "--out", str(out)]
    child = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    results = out / "results.jsonl"
    deadline = time.monotonic() + 240
    while len(_lines(results)) < 3 and time.monotonic() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert child.poll() is None, "the sweep ended before it could be killed"
    os.killpg(child.pid, signal.SIGKILL)       # the driver and its Dask workers: a real kill, mid-way
    child.wait(timeout=30)
    done_before = {str(r["key"]) for r in _lines(results)}
    assert 3 <= len(done_before) < 36

    rerun = subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert f"{len(done_before)} taken from an earlier run" in rerun.stdout
    assert f"{36 - len(done_before)} run now on 2 Dask workers" in rerun.stdout
    assert "strategy_selected" not in rerun.stdout + rerun.stderr   # workers log warnings only, as the command
    rows = _lines(results)
    keys = [str(r["key"]) for r in rows]
    assert len(keys) == len(set(keys)) == 36                   # nothing ran twice, nothing is missing
    assert done_before <= set(keys)
    # The data was loaded once per worker process, not per task.
    fresh = [r for r in rows if r["key"] not in done_before]
    for pid in {r["worker_pid"] for r in fresh}:
        assert {r["worker_loads"] for r in fresh if r["worker_pid"] == pid} == {1}
    assert len({r["worker_pid"] for r in fresh}) <= 2

    for name in ("sweep.csv", "sweep.md", "oos_equity.png", "heatmap.png"):
        assert (out / name).stat().st_size > 0, name
    csv_lines = (out / "sweep.csv").read_text().splitlines()
    assert len(csv_lines) == 37 and sum(1 for line in csv_lines if ",yes," in line) == 4
    text = (out / "sweep.md").read_text()
    assert "Points tried: 9" in text and "(4 windows)" in text and "deflated Sharpe" in text
    assert "Headline: the stitched out-of-sample equity" in text

    # A row picked from the sweep equals `trading-daemon backtest` with those settings.
    row = next(r for r in rows if r["label"] == "ENTRY_Z=2.5 ZSCORE_LOOKBACK=40 [configured]" and r["window"] == 2)
    single = tmp_path / "single"
    check = subprocess.run([sys.executable, "-m", "core.cli", "--env-file", str(env_file), "backtest", "--start",
                            "2024-10-31", "--end", "2025-10-30", "--out", str(single)], cwd=REPO_ROOT,
                           env={**env, "ENTRY_Z": "2.5", "ZSCORE_LOOKBACK": "40"}, capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    oos = row["out_of_sample"]
    assert isinstance(oos, dict)
    assert oos["trades_sha256"] == _sha(single / "trades.csv") and oos["summary_sha256"] == _sha(single / "summary.json")


def test_sweep_on_an_existing_scheduler(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dask.distributed import LocalCluster

    from core.cli import main

    env = tmp_path / "e.env"
    env.write_text(f"STATE_DIR={tmp_path / 'state'}\n")
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                      dashboard_address=None) as cluster:
        address = cluster.scheduler_address
        assert address.startswith("tcp://127.0.0.1:")
        argv = ["--env-file", str(env), "sweep", "--grid", "ENTRY_Z=1.5,2", "--universe", "two=SPY,QQQ",
                "--start", "2023-01-03", "--end", "2024-07-02", "--train", "1y", "--test", "6m",
                "--scheduler", address, "--out", str(tmp_path / "out")]
        assert main(argv) == 0
        printed = capsys.readouterr().out
        assert f"Dask: 1 workers at {address}" in printed and "2 run now on 1 Dask workers" in printed
        # A rerun has nothing left to do and does not even connect.
        assert main(argv) == 0
        assert "2 taken from an earlier run of this sweep" in capsys.readouterr().out


def test_parser_and_research_modules_import_no_plotting_or_cluster_code() -> None:
    """`trading-daemon --help`, download and the sweep's planning import neither matplotlib nor dask:
    matplotlib only when a sweep or a backtest writes its PNGs, dask only when the sweep runs tasks."""
    code = (
        "import sys\n"
        "from core.cli import build_parser\n"
        "build_parser()\n"
        "import core.backtest.download, core.backtest.download_cli, core.backtest.sweep, core.backtest.sweep_cli\n"
        "import core.backtest.sweep_space, core.backtest.sweep_report, core.backtest.walk_forward\n"
        "import core.backtest.deflated_sharpe, core.backtest.metrics, core.backtest.adjustment\n"
        "print(sorted(m for m in ('matplotlib', 'dask', 'distributed', 'alpaca') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_point_on_file_data_equals_cli_backtest(tmp_path: Path) -> None:
    """With --data a point runs on the whole file, as `backtest --data` does (bars before the start are
    its warm-up), and the worker reads the file itself: the task carries only its path and stamp."""
    from core.backtest.data import synthetic_history
    from core.backtest.sweep import file_source
    from core.backtest.sweep_space import Point
    from core.cli import main

    symbols = ("SPY", "QQQ", "AAPL")
    bars = synthetic_history(list(symbols), date(2021, 1, 4), date(2023, 12, 29), seed=5, calendar=CAL)
    path = tmp_path / "bars.csv"
    bars.to_long_frame().to_csv(path, index=False)
    config = make_config(tmp_path)
    point = Point(0, (("ENTRY_Z", "1.5"),), Universe("three", symbols))
    window = Window(0, date(2021, 6, 1), date(2022, 12, 30), date(2023, 1, 3), date(2023, 12, 29))
    source = file_source(path, set(config.symbols) | set(symbols))
    task = SweepTask("k", 0, point.label, window, {**base_values(config), **point.overrides()}, symbols,
                     BacktestOptions(), source)
    assert len(pickle.dumps(task)) < 4096
    row = run_task(task)
    assert "error" not in row
    env = tmp_path / "cli.env"
    env.write_text(f"STATE_DIR={tmp_path / 'state'}\nENTRY_Z=1.5\n")
    out = tmp_path / "single"
    assert main(["--env-file", str(env), "backtest", "--data", str(path), "--symbols", ",".join(symbols),
                 "--start", "2023-01-03", "--end", "2023-12-29", "--out", str(out)]) == 0
    assert row["out_of_sample"]["trades_sha256"] == _sha(out / "trades.csv")
    assert row["out_of_sample"]["summary_sha256"] == _sha(out / "summary.json")
