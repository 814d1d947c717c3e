"""The one error a strategy problem raises: a bad reference, a class that is not a strategy, a bad
parameter or a strategy whose output breaks the contract. It is a configuration error (exit code 2)."""

from __future__ import annotations

from config.settings import ConfigError


class StrategyError(ConfigError):
    """A strategy could not be loaded or used. The message names the value and what was expected."""
