"""Benchmark: the backtest's speed, memory and scaling, through the daemon's own agents and decision pipeline.

    .venv/bin/python scripts/bench_backtest.py [--repeat N] [--table-repeat N] [--no-table] [--quick] [--profile]
                                               [--breakdown]

Every figure is the minimum over `--repeat` runs (the machine is shared: the load average is printed
first), each measured in a fresh process so that memory and imports are its own. Commands run as a user's
default Python runs them: with the bytecode cache (`__pycache__`) on, whatever PYTHONDONTWRITEBYTECODE says
here, and warmed by a first run that is not measured (without it, every start compiles the project's modules
again: ~0.15 s more).

- `trading-daemon --help`: wall time of the real command.
- whole process: wall time of the real `trading-daemon backtest --bare --out DIR` (29 symbols x 10 years,
  report and PNGs included; at least 3 runs, even with --quick), and of the default run (scanner, tiers,
  fractional shares).
- `--breakdown`: where the whole process's time goes, the command's steps timed one by one in a fresh process
  as `trading-daemon backtest --bare` runs them (imports, configuration, bars, backtest, report, waiting for
  the chart processes).
- loop: `BacktestResult.elapsed_s`, the session loop alone (every session through the SignalAgent, the
  SignalValidator, the decision pipeline with the RiskAgent and the ExecutionAgent, and the broker), for
  --bare at 29 x 10 y, and at 2,000 x 10 y with the process's peak memory (ru_maxrss: bars, indicators,
  loop and all).
- data loading: `load_history()` of the 29 x 10 y bars from a Parquet file.
- scaling: the loop at 100, 500 and 2,000 synthetic symbols x 5, 10 and 20 years, with the cost per
  symbol-session (flat = linear in symbols x sessions) and the peak memory.
- trades: the sha256 of the default run's trades.csv, which must not change (docs/expected-results.md).

Targets (issue 13, on the 2-core reference machine): loop <= 0.07 s at 29 x 10 y; whole process <= 0.9 s;
--help <= 0.2 s; at 2,000 x 10 y loop <= 3 s and peak memory <= 1 GB; cost linear up to 2,000 x 20 y.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROGRAM = Path(sys.executable).with_name("trading-daemon")
SCALING_SYMBOLS = (100, 500, 2000)
SCALING_YEARS = (5, 10, 20)
SCALING_END = dt.date(2026, 10, 30)   # the default period's last session


# ---------------------------------------------------------------------------------------------
# Worker: one measured backtest in this (fresh) process
# ---------------------------------------------------------------------------------------------
def worker(symbols: int, years: int, mode: str) -> dict[str, object]:
    """Run one backtest; its figures as a dict (printed as JSON by --worker)."""
    from config.settings import get_config
    from core.backtest.cli import load_data
    from core.backtest.data import synthetic_history
    from core.backtest.engine import BacktestOptions, resolve, run_backtest, warmup_sessions
    from core.domain.market_calendar import get_market_calendar

    calendar = get_market_calendar()
    config = get_config(env_file=None)
    bare = mode != "default"
    started = time.perf_counter()
    if symbols == len(config.symbols) and years == 10:
        # The configured universe over the default period: the bars `trading-daemon backtest` runs on.
        options = BacktestOptions(bare=bare, show_progress=False)
        history, options = load_data(options, config, None, calendar)
    else:
        names = tuple(f"S{i:04d}" for i in range(symbols))
        options = BacktestOptions(bare=bare, show_progress=False, symbols=names, start=_years_back(years),
                                  end=SCALING_END)
        spec = resolve(options, config, None, calendar)
        first = calendar.sessions_back(spec.start, warmup_sessions(config))
        history = synthetic_history(list(names), first, spec.end, spec.seed, calendar=calendar)
    data_s = time.perf_counter() - started
    started = time.perf_counter()
    result = run_backtest(history, config, options, calendar=calendar)
    run_s = time.perf_counter() - started
    return {"symbols": len(result.spec.symbols), "sessions": len(result.sessions), "loop_s": result.elapsed_s,
            "run_s": run_s, "data_s": data_s, "trades": len(result.trades), "orders": len(result.orders),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def _years_back(years: int) -> dt.date:
    return dt.date(SCALING_END.year - years, SCALING_END.month, SCALING_END.day + 1)


def measure(symbols: int, years: int, mode: str, repeat: int) -> dict[str, float]:
    """The minimum of each figure over `repeat` fresh processes."""
    runs: list[dict[str, float]] = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, __file__, "--worker", str(symbols), str(years), mode],
                             capture_output=True, text=True, check=True, cwd=ROOT, env=USER_ENV)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = {key: min(float(r[key]) for r in runs) for key in runs[0]}
    if len({r["trades"] for r in runs}) != 1:
        raise SystemExit(f"runs disagree on the trades: {[r['trades'] for r in runs]}")
    return best


# As a user's Python runs: bytecode cache on (this machine's environment turns it off for development).
USER_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def wall(argv: list[str], repeat: int, cwd: Path) -> float:
    """The minimum wall time of `argv` over `repeat` runs, after one unmeasured run (it writes the bytecode cache)."""
    best = float("inf")
    for run in range(repeat + 1):
        started = time.perf_counter()
        subprocess.run(argv, cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=USER_ENV)
        if run:
            best = min(best, time.perf_counter() - started)
    return best


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", nargs=3, metavar=("SYMBOLS", "YEARS", "MODE"), help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the minimum is shown (default 3)")
    parser.add_argument("--table-repeat", type=int, default=1, help="runs per scaling-table cell (default 1)")
    parser.add_argument("--no-table", action="store_true", help="skip the scaling table")
    parser.add_argument("--quick", action="store_true", help="one run per figure and no scaling table")
    parser.add_argument("--profile", action="store_true", help="profile one 29 x 10 y --bare loop (cProfile)")
    parser.add_argument("--breakdown", action="store_true",
                        help="time the steps of `trading-daemon backtest --bare` one by one (minimum of --repeat runs)")
    parser.add_argument("--timeline", metavar="OUT", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        symbols, years, mode = int(args.worker[0]), int(args.worker[1]), args.worker[2]
        print(json.dumps(worker(symbols, years, mode)))
        return 0
    if args.timeline:
        return _timeline(Path(args.timeline))
    if args.profile:
        return _profile()
    repeat = 1 if args.quick else args.repeat
    load = os.getloadavg()
    print(f"bench_backtest: {os.cpu_count()} cores, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"minimum of {repeat} run(s) per figure; commands run with the bytecode cache on and warmed")
    if args.breakdown:
        return _breakdown(args.repeat)

    with tempfile.TemporaryDirectory(prefix="bench_backtest_") as tmp:
        work = Path(tmp)
        (work / ".env").write_text("")
        program = [str(PROGRAM), "--env-file", str(work / ".env")]
        help_s = wall([*program, "--help"], max(repeat, 5), work)
        bare_s = wall([*program, "backtest", "--bare", "--out", str(work / "bare")], max(repeat, 3), work)
        default_s = wall([*program, "backtest", "--out", str(work / "default")], repeat, work)
        trades = sum(1 for _ in (work / "bare" / "trades.csv").open()) - 1
        trades_sha = hashlib.sha256((work / "default" / "trades.csv").read_bytes()).hexdigest()
        load_s, rows = _data_loading(work, repeat)

    bare = measure(29, 10, "bare", repeat)
    default = measure(29, 10, "default", repeat)
    big = measure(2000, 10, "bare", repeat)
    print()
    print(f"  trading-daemon --help                     {help_s:7.3f} s    (target <= 0.2 s)")
    print(f"  whole process, backtest --bare            {bare_s:7.3f} s    (target <= 0.9 s; report and PNGs "
          f"included, {trades} trades)")
    print(f"  whole process, backtest (default)         {default_s:7.3f} s")
    print(f"  loop, --bare, 29 x 10 y                   {bare['loop_s']:7.3f} s    (target <= 0.07 s; "
          f"{int(bare['symbols'])} symbols x {int(bare['sessions'])} sessions, {int(bare['orders'])} orders)")
    print(f"  loop, default, 29 x 10 y                  {default['loop_s']:7.3f} s    "
          f"(scanner, tiers, fractional; {int(default['orders'])} orders)")
    print(f"  data loading, Parquet, 29 x 10 y          {load_s:7.3f} s    ({rows:,} rows)")
    print(f"  loop, --bare, 2,000 x 10 y                {big['loop_s']:7.3f} s    (target <= 3 s; "
          f"{int(big['orders'])} orders)")
    print(f"  peak memory, 2,000 x 10 y                 {big['peak_rss_mb']:7.0f} MB   (target <= 1,024 MB; "
          f"the whole process: bars, indicators, loop)")

    if not (args.quick or args.no_table):
        print()
        print("Scaling (--bare, synthetic symbols; loop seconds, microseconds per symbol-session, peak MB):")
        print(f"  {'symbols':>7} {'years':>5} {'sessions':>8} {'loop s':>8} {'us/sym-sess':>11} {'peak MB':>8}")
        cost: dict[tuple[int, int], float] = {}
        for symbols in SCALING_SYMBOLS:
            for years in SCALING_YEARS:
                cell = measure(symbols, years, "bare", args.table_repeat)
                per = cell["loop_s"] / (cell["symbols"] * cell["sessions"]) * 1e6
                cost[symbols, years] = per
                print(f"  {int(cell['symbols']):>7} {years:>5} {int(cell['sessions']):>8} {cell['loop_s']:>8.3f} "
                      f"{per:>11.3f} {cell['peak_rss_mb']:>8.0f}", flush=True)
        # Linear means the cost per symbol-session does not grow with either dimension (1.00 or below).
        longest, shortest = SCALING_YEARS[-1], SCALING_YEARS[0]
        by_years = ", ".join(f"{n:,} symbols {cost[n, longest] / cost[n, shortest]:.2f}" for n in SCALING_SYMBOLS)
        widest, narrowest = SCALING_SYMBOLS[-1], SCALING_SYMBOLS[0]
        by_symbols = ", ".join(f"{y} y {cost[widest, y] / cost[narrowest, y]:.2f}" for y in SCALING_YEARS)
        print(f"  cost per symbol-session, {longest} y / {shortest} y: {by_years}")
        print(f"  cost per symbol-session, {widest:,} / {narrowest:,} symbols: {by_symbols}")

    print()
    print(f"  trades.csv of the default run: sha256 {trades_sha}")
    print("  (issue 13's reference figures at 29 x 10 y: backtrader cerebro.run 3.64 s, a plain numpy/Python "
          "session loop 0.032 s)")
    return 0


# ---------------------------------------------------------------------------------------------
# Breakdown: the steps of `trading-daemon backtest --bare` (core/cli.py main, core/backtest/cli.py), timed
# ---------------------------------------------------------------------------------------------
STEPS = ("start: interpreter (and this script's imports), parse arguments", "fork the chart process", "import config.settings (pydantic)",
         "read and validate the configuration", "import the strategy (numpy, agents)",
         "import the backtest (engine, structlog)", "bars: calendar and synthetic market",
         "run_backtest (z-score set-up and loop)", "report: series to the charts, summary, trades, report text",
         "wait for the chart processes", "describe the result", "exit (os._exit)")


def _timeline(out_dir: Path) -> int:
    """One run of the command's steps in this fresh process; prints each step's end as JSON, then exits at once
    as the command does. The steps and their order are core/cli.py main's for `backtest`, run as a program."""
    marks: list[float] = []

    def mark() -> None:
        marks.append(time.time())   # wall clock: the parent compares it with the moment it started this process

    from core import cli
    from core.backtest.charts import chart_worker, prestart

    args = cli.build_parser().parse_args(["--env-file", str(out_dir / ".env"), "backtest", "--bare", "--out",
                                          str(out_dir / "out")])
    mark()
    prestart()
    cli._pause_gc()
    mark()
    from config.settings import get_config
    mark()
    config = get_config(env_file=args.env_file)
    mark()
    from agents.strategies.loader import strategy_from_config

    strategy_from_config(config)
    mark()
    import core.backtest.cli as command
    from core.backtest.report import write_report
    from core.runtime.logging_setup import configure_logging

    cli._resume_gc()
    configure_logging("WARNING", secrets=config.secret_values())
    mark()
    with chart_worker() as charts:
        options = command.options_from_args(args)
        history, options = command.load_data(options, config, None)
        mark()
        result = command.run_backtest(history, config, options)
        mark()
        wait = charts.wait

        def timed_wait() -> None:
            mark()
            wait()
            mark()

        charts.wait = timed_wait  # type: ignore[method-assign]
        write_report(result, out_dir / "out", command=command.command_line(args), charts=charts)
    print(command.describe(result), file=sys.stderr)
    mark()
    print(json.dumps(marks))
    sys.stdout.flush()
    os._exit(0)


def _breakdown(repeat: int) -> int:
    runs: list[tuple[float, list[float], float]] = []     # launched, the steps' ends, exited
    with tempfile.TemporaryDirectory(prefix="bench_backtest_") as tmp:
        (Path(tmp) / ".env").write_text("")
        for run in range(max(repeat, 1) + 1):          # the first one writes the bytecode cache
            launched = time.time()
            out = subprocess.run([sys.executable, __file__, "--timeline", tmp], capture_output=True, text=True,
                                 check=True, cwd=ROOT, env=USER_ENV)
            exited = time.time()
            if run:
                runs.append((launched, json.loads(out.stdout.strip().splitlines()[-1]), exited))
    steps = [[b - a for a, b in zip([launched, *marks], [*marks, exited], strict=True)]
             for launched, marks, exited in runs]
    print()
    print(f"Where `trading-daemon backtest --bare` spends its time (each step's minimum over {len(runs)} runs; "
          "the whole: the minimum of the totals):")
    for i, name in enumerate(STEPS):
        print(f"  {min(s[i] for s in steps):7.3f} s  {name}")
    print(f"  {min(exited - launched for launched, _, exited in runs):7.3f} s  whole process")
    return 0


def _data_loading(work: Path, repeat: int) -> tuple[float, int]:
    from config.settings import get_config
    from core.backtest.cli import load_data
    from core.backtest.data import load_history
    from core.backtest.engine import BacktestOptions
    from core.domain.market_calendar import get_market_calendar

    calendar = get_market_calendar()
    config = get_config(env_file=None)
    history, _ = load_data(BacktestOptions(show_progress=False), config, None, calendar)
    frame = history.to_long_frame()
    path = work / "bars.parquet"
    frame.to_parquet(path, index=False)
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        load_history(path, config.symbols, calendar=calendar)
        best = min(best, time.perf_counter() - started)
    return best, len(frame)


def _profile() -> int:
    import cProfile
    import pstats

    from config.settings import get_config
    from core.backtest.cli import load_data
    from core.backtest.engine import BacktestOptions, run_backtest
    from core.domain.market_calendar import get_market_calendar

    calendar = get_market_calendar()
    config = get_config(env_file=None)
    history, options = load_data(BacktestOptions(bare=True, show_progress=False), config, None, calendar)
    profiler = cProfile.Profile()
    profiler.enable()
    run_backtest(history, config, options, calendar=calendar)
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
