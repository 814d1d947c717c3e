"""Trade and equity figures a trader reads first. Pure functions over plain values (no I/O, no plots),
so each figure can be checked on trades worked out by hand (tests/unit/test_backtest_metrics.py).

Definitions (also in docs/backtest.md):
- closed trades only for the trade figures; a win has P&L > 0, a loss P&L < 0 (a trade at exactly 0
  is neither, and it ends a losing streak);
- profit factor = sum of winning P&L / |sum of losing P&L| (None without a losing trade);
- average win / average loss = mean P&L of the wins / of the losses (the loss is negative);
- expectancy = mean P&L per closed trade (= win rate x average win + loss rate x average loss);
- longest losing streak = the most consecutive losses, trades taken in the order they closed
  (exit session, then entry session, then symbol);
- time in market = sessions with at least one open position at the close / sessions;
- monthly return = equity at the month's last close / equity at the previous month's last close - 1
  (the first month against the initial cash);
- benchmark = buy and hold: the initial cash in the benchmark symbol at the first session's close,
  fractional shares, no costs; a session without a bar keeps the last close.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

import numpy as np

TRADING_DAYS = 252


@dataclass(frozen=True)
class TradeStats:
    closed: int
    wins: int
    losses: int
    gross_profit: float
    gross_loss: float                 # <= 0
    profit_factor: float | None
    average_win: float | None
    average_loss: float | None        # <= 0
    expectancy: float | None
    longest_losing_streak: int


def trade_stats(pnls: Sequence[float]) -> TradeStats:
    """Figures over closed trades' P&L, given in the order the trades closed."""
    wins = [p for p in pnls if p > 0]
    losses = [p for p in pnls if p < 0]
    gross_profit = float(sum(wins))
    gross_loss = float(sum(losses))
    streak = longest = 0
    for pnl in pnls:
        streak = streak + 1 if pnl < 0 else 0
        longest = max(longest, streak)
    return TradeStats(
        closed=len(pnls), wins=len(wins), losses=len(losses), gross_profit=gross_profit, gross_loss=gross_loss,
        profit_factor=gross_profit / -gross_loss if losses else None,
        average_win=gross_profit / len(wins) if wins else None,
        average_loss=gross_loss / len(losses) if losses else None,
        expectancy=float(sum(pnls)) / len(pnls) if pnls else None,
        longest_losing_streak=longest,
    )


def time_in_market(open_positions: np.ndarray) -> float:
    """Share of sessions that closed with at least one position open."""
    if len(open_positions) == 0:
        return 0.0
    return float(np.count_nonzero(np.asarray(open_positions) > 0)) / len(open_positions)


def monthly_returns(sessions: Sequence[date], equity: np.ndarray, initial: float) -> list[tuple[int, int, float]]:
    """(year, month, return) for each calendar month with a session, in order."""
    out: list[tuple[int, int, float]] = []
    previous = initial
    for i, day in enumerate(sessions):
        last_of_month = i == len(sessions) - 1 or (sessions[i + 1].year, sessions[i + 1].month) != (day.year, day.month)
        if last_of_month:
            value = float(equity[i])
            out.append((day.year, day.month, value / previous - 1.0 if previous > 0 else math.nan))
            previous = value
    return out


def yearly_from_monthly(months: Iterable[tuple[int, int, float]]) -> dict[int, float]:
    """Compounded return per calendar year from the monthly returns."""
    years: dict[int, float] = {}
    for year, _, ret in months:
        years[year] = (1.0 + years.get(year, 0.0)) * (1.0 + ret) - 1.0
    return years


def buy_and_hold(closes: np.ndarray, initial: float) -> np.ndarray | None:
    """Equity of `initial` put into one symbol at the first close, marked at each close (NaN carried
    forward). None when the symbol has no close at the first session."""
    closes = np.asarray(closes, dtype=float)
    if len(closes) == 0 or not np.isfinite(closes[0]) or closes[0] <= 0:
        return None
    filled = closes.copy()
    for i in range(1, len(filled)):
        if not np.isfinite(filled[i]):
            filled[i] = filled[i - 1]
    return initial * filled / filled[0]


@dataclass(frozen=True)
class CurveStats:
    total_return: float
    cagr: float
    max_drawdown: float
    sharpe: float | None


def years_spanned(sessions: Sequence[date]) -> float:
    """Calendar years from the first session to the last, both included (at least a day; 0 without sessions)."""
    if not sessions:
        return 0.0
    return max(((sessions[-1] - sessions[0]).days + 1) / 365.25, 1 / 365.25)


def curve_stats(sessions: Sequence[date], equity: np.ndarray, initial: float) -> CurveStats:
    """The report's equity figures (total return, CAGR, max drawdown, Sharpe; docs/backtest.md) for any curve
    that starts from `initial` before its first session: the backtest's own, the benchmark's, a sweep's."""
    curve = np.concatenate(([initial], np.asarray(equity, dtype=float)))
    years = years_spanned(sessions)
    final = float(curve[-1])
    returns = curve[1:] / curve[:-1] - 1.0
    sharpe = None
    if len(returns) > 1:
        std = float(np.std(returns, ddof=1))
        if std > 0:
            sharpe = float(np.mean(returns)) / std * math.sqrt(TRADING_DAYS)
    peak = np.maximum.accumulate(curve)
    return CurveStats(
        total_return=final / initial - 1.0,
        cagr=(final / initial) ** (1.0 / years) - 1.0 if final > 0 and years > 0 else -1.0,
        max_drawdown=float((curve / peak - 1.0).min()),
        sharpe=sharpe,
    )


@dataclass(frozen=True)
class GroupStats:
    key: str
    trades: int
    wins: int
    pnl: float
    average_pnl: float
    average_holding: float | None


def group_stats(rows: Iterable[tuple[str, float, int | None]]) -> list[GroupStats]:
    """Per key: trades, wins (P&L > 0), total and mean P&L, mean holding sessions. Input rows are
    (key, pnl, holding sessions). Sorted by total P&L, best first, then by key."""
    groups: dict[str, list[tuple[float, int | None]]] = {}
    for key, pnl, holding in rows:
        groups.setdefault(key, []).append((pnl, holding))
    out = []
    for key, items in groups.items():
        pnls = [p for p, _ in items]
        holds = [h for _, h in items if h is not None]
        out.append(GroupStats(key=key, trades=len(items), wins=sum(1 for p in pnls if p > 0), pnl=float(sum(pnls)),
                              average_pnl=float(sum(pnls)) / len(pnls),
                              average_holding=float(sum(holds)) / len(holds) if holds else None))
    return sorted(out, key=lambda g: (-g.pnl, g.key))
