"""Benchmark: 29 symbols x 10 years of daily bars through the whole backtest pipeline.

    .venv/bin/python scripts/bench_backtest.py [--format parquet|csv] [--report DIR] [--profile]

Steps, each timed on its own:
1. prepare: the synthetic market's bars for the default period (+ warm-up), written to a temporary
   Parquet (or CSV) file in long format. Not part of "data loading": it stands in for a file the
   user already has.
2. data loading: `load_history()` on that file (parse, validate, align on NYSE sessions).
3. backtest: `run_backtest()` (z-score panel once, then scanner, SignalAgent, SignalValidator,
   RiskAgent, ExecutionAgent and the broker for every session).
4. report (only with --report): summary.json, trades.csv, equity.png, exposure.png, report.md.

Targets on the 2-core reference machine: backtest < 0.5 s, whole process < 3 s (without --report).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402 - the clock starts before the imports on purpose
import cProfile  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.settings import get_config  # noqa: E402
from core.backtest.data import load_history, synthetic_history  # noqa: E402
from core.backtest.engine import BacktestOptions, resolve, run_backtest, warmup_sessions  # noqa: E402
from core.market_calendar import get_market_calendar  # noqa: E402


def process_age_seconds() -> float | None:
    """Wall time since this process started (Linux /proc), so interpreter start-up is included."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/self/stat", encoding="ascii") as fh:
            start_ticks = int(fh.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return uptime - start_ticks / ticks
    except (OSError, ValueError, IndexError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    parser.add_argument("--report", metavar="DIR", default=None, help="also write the report (timed separately)")
    parser.add_argument("--profile", action="store_true", help="print the 20 hottest functions of the backtest")
    parser.add_argument("--no-scanner", action="store_true")
    args = parser.parse_args(argv)
    imports_s = time.perf_counter() - _T0

    t = time.perf_counter()
    calendar = get_market_calendar()
    config = get_config(env_file=None)
    calendar_s = time.perf_counter() - t

    t = time.perf_counter()
    options = BacktestOptions(use_scanner=False if args.no_scanner else None, show_progress=False)
    spec = resolve(options, config, None, calendar)
    first = calendar.sessions_back(spec.start, warmup_sessions(config))
    synthetic = synthetic_history(config.symbols, first, spec.end, spec.seed, calendar=calendar)
    tmp = tempfile.TemporaryDirectory(prefix="bench_backtest_")
    path = Path(tmp.name) / f"bars.{args.format}"
    frame = synthetic.to_long_frame()
    if args.format == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    prepare_s = time.perf_counter() - t

    t = time.perf_counter()
    history = load_history(path, config.symbols, calendar=calendar)
    load_s = time.perf_counter() - t

    profiler = cProfile.Profile() if args.profile else None
    t = time.perf_counter()
    if profiler:
        profiler.enable()
    result = run_backtest(history, config, options, calendar=calendar)
    if profiler:
        profiler.disable()
    backtest_s = time.perf_counter() - t

    report_s = None
    if args.report:
        from core.backtest.report import write_report

        t = time.perf_counter()
        write_report(result, args.report, command="scripts/bench_backtest.py --report " + args.report)
        report_s = time.perf_counter() - t
    tmp.cleanup()

    sessions = len(result.sessions)
    symbol_bars = sessions * len(result.spec.symbols)
    print(f"bench_backtest: {len(result.spec.symbols)} symbols x {sessions} sessions "
          f"({result.sessions[0]} .. {result.sessions[-1]}, {history.n_sessions - sessions} warm-up sessions), "
          f"scanner {'on' if result.spec.use_scanner else 'off'}, fractional {'on' if result.spec.fractional else 'off'}")
    print(f"  trades {len(result.trades)}, orders {len(result.orders)}, fills {len(result.fills)}")
    print(f"  imports                  {imports_s:7.3f} s")
    print(f"  calendar + config        {calendar_s:7.3f} s")
    print(f"  prepare {args.format:<8} file    {prepare_s:7.3f} s   ({len(frame):,} rows, not data loading)")
    print(f"  data loading             {load_s:7.3f} s   ({len(frame) / load_s:,.0f} rows/s)")
    print(f"  backtest                 {backtest_s:7.3f} s   ({symbol_bars / backtest_s:,.0f} symbol-bars/s; "
          f"target < 0.5 s)")
    if report_s is not None:
        print(f"  report                   {report_s:7.3f} s")
    total = process_age_seconds()
    since_script = time.perf_counter() - _T0
    shown = f"{total:7.3f} s" if total is not None else f"{since_script:7.3f} s (since the script's first line)"
    print(f"  total process            {shown}   (target < 3 s{'' if report_s is None else ', without --report'})")
    if profiler:
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
