"""The sweep's conclusions: on each window the best in-sample point by the stated metric, its
out-of-sample result, the stitched out-of-sample equity (the headline), in-sample against
out-of-sample for every point, and the deflated Sharpe ratio of each selection. Writes sweep.csv,
sweep.md, oos_equity.png and, for a two-parameter grid on one universe, heatmap.png.

Selection ties go to the lower point number. A metric that is undefined (no trades, no losses, no
variation) ranks below every defined value.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np

from core.backtest.deflated_sharpe import ReturnMoments, deflated_sharpe, probabilistic_sharpe
from core.backtest.metrics import TRADING_DAYS, CurveStats, curve_stats
from core.backtest.sweep_space import Point
from core.backtest.walk_forward import Window
from core.domain.market_calendar import MarketCalendar

METRICS: dict[str, str] = {
    "sharpe": "Sharpe (daily, x sqrt(252))",
    "cagr": "CAGR",
    "total_return": "total return",
    "calmar": "CAGR / |max drawdown|",
    "profit_factor": "profit factor",
    "max_drawdown": "max drawdown (closer to 0 is better)",
}
FIGURES = ("sharpe", "cagr", "total_return", "max_drawdown", "calmar", "profit_factor", "trades", "win_rate",
           "final_equity", "trades_sha256", "summary_sha256")
TOP_POINTS = 10


def metric_value(figures: dict[str, Any], metric: str) -> float:
    value = figures.get(metric)
    return -math.inf if value is None or not math.isfinite(float(value)) else float(value)


@dataclass(frozen=True)
class Selection:
    window: Window
    point: int
    in_sample: dict[str, Any]
    out_of_sample: dict[str, Any]
    trials: int
    deflated_sharpe: float | None
    expected_max_sharpe: float


def select(rows: dict[tuple[int, int], dict[str, Any]], windows: Sequence[Window], points: Sequence[Point],
           metric: str) -> list[Selection]:
    """The best in-sample point of each window (among the points with a result there)."""
    out = []
    for window in windows:
        candidates = [(p.index, rows[(p.index, window.index)]) for p in points if (p.index, window.index) in rows]
        if not candidates:
            continue
        best_index, best = max(candidates, key=lambda item: (metric_value(item[1]["in_sample"], metric), -item[0]))
        trial_sharpes = [r["in_sample"]["sharpe_per_session"] for _, r in candidates]
        chosen = best["in_sample"]
        dsr: float | None = None
        sr0 = 0.0
        if chosen.get("sharpe_per_session") is not None:
            moments = ReturnMoments(int(chosen["returns"]), float(chosen["sharpe_per_session"]), float(chosen["skew"]),
                                    float(chosen["kurtosis"]))
            value, sr0 = deflated_sharpe(moments, [math.nan if s is None else float(s) for s in trial_sharpes])
            dsr = None if math.isnan(value) else value
        out.append(Selection(window, best_index, chosen, best["out_of_sample"], len(candidates), dsr, sr0))
    return out


def stitch(selections: Sequence[Selection], rows: dict[tuple[int, int], dict[str, Any]],
           calendar: MarketCalendar, initial: float) -> tuple[list[date], np.ndarray]:
    """The selected points' out-of-sample equity, window after window: each window starts flat with
    fresh cash, so the stitched curve compounds the windows' daily returns."""
    sessions: list[date] = []
    values: list[float] = []
    level = initial
    for sel in selections:
        row = rows[(sel.point, sel.window.index)]
        equity = np.asarray(row["oos_equity"], dtype=float)
        start = date.fromisoformat(sel.out_of_sample["first"])
        days = calendar.sessions_between(start, date.fromisoformat(sel.out_of_sample["last"]))
        scale = level / float(row["initial_cash"])
        sessions += days
        values += (equity * scale).tolist()
        level = values[-1]
    return sessions, np.asarray(values)


def stitched_moments(equity: np.ndarray, initial: float) -> ReturnMoments | None:
    from core.backtest.deflated_sharpe import moments

    curve = np.concatenate(([initial], equity))
    return moments((curve[1:] / curve[:-1] - 1.0).tolist())


def spearman(a: Sequence[float], b: Sequence[float]) -> float | None:
    """Rank correlation of two equally long lists (average ranks for ties); None below 3 pairs."""
    pairs = [(x, y) for x, y in zip(a, b, strict=True) if math.isfinite(x) and math.isfinite(y)]
    if len(pairs) < 3:
        return None

    def ranks(values: list[float]) -> np.ndarray:
        order = np.argsort(values, kind="stable")
        out = np.empty(len(values))
        i = 0
        while i < len(values):
            j = i
            while j + 1 < len(values) and values[order[j + 1]] == values[order[i]]:
                j += 1
            out[order[i:j + 1]] = (i + j) / 2.0
            i = j + 1
        return out

    ra, rb = ranks([x for x, _ in pairs]), ranks([y for _, y in pairs])
    if ra.std() == 0 or rb.std() == 0:
        return None
    return float(np.corrcoef(ra, rb)[0, 1])


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------
def sweep_csv(rows: dict[tuple[int, int], dict[str, Any]], points: Sequence[Point], windows: Sequence[Window],
              selections: Sequence[Selection]) -> str:
    names = list(dict.fromkeys(name for p in points for name, _ in p.settings))
    chosen = {(s.point, s.window.index) for s in selections}
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["point", *names, "universe", "window", "train_start", "train_end", "test_start", "test_end",
                     "selected", *[f"is_{f}" for f in FIGURES], *[f"oos_{f}" for f in FIGURES]])
    for window in windows:
        for p in points:
            row = rows.get((p.index, window.index))
            if row is None:
                continue
            settings = dict(p.settings)
            writer.writerow([p.index, *[settings.get(n, "") for n in names], p.universe.name, window.index,
                             window.train_start, window.train_end, window.test_start, window.test_end,
                             "yes" if (p.index, window.index) in chosen else "",
                             *[_cell(row["in_sample"].get(f)) for f in FIGURES],
                             *[_cell(row["out_of_sample"].get(f)) for f in FIGURES]])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def _fmt(value: Any, kind: str = "num") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    if kind == "pct":
        return f"{float(value) * 100:.2f}%"
    if kind == "prob":
        return f"{float(value):.3f}"
    return f"{float(value):.2f}"


def _metric_kind(metric: str) -> str:
    return "pct" if metric in ("cagr", "total_return", "max_drawdown") else "num"


@dataclass(frozen=True)
class Headline:
    stats: CurveStats | None
    psr: float | None
    sessions: int


def headline(sessions: list[date], equity: np.ndarray, initial: float) -> Headline:
    if not sessions:
        return Headline(None, None, 0)
    m = stitched_moments(equity, initial)
    psr = None if m is None else probabilistic_sharpe(m.sharpe, m.n, m.skew, m.kurtosis)
    return Headline(curve_stats(sessions, equity, initial), psr, len(sessions))


def sweep_markdown(*, command: str, source: str, metric: str, points: Sequence[Point], windows: Sequence[Window],
                   rows: dict[tuple[int, int], dict[str, Any]], selections: Sequence[Selection], head: Headline,
                   stats_line: str, train: str, test: str, plots: Sequence[str]) -> str:
    lines: list[str] = []
    add = lines.append
    kind = _metric_kind(metric)
    add("# Parameter sweep with walk-forward windows\n")
    if command:
        add(f"Command: `{command}`\n")
    add(f"Data: {source}. Windows: train {train}, test {test}, rolled by the test length ({len(windows)} windows). "
        f"Points tried: {len(points)} (every point on every window: {len(points) * len(windows)} in-sample and "
        f"{len(points) * len(windows)} out-of-sample backtests). Selection: on each window, the point with the "
        f"highest in-sample {METRICS[metric]}.\n")
    add(stats_line + "\n")
    add("## Headline: the stitched out-of-sample equity\n")
    add("Only this curve is a fair estimate: each of its pieces was traded with settings chosen before that "
        "piece's data was seen. Every in-sample figure below is flattered by the choice among "
        f"{len(points)} points.\n")
    if head.stats is None:
        add("No window finished.\n")
    else:
        s = head.stats
        add("| figure | stitched out-of-sample |")
        add("|---|---:|")
        add(f"| sessions | {head.sessions} |")
        add(f"| total return | {_fmt(s.total_return, 'pct')} |")
        add(f"| CAGR | {_fmt(s.cagr, 'pct')} |")
        add(f"| max drawdown | {_fmt(s.max_drawdown, 'pct')} |")
        add(f"| Sharpe (daily, x sqrt({TRADING_DAYS})) | {_fmt(s.sharpe)} |")
        add(f"| probabilistic Sharpe ratio (P[true Sharpe > 0]) | {_fmt(head.psr, 'prob')} |")
        add("")
    add("## Each window: the in-sample choice and what it did out of sample\n")
    sharpe_cols = metric != "sharpe"      # the Sharpe columns, unless the metric already is the Sharpe ratio
    add(f"| window | train | test | chosen point | IS {metric} | OOS {metric} | "
        + ("IS Sharpe | OOS Sharpe | " if sharpe_cols else "") + "OOS return | trials | deflated Sharpe (P) |")
    add("|---:|---|---|---|---:|---:|" + ("---:|---:|" if sharpe_cols else "") + "---:|---:|---:|")
    labels = {p.index: p.label for p in points}
    for sel in selections:
        w = sel.window
        sharpes = (f"{_fmt(sel.in_sample.get('sharpe'))} | {_fmt(sel.out_of_sample.get('sharpe'))} | "
                   if sharpe_cols else "")
        add(f"| {w.index} | {w.train_start} .. {w.train_end} | {w.test_start} .. {w.test_end} | "
            f"{sel.point}: {labels[sel.point]} | {_fmt(sel.in_sample.get(metric), kind)} | "
            f"{_fmt(sel.out_of_sample.get(metric), kind)} | {sharpes}"
            f"{_fmt(sel.out_of_sample.get('total_return'), 'pct')} | {sel.trials} | {_fmt(sel.deflated_sharpe, 'prob')} |")
    add("")
    if selections:
        is_mean = np.mean([metric_value(s.in_sample, "sharpe") for s in selections])
        oos_mean = np.mean([metric_value(s.out_of_sample, "sharpe") for s in selections])
        add(f"Mean Sharpe of the chosen points: {_fmt(float(is_mean))} in sample, {_fmt(float(oos_mean))} out of "
            "sample. The gap is what choosing among many points adds to the in-sample figure.\n")
        add("The deflated Sharpe ratio is the probability that the chosen point's in-sample Sharpe ratio beats the "
            "best that the window's trials would reach by luck (Bailey & López de Prado, 2014), given the number "
            "of trials, the spread of their Sharpe ratios and the returns' skewness and kurtosis. Below 0.95 the "
            "in-sample winner is not distinguishable from luck.\n")
    add("## In sample against out of sample, every point\n")
    add(f"Rank correlation (Spearman) between the points' in-sample and out-of-sample {metric} on each window: "
        "near 1, the in-sample ranking carries over; near 0 or below, it is noise.\n")
    add("| window | rank correlation |")
    add("|---:|---:|")
    for window in windows:
        pairs = [rows[(p.index, window.index)] for p in points if (p.index, window.index) in rows]
        rho = spearman([metric_value(r["in_sample"], metric) for r in pairs],
                       [metric_value(r["out_of_sample"], metric) for r in pairs])
        add(f"| {window.index} | {_fmt(rho)} |")
    add("")
    add(f"## Top points by mean in-sample {metric}\n")
    add(f"| point | settings | mean IS {metric} | mean OOS {metric} | mean OOS return | windows chosen |")
    add("|---:|---|---:|---:|---:|---:|")
    chosen_count: dict[int, int] = {}
    for sel in selections:
        chosen_count[sel.point] = chosen_count.get(sel.point, 0) + 1
    table = []
    for p in points:
        own = [rows[(p.index, w.index)] for w in windows if (p.index, w.index) in rows]
        if not own:
            continue
        table.append((float(np.mean([metric_value(r["in_sample"], metric) for r in own])),
                      float(np.mean([metric_value(r["out_of_sample"], metric) for r in own])),
                      float(np.mean([metric_value(r["out_of_sample"], "total_return") for r in own])), p))
    table.sort(key=lambda t: (-t[0], t[3].index))
    for is_m, oos_m, oos_r, p in table[:TOP_POINTS]:
        add(f"| {p.index} | {p.label} | {_fmt(is_m, kind)} | {_fmt(oos_m, kind)} | {_fmt(oos_r, 'pct')} | "
            f"{chosen_count.get(p.index, 0)} |")
    add("")
    if plots:
        add("Plots: " + ", ".join(f"`{name}`" for name in plots) + ". Every row: `sweep.csv`. How to read all "
            "this without fooling yourself: docs/sweep.md.\n")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Plots (matplotlib only here, imported when a sweep writes them)
# --------------------------------------------------------------------------------------------
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_stitched(sessions: list[date], equity: np.ndarray, selections: Sequence[Selection], initial: float,
                  path: Path) -> None:
    plt = _pyplot()
    x = np.array(sessions, dtype="datetime64[D]")
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.plot(x, equity, color="#1f77b4", linewidth=1.2, label="stitched out-of-sample equity")
    ax.axhline(initial, color="grey", linewidth=0.8, linestyle="--")
    for sel in selections:
        ax.axvline(np.datetime64(sel.window.test_start, "D"), color="#bbbbbb", linewidth=0.6)
    ax.set_title("Walk-forward: out-of-sample equity of each window's in-sample choice")
    ax.set_ylabel("Equity ($)")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)


def plot_heatmap(points: Sequence[Point], windows: Sequence[Window], rows: dict[tuple[int, int], dict[str, Any]],
                 metric: str, path: Path) -> None:
    """Two panels (mean in-sample, mean out-of-sample metric) over the two grid parameters, on one colour scale:
    the same colour is the same value in both panels, so the in-sample/out-of-sample gap shows at a glance."""
    plt = _pyplot()
    names = [n for n, _ in points[0].settings]
    xs = list(dict.fromkeys(dict(p.settings)[names[0]] for p in points))
    ys = list(dict.fromkeys(dict(p.settings)[names[1]] for p in points))
    grids = {}
    for phase in ("in_sample", "out_of_sample"):
        grid = grids[phase] = np.full((len(ys), len(xs)), np.nan)
        for p in points:
            s = dict(p.settings)
            values = [metric_value(rows[(p.index, w.index)][phase], metric) for w in windows
                      if (p.index, w.index) in rows]
            finite = [v for v in values if math.isfinite(v)]
            if finite:
                grid[ys.index(s[names[1]]), xs.index(s[names[0]])] = float(np.mean(finite))
    every = np.concatenate([g[np.isfinite(g)] for g in grids.values()])
    low, high = (float(every.min()), float(every.max())) if every.size else (0.0, 1.0)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    for ax, phase, title in ((axes[0], "in_sample", "in sample"), (axes[1], "out_of_sample", "out of sample")):
        grid = grids[phase]
        image = ax.imshow(grid, origin="lower", cmap="viridis", aspect="auto", vmin=low, vmax=high)
        ax.set_xticks(range(len(xs)), xs)
        ax.set_yticks(range(len(ys)), ys)
        ax.set_xlabel(names[0])
        ax.set_ylabel(names[1])
        ax.set_title(f"mean {metric}, {title}")
        for (i, j), value in np.ndenumerate(grid):
            if math.isfinite(value):
                # Dark text on viridis' bright upper part, white on its dark lower part.
                bright = high > low and (value - low) / (high - low) > 0.6
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", color="black" if bright else "white",
                        fontsize="small")
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})
    plt.close(fig)
