"""`trading-daemon sweep`: arguments and the command. Importing this module is cheap (no dask, no
matplotlib): the parser is built for every `trading-daemon` invocation. See docs/sweep.md."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("out/sweep")
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--grid", action="append", default=[], metavar="NAME=V1,V2",
        help="a setting and its values, e.g. ENTRY_Z=1.5,2,2.5 (repeatable; the grid is the product)")
    add("--range", action="append", default=[], metavar="NAME=LOW:HIGH",
        help="with --random: draw the setting uniformly from LOW..HIGH (whole numbers for integer settings)")
    add("--random", type=int, default=None, metavar="N", help="random search: N points drawn with --seed")
    add("--seed", type=int, default=0, metavar="S", help="random search seed (default 0; the synthetic market "
        "uses SIM_SEED)")
    add("--universe", action="append", default=[], metavar="NAME=SYM,SYM|TIER1[+TIER2]|all",
        help="a universe to sweep over (repeatable; default: the configured universe)")
    add("--train", default="3y", metavar="LEN", help="in-sample length per window (default 3y; y, m, w or d)")
    add("--test", default="1y", metavar="LEN", help="out-of-sample length per window, also the roll (default 1y)")
    add("--metric", default="sharpe", help="in-sample selection metric: sharpe (default), cagr, total_return, "
        "calmar, profit_factor, max_drawdown")
    add("--start", metavar="YYYY-MM-DD", default=None, help="first session of the first window (default: as backtest)")
    add("--end", metavar="YYYY-MM-DD", default=None, help="last session (default: as backtest)")
    add("--data", metavar="PATH", default=None, help="bars file or directory (default: the built-in synthetic market)")
    add("--scheduler", metavar="tcp://HOST:8786", default=None,
        help="an existing Dask scheduler (default: a local cluster, one worker per core)")
    add("--workers", type=int, default=None, metavar="N", help="local cluster size (default: one per core)")
    add("--out", metavar="DIR", default=str(DEFAULT_OUT), help=f"output directory (default {DEFAULT_OUT})")
    for flag, text in (("--bare", "the bare strategy (as backtest --bare)"), ("--no-scanner", "no scanner focus"),
                       ("--no-fractional", "whole shares only")):
        add(flag, action="store_true", help=text)
    for flag, text in (("--position-notional", "fixed entry size in USD"), ("--commission", "USD per order"),
                       ("--commission-bps", "basis points of each fill"), ("--slippage-bps", "adverse basis points")):
        add(flag, default=None, metavar="X", help=text + " (as backtest)")
    add("--fill-at", choices=("next_open", "close"), default="next_open", help="fill reference (as backtest)")


def command_line(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return "trading-daemon " + " ".join(args)


def run_sweep_command(args: argparse.Namespace, config: Any) -> int:
    started = time.perf_counter()
    try:
        plan = _plan(args, config)
    except ValueError as exc:           # SweepSpaceError, BacktestError and bad durations are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except Exception as exc:  # noqa: BLE001 - BacktestError is not a ValueError
        from core.backtest.errors import BacktestError

        if isinstance(exc, BacktestError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise
    from core.backtest.progress import progress_reporter
    from core.backtest.sweep import ResultsFile, SweepRunError, execute

    out = Path(args.out)
    results = ResultsFile(out / "results.jsonl")
    print(f"Sweep: {len(plan['points'])} points x {len(plan['windows'])} windows = {len(plan['tasks'])} tasks "
          f"(train {args.train}, test {args.test}, metric {args.metric}) on {plan['source_text']}", flush=True)
    try:
        with progress_reporter(len(plan["tasks"]), "sweep") as step:
            stats = execute(plan["tasks"], results, scheduler=args.scheduler, workers=args.workers, step=step,
                            on_start=lambda text: print(text, flush=True))
    except SweepRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    text = _write_outputs(plan, results, out, stats, args)
    print(text)
    print(f"Done in {time.perf_counter() - started:.1f} s: {out / 'sweep.md'}, {out / 'sweep.csv'}")
    if stats.failed:
        print(f"error: {stats.failed} tasks failed; first: {stats.first_error}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


def _plan(args: argparse.Namespace, config: Any) -> dict[str, Any]:
    from dataclasses import replace

    from core.backtest.cli import options_from_args
    from core.backtest.data import load_history
    from core.backtest.engine import BENCHMARK_SYMBOL, default_period, resolve, warmup_sessions
    from core.backtest.sweep import DataSource, SweepTask, file_source, task_key
    from core.backtest.sweep_report import METRICS
    from core.backtest.sweep_space import (
        SweepSpaceError,
        base_values,
        build_points,
        parse_grid,
        parse_ranges,
        parse_universes,
        point_config,
        refuse_settings_the_strategy_ignores,
        validate_points,
    )
    from core.backtest.walk_forward import parse_duration, walk_forward_windows
    from core.domain.market_calendar import get_market_calendar

    if args.workers is not None and args.workers < 1:
        raise SweepSpaceError(f"--workers {args.workers}: expected a whole number >= 1 (worker processes of the "
                              "local cluster; leave it out for one per core)")
    from core.backtest.out_dir import out_dir_problem

    problem = out_dir_problem(Path(args.out))
    if problem:
        raise SweepSpaceError(problem)
    if args.metric not in METRICS:
        raise SweepSpaceError(f"--metric {args.metric!r}: expected one of {', '.join(METRICS)}")
    train, test = parse_duration(args.train, "--train"), parse_duration(args.test, "--test")
    universes = parse_universes(args.universe, config)
    grid, ranges = parse_grid(args.grid), parse_ranges(args.range)
    refuse_settings_the_strategy_ignores([n for n, _ in grid] + [n for n, _, _ in ranges], config)
    points = build_points(grid, ranges, universes, random_points=args.random, seed=args.seed)
    values = base_values(config)
    validate_points(values, points)
    # --seed here is the random search's; the synthetic market keeps SIM_SEED, as for backtest.
    options = replace(options_from_args(argparse.Namespace(**{**vars(args), "seed": None})), symbols=None,
                      show_progress=False)
    start, end = options.start, options.end
    options = replace(options, start=None, end=None)
    calendar = get_market_calendar()
    wanted = sorted({s for u in universes for s in u.symbols})
    if args.data:
        allowed = set(config.symbols) | set(wanted)
        history = load_history(args.data, allowed, calendar=calendar)
        missing = [s for s in wanted if s not in history.symbols]
        if missing:
            raise SweepSpaceError(f"{args.data}: no bars for {', '.join(missing)} (in a --universe)")
        spec = resolve(replace(options, start=start, end=end), config, history, calendar)
        source = file_source(args.data, allowed)
        source_text = f"{args.data} ({history.sessions[0]} .. {history.sessions[-1]})"
    else:
        first_day, last_day = default_period(calendar, end, start)
        warmup = max(warmup_sessions(point_config(values, p)) for p in points)
        spec_start = first_day if calendar.is_session(first_day) else calendar.next_session(first_day)
        source = DataSource(kind="synthetic", seed=config.sim_seed, symbols=tuple(dict.fromkeys([*wanted, BENCHMARK_SYMBOL])),
                            first=calendar.sessions_back(spec_start, warmup), last=last_day)
        spec = resolve(replace(options, start=first_day, end=last_day), config, None, calendar)
        source_text = f"synthetic market (seed {config.sim_seed})"
    windows = walk_forward_windows(spec.start, spec.end, train, test, calendar)
    if not windows:
        raise SweepSpaceError(f"the period {spec.start} .. {spec.end} holds no window of --train {train} followed "
                              f"by --test {test}: give an earlier --start or shorter lengths")
    tasks = []
    for p in points:
        point_values = {**values, **p.overrides()}
        for w in windows:
            tasks.append(SweepTask(key=task_key(point_values, p.universe.symbols, w, options, source), point=p.index,
                                   label=p.label, window=w, values=point_values, symbols=p.universe.symbols,
                                   options=options, source=source))
    return {"points": points, "windows": windows, "tasks": tasks, "source": source, "source_text": source_text,
            "options": options, "grid_names": [n for n, _ in grid], "calendar": calendar,
            "initial_cash": spec.initial_cash}


def _write_outputs(plan: dict[str, Any], results: Any, out: Path, stats: Any, args: argparse.Namespace) -> str:
    from core.backtest.sweep_report import (
        headline,
        plot_heatmap,
        plot_stitched,
        select,
        stitch,
        sweep_csv,
        sweep_markdown,
    )
    from core.runtime.atomic_file import write_atomic

    points, windows = plan["points"], plan["windows"]
    by_key = results.load()
    rows = {(t.point, t.window.index): by_key[t.key] for t in plan["tasks"] if t.key in by_key}
    selections = select(rows, windows, points, args.metric)
    sessions, equity = stitch(selections, rows, plan["calendar"], plan["initial_cash"])
    head = headline(sessions, equity, plan["initial_cash"])
    pids = {r["worker_pid"] for r in rows.values()}
    loads = max((int(r["worker_loads"]) for r in rows.values()), default=0)
    stats_line = (f"Tasks: {len(plan['tasks'])}; {stats.skipped} taken from an earlier run of this sweep "
                  f"(results.jsonl), {stats.submitted - stats.failed} run now on {stats.workers or 'no'} Dask workers"
                  + (f", {stats.failed} failed" if stats.failed else "")
                  + f". The data was loaded at most {loads} time(s) per worker process ({len(pids)} processes "
                  "served these rows).")
    plots = []
    if len(sessions):
        plot_stitched(sessions, equity, selections, plan["initial_cash"], out / "oos_equity.png")
        plots.append("oos_equity.png")
    if len(plan["grid_names"]) == 2 and args.random is None and len({p.universe.name for p in points}) == 1 \
            and len(rows) == len(plan["tasks"]):
        plot_heatmap(points, windows, rows, args.metric, out / "heatmap.png")
        plots.append("heatmap.png")
    write_atomic(out / "sweep.csv", sweep_csv(rows, points, windows, selections), mode=0o644)
    text = sweep_markdown(command=command_line(), source=plan["source_text"], metric=args.metric, points=points,
                          windows=windows, rows=rows, selections=selections, head=head, stats_line=stats_line,
                          train=args.train, test=args.test, plots=plots)
    write_atomic(out / "sweep.md", text, mode=0o644)
    if head.stats is None:
        return stats_line
    s = head.stats
    return (f"{stats_line}\nStitched out-of-sample ({head.sessions} sessions): total return {s.total_return:.2%}, "
            f"CAGR {s.cagr:.2%}, max drawdown {s.max_drawdown:.2%}, Sharpe "
            f"{'n/a' if s.sharpe is None else f'{s.sharpe:.2f}'}")
