"""Backtest report: summary.json, trades.csv, equity.png, exposure.png and report.md in one directory.

Definitions (also stated in report.md):
- a trade is a round trip: one entry and its exit; a position still open at the end counts as a
  trade with an empty exit (its P&L is unrealised, marked at the last close);
- trades per year = trades / years, years = (last session - first session + 1 day) / 365.25;
- win rate = closed trades with P&L > 0 / closed trades;
- CAGR = (final equity / initial cash) ** (1 / years) - 1;
- maximum drawdown = min over sessions of equity / running peak - 1 (the peak starts at the
  initial cash);
- Sharpe = mean / standard deviation (ddof=1) of daily close-to-close equity returns x sqrt(252),
  risk-free rate 0 (the first return is against the initial cash);
- turnover (per year) = (sum of buy fill values + sum of sell fill values) / 2 / mean equity / years.

summary.json and trades.csv hold no timings or paths that vary between runs, so the same inputs
give byte-identical files.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from core.backtest.charts import ChartData, ChartWorker
from core.backtest.engine import (
    BARS_REQUESTS_PER_ITERATION,
    BENCHMARK_SYMBOL,
    TIER_COLUMNS,
    BacktestResult,
    Trade,
)
from core.backtest.metrics import (
    CurveStats,
    GroupStats,
    TradeStats,
    buy_and_hold,
    curve_stats,
    group_stats,
    monthly_returns,
    time_in_market,
    trade_stats,
    yearly_from_monthly,
    years_spanned,
)
from core.domain.models import Side

TRADE_COLUMNS: tuple[str, ...] = (
    "symbol", "entry_date", "entry_price", "exit_date", "exit_price", "shares", "pnl", "exit_reason",
    "tier", "fractional", "holding_sessions", "commission",
)
OPEN_AT_END = "open at the end"
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")

REQUEST_MODEL = (
    "One backtest session = the one iteration of the live daemon that acts on that session's bar. "
    "Every iteration: 1 batched bars request (DataAgent) + 1 `GET /v2/positions`. "
    "When signals survive the SignalValidator: + 1 `GET /v2/account` + 1 `GET /v2/orders` (open orders) "
    "+ 1 `GET /v2/account/configurations` (fractional flag, once per session when there is an entry "
    "or an order) + 1 `GET /v2/assets/{symbol}` per symbol per session the first time it is entered or "
    "ordered (the ExecutionAgent caches asset flags per session) + 1 `POST /v2/orders` per order. "
    "These are counted at the backtest broker from the agents' real calls; the bars request is added "
    "per iteration. Not counted: the daily 16:05 scan (1 batched bars request per day) and, in the "
    "iteration after an order, the one `GET` by client_order_id that refreshes it. The live loop runs "
    "every 60 s, so most of its ~390 iterations per session are steady-state (2 requests)."
)


@dataclass(frozen=True)
class Metrics:
    years: float
    trades: int
    closed_trades: int
    open_at_end: int
    trades_per_year: float
    orders: int
    orders_per_year: float
    positions_median: float
    positions_max: int
    win_rate: float | None
    cagr: float
    max_drawdown: float
    sharpe: float | None
    turnover_per_year: float
    total_return: float
    final_equity: float
    zero_share_skips: int
    fractional_orders: int
    whole_share_orders: int
    requests_mean: float            # over every iteration (one per session)
    requests_mean_acting: float     # over iterations that reached the RiskAgent (signals survived)
    acting_iterations: int
    requests_max: int
    requests_steady_state: int
    commissions: float
    realised_pnl: float
    unrealised_pnl: float

    def as_dict(self) -> dict[str, Any]:
        return {k: _clean(v) for k, v in self.__dict__.items()}


def _clean(value: Any, digits: int = 6) -> Any:
    if isinstance(value, float):
        if not math.isfinite(value):
            return None
        return round(value, digits)
    if isinstance(value, np.floating):
        return _clean(float(value), digits)
    if isinstance(value, np.integer):
        return int(value)
    return value


def drawdown_series(result: BacktestResult) -> np.ndarray:
    curve = np.concatenate(([result.spec.initial_cash], result.equity))
    peak = np.maximum.accumulate(curve)
    return (curve / peak - 1.0)[1:]


def halts_text(result: BacktestResult) -> str:
    """The halted sessions, when they ran and why they started: a kill switch that tripped stops every later
    entry (in a backtest nobody clears it), which a trader must see next to the returns."""
    if not result.halted_sessions or result.first_halt is None:
        return "0"
    first, reason = result.first_halt
    return f"{result.halted_sessions}, {first} .. {result.last_halted_session}; the first: {reason}"


def compute_metrics(result: BacktestResult) -> Metrics:
    years = years_spanned(result.sessions)
    closed = [t for t in result.trades if not t.is_open]
    open_trades = [t for t in result.trades if t.is_open]
    initial = result.spec.initial_cash
    final = result.final_equity if len(result.equity) else initial
    curve = curve_stats(result.sessions, result.equity, initial)
    traded = sum(f.value for f in result.fills)
    mean_equity = float(np.mean(result.equity)) if len(result.equity) else initial
    requests = result.requests or [BARS_REQUESTS_PER_ITERATION]
    steady = BARS_REQUESTS_PER_ITERATION + 1
    acting = [r for r in requests if r > steady]
    wins = sum(1 for t in closed if t.pnl > 0)
    return Metrics(
        years=years, trades=len(result.trades), closed_trades=len(closed), open_at_end=len(open_trades),
        trades_per_year=len(result.trades) / years if years else 0.0,
        orders=len(result.orders), orders_per_year=len(result.orders) / years if years else 0.0,
        positions_median=float(np.median(result.open_positions)) if len(result.open_positions) else 0.0,
        positions_max=int(result.open_positions.max()) if len(result.open_positions) else 0,
        win_rate=wins / len(closed) if closed else None, cagr=curve.cagr, max_drawdown=curve.max_drawdown,
        sharpe=curve.sharpe, turnover_per_year=traded / 2.0 / mean_equity / years if years and mean_equity > 0 else 0.0,
        total_return=curve.total_return, final_equity=final,
        zero_share_skips=result.counts.get("zero_share_skips", 0),
        fractional_orders=result.counts.get("fractional_orders", 0),
        whole_share_orders=result.counts.get("whole_share_orders", 0),
        requests_mean=float(np.mean(requests)), requests_max=int(max(requests)),
        requests_mean_acting=float(np.mean(acting)) if acting else 0.0, acting_iterations=len(acting),
        requests_steady_state=steady,
        commissions=sum(f.commission for f in result.fills),
        realised_pnl=sum(t.pnl for t in closed), unrealised_pnl=sum(t.pnl for t in open_trades),
    )


# ---------------------------------------------------------------------------------------------
# Tables
# ---------------------------------------------------------------------------------------------
def trades_by_year(result: BacktestResult) -> list[tuple[int, int, int, float]]:
    """(year, trades entered, trades closed, realised P&L of those closed) per calendar year."""
    years = sorted({d.year for d in result.sessions})
    entered = Counter(t.entry_date.year for t in result.trades)
    closed = Counter(t.exit_date.year for t in result.trades if t.exit_date)
    pnl: dict[int, float] = {}
    for t in result.trades:
        if t.exit_date:
            pnl[t.exit_date.year] = pnl.get(t.exit_date.year, 0.0) + t.pnl
    return [(y, entered.get(y, 0), closed.get(y, 0), pnl.get(y, 0.0)) for y in years]


def exposure_by_year(result: BacktestResult) -> list[tuple[int, dict[str, float]]]:
    """Mean exposure (market value / equity) per tier and calendar year."""
    years = np.array([d.year for d in result.sessions])
    out = []
    for year in sorted(set(years.tolist())):
        mask = years == year
        out.append((year, {tier: float(result.exposure[tier][mask].mean()) for tier in TIER_COLUMNS}))
    return out


def closed_in_exit_order(trades: list[Trade]) -> list[Trade]:
    """Closed trades in the order they closed: exit session, then entry session, then symbol."""
    closed = [t for t in trades if t.exit_date is not None]
    return sorted(closed, key=lambda t: (t.exit_date or date.max, t.entry_date, t.symbol))


def result_trade_stats(result: BacktestResult) -> TradeStats:
    return trade_stats([t.pnl for t in closed_in_exit_order(result.trades)])


def benchmark_equity(result: BacktestResult) -> np.ndarray | None:
    if result.benchmark_closes is None:
        return None
    return buy_and_hold(result.benchmark_closes, result.spec.initial_cash)


def benchmark_stats(result: BacktestResult) -> CurveStats | None:
    curve = benchmark_equity(result)
    return None if curve is None else curve_stats(result.sessions, curve, result.spec.initial_cash)


def by_exit_reason(result: BacktestResult) -> list[GroupStats]:
    """Every trade by its exit reason; positions still open form their own group (unrealised P&L)."""
    return group_stats((OPEN_AT_END if t.exit_date is None else (t.exit_reason or "unknown"),
                        t.pnl, t.holding_sessions) for t in result.trades)


def by_symbol(result: BacktestResult) -> list[GroupStats]:
    """Every trade (open ones at their unrealised P&L) by symbol."""
    return group_stats((t.symbol, t.pnl, t.holding_sessions) for t in result.trades)


def _group_dict(groups: list[GroupStats]) -> list[dict[str, Any]]:
    return [{"key": g.key, "trades": g.trades, "wins": g.wins, "pnl": _clean(g.pnl, 2),
             "average_pnl": _clean(g.average_pnl, 2),
             "average_holding_sessions": None if g.average_holding is None else _clean(g.average_holding, 2)}
            for g in groups]


def trader_summary(result: BacktestResult) -> dict[str, Any]:
    """The figures added for a trader's first read (summary.json keys after the original ones)."""
    stats = result_trade_stats(result)
    bench = benchmark_stats(result)
    months = monthly_returns(result.sessions, result.equity, result.spec.initial_cash)
    return {
        "trade_figures": {
            "closed_trades": stats.closed, "wins": stats.wins, "losses": stats.losses,
            "gross_profit": _clean(stats.gross_profit, 2), "gross_loss": _clean(stats.gross_loss, 2),
            "profit_factor": None if stats.profit_factor is None else _clean(stats.profit_factor),
            "average_win": None if stats.average_win is None else _clean(stats.average_win, 2),
            "average_loss": None if stats.average_loss is None else _clean(stats.average_loss, 2),
            "expectancy": None if stats.expectancy is None else _clean(stats.expectancy, 2),
            "longest_losing_streak": stats.longest_losing_streak,
            "time_in_market": _clean(time_in_market(result.open_positions)),
        },
        "benchmark": None if bench is None else {
            "symbol": BENCHMARK_SYMBOL, "rule": "buy and hold from the first session's close, no costs",
            "final_equity": _clean(float(result.spec.initial_cash * (1.0 + bench.total_return)), 2),
            "total_return": _clean(bench.total_return), "cagr": _clean(bench.cagr),
            "max_drawdown": _clean(bench.max_drawdown),
            "sharpe": None if bench.sharpe is None else _clean(bench.sharpe),
        },
        "monthly_returns": [{"year": y, "month": m, "return": _clean(r)} for y, m, r in months],
        "by_exit_reason": _group_dict(by_exit_reason(result)),
        "by_symbol": _group_dict(by_symbol(result)),
    }


def trades_csv(trades: list[Trade]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRADE_COLUMNS)
    for t in trades:
        writer.writerow([
            t.symbol, t.entry_date.isoformat(), f"{t.entry_price:.4f}",
            t.exit_date.isoformat() if t.exit_date else "", f"{t.exit_price:.4f}" if t.exit_price is not None else "",
            _shares(t.shares), f"{t.pnl:.2f}", t.exit_reason, t.tier or "", "true" if t.fractional else "false",
            "" if t.holding_sessions is None else t.holding_sessions,
            f"{t.entry_commission + t.exit_commission:.2f}",
        ])
    return buffer.getvalue()


def _shares(qty: float) -> str:
    if abs(qty - round(qty)) < 1e-9:
        return str(int(round(qty)))
    return f"{qty:.9f}".rstrip("0")


def summary_dict(result: BacktestResult, metrics: Metrics | None = None) -> dict[str, Any]:
    metrics = metrics or compute_metrics(result)
    final_positions = {t.symbol: {"shares": _clean(t.shares, 9), "entry_date": t.entry_date.isoformat(),
                                  "entry_price": _clean(t.entry_price), "unrealised_pnl": _clean(t.pnl, 2)}
                       for t in result.trades if t.is_open}
    return {
        "run": result.spec.describe(),
        "data": result.source,
        "strategy": {k: _clean(v) if not isinstance(v, dict) else v for k, v in result.params.items()},
        "sessions": len(result.sessions),
        "first_session": result.sessions[0].isoformat() if result.sessions else None,
        "last_session": result.sessions[-1].isoformat() if result.sessions else None,
        "metrics": metrics.as_dict(),
        "counts": dict(sorted(result.counts.items())),
        "rejections": dict(sorted(result.rejection_kinds.items())),
        "zero_share_skips_by_symbol": dict(sorted(result.zero_share_symbols.items())),
        "requests_by_endpoint": dict(sorted(result.request_totals.items())),
        "halted_sessions": result.halted_sessions,
        "first_halt": ({"session": result.first_halt[0].isoformat(), "reason": result.first_halt[1]}
                       if result.first_halt else None),
        "last_halted_session": result.last_halted_session.isoformat() if result.last_halted_session else None,
        "min_cash": _clean(result.min_cash, 2),
        "open_positions_at_end": final_positions,
        "trades_by_year": [{"year": y, "entered": e, "closed": c, "realised_pnl": _clean(p, 2)}
                           for y, e, c, p in trades_by_year(result)],
        "exposure_by_year": [{"year": y, **{k: _clean(v, 4) for k, v in row.items()}}
                             for y, row in exposure_by_year(result)],
        **trader_summary(result),
    }


def summary_json(result: BacktestResult, metrics: Metrics | None = None) -> str:
    """summary.json's exact text (the sweep hashes it to show a point equals a single backtest)."""
    return json.dumps(summary_dict(result, metrics), indent=2, sort_keys=False) + "\n"


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------
def write_report(result: BacktestResult, out_dir: str | Path, *, command: str = "",
                 charts: ChartWorker | None = None) -> dict[str, Path]:
    """Write summary.json, trades.csv, equity.png, exposure.png and report.md. `charts` draws the PNGs
    (core/backtest/charts.py: in a process started earlier, or here)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "summary.json", "trades": out / "trades.csv", "equity": out / "equity.png",
        "exposure": out / "exposure.png", "report": out / "report.md",
    }
    worker = charts if charts is not None else ChartWorker(parallel=False)
    worker.send(chart_data(result), paths["equity"], paths["exposure"])   # a chart process draws meanwhile
    metrics = compute_metrics(result)
    paths["summary"].write_text(summary_json(result, metrics), encoding="utf-8")
    paths["trades"].write_text(trades_csv(result.trades), encoding="utf-8")
    markdown = report_markdown(result, metrics, command=command)
    worker.wait()
    paths["report"].write_text(markdown, encoding="utf-8")
    return paths


def chart_data(result: BacktestResult) -> ChartData:
    """The series equity.png and exposure.png show."""
    tiers = [t for t in TIER_COLUMNS if result.exposure[t].any()] or list(TIER_COLUMNS[:3])
    return ChartData(
        sessions=list(result.sessions), equity=np.asarray(result.equity, dtype=float),
        drawdown_pct=drawdown_series(result) * 100.0, initial_cash=result.spec.initial_cash,
        benchmark=benchmark_equity(result), benchmark_label=f"{BENCHMARK_SYMBOL} buy and hold",
        title=f"Equity ({result.sessions[0]} to {result.sessions[-1]}, {len(result.spec.symbols)} symbols)",
        exposure_pct={t: result.exposure[t] * 100.0 for t in tiers})


def _num(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _money(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"-${-value:,.2f}" if value < 0 else f"${value:,.2f}"


def _group_table(title: str, column: str, groups: list[GroupStats]) -> list[str]:
    lines = [f"## {title}\n", f"| {column} | trades | wins | win rate | P&L | mean P&L | mean holding sessions |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for g in groups:
        holding = "n/a" if g.average_holding is None else f"{g.average_holding:.1f}"
        lines.append(f"| {g.key} | {g.trades} | {g.wins} | {_pct(g.wins / g.trades)} | {_money(g.pnl)} | "
                     f"{_money(g.average_pnl)} | {holding} |")
    lines.append("")
    return lines


def trader_sections(result: BacktestResult) -> list[str]:
    """Monthly returns and the breakdowns by exit reason and by symbol, as Markdown lines."""
    months = monthly_returns(result.sessions, result.equity, result.spec.initial_cash)
    by_month = {(y, m): r for y, m, r in months}
    lines = ["## Monthly returns\n",
             "Equity at the month's last close against the previous month's (the first month against the "
             "initial cash); the year column compounds the months.\n",
             "| year | " + " | ".join(MONTHS) + " | year |", "|---|" + "---:|" * (len(MONTHS) + 1)]
    for year, total in sorted(yearly_from_monthly(months).items()):
        cells = [_pct(by_month[(year, m)]) if (year, m) in by_month else "" for m in range(1, 13)]
        lines.append(f"| {year} | " + " | ".join(cells) + f" | {_pct(total)} |")
    lines.append("")
    lines += _group_table("Trades by exit reason", "exit reason", by_exit_reason(result))
    lines += _group_table("Trades by symbol", "symbol", by_symbol(result))
    return lines


def _pct(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value * 100:.{digits}f}%"


def report_markdown(result: BacktestResult, m: Metrics, *, command: str = "") -> str:
    spec = result.spec
    lines: list[str] = []
    add = lines.append
    add("# Backtest report\n")
    if command:
        add(f"Command: `{command}`\n")
    add(f"Data: {result.source}. Period: {result.sessions[0]} to {result.sessions[-1]} "
        f"({len(result.sessions)} sessions, {m.years:.2f} years). Symbols ({len(spec.symbols)}): "
        f"{', '.join(spec.symbols)}.\n")
    mode = "bare" if spec.bare else "full"
    add(f"Mode: {mode}; scanner {'on' if spec.use_scanner else 'off'}; fractional shares "
        f"{'on' if spec.fractional else 'off'}; fills at {spec.fill_at.replace('_', ' ')}; commission "
        f"${spec.commission:.2f}/order + {spec.commission_bps:g} bps; slippage {spec.slippage_bps:g} bps; "
        f"initial cash ${spec.initial_cash:,.2f}"
        + (f"; fixed position notional ${spec.position_notional:,.2f}" if spec.position_notional else "") + ".\n")
    add("## Results\n")
    add("| figure | value |")
    add("|---|---|")
    rows = [
        ("Trades (round trips)", f"{m.trades} ({m.closed_trades} closed, {m.open_at_end} open at the end)"),
        ("Trades per year", f"{m.trades_per_year:.1f}"),
        ("Orders (per year)", f"{m.orders} ({m.orders_per_year:.1f})"),
        ("Open positions, median (typical)", f"{m.positions_median:g}"),
        ("Open positions, max", f"{m.positions_max}"),
        ("Win rate", _pct(m.win_rate)),
        ("CAGR", _pct(m.cagr, 2)),
        ("Total return", _pct(m.total_return, 2)),
        ("Final equity", f"${m.final_equity:,.2f}"),
        ("Max drawdown", _pct(m.max_drawdown, 2)),
        ("Sharpe (daily, x sqrt(252), rf=0)", "n/a" if m.sharpe is None else f"{m.sharpe:.2f}"),
        ("Turnover per year", f"{m.turnover_per_year:.2f}x"),
        ("Zero-share skips", f"{m.zero_share_skips}"),
        ("Fractional orders", f"{m.fractional_orders}"),
        ("Whole-share orders", f"{m.whole_share_orders}"),
        ("Alpaca requests per iteration, mean", f"{m.requests_mean:.2f}"),
        ("Alpaca requests per acting iteration (signals reached risk), mean",
         f"{m.requests_mean_acting:.2f} over {m.acting_iterations} iterations"),
        ("Alpaca requests per iteration, max", f"{m.requests_max}"),
        ("Alpaca requests per steady-state iteration", f"{m.requests_steady_state}"),
        ("Commissions paid", f"${m.commissions:,.2f}"),
        ("Realised P&L / unrealised at the end", f"${m.realised_pnl:,.2f} / ${m.unrealised_pnl:,.2f}"),
        ("Sessions with signals and entries halted", halts_text(result)),
        ("Lowest cash", f"${result.min_cash:,.2f}"),
    ]
    stats = result_trade_stats(result)
    bench = benchmark_stats(result)
    rows += [
        ("Profit factor (gross profit / gross loss)", _num(stats.profit_factor)),
        ("Average win / average loss", f"{_money(stats.average_win)} / {_money(stats.average_loss)}"),
        ("Expectancy per closed trade", _money(stats.expectancy)),
        ("Longest losing streak (closed trades)", f"{stats.longest_losing_streak}"),
        ("Time in market (sessions with a position)", _pct(time_in_market(result.open_positions))),
    ]
    if bench is not None:
        rows += [
            (f"Benchmark: {BENCHMARK_SYMBOL} buy and hold, total return", _pct(bench.total_return, 2)),
            (f"Benchmark: {BENCHMARK_SYMBOL} CAGR / max drawdown", f"{_pct(bench.cagr, 2)} / {_pct(bench.max_drawdown, 2)}"),
            (f"Benchmark: {BENCHMARK_SYMBOL} Sharpe", _num(bench.sharpe)),
        ]
    else:
        rows.append(("Benchmark", f"n/a ({BENCHMARK_SYMBOL} is not in the data)"))
    for name, value in rows:
        add(f"| {name} | {value} |")
    add("")
    lines += trader_sections(result)
    add("## Trades per year\n")
    add("| year | entered | closed | realised P&L |")
    add("|---|---:|---:|---:|")
    for year, entered, closed, pnl in trades_by_year(result):
        add(f"| {year} | {entered} | {closed} | {pnl:,.2f} |")
    add("")
    add("## Exposure per tier over time\n")
    add("Mean market value as % of equity at each close, by year (plot: `exposure.png`).\n")
    add("| year | " + " | ".join(TIER_COLUMNS) + " | total |")
    add("|---|" + "---:|" * (len(TIER_COLUMNS) + 1))
    for year, row in exposure_by_year(result):
        total = sum(row.values())
        add(f"| {year} | " + " | ".join(f"{row[t] * 100:.1f}%" for t in TIER_COLUMNS) + f" | {total * 100:.1f}% |")
    overall = {t: float(result.exposure[t].mean()) for t in TIER_COLUMNS}
    add("| all | " + " | ".join(f"{overall[t] * 100:.1f}%" for t in TIER_COLUMNS)
        + f" | {sum(overall.values()) * 100:.1f}% |")
    add("")
    add("## Orders and rejections\n")
    buys = result.counts.get("orders_buy", 0)
    sells = result.counts.get("orders_sell", 0)
    add(f"Orders submitted: {buys} buys, {sells} sells; {m.fractional_orders} fractional (notional or "
        f"fractional qty), {m.whole_share_orders} whole-share. Zero-share skips (an entry sized to zero "
        f"shares): {m.zero_share_skips}"
        + (f" ({', '.join(f'{s} {n}' for s, n in sorted(result.zero_share_symbols.items()))})"
           if result.zero_share_symbols else "")
        + f". Signals: {result.counts.get('signals', 0)}.\n")
    if result.rejection_kinds:
        add("| stage:reason | count |")
        add("|---|---:|")
        for kind, count in sorted(result.rejection_kinds.items(), key=lambda kv: (-kv[1], kv[0])):
            add(f"| {kind} | {count} |")
        add("")
    add("## Alpaca requests the live daemon would have made\n")
    add(REQUEST_MODEL + "\n")
    add(f"Per iteration (one per session): mean {m.requests_mean:.2f}, max {m.requests_max}, steady state "
        f"{m.requests_steady_state}; over the {m.acting_iterations} iterations that acted on signals: mean "
        f"{m.requests_mean_acting:.2f}.\n")
    add("| endpoint | total over the run |")
    add("|---|---:|")
    add(f"| bars (batched, modelled) | {len(result.requests) * BARS_REQUESTS_PER_ITERATION} |")
    for endpoint, count in sorted(result.request_totals.items()):
        add(f"| `{endpoint}` | {count} |")
    add("")
    add("## Conventions\n")
    add("Signals on session t's close; orders "
        + ("fill at session t+1's open" if spec.fill_at == "next_open" else "fill at session t's close")
        + " with slippage against the trader and commission per fill. Exits are handled before entries, "
          "entries most oversold first. Positions open at the end are reported with an empty exit and "
          "their P&L marked at the last close. See docs/backtest.md.\n")
    add("Definitions: trades = round trips; trades per year = trades / years (calendar days / 365.25); "
        "win rate over closed trades; CAGR from the initial cash; max drawdown from the running peak of "
        "the close-to-close equity; Sharpe = mean / sd of daily equity returns x sqrt(252), rf = 0; "
        "turnover = (buy value + sell value) / 2 / mean equity / years.\n")
    sides = Counter(f.side for f in result.fills)
    add(f"Fills: {sides.get(Side.BUY, 0)} buys, {sides.get(Side.SELL, 0)} sells.\n")
    return "\n".join(lines)
