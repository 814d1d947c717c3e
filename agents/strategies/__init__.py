"""Trading rules as plug-ins of the SignalAgent. Write your own: docs/strategies.md."""

from agents.strategies.base import HeldPosition, Indicators, Parameters, RiskExit, Strategy
from agents.strategies.errors import StrategyError
from core.domain.bar_panel import BarPanel
from core.domain.models import SignalReason

__all__ = ["BarPanel", "HeldPosition", "Indicators", "Parameters", "RiskExit", "SignalReason", "Strategy",
           "StrategyError"]
