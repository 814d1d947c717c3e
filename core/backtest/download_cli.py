"""`trading-daemon download`: arguments and the command. Importing this module is cheap (no SDK, no
pandas): the parser is built for every `trading-daemon` invocation."""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path
from typing import Any

DEFAULT_OUT = Path("data/bars")
EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--symbols", metavar="SYM,SYM", default=None,
                        help="comma-separated symbols (default: the configured universe, SYMBOL_TIERS)")
    parser.add_argument("--start", metavar="YYYY-MM-DD", default=None,
                        help="first session (default: ten years before --end)")
    parser.add_argument("--end", metavar="YYYY-MM-DD", default=None,
                        help="last session (default and latest: the last completed session at the broker's clock)")
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT),
                        help=f"directory of SYMBOL.parquet files (default {DEFAULT_OUT}); "
                             "`trading-daemon backtest --data DIR` reads it")


def _date(name: str, value: Any) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value).strip())
    except ValueError:
        raise ValueError(f"{name} {value!r}: expected a date YYYY-MM-DD") from None


def run_download_command(args: argparse.Namespace, config: Any) -> int:
    from config.universe import is_valid_ticker

    try:
        start, end = _date("--start", args.start), _date("--end", args.end)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if start and end and start > end:
        print(f"error: --start {start} is after --end {end}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.symbols is not None:
        symbols = list(dict.fromkeys(s.strip().upper() for s in str(args.symbols).split(",") if s.strip()))
        bad = [s for s in symbols if not is_valid_ticker(s)]
        if not symbols or bad:
            shown = ", ".join(bad) if bad else repr(args.symbols)
            print(f"error: --symbols: {shown}: expected valid tickers such as SPY,QQQ,BRK.B", file=sys.stderr)
            return EXIT_BAD_INPUT
    else:
        symbols = list(config.symbols)
    from core.backtest.out_dir import out_dir_problem

    problem = out_dir_problem(Path(args.out))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from core.backtest.download import DownloadError, DownloadOptionsError, download
    from core.broker.factory import connect, sim_banner
    from core.domain.market_calendar import get_market_calendar

    connection = connect(config)
    if connection.simulated:
        print(sim_banner(config), flush=True)
    out = Path(args.out)
    calendar = get_market_calendar()
    if start is not None and start < calendar.first_session:
        print(f"note: --start {start} is before {calendar.first_session}, the first session of the NYSE calendar "
              "the daemon carries: the download starts there", file=sys.stderr)
    try:
        now = connection.gateway.get_clock().timestamp      # the broker's clock decides what is complete
        last_completed = calendar.last_completed_session(now)
        summary = download(connection.gateway, symbols, out, last_completed=last_completed, start=start, end=end,
                           calendar=calendar)
    except DownloadOptionsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except DownloadError as exc:
        print(f"error: download stopped: {exc}. Every file in {out} is complete as far as download.json says; "
              "run the same command again to continue.", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        print(f"download interrupted; run the same command again to continue ({out}).", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        connection.close()
    print(f"Downloaded {summary.start} .. {summary.end} for {len(symbols)} symbols into {out}: "
          f"{summary.requests} bars requests, {summary.bars} bars, {len(summary.written)} files written, "
          f"{len(summary.up_to_date)} already up to date"
          + (f"; history re-adjusted and fetched again: {', '.join(summary.readjusted)}" if summary.readjusted else "")
          + (f"; no bars: {', '.join(summary.empty)}" if summary.empty else "") + ".")
    outside = [s for s in symbols if s not in config.symbols]
    # The backtest trades the configured universe unless told otherwise: name the symbols it would not know.
    print(f"Backtest it: trading-daemon backtest --data {out}" + (f" --symbols {','.join(symbols)}" if outside else ""))
    for symbol, reason in sorted(summary.bad.items()):
        print(f"error: {symbol}: not written: {reason}", file=sys.stderr)
    return EXIT_FAILURE if summary.bad else EXIT_OK
