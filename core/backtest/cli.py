"""`trading-daemon backtest`: arguments and the command itself.

The lead's CLI calls `add_backtest_arguments(subparser)` (core/backtest/cli_args.py, which imports nothing
heavy) and `run_backtest_command(args, config)`.
Bad data or arguments print ONE `error: ...` line on stderr and return 2 (no traceback).
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from config.settings import AppConfig
from config.universe import is_valid_ticker
from core.backtest.cli_args import DEFAULT_OUT, add_backtest_arguments
from core.backtest.data import History
from core.backtest.engine import (
    BacktestOptions,
    BacktestResult,
    resolve,
    run_backtest,
)
from core.backtest.errors import BacktestError, BacktestOptionsError
from core.backtest.inputs import load_data

EXIT_OK = 0
EXIT_BAD_INPUT = 2
__all__ = ["DEFAULT_OUT", "add_backtest_arguments", "describe", "load_data", "options_from_args",
           "run_backtest_command"]


def _date(name: str, value: Any) -> date | None:
    if value is None or isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise BacktestOptionsError(f"{name} {value!r}: expected a date YYYY-MM-DD") from None


def _number(name: str, value: Any, *, allow_zero: bool = True, below: float | None = None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BacktestOptionsError(f"{name} {value!r}: expected a number") from None
    if number != number or number in (float("inf"), float("-inf")) or number < 0 or (number == 0 and not allow_zero):
        raise BacktestOptionsError(f"{name} {value!r}: expected a {'non-negative' if allow_zero else 'positive'} number")
    if below is not None and number >= below:
        raise BacktestOptionsError(f"{name} {value!r}: expected a number below {below:g}")
    return number


BPS_LIMIT = 10_000.0   # 100 %: at or beyond it a sale would fill at a price of zero or less, or pay all in fees


def _symbols(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    symbols = [str(s).strip().upper() for s in items if str(s).strip()]
    if not symbols:
        raise BacktestOptionsError("--symbols: expected at least one symbol, e.g. SPY,QQQ,AAPL")
    bad = [s for s in symbols if not is_valid_ticker(s)]
    if bad:
        raise BacktestOptionsError(f"--symbols: {', '.join(bad)} is not a valid ticker (1-5 letters, e.g. BRK.B)")
    if len(set(symbols)) != len(symbols):
        raise BacktestOptionsError(f"--symbols lists a symbol twice: {', '.join(symbols)}")
    return tuple(symbols)


def options_from_args(args: argparse.Namespace) -> BacktestOptions:
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731 - tolerate partial namespaces
    seed = get("seed")
    if seed is not None:
        try:
            seed = int(seed)
        except (TypeError, ValueError):
            raise BacktestOptionsError(f"--seed {seed!r}: expected a whole number") from None
        if seed < 0:
            raise BacktestOptionsError(f"--seed {seed}: expected a whole number >= 0")
    return BacktestOptions(
        start=_date("--start", get("start")), end=_date("--end", get("end")), symbols=_symbols(get("symbols")),
        initial_cash=_number("--initial-cash", get("initial_cash"), allow_zero=False),
        use_scanner=False if get("no_scanner", False) else None,
        fractional=False if get("no_fractional", False) else None,
        bare=bool(get("bare", False)),
        position_notional=_number("--position-notional", get("position_notional"), allow_zero=False),
        commission=_number("--commission", get("commission", 0)) or 0.0,
        commission_bps=_number("--commission-bps", get("commission_bps", 0), below=BPS_LIMIT) or 0.0,
        slippage_bps=_number("--slippage-bps", get("slippage_bps", 0), below=BPS_LIMIT) or 0.0,
        fill_at=get("fill_at", "next_open") or "next_open", seed=seed,
    )


def period_line(options: BacktestOptions, config: AppConfig, history: History) -> str:
    """The period a run on file data covers, saying which ends are defaults and what the file holds."""
    spec = resolve(options, config, history)
    first, last = history.sessions[0], history.sessions[-1]
    import bisect

    lo = min(bisect.bisect_left(history.sessions, spec.start), len(history.sessions) - 1)
    hi = max(bisect.bisect_right(history.sessions, spec.end) - 1, 0)
    start, end = history.sessions[lo], history.sessions[hi]   # the sessions the run covers
    notes = []
    if options.start is None:
        cut = start > first
        notes.append(f"start: default, {'ten years before the end' if cut else 'the first bar'}")
    if options.end is None:
        notes.append("end: default, the last bar")
    said = f" ({'; '.join(notes)})" if notes else ""
    held = f"the data holds {first} .. {last}"
    if start > first:
        held += f"; bars before {start} serve as warm-up only, --start {first} uses them all"
    return f"Period {start} .. {end}{said}; {held}."


def command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this run, for the report."""
    parts = ["trading-daemon", "backtest"]
    for flag, name in (("--start", "start"), ("--end", "end"), ("--symbols", "symbols"), ("--data", "data"),
                       ("--initial-cash", "initial_cash"), ("--position-notional", "position_notional"),
                       ("--seed", "seed")):
        value = getattr(args, name, None)
        if value is not None:
            parts += [flag, str(value)]
    if getattr(args, "strategy", None) is not None:
        parts += ["--strategy", str(args.strategy)]
    for assignment in getattr(args, "strategy_param", None) or []:
        parts += ["--strategy-param", str(assignment)]
    for flag, name in (("--commission", "commission"), ("--commission-bps", "commission_bps"),
                       ("--slippage-bps", "slippage_bps")):
        value = getattr(args, name, None)
        if value not in (None, "0", 0, 0.0):
            parts += [flag, str(value)]
    if getattr(args, "fill_at", "next_open") not in (None, "next_open"):
        parts += ["--fill-at", str(args.fill_at)]
    for flag, name in (("--no-scanner", "no_scanner"), ("--no-fractional", "no_fractional"), ("--bare", "bare"),
                       ("--compare-seed", "compare_seed")):
        if getattr(args, name, False):
            parts.append(flag)
    out = getattr(args, "out", None)
    if out is not None and str(out) != str(DEFAULT_OUT):
        parts += ["--out", str(out)]
    return " ".join(parts)


def run_backtest_command(args: argparse.Namespace, config: AppConfig) -> int:
    started = time.perf_counter()
    try:
        options = options_from_args(args)
        out = Path(getattr(args, "out", None) or DEFAULT_OUT)
        from core.backtest.out_dir import out_dir_problem

        problem = out_dir_problem(out)
        if problem:
            raise BacktestOptionsError(problem)
        if getattr(args, "compare_seed", False):
            from core.backtest.compare import run_compare

            return run_compare(config, options, getattr(args, "data", None), out, command=command_line(args))
        data = getattr(args, "data", None)
        from core.backtest.charts import chart_worker

        # Forked when the command started, if it runs as a program: it loads the plotting library on the other
        # core while this process runs the backtest (core/backtest/charts.py).
        with chart_worker() as charts:
            history, options = load_data(options, config, data)
            if data is not None:
                # First line: the period, so a file longer than ten years is never cut silently.
                print(period_line(options, config, history), flush=True)
                from core.backtest.adjustment import unadjusted_warnings

                for warning in unadjusted_warnings(history, data):
                    print(warning, file=sys.stderr)
            else:
                outside = [s for s in options.symbols or () if s not in config.symbols]
                if outside:   # a typo (APPL) would otherwise run quietly on made-up bars
                    print(f"warning: {', '.join(outside)} not in the configured universe (SYMBOL_TIERS): the "
                          "synthetic market makes up bars for any ticker", file=sys.stderr)
            result = run_backtest(history, config, options)
            from core.backtest.report import write_report

            paths = write_report(result, out, command=command_line(args), charts=charts)
    except BacktestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as exc:
        print(f"error: cannot write the report: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(describe(result, time.perf_counter() - started))
    print(f"Report: {paths['report']} (also {', '.join(p.name for k, p in paths.items() if k != 'report')})")
    return EXIT_OK


def describe(result: BacktestResult, total_s: float | None = None) -> str:
    from core.backtest.report import compute_metrics, halts_text

    m = compute_metrics(result)
    spec = result.spec
    timing = f" in {result.elapsed_s:.2f} s" + (f" ({total_s:.2f} s with data and report)" if total_s else "")
    return "\n".join([
        f"Backtest {result.sessions[0]} .. {result.sessions[-1]}: {len(result.sessions)} sessions, "
        f"{len(spec.symbols)} symbols, {result.source}{timing}",
        f"Trades {m.trades} ({m.trades_per_year:.1f}/year, win rate "
        f"{'n/a' if m.win_rate is None else f'{m.win_rate:.1%}'}); open positions median {m.positions_median:g}, "
        f"max {m.positions_max}",
        f"Equity ${spec.initial_cash:,.2f} -> ${m.final_equity:,.2f}: CAGR {m.cagr:.2%}, max drawdown "
        f"{m.max_drawdown:.2%}, Sharpe {'n/a' if m.sharpe is None else f'{m.sharpe:.2f}'}, turnover "
        f"{m.turnover_per_year:.1f}x/year",
        f"Orders: {m.fractional_orders} fractional, {m.whole_share_orders} whole-share; zero-share skips "
        f"{m.zero_share_skips}; Alpaca requests per iteration mean {m.requests_mean:.2f}, max {m.requests_max}",
        *([f"Entries halted on sessions with signals: {halts_text(result)}"] if result.halted_sessions else []),
    ])
