"""The report: every file is written and report.md states every required figure."""

from __future__ import annotations

import argparse
import csv
import json
from datetime import date
from pathlib import Path

import pytest

from core.backtest.cli import add_backtest_arguments, load_data, run_backtest_command
from core.backtest.compare import SCENARIOS, Measured, render
from core.backtest.engine import BacktestOptions, run_backtest
from core.backtest.report import TRADE_COLUMNS, compute_metrics
from tests.harness.config import make_config

REQUIRED_FIGURES = (
    "Trades per year", "Open positions, median", "Open positions, max", "Exposure per tier over time",
    "Zero-share skips", "Fractional orders", "Whole-share orders", "Win rate", "CAGR", "Max drawdown",
    "Sharpe", "Turnover", "Alpaca requests per iteration, mean", "Alpaca requests per iteration, max",
)


def test_report_files_and_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    out = tmp_path / "out"
    args = parser.parse_args(["--start", "2023-01-03", "--end", "2024-12-31", "--out", str(out)])
    assert run_backtest_command(args, make_config(tmp_path)) == 0
    printed = capsys.readouterr().out
    assert "Trades" in printed and "report.md" in printed
    for name in ("summary.json", "trades.csv", "equity.png", "exposure.png", "report.md"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (out / "report.md").read_text()
    for figure in REQUIRED_FIGURES:
        assert figure in report, figure
    assert "| 2023 |" in report and "| 2024 |" in report      # per-year tables
    summary = json.loads((out / "summary.json").read_text())
    for key in ("trades_per_year", "positions_median", "positions_max", "win_rate", "cagr", "max_drawdown",
                "sharpe", "turnover_per_year", "zero_share_skips", "fractional_orders", "whole_share_orders",
                "requests_mean", "requests_max"):
        assert key in summary["metrics"], key
    with (out / "trades.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0].keys()) == TRADE_COLUMNS and len(rows) == summary["metrics"]["trades"]
    open_rows = [r for r in rows if not r["exit_date"]]
    assert all(r["exit_price"] == "" and r["exit_reason"] == "" for r in open_rows)
    assert len(open_rows) == summary["metrics"]["open_at_end"]
    # The P&L column adds up to the change in equity (open positions marked at the last close).
    total = sum(float(r["pnl"]) for r in rows)
    assert total == pytest.approx(summary["metrics"]["final_equity"] - 10_000.0, abs=0.01 * len(rows) + 0.01)


def test_metrics_definitions(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    history, options = load_data(BacktestOptions(start=date(2024, 1, 2), end=date(2024, 12, 31),
                                                 show_progress=False), config, None)
    result = run_backtest(history, config, options)
    m = compute_metrics(result)
    closed = [t for t in result.trades if not t.is_open]
    assert m.win_rate == pytest.approx(sum(t.pnl > 0 for t in closed) / len(closed))
    assert m.positions_max == result.open_positions.max()
    assert m.max_drawdown <= 0 and m.requests_steady_state == 2
    assert m.requests_max >= m.requests_mean >= 2
    years = ((result.sessions[-1] - result.sessions[0]).days + 1) / 365.25
    assert m.trades_per_year == pytest.approx(len(result.trades) / years)
    assert m.cagr == pytest.approx((result.final_equity / 10_000.0) ** (1 / years) - 1)


def test_compare_table_states_disagreements(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    history, options = load_data(BacktestOptions(start=date(2025, 1, 2), end=date(2025, 6, 30),
                                                 show_progress=False), config, None)
    result = run_backtest(history, config, options)
    m = compute_metrics(result)
    rows = [Measured(s, frac, m, len(result.sessions)) for s in SCENARIOS for frac in (True, False)]
    text = render(rows, command="trading-daemon backtest --compare-seed", source=history.source)
    assert "| 5 symbols | on | ~35 |" in text and "| 29 symbols + scanner | off | 80-100 |" in text
    assert "DISAGREES" in text or "agrees" in text
