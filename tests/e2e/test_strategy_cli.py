"""Strategies through the command line, as real subprocesses: the example of docs/strategies.md, copied out
of the markdown into a file outside the repository, runs unchanged in every mode; a bad strategy
reference, a class that is not a strategy and a bad parameter each stop with one line and exit code 2."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from core.domain.market_calendar import get_market_calendar, new_york_time
from tests.harness.config import REPO_ROOT

DOC = REPO_ROOT / "docs" / "strategies.md"
EXAMPLE_MARKER = "<!-- example: double_seven.py"


def documented_example() -> str:
    """The first ```python block after the example marker in docs/strategies.md, exactly as written."""
    text = DOC.read_text(encoding="utf-8")
    after = text[text.index(EXAMPLE_MARKER):]
    match = re.search(r"```python\n(.*?)```", after, re.DOTALL)
    assert match is not None, "docs/strategies.md lost its example block"
    return match.group(1)


def _cli(cwd: Path, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if not k.startswith(("ALPACA_", "STRATEGY")) and k != "NOTIFY_SOCKET"}
    full_env.update({"PYTHONPATH": str(REPO_ROOT), "STATE_DIR": str(cwd / "state"), **env})
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=cwd, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def example(tmp_path: Path) -> str:
    outside = tmp_path / "elsewhere" / "double_seven.py"
    outside.parent.mkdir()
    outside.write_text(documented_example(), encoding="utf-8")
    assert REPO_ROOT not in outside.resolve().parents
    return f"{outside}:DoubleSeven"


def test_the_documented_example_is_about_forty_lines() -> None:
    assert 30 <= len(documented_example().splitlines()) <= 50


def test_the_documented_example_runs_unchanged_in_a_backtest(tmp_path: Path, example: str) -> None:
    out = tmp_path / "report"
    result = _cli(tmp_path, "backtest", "--strategy", example, "--strategy-param", "trend_days=50",
                  "--symbols", "SPY,QQQ,AAPL,MSFT,XLF", "--start", "2025-01-02", "--end", "2025-12-31",
                  "--out", str(out))
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["strategy"]["name"] == "double_seven"
    assert summary["strategy"]["days"] == 7 and summary["strategy"]["trend_days"] == 50
    with (out / "trades.csv").open() as handle:
        trades = list(csv.DictReader(handle))
    reasons = {t["exit_reason"] for t in trades}
    assert len(trades) >= 10 and "exit_signal" in reasons  # the strategy's own exit rule traded
    assert f"--strategy {example} --strategy-param trend_days=50" in (out / "report.md").read_text()


def test_the_documented_example_runs_unchanged_once_as_a_dry_run(tmp_path: Path, example: str) -> None:
    result = _cli(tmp_path, "run", "--once", "--dry-run", "--strategy", example)
    assert result.returncode == 0, result.stderr
    assert "Iteration 1:" in result.stdout and "0 orders submitted" in result.stdout
    assert "STRATEGY" in result.stdout and "Traceback" not in result.stderr


def test_the_documented_example_runs_unchanged_on_the_simulated_market(tmp_path: Path, example: str) -> None:
    # trend_days=20: the simulated market's first sessions need only 40 bars of history to trade on.
    result = _cli(tmp_path, "run", "--sim", "--sessions", "4", "--strategy", example,
                  "--strategy-param", "trend_days=20", LOOP_INTERVAL_SECONDS="1800")
    assert result.returncode == 0, result.stderr
    log = [json.loads(line) for line in (tmp_path / "state" / "sim" / "daemon.log").read_text().splitlines()]
    iterations = [e for e in log if e.get("event") == "iteration_complete"]
    assert len(iterations) >= 4 * 10 and sum(e["signals"] for e in iterations) > 0
    candidates = json.loads((tmp_path / "state" / "sim" / "candidates.json").read_text())
    assert any("% above the 7-day low" in reason for reason in candidates["excluded"].values())


def test_the_documented_example_runs_unchanged_in_the_scanner(tmp_path: Path, example: str) -> None:
    result = _cli(tmp_path, "scan", "--strategy", example)
    assert result.returncode == 0, result.stderr
    today = new_york_time(datetime.now(UTC)).date()
    if not get_market_calendar().is_session(today):  # the CLI scan runs on the real date
        assert "scan skipped: not a trading session" in result.stdout
        return
    candidates = json.loads((tmp_path / "candidates.json").read_text())
    assert candidates["universe_size"] == 29 and {"SPY", "QQQ"} <= set(candidates["symbols"])
    scored = {s: v for s, v in candidates["scores"].items() if s not in ("SPY", "QQQ") and s in candidates["symbols"]}
    assert all(v >= 0 for v in scored.values())  # % above the 7-day low: never negative
    assert all("% above the 7-day low" in r or "no score" in r or "outside the top" in r
               for r in candidates["excluded"].values())


# ------------------------------------------------------------------ one line, exit 2
NOT_A_STRATEGY = """\
from agents.strategies import Strategy


class Helper:
    pass


class Half(Strategy):
    name = "half"
"""


# The three kinds of mistake the issue names, each through the real CLI as a subprocess ...
@pytest.mark.parametrize(("args", "expected"), [
    (["backtest", "--strategy", "nosuch"],
     "strategy 'nosuch' is unknown: expected a built-in name (zscore, rsi2), package.module:ClassName or "
     "path/to/file.py:ClassName"),
    (["scan", "--strategy", "{dir}/mine.py:Helper"],
     "Helper does not implement the strategy interface: expected a subclass of agents.strategies.Strategy"),
    (["run", "--once", "--dry-run", "--strategy", "rsi2", "--strategy-param", "entry_below=ten"],
     "strategy 'rsi2': parameter entry_below='ten': expected a finite number"),
], ids=["bad-reference", "not-a-strategy", "bad-parameter"])
def test_a_bad_strategy_exits_2_with_one_line_before_anything_else(tmp_path: Path, args: list[str],
                                                                   expected: str) -> None:
    (tmp_path / "mine.py").write_text(NOT_A_STRATEGY)
    result = _cli(tmp_path, *[a.replace("{dir}", str(tmp_path)) for a in args], timeout=60)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert result.stderr.count("trading-daemon:") == 1 and "Traceback" not in result.stderr
    assert result.stdout == "" and not (tmp_path / "state").exists()


WRITES_ITS_BARS = """\
from agents.strategies.zscore import ZScoreStrategy


class Writer(ZScoreStrategy):
    name = "writer"

    def compute(self, bars):
        bars.close[0, 0] = 1.0
        return super().compute(bars)
"""


@pytest.mark.parametrize("args", [["backtest", "--out", "{dir}/out"], ["run", "--sim", "--sessions", "1"]],
                         ids=["backtest", "live-loop"])
def test_a_strategy_that_writes_into_its_bars_fails_alike_live_and_in_the_backtest(tmp_path: Path,
                                                                                    args: list[str]) -> None:
    """The bars are read-only in both: the same one message, exit 2, not a traceback in one and a silently
    changed price in the other."""
    (tmp_path / "writer.py").write_text(WRITES_ITS_BARS)
    result = _cli(tmp_path, *[a.replace("{dir}", str(tmp_path)) for a in args], "--strategy",
                  f"{tmp_path}/writer.py:Writer", timeout=120)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert result.stderr.count("trading-daemon:") == 1 and "Traceback" not in result.stderr
    assert ("trading-daemon: strategy 'writer': compute() raised ValueError: assignment destination is read-only "
            "(the bars are read-only, live and in the backtest: copy an array") in result.stderr


# ... and the rest of the variants through the same `main()`, in process (a subprocess costs a second each).
@pytest.mark.parametrize(("args", "env", "expected"), [
    (["run", "--once", "--dry-run"], {"STRATEGY": "no_such_package.strategies:Mine"},
     "strategy 'no_such_package.strategies:Mine': cannot import 'no_such_package.strategies'"),
    (["scan", "--strategy", "{dir}/missing.py:Mine"], {}, "missing.py is not a file"),
    (["run", "--sim", "--once", "--strategy", "{dir}/mine.py:Half"], {},
     "Half does not implement the strategy interface: it does not define bars_needed, compute"),
    (["scan", "--strategy-param", "lookback=1"], {}, "strategy 'zscore': parameter lookback='1': expected a number >= 2"),
    (["backtest"], {"STRATEGY": "rsi2", "STRATEGY_PARAMS": '{"lookback": 20}'},
     "strategy 'rsi2': no parameter 'lookback' (its parameters: rsi_period, rsi_smoothing, entry_below"),
    (["backtest"], {"STRATEGY_PARAMS": "{lookback: 20"}, "STRATEGY_PARAMS='{lookback: 20': expected a JSON object"),
    (["backtest", "--strategy-param", "lookback"], {}, "--strategy-param 'lookback': expected KEY=VALUE"),
    (["strategies", "--strategy", "a b"], {}, "STRATEGY='a b': expected a built-in strategy name"),
], ids=["unknown-module", "missing-file", "abstract-strategy", "param-out-of-range", "unknown-param", "bad-json",
        "bad-assignment", "malformed-reference"])
def test_every_strategy_mistake_is_one_line_and_exit_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str], args: list[str],
                                                       env: dict[str, str], expected: str) -> None:
    from core.cli import main

    (tmp_path / "mine.py").write_text(NOT_A_STRATEGY)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STATE_DIR", str(tmp_path / "state"))
    for key in ("STRATEGY", "STRATEGY_PARAMS"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert main([a.replace("{dir}", str(tmp_path)) for a in args]) == 2
    out, err = capsys.readouterr()
    assert expected in err and err.count("trading-daemon:") == 1 and out == ""
    assert not (tmp_path / "state").exists()


def test_strategies_lists_the_builtins_with_their_parameters_and_defaults(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["strategies", "--strategy-param", "entry_z=2.5"]) == 0
    stdout = capsys.readouterr().out
    lines = stdout.splitlines()
    assert any(line.startswith("zscore: ") for line in lines) and any(line.startswith("rsi2: ") for line in lines)
    rows = {line.split()[0]: line.split()[1] for line in lines if line.startswith("  ")}
    assert rows["lookback"] == "20" and rows["entry_below"] == "10.0" and rows["trend_days"] == "200"
    assert "Selected: zscore(lookback=20, entry_z=2.5, exit_z=0.0, scanner_oversold_z=-1.0)" in stdout
