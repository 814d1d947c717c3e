"""Backtest: the daemon's own agents over daily bars with an in-process broker. See docs/backtest.md.

The names below load on first use (PEP 562): importing one module of the package, such as the
argument modules the command line builds its parser from, does not import the engine, numpy or pandas.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.backtest.broker import BacktestBroker, CostModel
    from core.backtest.data import History, load_history, synthetic_history
    from core.backtest.engine import BacktestOptions, BacktestResult, RunSpec, run_backtest
    from core.backtest.errors import BacktestDataError, BacktestError, BacktestOptionsError
    from core.domain.models import Fill

_HOMES = {
    "BacktestBroker": "core.backtest.broker", "CostModel": "core.backtest.broker", "Fill": "core.domain.models",
    "History": "core.backtest.data", "load_history": "core.backtest.data", "synthetic_history": "core.backtest.data",
    "BacktestOptions": "core.backtest.engine", "BacktestResult": "core.backtest.engine",
    "RunSpec": "core.backtest.engine", "run_backtest": "core.backtest.engine",
    "BacktestDataError": "core.backtest.errors", "BacktestError": "core.backtest.errors",
    "BacktestOptionsError": "core.backtest.errors",
}

__all__ = [
    "BacktestBroker", "BacktestDataError", "BacktestError", "BacktestOptions", "BacktestOptionsError",
    "BacktestResult", "CostModel", "Fill", "History", "RunSpec", "load_history", "run_backtest",
    "synthetic_history",
]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value
    return value
