"""The bars a backtest runs on: a bars file (or directory) the user gave, or the built-in synthetic
market for the period with its warm-up; and the options with the symbols settled. Used by
`trading-daemon backtest` (core/backtest/cli.py) and the seed comparison (core/backtest/compare.py)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from config.settings import AppConfig
from core.backtest.data import History, load_history, synthetic_history
from core.backtest.engine import BENCHMARK_SYMBOL, BacktestOptions, resolve, warmup_sessions
from core.backtest.errors import BacktestOptionsError
from core.domain.market_calendar import MarketCalendar, get_market_calendar


def load_data(options: BacktestOptions, config: AppConfig, data: str | Path | None,
              calendar: MarketCalendar | None = None) -> tuple[History, BacktestOptions]:
    """The bars to run on, and the options with the symbols settled (a file's own symbols by default)."""
    calendar = calendar or get_market_calendar()
    if data is not None:
        allowed = set(config.symbols) | set(options.symbols or ())
        history = load_history(data, allowed, calendar=calendar)
        if options.symbols is None:
            ordered = [s for s in config.symbols if s in history.symbols]
            options = replace(options, symbols=tuple(ordered + [s for s in history.symbols if s not in ordered]))
        missing = [s for s in options.symbols or () if s not in history.symbols]
        if missing:
            raise BacktestOptionsError(f"{data}: no bars for {', '.join(missing)} (asked for by --symbols)")
        return history, options
    spec = resolve(options, config, None, calendar)
    warmup = warmup_sessions(config)
    earliest = calendar.sessions_between(calendar.first_session, calendar.last_session)[warmup]
    if spec.start < earliest:
        raise BacktestOptionsError(
            f"--start {spec.start}: the synthetic market needs {warmup} warm-up sessions before the start and its "
            f"calendar begins on {calendar.first_session}, so the earliest start is {earliest}")
    first = calendar.sessions_back(spec.start, warmup)
    # The benchmark's bars come along for the report; each symbol's bars are independent of the others.
    generated = list(dict.fromkeys([*spec.symbols, BENCHMARK_SYMBOL]))
    history = synthetic_history(generated, first, spec.end, spec.seed, calendar=calendar)
    return history, options
