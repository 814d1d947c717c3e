"""Backtest engine: a hand-computed three-trade scenario to the cent, no look-ahead, the sizing
invariants on every order of long random runs, and byte-identical reports for the same seed."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from config.settings import AppConfig
from core.backtest.cli import add_backtest_arguments, load_data, run_backtest_command
from core.backtest.data import History, load_history, synthetic_history
from core.backtest.engine import BacktestOptions, BacktestResult, run_backtest
from core.domain.market_calendar import get_market_calendar
from core.domain.models import Side
from tests.harness.config import make_config

CAL = get_market_calendar()

# --------------------------------------------------------------------------------------------
# The hand-computed scenario
# --------------------------------------------------------------------------------------------
# Lookback 5, entry at z <= -1.5, exit at z >= 0, stop 8%, max holding 3 sessions. After a flat
# run (std 0, so no z-score), a single drop gives z = -4/sqrt(5) = -1.789: an entry.
# --bare with --position-notional 1000: shares = floor(1000 / signal close), whole shares.
#
# row: 0..4 = 2024-01-02..08, 5 = 01-09, 6 = 01-10, 7 = 01-11, 8 = 01-12, 9 = 01-16 (01-15 holiday),
#      10 = 01-17, 11 = 01-18, 12 = 01-19, 13 = 01-22, 14 = 01-23, 15 = 01-24
#
# SPY  close 90 at row 5 -> buy floor(1000/90) = 11, fills row 6 at the open 91  (cost 1,001)
#      close 100 at row 7 (z > 0) -> sell, fills row 8 at the open 101 (proceeds 1,111): P&L +110
# QQQ  close 45 at row 6 -> buy floor(1000/45) = 22, fills row 7 at the open 46  (cost 1,012)
#      close 42 at row 8 <= 46 x 0.92 = 42.32 -> stop, fills row 9 at the open 41 (902): P&L -110
# AAPL close 180 at row 10 -> buy floor(1000/180) = 5, fills row 11 at the open 182 (cost 910)
#      row 14 is the 3rd session after the fill session -> max holding, fills row 15 at 190: +40
SPY_CLOSE = [100] * 5 + [90, 92, 100] + [100] * 10
SPY_OPEN = {6: 91, 8: 101}
QQQ_CLOSE = [50] * 6 + [45, 44, 42] + [50] * 9
QQQ_OPEN = {7: 46, 9: 41}
AAPL_CLOSE = [200] * 10 + [180, 181, 183, 184, 185] + [190] * 3
AAPL_OPEN = {11: 182, 15: 190}


def _hand_config(tmp_path: Path) -> AppConfig:
    return make_config(tmp_path, zscore_lookback=5, entry_z=1.5, exit_z=0.0, stop_loss_pct=0.08,
                       max_holding_sessions=3)


def write_hand_csv(path: Path) -> list[date]:
    sessions = CAL.sessions_between(date(2024, 1, 2), date(2024, 1, 31))[: len(SPY_CLOSE)]
    lines = ["Symbol,Timestamp,Open,High,Low,Close,Volume"]
    for symbol, closes, opens in (("SPY", SPY_CLOSE, SPY_OPEN), ("QQQ", QQQ_CLOSE, QQQ_OPEN),
                                  ("AAPL", AAPL_CLOSE, AAPL_OPEN)):
        for row, (day, close) in enumerate(zip(sessions, closes, strict=True)):
            open_ = opens.get(row, close)
            lines.append(f"{symbol},{day},{open_},{max(open_, close)},{min(open_, close)},{close},1000")
    path.write_text("\n".join(lines) + "\n")
    return sessions


def _hand_run(tmp_path: Path, **over: Any) -> tuple[BacktestResult, list[date]]:
    csv = tmp_path / "bars.csv"
    sessions = write_hand_csv(csv)
    config = _hand_config(tmp_path)
    history = load_history(csv, config.symbols)
    options = BacktestOptions(symbols=("SPY", "QQQ", "AAPL"), initial_cash=10_000.0, bare=True,
                              position_notional=1_000.0, show_progress=False, **over)
    return run_backtest(history, config, options), sessions


def test_three_trades_to_the_cent(tmp_path: Path) -> None:
    result, s = _hand_run(tmp_path)
    trades = [(t.symbol, t.entry_date, t.entry_price, t.exit_date, t.exit_price, t.shares, round(t.pnl, 2),
               t.exit_reason) for t in result.trades]
    assert trades == [
        ("SPY", s[6], 91.0, s[8], 101.0, 11.0, 110.00, "exit_mean_reverted"),
        ("QQQ", s[7], 46.0, s[9], 41.0, 22.0, -110.00, "exit_stop_loss"),
        ("AAPL", s[11], 182.0, s[15], 190.0, 5.0, 40.00, "exit_max_holding"),
    ]
    cash = {day: round(float(c), 2) for day, c in zip(result.sessions, result.cash, strict=True)}
    assert cash[s[5]] == 10_000.00                     # signal on row 5, nothing filled yet
    assert cash[s[6]] == 10_000.00 - 1_001.00          # SPY bought at the open of row 6
    assert cash[s[7]] == 8_999.00 - 1_012.00           # QQQ bought
    assert cash[s[8]] == 7_987.00 + 1_111.00           # SPY sold
    assert cash[s[9]] == 9_098.00 + 902.00             # QQQ stopped out
    assert cash[s[11]] == 10_000.00 - 910.00           # AAPL bought
    assert cash[s[15]] == 9_090.00 + 950.00            # AAPL sold
    positions = dict(zip(result.sessions, result.open_positions.tolist(), strict=True))
    assert [positions[s[i]] for i in range(5, 16)] == [0, 1, 2, 1, 0, 0, 1, 1, 1, 1, 0]
    # Equity marks held shares at the close: row 7 = cash 7,987 + 11 x 100 (SPY) + 22 x 44 (QQQ).
    equity = dict(zip(result.sessions, result.equity.tolist(), strict=True))
    assert round(equity[s[7]], 2) == 7_987.00 + 1_100.00 + 968.00
    assert round(result.final_equity, 2) == 10_040.00
    assert result.min_cash == pytest.approx(7_987.00)


def test_three_trades_with_commission_and_slippage(tmp_path: Path) -> None:
    # $1 per order and 10 bps against the trader: buys at open x 1.001, sells at open x 0.999.
    result, s = _hand_run(tmp_path, commission=1.0, slippage_bps=10.0)
    got = [(t.symbol, round(t.entry_price, 4), round(t.exit_price or 0.0, 4), t.shares, round(t.pnl, 2))
           for t in result.trades]
    assert got == [
        # 11 x (100.899 - 91.091) - 2 = 105.888
        ("SPY", 91.091, 100.899, 11.0, 105.89),
        # 22 x (40.959 - 46.046) - 2 = -113.914 (stop judged against the fill price 46.046)
        ("QQQ", 46.046, 40.959, 22.0, -113.91),
        # 5 x (189.81 - 182.182) - 2 = 36.14
        ("AAPL", 182.182, 189.81, 5.0, 36.14),
    ]
    cash = {day: float(c) for day, c in zip(result.sessions, result.cash, strict=True)}
    assert cash[s[6]] == pytest.approx(10_000.0 - 11 * 91.091 - 1.0, abs=0.005)
    assert round(result.final_equity, 2) == round(10_000.0 + 105.888 - 113.914 + 36.14, 2) == 10_028.11
    assert sum(f.commission for f in result.fills) == pytest.approx(6.0)


def test_a_tripped_kill_switch_is_reported_with_its_first_session_and_reason(tmp_path: Path) -> None:
    """Equity peaks at 10,055 on row 7 (cash 7,987 + SPY 1,100 + QQQ 968); after the QQQ stop-loss it is 10,000,
    a drawdown of 0.55 %: with a 0.5 % kill switch the AAPL entry signalled on row 10 is halted."""
    from core.backtest.report import halts_text

    csv = tmp_path / "bars.csv"
    s = write_hand_csv(csv)
    config = make_config(tmp_path, zscore_lookback=5, entry_z=1.5, exit_z=0.0, stop_loss_pct=0.08,
                         max_holding_sessions=3, max_drawdown_pct=0.005, use_scanner=False)
    options = BacktestOptions(symbols=("SPY", "QQQ", "AAPL"), initial_cash=10_000.0, position_notional=1_000.0,
                              show_progress=False)
    result = run_backtest(load_history(csv, config.symbols), config, options)
    assert [t.symbol for t in result.trades] == ["SPY", "QQQ"]          # AAPL never entered
    assert result.first_halt is not None and result.first_halt[0] == s[10]
    assert result.first_halt[1] == "max_drawdown: drawdown 0.55% from peak 10,055.00 reached the 0.50% kill switch"
    assert result.halted_sessions >= 1 and result.last_halted_session is not None
    assert halts_text(result) == (f"{result.halted_sessions}, {s[10]} .. {result.last_halted_session}; the first: "
                                  f"{result.first_halt[1]}")
    unhalted, _ = _hand_run(tmp_path)
    assert unhalted.first_halt is None and halts_text(unhalted) == "0"


def test_fill_at_close_fills_on_the_signal_session(tmp_path: Path) -> None:
    result, s = _hand_run(tmp_path, fill_at="close")
    first = result.trades[0]
    assert (first.symbol, first.entry_date, first.entry_price, first.shares) == ("SPY", s[5], 90.0, 11.0)
    assert first.exit_date == s[7] and first.exit_price == 100.0


def test_open_position_at_the_end_has_an_empty_exit(tmp_path: Path) -> None:
    csv = tmp_path / "bars.csv"
    s = write_hand_csv(csv)
    config = _hand_config(tmp_path)
    history = load_history(csv, config.symbols)
    options = BacktestOptions(symbols=("SPY", "QQQ", "AAPL"), initial_cash=10_000.0, bare=True,
                              position_notional=1_000.0, show_progress=False, end=s[12])
    result = run_backtest(history, config, options)
    aapl = result.trades[-1]
    assert aapl.symbol == "AAPL" and aapl.is_open and aapl.exit_price is None and aapl.exit_reason == ""
    assert aapl.pnl == pytest.approx(5 * (183 - 182))          # unrealised at the last close
    assert result.final_equity == pytest.approx(10_000.0 + 5 * (183 - 182))


# --------------------------------------------------------------------------------------------
# No look-ahead
# --------------------------------------------------------------------------------------------
def _replace_after(history: History, row: int, other: History) -> History:
    arrays = {}
    for name in ("open", "high", "low", "close", "volume"):
        mine = getattr(history, name).copy()
        mine[row + 1:] = getattr(other, name)[row + 1:]
        arrays[name] = mine
    return History(history.sessions, history.symbols, source=history.source, **arrays)


def _decisions(result: BacktestResult, until: date) -> list[tuple[Any, ...]]:
    return [(o.session, o.symbol, o.side, o.reason, o.qty, o.notional) for o in result.orders if o.session <= until]


@pytest.mark.parametrize("scanner", [True, False])
def test_changing_future_bars_changes_no_past_decision(tmp_path: Path, scanner: bool) -> None:
    config = make_config(tmp_path)
    start, end = date(2022, 1, 3), date(2023, 12, 29)
    first = CAL.sessions_back(start, 60)
    base = synthetic_history(config.symbols, first, end, seed=7)
    other = synthetic_history(config.symbols, first, end, seed=8)
    options = BacktestOptions(start=start, end=end, use_scanner=scanner, show_progress=False)
    reference = run_backtest(base, config, options)
    for cut in (CAL.sessions_back(date(2022, 9, 30), 0), date(2023, 5, 31)):
        row = base.sessions.index(cut)
        changed = run_backtest(_replace_after(base, row, other), config, options)
        assert _decisions(changed, cut) == _decisions(reference, cut)
        k = reference.sessions.index(cut)
        np.testing.assert_array_equal(changed.equity[: k + 1], reference.equity[: k + 1])
        assert _decisions(changed, end) != _decisions(reference, end)  # the future did change


# --------------------------------------------------------------------------------------------
# Sizing invariants on every order of long random runs
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("seed", "fractional"), [(3, True), (3, False), (11, True), (11, False)])
def test_tier_cap_and_minimum_notional_hold_on_every_order(tmp_path: Path, seed: int, fractional: bool) -> None:
    config = make_config(tmp_path, sim_seed=seed)
    options = BacktestOptions(fractional=fractional, use_scanner=False, show_progress=False,
                              start=date(2018, 1, 2), end=date(2025, 12, 31))
    history, options = load_data(options, config, None)
    result = run_backtest(history, config, options)
    buys = [o for o in result.orders if o.side is Side.BUY]
    assert len(buys) > 500
    allocations = config.tier_allocations
    for order in buys:
        assert order.tier is not None
        value = order.notional if order.notional is not None else (order.qty or 0.0) * order.price
        cap = order.equity * allocations[order.tier] * 0.20
        assert value <= cap + 1e-6, order
        assert value >= config.min_order_notional - 1e-9, order
        if not fractional:
            assert order.notional is None and float(order.qty or 0).is_integer(), order
    if fractional:
        assert result.counts["fractional_orders"] > 0
    else:
        assert result.counts["fractional_orders"] == 0


# --------------------------------------------------------------------------------------------
# Same seed, same bytes
# --------------------------------------------------------------------------------------------
def _run_cli(tmp_path: Path, out: Path, *extra: str) -> int:
    parser = argparse.ArgumentParser()
    add_backtest_arguments(parser)
    args = parser.parse_args(["--start", "2024-01-02", "--end", "2025-06-30", "--seed", "5", "--out", str(out),
                              *extra])
    return run_backtest_command(args, make_config(tmp_path))


def test_same_seed_gives_byte_identical_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_cli(tmp_path, tmp_path / "a") == 0
    assert _run_cli(tmp_path, tmp_path / "b") == 0
    for name in ("summary.json", "trades.csv"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert _run_cli(tmp_path, tmp_path / "c", "--seed", "6") == 0
    assert (tmp_path / "c" / "trades.csv").read_bytes() != (tmp_path / "a" / "trades.csv").read_bytes()
    capsys.readouterr()


def test_symbol_paths_do_not_depend_on_the_other_symbols() -> None:
    wide = synthetic_history(["SPY", "QQQ", "AAPL"], date(2024, 1, 2), date(2024, 6, 28), seed=1)
    narrow = synthetic_history(["AAPL"], date(2024, 3, 1), date(2024, 6, 28), seed=1)
    np.testing.assert_array_equal(wide.between(date(2024, 3, 1), date(2024, 6, 28)).close[:, 2], narrow.close[:, 0])


def test_bare_mode_turns_the_protections_off(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    options = BacktestOptions(bare=True, start=date(2024, 1, 2), end=date(2024, 12, 31), show_progress=False)
    history, options = load_data(options, config, None)
    result = run_backtest(history, config, options)
    spec = result.spec
    assert (spec.use_scanner, spec.fractional, spec.bare) == (False, False, True)
    assert result.counts["fractional_orders"] == 0 and result.counts["whole_share_orders"] > 0
    assert all(o.tier is None for o in result.orders if o.side is Side.BUY)
    full = run_backtest(history, config, replace(options, bare=False))
    assert full.spec.use_scanner and full.spec.fractional
