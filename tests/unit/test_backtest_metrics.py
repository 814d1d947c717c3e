"""The trader's figures on a history and trade list worked out by hand, and the split warning.

Six sessions (2024-01-29 .. 2024-02-05, so January and February), initial cash 1,000:

    equity     1000  1010  990 | 1020  1050  1029        (| = month end after 2024-01-31)
    positions     1     1    0 |    2     1     0
    SPY close   100   102  101 |  NaN   104    99        (NaN: no bar, the last close carries)

Trades, in the order they close (exit date, entry date, symbol):
    AAPL  +30  exit_mean_reverted  holding 2   (exit 01-30)
    MSFT  -10  exit_stop_loss      holding 1   (exit 01-31)
    AAPL  -20  exit_stop_loss      holding 3   (exit 02-01)
    QQQ     0  exit_max_holding    holding 4   (exit 02-01, entered after the AAPL trade)
    MSFT  -5   exit_max_holding    holding 2   (exit 02-02)
    SPY   -15  exit_stop_loss      holding 1   (exit 02-05)
    QQQ    +8  open at the end                  (unrealised)

By hand:
    wins 1 (30), losses 4 (-10, -20, -5, -15), one at 0
    profit factor 30 / 50 = 0.6; average win 30; average loss -50 / 4 = -12.5
    expectancy (30 - 10 - 20 + 0 - 5 - 15) / 6 = -20 / 6 = -3.333...
    losing streak: -10, -20 | 0 breaks it | -5, -15 -> 2
    time in market: 4 of 6 sessions = 2/3
    monthly: January 990 / 1000 - 1 = -1 %; February 1029 / 990 - 1 = 3.9393...%; 2024 = 1029/1000 - 1
    benchmark: 1000 x close / 100 with the NaN carried: 1000, 1020, 1010, 1010, 1040, 990
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from core.backtest.adjustment import suspect_splits, unadjusted_warnings
from core.backtest.data import History
from core.backtest.engine import BacktestResult, RunSpec, Trade
from core.backtest.metrics import buy_and_hold, curve_stats, monthly_returns, trade_stats
from core.backtest.report import (
    by_exit_reason,
    by_symbol,
    compute_metrics,
    report_markdown,
    result_trade_stats,
    summary_dict,
)

SESSIONS = [date(2024, 1, 29), date(2024, 1, 30), date(2024, 1, 31), date(2024, 2, 1), date(2024, 2, 2),
            date(2024, 2, 5)]
EQUITY = np.array([1000.0, 1010.0, 990.0, 1020.0, 1050.0, 1029.0])
POSITIONS = np.array([1, 1, 0, 2, 1, 0])
SPY = np.array([100.0, 102.0, 101.0, np.nan, 104.0, 99.0])


def _trade(symbol: str, entry: date, exit_: date | None, pnl: float, reason: str, holding: int) -> Trade:
    return Trade(symbol=symbol, entry_date=entry, entry_price=10.0, shares=1.0, tier=None, fractional=False,
                 entry_commission=0.0, exit_date=exit_, exit_price=None if exit_ is None else 10.0,
                 exit_reason=reason, pnl=pnl, holding_sessions=holding)


def hand_result() -> BacktestResult:
    d = SESSIONS
    trades = [  # the engine's order: by entry date, then symbol
        _trade("AAPL", d[0], d[1], 30.0, "exit_mean_reverted", 2),
        _trade("MSFT", d[0], d[2], -10.0, "exit_stop_loss", 1),
        _trade("AAPL", d[1], d[3], -20.0, "exit_stop_loss", 3),
        _trade("QQQ", d[2], d[3], 0.0, "exit_max_holding", 4),
        _trade("MSFT", d[2], d[4], -5.0, "exit_max_holding", 2),
        _trade("SPY", d[3], d[5], -15.0, "exit_stop_loss", 1),
        _trade("QQQ", d[4], None, 8.0, "", 1),
    ]
    spec = RunSpec(start=d[0], end=d[-1], symbols=("SPY", "QQQ", "AAPL", "MSFT"), initial_cash=1000.0,
                   use_scanner=False, fractional=False, bare=True, position_notional=None, commission=0.0,
                   commission_bps=0.0, slippage_bps=0.0, fill_at="next_open", seed=42, symbol_tiers={})
    zeros = np.zeros(len(d))
    return BacktestResult(
        spec=spec, source="hand", sessions=list(d), equity=EQUITY.copy(), cash=EQUITY.copy(), open_positions=POSITIONS,
        exposure={t: zeros for t in ("TIER1", "TIER2", "TIER3", "UNTIERED")}, trades=trades, orders=[], fills=[],
        requests=[2] * len(d), request_totals={}, counts=Counter(), rejection_kinds=Counter(), halted_sessions=0,
        min_cash=990.0, benchmark_closes=SPY.copy())


def test_trade_figures_by_hand() -> None:
    stats = result_trade_stats(hand_result())
    assert (stats.closed, stats.wins, stats.losses) == (6, 1, 4)
    assert stats.gross_profit == 30.0 and stats.gross_loss == -50.0
    assert stats.profit_factor == pytest.approx(0.6, abs=1e-12)
    assert stats.average_win == 30.0 and stats.average_loss == -12.5
    assert stats.expectancy == pytest.approx(-20.0 / 6, abs=1e-12)
    assert stats.longest_losing_streak == 2


def test_streak_follows_exit_order_not_entry_order() -> None:
    # Entry order would read -10, +30, -20: exit order reads +30, -10, -20 -> streak 2.
    assert trade_stats([30.0, -10.0, -20.0]).longest_losing_streak == 2
    assert trade_stats([-10.0, 30.0, -20.0]).longest_losing_streak == 1
    none = trade_stats([5.0, 7.0])
    assert none.profit_factor is None and none.average_loss is None and none.longest_losing_streak == 0
    assert trade_stats([]).expectancy is None


def test_summary_and_report_hold_the_hand_figures() -> None:
    result = hand_result()
    summary = json.loads(json.dumps(summary_dict(result, compute_metrics(result))))
    figures = summary["trade_figures"]
    assert figures == {"closed_trades": 6, "wins": 1, "losses": 4, "gross_profit": 30.0, "gross_loss": -50.0,
                       "profit_factor": 0.6, "average_win": 30.0, "average_loss": -12.5, "expectancy": -3.33,
                       "longest_losing_streak": 2, "time_in_market": 0.666667}
    assert summary["monthly_returns"] == [{"year": 2024, "month": 1, "return": -0.01},
                                          {"year": 2024, "month": 2, "return": 0.039394}]
    bench = summary["benchmark"]
    assert bench["symbol"] == "SPY" and bench["final_equity"] == 990.0 and bench["total_return"] == -0.01
    # Benchmark drawdown: peak 1040 on 02-02, then 990: 990/1040 - 1.
    assert bench["max_drawdown"] == round(990 / 1040 - 1, 6)
    reasons = {g["key"]: g for g in summary["by_exit_reason"]}
    assert reasons["exit_stop_loss"] == {"key": "exit_stop_loss", "trades": 3, "wins": 0, "pnl": -45.0,
                                         "average_pnl": -15.0, "average_holding_sessions": 1.67}
    assert reasons["exit_max_holding"]["pnl"] == -5.0 and reasons["exit_max_holding"]["trades"] == 2
    assert reasons["open at the end"]["pnl"] == 8.0
    assert [g["key"] for g in summary["by_exit_reason"]] == ["exit_mean_reverted", "open at the end",
                                                             "exit_max_holding", "exit_stop_loss"]
    symbols = {g["key"]: (g["trades"], g["wins"], g["pnl"]) for g in summary["by_symbol"]}
    assert symbols == {"AAPL": (2, 1, 10.0), "QQQ": (2, 1, 8.0), "MSFT": (2, 0, -15.0), "SPY": (1, 0, -15.0)}
    text = report_markdown(result, compute_metrics(result))
    assert "| Profit factor (gross profit / gross loss) | 0.60 |" in text
    assert "| Average win / average loss | $30.00 / -$12.50 |" in text
    assert "| Expectancy per closed trade | -$3.33 |" in text
    assert "| Longest losing streak (closed trades) | 2 |" in text
    assert "| Time in market (sessions with a position) | 66.7% |" in text
    assert "| Benchmark: SPY buy and hold, total return | -1.00% |" in text
    assert "| 2024 | -1.0% | 3.9% |" in text and "| 2.9% |" in text      # year = 1029 / 1000 - 1
    assert "| exit_stop_loss | 3 | 0 | 0.0% | -$45.00 | -$15.00 | 1.7 |" in text
    assert "| AAPL | 2 | 1 | 50.0% | $10.00 | $5.00 | 2.5 |" in text


def test_pure_curve_functions_by_hand() -> None:
    bench = buy_and_hold(SPY, 1000.0)
    assert bench is not None and bench.tolist() == [1000.0, 1020.0, 1010.0, 1010.0, 1040.0, 990.0]
    assert buy_and_hold(np.array([np.nan, 5.0]), 1000.0) is None
    assert monthly_returns(SESSIONS, EQUITY, 1000.0) == [(2024, 1, 990 / 1000 - 1), (2024, 2, 1029 / 990 - 1)]
    stats = curve_stats(SESSIONS, EQUITY, 1000.0)
    assert stats.total_return == pytest.approx(0.029) and stats.max_drawdown == pytest.approx(1029 / 1050 - 1)  # deeper than 990 / 1010 - 1


def test_by_groups_cover_every_trade() -> None:
    result = hand_result()
    assert sum(g.trades for g in by_exit_reason(result)) == len(result.trades)
    assert sum(g.pnl for g in by_symbol(result)) == pytest.approx(sum(t.pnl for t in result.trades))


# ------------------------------------------------------------------------------------------------
# Unadjusted bars
# ------------------------------------------------------------------------------------------------
def _history(closes: dict[str, list[float]]) -> History:
    sessions = SESSIONS[: len(next(iter(closes.values())))]
    matrix = np.array(list(closes.values()), dtype=float).T
    return History(sessions, list(closes), matrix, matrix, matrix, matrix, np.ones_like(matrix), "bars.csv")


def test_split_like_moves_are_named() -> None:
    history = _history({
        "AAPL": [400.0, 404.0, 101.5, 102.0, 103.0, 101.0],       # 4-for-1 on 01-31 (x0.2512)
        "MSFT": [10.0, 10.2, np.nan, 102.0, 100.0, 96.0],         # 1-for-10 reverse across a gap (x10)
        "SPY": [100.0, 97.0, 99.0, 96.0, 100.0, 101.0],           # ordinary moves
    })
    suspects = suspect_splits(history)
    assert [(s.symbol, s.session, s.ratio) for s in suspects] == [
        ("AAPL", date(2024, 1, 31), 4.0), ("MSFT", date(2024, 2, 1), 0.1)]
    assert suspects[0].label == "4-for-1 split" and suspects[1].label == "1-for-10 reverse split"
    lines = unadjusted_warnings(history, "bars.csv")
    assert len(lines) == 2
    assert lines[0].startswith("warning: bars.csv: AAPL on 2024-01-31 closed at 101.5 after 404")
    assert "4-for-1 split" in lines[0] and "adjustment=all" in lines[0]
    # Outside the tolerance (x0.44 is not within 5 % of 0.5) nothing is named.
    assert suspect_splits(_history({"AAPL": [100.0, 44.0]})) == []


def test_backtest_warns_and_states_the_period_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from core.backtest.cli import add_backtest_arguments, run_backtest_command
    from core.domain.market_calendar import get_market_calendar
    from tests.harness.config import make_config

    sessions = get_market_calendar().sessions_between(date(2012, 1, 3), date(2024, 6, 28))
    closes = 100.0 * (1.0 + 0.01 * np.sin(np.arange(len(sessions)) / 5.0))
    split_at = sessions.index(date(2020, 8, 31))
    closes[split_at:] /= 4.0
    rows = ["symbol,timestamp,open,high,low,close"]
    rows += [f"SPY,{d},{c},{c},{c},{c}" for d, c in zip(sessions, closes, strict=True)]
    path = tmp_path / "bars.csv"
    path.write_text("\n".join(rows) + "\n")
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    args = parser.parse_args(["--data", str(path), "--out", str(tmp_path / "out")])
    assert run_backtest_command(args, make_config(tmp_path)) == 0
    captured = capsys.readouterr()
    first = captured.out.splitlines()[0]
    assert first.startswith("Period 2014-06-30 .. 2024-06-28 (start: default, ten years before the end; "
                            "end: default, the last bar); the data holds 2012-01-03 .. 2024-06-28")
    assert "--start 2012-01-03 uses them all" in first
    assert f"warning: {path}: SPY on 2020-08-31" in captured.err and "4-for-1 split" in captured.err
