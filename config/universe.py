"""The default trading universe: the seed's 29 symbols in three tiers.

TIER1 holds the broad index ETFs, TIER2 the sector ETFs and TIER3 twenty large caps.
The mapping is data, not code, so `SYMBOL_TIERS` can replace it wholesale.
"""

from __future__ import annotations

import re

TIER_NAMES: tuple[str, ...] = ("TIER1", "TIER2", "TIER3")

BASELINE_SYMBOLS: tuple[str, ...] = ("SPY", "QQQ")

DEFAULT_TIER_MEMBERS: dict[str, tuple[str, ...]] = {
    "TIER1": ("SPY", "QQQ", "DIA", "IWM"),
    "TIER2": ("XLK", "XLF", "XLV", "XLE", "XLY"),
    "TIER3": (
        "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "JPM", "V", "UNH",
        "JNJ", "WMT", "PG", "MA", "HD", "COST", "AVGO", "LLY", "XOM", "NFLX",
    ),
}

DEFAULT_SYMBOL_TIERS: dict[str, str] = {
    symbol: tier for tier, members in DEFAULT_TIER_MEMBERS.items() for symbol in members
}

# The built-in markets' assets that refuse fractional orders: the simulated brokerage (core/sim/) and the
# backtest's broker (core/backtest/broker.py) both read this one set, so the whole-share fallback paths run
# in both and a backtest on the synthetic market sees the assets the simulated daemon sees.
DEFAULT_NON_FRACTIONABLE: frozenset[str] = frozenset({"AVGO", "NFLX", "XLE"})

# US equity tickers: 1-5 letters, optionally a one- or two-letter share class after a dot
# (BRK.B). Anything else (digits, slashes, dots elsewhere) must never reach a URL.
_TICKER_RE = re.compile(r"^[A-Z]{1,5}(\.[A-Z]{1,2})?$")


def is_valid_ticker(symbol: str) -> bool:
    return isinstance(symbol, str) and bool(_TICKER_RE.fullmatch(symbol))


def format_symbol_tiers(symbol_tiers: dict[str, str]) -> str:
    """Render a mapping back into the `SYM:TIER,SYM:TIER` environment format."""
    return ",".join(f"{symbol}:{tier}" for symbol, tier in symbol_tiers.items())
