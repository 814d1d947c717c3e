"""`trading-daemon backtest`'s arguments, for the command line's parser.

Only the standard library: building the parser (`trading-daemon --help`, any argument error) must not
import the engine, numpy or pandas. The command itself is core/backtest/cli.py.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_OUT = Path("out/backtest")


def add_backtest_arguments(parser: argparse.ArgumentParser) -> None:
    # Values stay strings here and are checked in run_backtest_command, so every bad value gets the
    # same one-line message and exit code whichever way the command is invoked.
    parser.add_argument("--start", metavar="YYYY-MM-DD", default=None,
                        help="first session (default: ten years before --end)")
    parser.add_argument("--end", metavar="YYYY-MM-DD", default=None,
                        help="last session (default: the last session before 2026-11-01, or the data's last)")
    parser.add_argument("--symbols", metavar="SYM,SYM", default=None,
                        help="comma-separated symbols (default: the configured universe, SYMBOL_TIERS)")
    parser.add_argument("--data", metavar="PATH", default=None,
                        help="CSV/Parquet bars file, or a directory of SYMBOL.csv / SYMBOL.parquet files as `download` writes (default: built-in synthetic market)")
    parser.add_argument("--initial-cash", metavar="USD", default=None, help="starting cash (default SIM_INITIAL_CASH)")
    parser.add_argument("--no-scanner", action="store_true", help="trade the whole universe (no scanner focus)")
    parser.add_argument("--no-fractional", action="store_true", help="whole shares only")
    parser.add_argument("--bare", action="store_true",
                        help="bare strategy: no scanner, baseline, tiers, limits, cooldowns, halts, buffer, "
                             "minimum notional, freshness/drift checks or fractional shares")
    parser.add_argument("--position-notional", metavar="USD", default=None,
                        help="size every entry as floor(USD / signal close) whole shares")
    parser.add_argument("--commission", metavar="USD", default="0", help="commission per order in dollars (default 0)")
    parser.add_argument("--commission-bps", metavar="BPS", default="0",
                        help="commission in basis points of each fill's value (default 0)")
    parser.add_argument("--slippage-bps", metavar="BPS", default="0",
                        help="adverse slippage in basis points of the fill price (default 0)")
    parser.add_argument("--fill-at", choices=("next_open", "close"), default="next_open",
                        help="fill at the next session's open (default) or at the signal's close")
    parser.add_argument("--seed", metavar="N", default=None, help="synthetic market seed (default SIM_SEED)")
    parser.add_argument("--out", metavar="DIR", default=str(DEFAULT_OUT), help=f"report directory (default {DEFAULT_OUT})")
    parser.add_argument("--compare-seed", action="store_true",
                        help="run the seed's scenarios (5, 29, 29 + scanner; fractional on/off) and compare")
