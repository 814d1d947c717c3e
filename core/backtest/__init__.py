"""Backtest: the daemon's own agents over daily bars with an in-process broker. See docs/backtest.md."""

from core.backtest.broker import BacktestBroker, CostModel, Fill
from core.backtest.data import History, load_history, synthetic_history
from core.backtest.engine import BacktestOptions, BacktestResult, RunSpec, run_backtest
from core.backtest.errors import BacktestDataError, BacktestError, BacktestOptionsError

__all__ = [
    "BacktestBroker", "BacktestDataError", "BacktestError", "BacktestOptions", "BacktestOptionsError",
    "BacktestResult", "CostModel", "Fill", "History", "RunSpec", "load_history", "run_backtest",
    "synthetic_history",
]
