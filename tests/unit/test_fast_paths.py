"""Each faster way of computing something gives exactly what the plain way gives (bit for bit), and the
backtest leaves the process as it found it. Benchmarks measure the speed; these tests pin the answers."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
import structlog

import agents.execution_agent as execution_agent
import agents.risk_agent as risk_agent
from config.settings import get_config
from core.backtest.data import History, synthetic_history
from core.backtest.engine import HOT_LOGGERS, BacktestOptions, quiet_logs, run_backtest
from core.domain.indicators import rolling_zscore, rolling_zscore_windows
from core.domain.market_calendar import get_market_calendar
from core.sim.bars import SyntheticBars

CAL = get_market_calendar()


@pytest.mark.parametrize("lookback", [2, 5, 8, 20, 63, 129, 300])
@pytest.mark.parametrize("symbols", [1, 2, 29])
def test_the_streamed_zscore_is_numpys_window_reduction_bit_for_bit_whatever_the_memory_layout(
        lookback: int, symbols: int) -> None:
    rng = np.random.default_rng(lookback * 100 + symbols)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.02, (700, symbols)), axis=0))
    missing = rng.random(closes.shape) < 0.01
    missing[:, 0] = False
    closes[missing] = np.nan                                   # missing bars (not in the first column)
    if symbols > 2:
        closes[:, 1] = 42.0                                    # a flat column: zero variance, no z
    reference = rolling_zscore_windows(np.asfortranarray(closes), lookback)   # the backtest's panel layout
    for layout in (np.asfortranarray(closes), np.ascontiguousarray(closes)):
        assert np.array_equal(rolling_zscore(layout, lookback), reference, equal_nan=True)
    assert np.array_equal(rolling_zscore(closes[:, 0], lookback), reference[:, 0], equal_nan=True)
    assert np.isnan(reference[: lookback - 1]).all() and np.isfinite(reference[lookback:, 0]).any()


def test_the_matrix_of_synthetic_bars_is_each_symbols_own_window() -> None:
    sessions = CAL.sessions_between(date(2019, 12, 2), date(2021, 3, 31))   # several cached blocks
    symbols = ["SPY", "AAPL"] + [f"S{i:03d}" for i in range(140)]             # more than one batch
    matrix = SyntheticBars(11, CAL).matrix(symbols, sessions)
    plain = SyntheticBars(11, CAL)
    lo = plain.index_of(sessions[0])
    for j, block in enumerate(plain.windows(symbols, lo, lo + len(sessions))):
        for name in ("open", "high", "low", "close", "volume", "trade_count", "vwap"):
            assert np.array_equal(matrix[name][:, j], getattr(block, name).astype(float)), (symbols[j], name)


def test_selecting_consecutive_symbols_shares_the_bars_and_any_other_order_copies_them() -> None:
    history = synthetic_history(["SPY", "QQQ", "AAPL"], date(2024, 1, 2), date(2024, 3, 28), 3, calendar=CAL)
    first_two = history.select(["SPY", "QQQ"])
    assert np.shares_memory(first_two.close, history.close)
    assert np.array_equal(first_two.close, history.close[:, :2])
    shuffled = history.select(["AAPL", "SPY"])
    assert not np.shares_memory(shuffled.close, history.close)
    assert np.array_equal(shuffled.close, history.close[:, [2, 0]])


def test_a_backtest_restores_the_agents_loggers_and_the_log_configuration() -> None:
    before = structlog.get_config()
    proxies = (risk_agent.log, execution_agent.log)
    assert set(HOT_LOGGERS) >= {"agents.risk_agent", "agents.execution_agent"}
    with quiet_logs():
        assert risk_agent.log is not proxies[0] and execution_agent.log is not proxies[1]
        assert execution_agent.log.info("dropped") is None      # filtered: below ERROR
    assert (risk_agent.log, execution_agent.log) == proxies
    config = get_config(env_file=None)
    history = synthetic_history(["SPY", "QQQ", "AAPL"], date(2023, 10, 2), date(2024, 6, 28), 42, calendar=CAL)
    result = run_backtest(history, config, BacktestOptions(start=date(2024, 1, 2), symbols=("SPY", "QQQ", "AAPL"),
                                                                 show_progress=False), calendar=CAL)
    assert result.orders  # it traded, through the agents whose loggers were swapped
    assert (risk_agent.log, execution_agent.log) == proxies and structlog.get_config() == before


def test_one_backtest_history_keeps_its_bars_unchanged_by_a_run() -> None:
    config = get_config(env_file=None)
    history = synthetic_history(["SPY", "QQQ", "AAPL"], date(2023, 10, 2), date(2024, 6, 28), 42, calendar=CAL)
    copies = {name: getattr(history, name).copy() for name in ("open", "high", "low", "close", "volume")}
    options = BacktestOptions(start=date(2024, 1, 2), symbols=("SPY", "QQQ", "AAPL"), show_progress=False)
    first = run_backtest(history, config, options, calendar=CAL)
    second = run_backtest(history, config, options, calendar=CAL)      # the run shares the bars (views)
    for name, copy in copies.items():
        assert np.array_equal(getattr(history, name), copy, equal_nan=True)
    assert [(t.symbol, t.entry_date, t.exit_date, t.pnl) for t in first.trades] == \
        [(t.symbol, t.entry_date, t.exit_date, t.pnl) for t in second.trades]
    assert isinstance(history, History)
