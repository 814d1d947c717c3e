"""Sweep execution: each (point, window) task is two in-process backtests through the same engine as
`trading-daemon backtest` (in-sample on the window's train period, out-of-sample on its test period),
run on Dask workers, each finished task appended to a results file that a rerun skips.

Data once per worker: a task carries only a small `DataSource` description (the synthetic market's
seed, symbols and sessions, or a file's path, size and modification time), never bars. Each worker
process loads the source the first time a task needs it and keeps it in a module-level cache keyed by
the description (`worker_history`); every later task on that worker reuses it. Each row records how
many times its worker had loaded the source (`worker_loads`) and the worker's process id, so the
results file itself shows the data was loaded once per worker. A file source must be readable at the
same path on every worker (a shared file system on a cluster).

A point's run equals `trading-daemon backtest` with the point's settings in the environment and
`--start/--end/--symbols` of the period: the same `AppConfig` values, the same bars sliced the way the
command slices them (`history_for_run`), the same engine. Each row carries the SHA-256 of the run's
trades.csv and summary.json texts, so anyone can check a row against a single backtest.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

from config.settings import AppConfig, get_config
from core.backtest.data import History, load_history, synthetic_history
from core.backtest.engine import BacktestOptions, BacktestResult, run_backtest, warmup_sessions
from core.backtest.walk_forward import Window
from core.domain.market_calendar import get_market_calendar

RESULTS_FILE = "results.jsonl"
SCHEDULER_WORKER_WAIT_S = 60.0   # how long an existing scheduler may take to show its first worker


@dataclass(frozen=True)
class DataSource:
    """Where a worker gets the bars. Small and hashable: this, not the bars, travels with each task."""

    kind: str                           # "synthetic" or "file"
    seed: int = 0
    symbols: tuple[str, ...] = ()       # synthetic: generated; file: allowed
    first: date | None = None           # synthetic: first generated session (warm-up included)
    last: date | None = None
    path: str = ""
    stamp: str = ""                     # file: size and mtime, so a changed file is loaded again

    @property
    def key(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), default=str, sort_keys=True).encode()).hexdigest()[:16]

    def load(self) -> History:
        calendar = get_market_calendar()
        if self.kind == "synthetic":
            assert self.first is not None and self.last is not None
            return synthetic_history(list(self.symbols), self.first, self.last, self.seed, calendar=calendar)
        return load_history(self.path, set(self.symbols), calendar=calendar)


def file_source(path: str | Path, allowed: Iterable[str]) -> DataSource:
    stat = Path(path).stat()
    # The path as given: the report names the data as `backtest --data` does (on a cluster, give a path
    # every worker can read, e.g. an absolute one on a shared file system).
    return DataSource(kind="file", symbols=tuple(sorted(set(allowed))), path=str(path),
                      stamp=f"{stat.st_size}:{stat.st_mtime_ns}")


@dataclass(frozen=True)
class SweepTask:
    key: str
    point: int
    label: str
    window: Window
    values: dict[str, Any]              # the point's configuration (non-secret settings + overrides)
    symbols: tuple[str, ...]
    options: BacktestOptions            # run options other than start, end and symbols
    source: DataSource


def task_key(values: dict[str, Any], symbols: Sequence[str], window: Window, options: BacktestOptions,
             source: DataSource) -> str:
    """What makes a result reusable: the same configuration, symbols, dates, options and data."""
    text = json.dumps({"values": values, "symbols": list(symbols),
                       "window": [window.train_start, window.train_end, window.test_start, window.test_end],
                       "options": asdict(replace(options, show_progress=False)), "source": source.key},
                      default=str, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


# --------------------------------------------------------------------------------------------
# On the worker
# --------------------------------------------------------------------------------------------
_HISTORY: dict[str, History] = {}
_LOADS: Counter[str] = Counter()


def worker_history(source: DataSource) -> History:
    """The source's bars, loaded once per worker process (one source kept at a time)."""
    history = _HISTORY.get(source.key)
    if history is None:
        history = source.load()
        _HISTORY.clear()
        _HISTORY[source.key] = history
        _LOADS[source.key] += 1
    return history


def history_for_run(history: History, source: DataSource, options: BacktestOptions, config: AppConfig) -> History:
    """The bars `trading-daemon backtest` would run on for these options: for the synthetic market,
    its warm-up before the start through the end (core.backtest.inputs.load_data); for a file, all of it."""
    if source.kind != "synthetic":
        return history
    assert options.start is not None and options.end is not None
    first = get_market_calendar().sessions_back(options.start, warmup_sessions(config))
    return history.between(first, options.end)


def run_point(history: History, source: DataSource, config: AppConfig, options: BacktestOptions,
              start: date, end: date, symbols: Sequence[str]) -> BacktestResult:
    run = replace(options, start=start, end=end, symbols=tuple(symbols), show_progress=False)
    return run_backtest(history_for_run(history, source, run, config), config, run)


def result_figures(result: BacktestResult) -> dict[str, Any]:
    """The figures a row keeps for one run (the report's definitions), with the files' hashes."""
    from core.backtest.deflated_sharpe import moments
    from core.backtest.report import compute_metrics, result_trade_stats, summary_json, trades_csv

    metrics = compute_metrics(result)
    stats = result_trade_stats(result)
    curve = [result.spec.initial_cash, *result.equity.tolist()]
    returns = [b / a - 1.0 for a, b in zip(curve[:-1], curve[1:], strict=True)]
    m = moments(returns)
    calmar = metrics.cagr / -metrics.max_drawdown if metrics.max_drawdown < 0 else None
    return {
        "first": result.sessions[0].isoformat(), "last": result.sessions[-1].isoformat(),
        "sessions": len(result.sessions), "sharpe": metrics.sharpe, "cagr": metrics.cagr,
        "total_return": metrics.total_return, "max_drawdown": metrics.max_drawdown, "calmar": calmar,
        "profit_factor": stats.profit_factor, "trades": metrics.trades, "win_rate": metrics.win_rate,
        "final_equity": metrics.final_equity,
        "sharpe_per_session": None if m is None else m.sharpe, "returns": None if m is None else m.n,
        "skew": None if m is None else m.skew, "kurtosis": None if m is None else m.kurtosis,
        "trades_sha256": hashlib.sha256(trades_csv(result.trades).encode()).hexdigest(),
        "summary_sha256": hashlib.sha256(summary_json(result, metrics).encode()).hexdigest(),
    }


def run_task(task: SweepTask) -> dict[str, Any]:
    """One (point, window): the in-sample and the out-of-sample backtest. Runs on a worker."""
    _quiet_worker_logs()
    history = worker_history(task.source)
    # Secrets explicitly unset: a worker's own environment must not add keys (nor half a pair).
    config = get_config(env_file=None, alpaca_api_key=None, alpaca_secret_key=None, **task.values)
    w = task.window
    row: dict[str, Any] = {"key": task.key, "point": task.point, "label": task.label, "window": w.index,
                           "worker_pid": os.getpid(), "worker_loads": _LOADS[task.source.key]}
    try:
        train = run_point(history, task.source, config, task.options, w.train_start, w.train_end, task.symbols)
        test = run_point(history, task.source, config, task.options, w.test_start, w.test_end, task.symbols)
    except Exception as exc:  # noqa: BLE001 - reported to the driver as one message, not stored
        row["error"] = f"{type(exc).__name__}: {exc}"
        return row
    row["in_sample"] = result_figures(train)
    row["out_of_sample"] = result_figures(test)
    row["oos_equity"] = test.equity.tolist()
    row["initial_cash"] = test.spec.initial_cash
    return row


@functools.cache   # once per worker process
def _quiet_worker_logs() -> None:
    """A worker logs warnings only, as the sweep command itself does: its info lines (the strategy selected, per
    backtest) would otherwise reach the sweep's stdout between its progress lines."""
    from core.runtime.logging_setup import configure_logging

    configure_logging("WARNING")


# --------------------------------------------------------------------------------------------
# Results file (on the driver)
# --------------------------------------------------------------------------------------------
class ResultsFile:
    """JSON lines, one per finished task, appended and fsynced as each task finishes. A line torn by
    a kill is cut off before the next append; a rerun reads the complete lines and skips their keys."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            return rows
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and "key" in row and "out_of_sample" in row:
                rows[row["key"]] = row
        return rows

    def _repair(self) -> None:
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, rows: Iterable[dict[str, Any]]) -> Iterable[None]:
        """Append each row as it comes (a generator so the caller drives it)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, sort_keys=True) + "\n")
                handle.flush()
                os.fsync(handle.fileno())
                yield None


# --------------------------------------------------------------------------------------------
# Dask (on the driver)
# --------------------------------------------------------------------------------------------
class SweepRunError(RuntimeError):
    """The sweep could not run its tasks (e.g. no scheduler). Finished results stay in the results file."""


@dataclass
class RunStats:
    submitted: int = 0
    skipped: int = 0
    failed: int = 0
    first_error: str = ""
    workers: int = 0


def execute(tasks: list[SweepTask], results: ResultsFile, *, scheduler: str | None, workers: int | None,
            step: Callable[[str], None], on_start: Callable[[str], None] | None = None) -> RunStats:
    """Run the tasks not yet in `results` on Dask, appending each row as it finishes."""
    done = results.load()
    todo = [t for t in tasks if t.key not in done]
    stats = RunStats(submitted=len(todo), skipped=len(tasks) - len(todo))
    for _ in range(stats.skipped):
        step("already done")
    if not todo:
        return stats
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise SweepRunError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
    else:
        import logging

        cluster = LocalCluster(n_workers=workers if workers is not None else os.cpu_count() or 1,
                               threads_per_worker=1, processes=True,
                               dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster)
    try:
        if scheduler:
            try:   # a scheduler with no worker would take the tasks and never run them
                client.wait_for_workers(1, timeout=SCHEDULER_WORKER_WAIT_S)
            except TimeoutError:
                raise SweepRunError(f"the Dask scheduler at {scheduler} has no worker (waited "
                                    f"{SCHEDULER_WORKER_WAIT_S:g} s): start one with `dask worker {scheduler} --nthreads 1` "
                                    "on a machine with this project installed") from None
        stats.workers = len(client.scheduler_info().get("workers", {}))
        if on_start:
            on_start(f"Dask: {stats.workers} workers at {client.scheduler_info().get('address', '?')}; {len(todo)} tasks to run, "
                     f"{stats.skipped} already in {results.path}")
        futures = client.map(run_task, todo, key=[f"sweep-{t.key}" for t in todo], pure=False)

        def rows() -> Iterable[dict[str, Any]]:
            for future in as_completed(futures):
                row = future.result()
                if "error" in row:
                    stats.failed += 1
                    stats.first_error = stats.first_error or f"{row['label']} window {row['window']}: {row['error']}"
                    step(f"failed: {row['label']} window {row['window']}")
                    continue
                yield row
                step(f"{row['label']} window {row['window']}")

        for _ in results.append(rows()):
            pass
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return stats
