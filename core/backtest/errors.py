"""Errors the backtest raises on purpose. Each message is meant for the user as is (no traceback)."""

from __future__ import annotations

from core.domain.errors import TradingDaemonError


class BacktestError(TradingDaemonError):
    """Base for every backtest error that the command turns into exit code 2."""


class BacktestDataError(BacktestError):
    """A bars file cannot be used. The message names the file, the row (when there is one) and the problem."""

    def __init__(self, message: str, *, path: str = "", row: int | None = None, problem: str = "") -> None:
        super().__init__(message)
        self.path = path
        self.row = row
        self.problem = problem or message


class BacktestOptionsError(BacktestError):
    """The requested options are inconsistent (dates, symbols, amounts)."""
