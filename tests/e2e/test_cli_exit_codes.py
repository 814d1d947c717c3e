"""Exit codes and messages of the command line for what the red-team review found (one message each,
never a traceback): a full disk at start-up exits 1 (systemd restarts it), a STATE_DIR that cannot
exist exits 2, bad `run --sim` arguments exit 2, and `status | head` exits quietly."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from core.domain.clock import SystemClock
from core.domain.errors import StateError, StateUnavailableError
from core.state.store import StateStore
from tests.harness.config import REPO_ROOT, venv_env

EXIT_FAILURE, EXIT_CONFIG, EXIT_REFUSED = 1, 2, 3


def _command(args: list[str], env: dict[str, str], tmp_path: Path, *, preexec: Callable[[], None] | None = None,
             timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    env_file = tmp_path / "empty.env"
    env_file.write_text("")
    return subprocess.run([sys.executable, "-m", "core.cli", "--env-file", str(env_file), *args], cwd=REPO_ROOT,
                          env=env, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in venv_env().items() if not k.startswith(("ALPACA_", "STATE_DIR"))}
    env.update(extra)
    return env


def _one_message(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("trading-daemon: ")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


# ---------------------------------------------------------------------- 9. passing failures of the state
def _file_size_limit(limit: int) -> Callable[[], None]:
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails (EFBIG) instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


def test_a_full_disk_at_start_up_exits_1_so_systemd_restarts_it(sim: Any, tmp_path: Path) -> None:
    # Every file the process writes is capped at 48 KiB: the state database cannot be created.
    env = _env(ALPACA_API_KEY=sim.api_key, ALPACA_SECRET_KEY=sim.secret_key, ALPACA_TRADING_URL=sim.url,
               ALPACA_DATA_URL=sim.url, STATE_DIR=str(tmp_path / "state"), USE_SCANNER="false")
    done = _command(["run", "--once"], env, tmp_path, preexec=_file_size_limit(48 * 1024))
    assert done.returncode == EXIT_FAILURE, done.stderr
    message = _one_message(done.stderr)
    assert "trading.db" in message and ("disk" in message or "full" in message), message
    assert sim.exchange.all_orders() == []


def test_a_locked_database_is_a_passing_failure_and_a_damaged_one_is_not(tmp_path: Path) -> None:
    StateStore(tmp_path / "state", SystemClock()).close()
    holder = sqlite3.connect(tmp_path / "state" / "trading.db", isolation_level=None)
    try:
        holder.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StateUnavailableError, match="locked"):
            StateStore(tmp_path / "state", SystemClock(), busy_timeout_s=0.05)
    finally:
        holder.close()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "trading.db").write_bytes(b"SQLite format 3\x00" + os.urandom(4096))
    with pytest.raises(StateError) as refused:
        StateStore(damaged, SystemClock())
    assert not isinstance(refused.value, StateUnavailableError)


@pytest.mark.parametrize("state_dir", ["/proc/trading-daemon-state", "/dev/null/state"])
def test_a_state_dir_that_cannot_exist_is_one_message_and_exit_2(tmp_path: Path, state_dir: str) -> None:
    done = _command(["run", "--sim", "--once"], _env(STATE_DIR=state_dir), tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    message = _one_message(done.stderr)
    assert f"STATE_DIR={state_dir}" in message and "expected a directory" in message
    assert not (tmp_path / "crash.log").exists()


# ---------------------------------------------------------------------- 12. arguments of `run --sim`
@pytest.mark.parametrize(("args", "expected"), [
    (["--sessions", "0"], "--sessions 0: expected a whole number of simulated sessions >= 1"),
    (["--sessions", "-3"], "--sessions -3: expected a whole number of simulated sessions >= 1"),
    (["--sim-start", "1990-01-02", "--once"], "--sim-start 1990-01-02: expected a date from 2005-"),
    (["--sim-start", "2031-01-02"], "--sim-start 2031-01-02: expected a date from 2005-"),
    (["--sim-start", "2030-12-20", "--sessions", "30"], "--sessions 30: from 2030-12-20 the simulated market's"),
])
def test_bad_simulation_arguments_are_one_message_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    done = _command(["run", "--sim", *args], _env(STATE_DIR=str(tmp_path / "state")), tmp_path)
    assert done.returncode == EXIT_CONFIG, done.stderr
    assert expected in _one_message(done.stderr)
    assert not (tmp_path / "state").exists(), "nothing was started"


def test_a_malformed_sim_start_names_the_value_and_the_format(tmp_path: Path) -> None:
    done = _command(["run", "--sim", "--sim-start", "2025-13-01"], _env(STATE_DIR=str(tmp_path / "state")), tmp_path)
    assert done.returncode == EXIT_CONFIG and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].endswith(
        "error: argument --sim-start: '2025-13-01': expected a date YYYY-MM-DD"), done.stderr


def test_status_into_a_closed_pipe_exits_quietly_without_a_crash_report(tmp_path: Path) -> None:
    state = tmp_path / "state"
    StateStore(state, SystemClock()).close()
    read_end, write_end = os.pipe()
    os.close(read_end)   # `| head` that has already exited
    try:
        done = subprocess.run([sys.executable, "-m", "core.cli", "status"], cwd=REPO_ROOT, stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=_env(STATE_DIR=str(state)), timeout=60)
    finally:
        os.close(write_end)
    assert done.returncode == 128 + signal.SIGPIPE and done.stderr == ""
    assert not (state / "crash.log").exists() and not (tmp_path / "crash.log").exists()


# ---------------------------------------------------------------------- 15. `halts` reads the state `status` reads
def _halted_state(state_dir: Path, kind: str = "max_drawdown") -> None:
    from datetime import date

    with StateStore(state_dir, SystemClock()) as store:
        store.add_halt(kind, f"{kind}: drawdown 16.00% from peak 10,000.00", date(2025, 3, 10))


@pytest.mark.parametrize("where", ["--sim", "--state-dir"])
def test_halts_reads_the_simulated_run_or_any_state_dir_like_status(tmp_path: Path, where: str) -> None:
    _halted_state(tmp_path / "state" / "sim")
    args = [where] if where == "--sim" else [where, str(tmp_path / "state" / "sim")]
    env = _env(STATE_DIR=str(tmp_path / "state"))
    listed = _command(["halts", *args], env, tmp_path)
    assert listed.returncode == 0 and "max_drawdown" in listed.stdout and "Active halts (1)" in listed.stdout
    cleared = _command(["halts", *args, "clear", "max_drawdown", "--reason", "reviewed"], env, tmp_path)
    assert cleared.returncode == 0, cleared.stderr
    # stdout: the human lines only; the audit log line goes to stderr.
    assert cleared.stdout.startswith("Cleared halt max_drawdown") and "{" not in cleared.stdout
    assert '"event": "halt_cleared"' in cleared.stderr
    again = _command(["halts", "clear", "max_drawdown", *args], env, tmp_path)
    assert again.returncode == EXIT_CONFIG and "no active halt named 'max_drawdown'" in again.stderr
    assert "Active halts: none" in _command(["halts", *args], env, tmp_path).stdout


def test_halts_without_a_database_points_to_the_simulated_run(tmp_path: Path) -> None:
    _halted_state(tmp_path / "state" / "sim")
    done = _command(["halts"], _env(STATE_DIR=str(tmp_path / "state")), tmp_path)
    assert done.returncode == EXIT_FAILURE and done.stdout == ""
    assert done.stderr.startswith(f"trading-daemon: No state database at {tmp_path / 'state' / 'trading.db'}")
    assert done.stderr.rstrip().endswith("see it with `trading-daemon halts --sim`."), done.stderr


# ---------------------------------------------------------------------- research commands: checked before any work
@pytest.mark.parametrize(("args", "expected"), [
    (["backtest", "--out", "{file}"], "--out {file}: is a file: expected a directory"),
    (["sweep", "--grid", "ENTRY_Z=2", "--out", "{file}"], "--out {file}: is a file: expected a directory"),
    (["download", "--symbols", "SPY", "--out", "{file}"], "--out {file}: is a file: expected a directory"),
    (["backtest", "--out", "{file}/report"], "--out {file}/report: cannot create the directory"),
    (["sweep", "--grid", "ENTRY_Z=2", "--workers", "0", "--out", "{dir}"], "--workers 0: expected a whole number >= 1"),
    (["sweep", "--grid", "ENTRY_Z=2", "--workers", "-1", "--out", "{dir}"], "--workers -1: expected a whole number >= 1"),
], ids=["backtest-file", "sweep-file", "download-file", "backtest-under-a-file", "sweep-0-workers", "sweep-negative"])
def test_research_commands_refuse_a_bad_out_or_worker_count_before_any_work(tmp_path: Path, args: list[str],
                                                                             expected: str) -> None:
    """A sweep with -1 workers used to wait forever on a cluster of none; an --out that is a file failed only
    after the whole run (sweep, download: a crash report)."""
    taken = tmp_path / "afile"
    taken.write_text("keep me")
    paths = {"file": str(taken), "dir": str(tmp_path / "out")}
    done = _command([a.format(**paths) for a in args], _env(), tmp_path, timeout=60)
    assert done.returncode == EXIT_CONFIG, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + expected.format(**paths)), done.stderr
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert "Dask" not in done.stdout and taken.read_text() == "keep me"
