"""`trading-daemon halts` and `trading-daemon halts clear NAME`: read and clear risk halts in the state database.

No broker call: it works while the daemon runs (SQLite WAL; the daemon reads halts afresh on every
decision) and while the network is down. Clearing writes who, when and why into the halt's row and
logs one `halt_cleared` audit event. Clearing `max_drawdown` also resets the equity peak: the next
decision takes the account's equity as the new peak, otherwise the same drawdown would trip it again
at once. A halt the daemon re-detects from the account (equity not positive, cash flows unreadable,
the broker's trading block, today's loss) comes back if its condition still holds.
"""

from __future__ import annotations

import getpass
import os
from dataclasses import dataclass
from pathlib import Path

import structlog

from config.settings import AppConfig
from core.cash_flow_tracker import PEAK_KEY
from core.domain.clock import SystemClock
from core.halt_acknowledgements import acknowledge_cleared, describe_acknowledged
from core.state.database import DB_NAME

log = structlog.get_logger("halts")

RECENT_HALTS = 20


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    code: int       # 0 done, 2 bad argument (an unknown halt)
    text: str       # what to print: stdout when code is 0, else stderr


def operator() -> str:
    """Who runs the command: the OS user (the uid when it has no name)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def render_halts(config: AppConfig) -> str:
    """The active and recently cleared halts, read like `status` reads: read-only, no migration, and on a
    stopped daemon's directory no -wal/-shm file is created (core/state/readonly.py)."""
    from core.state.halts import halt_from_row
    from core.state.readonly import StateReader

    db = Path(config.state_dir) / DB_NAME
    if not db.exists():
        return f"No state database at {db} yet: the daemon has not run with STATE_DIR={config.state_dir}."
    with StateReader(Path(config.state_dir)) as reader:
        halts = [halt_from_row(row) for row in reader.recent_halts(RECENT_HALTS)]
    active = [h for h in halts if h.cleared_at is None]
    cleared = [h for h in halts if h.cleared_at is not None]
    lines = [f"Active halts ({len(active)}):" if active else "Active halts: none (entries are allowed)"]
    for halt in active:
        lines.append(f"  {halt.kind:<20} since {halt.started_at.isoformat()}  {halt.reason}")
    if active:
        lines.append("  Clear one with: trading-daemon halts clear NAME --reason TEXT")
    lines.append("")
    lines.append(f"Recently cleared ({len(cleared)}):" if cleared else "Recently cleared: none")
    for halt in cleared:
        assert halt.cleared_at is not None
        why = f" ({halt.clear_reason})" if halt.clear_reason else ""
        lines.append(f"  {halt.kind:<20} since {halt.started_at.isoformat()}  cleared {halt.cleared_at.isoformat()} "
                     f"by {halt.cleared_by or 'unknown'}{why}  {halt.reason}")
    return "\n".join(lines)


def clear_halt(config: AppConfig, name: str, reason: str, who: str | None = None) -> CommandOutcome:
    from core.state.store import StateStore

    db = Path(config.state_dir) / DB_NAME
    if not db.exists():
        return CommandOutcome(2, f"no active halt named {name!r}: there is no state database at {db}")
    who = who or operator()
    with StateStore(Path(config.state_dir), SystemClock()) as store:
        active = {h.kind: h for h in store.active_halts()}
        halt = active.get(name)
        if halt is None:
            listed = ", ".join(sorted(active)) or "none"
            return CommandOutcome(2, f"no active halt named {name!r}: active halts are: {listed} "
                                     "(see `trading-daemon halts`)")
        acknowledged: list[str] = []
        with store.atomic():
            store.clear_halt(name, by=who, reason=reason)
            if name == "max_drawdown":
                store.set_value(PEAK_KEY, "0")
            acknowledged = acknowledge_cleared(store, name)
        cleared = next(h for h in store.halts(recent=RECENT_HALTS) if h.kind == name and h.cleared_at is not None)
    assert cleared.cleared_at is not None
    log.warning("halt_cleared", kind=name, by=who, reason=reason or None, at=cleared.cleared_at.isoformat(),
                halt_reason=halt.reason, peak_reset=name == "max_drawdown", acknowledged=acknowledged or None)
    text = f"Cleared halt {name} (since {halt.started_at.isoformat()}) by {who}" + (f": {reason}" if reason else "")
    if name == "max_drawdown":
        text += "\nThe equity peak was reset: the next decision takes the account's equity as the new peak."
    if acknowledged:
        text += "\n" + describe_acknowledged(name, acknowledged)
    return CommandOutcome(0, text)
