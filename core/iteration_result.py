"""What one loop iteration did: the orchestrator fills it in, the loop's observers (events, the status
page) and the tests read it. Its own module so that readers need not import the orchestrator."""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.execution_agent import ExecutionReport
from core.domain.models import Rejection


@dataclass
class IterationResult:
    number: int
    focus: list[str]
    market_open: bool
    requests: dict[str, int]
    signals: int = 0
    submitted: int = 0
    rejected: int = 0
    dry_run: int = 0
    duration_s: float = 0.0
    cpu_s: float = 0.0
    excluded: dict[str, str] = field(default_factory=dict)
    halts: list[str] = field(default_factory=list)
    risk_rejections: list[Rejection] = field(default_factory=list)
    execution: ExecutionReport | None = None
