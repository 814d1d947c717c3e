"""What clearing a halt by hand acknowledges, so that the clear sticks.

Some halts are found again from the broker at every start or decision. Clearing one by hand
(`trading-daemon halts clear NAME`) records what the owner looked at, in the state database, so the
same evidence no longer trips it:

- `another_instance`: the instance ids the halt named (their orders up to now no longer count;
  core/instance_guard.py);
- `cash_flows_unknown`: the ids of the unreadable account activities the halt named (each is then
  treated as no cash flow; core/cash_flow_tracker.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.cash_flow_tracker import acknowledge_unreadable
from core.instance_guard import HALT_KIND as ANOTHER_INSTANCE
from core.instance_guard import acknowledge_seen

CASH_FLOWS_UNKNOWN = "cash_flows_unknown"


def acknowledge_cleared(store: Any, kind: str, now: datetime | None = None) -> list[str]:
    """Record what clearing the halt `kind` acknowledges; returns the ids acknowledged (maybe none)."""
    now = now or datetime.now(UTC)
    if kind == ANOTHER_INSTANCE:
        return acknowledge_seen(store, now)
    if kind == CASH_FLOWS_UNKNOWN:
        return acknowledge_unreadable(store)
    return []


def describe_acknowledged(kind: str, ids: list[str]) -> str:
    if kind == ANOTHER_INSTANCE:
        return (f"Acknowledged instance(s) {', '.join(ids)}: their orders placed until now no longer halt "
                "this daemon; a new order of theirs would halt it again.")
    return (f"Acknowledged account activit{'y' if len(ids) == 1 else 'ies'} {', '.join(ids)}: treated as no cash "
            "flow from now on.")
