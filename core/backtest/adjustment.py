"""Bars that look unadjusted for splits.

The live DataAgent reads split- and dividend-adjusted bars (`adjustment=all`, see
`AlpacaGateway.DAILY_BARS_ADJUSTMENT`), so a split never shows in its z-scores. Raw bars show a
k-for-1 split as a one-session fall to 1/k of the previous close (and a 1-for-k reverse split as a
k-fold rise): the strategy would see a crash, enter or stop out on a move that never happened. A
backtest on such data trades differently from the daemon; these checks name where it would.

A close-to-close ratio r (against the symbol's previous close, gaps skipped) is a suspect when it is
within SPLIT_TOLERANCE of 1/k (a k-for-1 split) or of k (a 1-for-k reverse split) for k in
SPLIT_RATIOS. Genuine moves of -50 % or +100 % in one session exist, hence a warning, not an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np

from core.backtest.data import History, bars_file_format, symbol_of_bars_file

SPLIT_RATIOS: tuple[int, ...] = (2, 3, 4, 5, 10, 20)
SPLIT_TOLERANCE = 0.05
MAX_WARNINGS = 20


@dataclass(frozen=True)
class SplitSuspect:
    symbol: str
    session: date
    previous_close: float
    close: float
    ratio: float        # new shares per old share the move matches: 4.0 for 4-for-1, 0.1 for 1-for-10

    @property
    def label(self) -> str:
        if self.ratio >= 1:
            return f"{self.ratio:g}-for-1 split"
        return f"1-for-{1 / self.ratio:g} reverse split"


def suspect_splits(history: History, tolerance: float = SPLIT_TOLERANCE) -> list[SplitSuspect]:
    """Every one-session close move in `history` that matches a split ratio, by symbol then date."""
    found: list[SplitSuspect] = []
    for col, symbol in enumerate(history.symbols):
        closes = history.close[:, col]
        rows = np.flatnonzero(np.isfinite(closes))
        if rows.size < 2:
            continue
        values = closes[rows]
        move = values[1:] / values[:-1]
        for k in SPLIT_RATIOS:
            for ratio, expected in ((float(k), 1.0 / k), (1.0 / k, float(k))):
                hits = np.flatnonzero(np.abs(move / expected - 1.0) <= tolerance)
                for h in hits:
                    found.append(SplitSuspect(symbol, history.sessions[int(rows[h + 1])], float(values[h]),
                                              float(values[h + 1]), ratio))
    return sorted(found, key=lambda s: (s.symbol, s.session))


def file_of(data: str | Path, symbol: str) -> Path:
    """The file that holds `symbol`'s bars: the file itself, or SYMBOL.ext in a directory."""
    root = Path(data)
    if root.is_dir():
        for path in sorted(root.iterdir()):
            if path.is_file() and bars_file_format(path) is not None and symbol_of_bars_file(path) == symbol:
                return path
    return root


def unadjusted_warnings(history: History, data: str | Path) -> list[str]:
    """One line per suspect move (at most MAX_WARNINGS, then a count), naming file, symbol, date, ratio."""
    suspects = suspect_splits(history)
    lines = [
        f"warning: {file_of(data, s.symbol)}: {s.symbol} on {s.session} closed at {s.close:g} after {s.previous_close:g} "
        f"(x{s.close / s.previous_close:.3f}), which matches a {s.label}: the bars look unadjusted; the daemon trades "
        "on split- and dividend-adjusted bars (adjustment=all, as `trading-daemon download` writes them)"
        for s in suspects[:MAX_WARNINGS]
    ]
    if len(suspects) > MAX_WARNINGS:
        lines.append(f"warning: {len(suspects) - MAX_WARNINGS} more moves match a split ratio (not shown)")
    return lines
