"""Exits held back by something only the owner can remove: told once per symbol and session.

The RiskAgent (pure) refuses an exit while an open buy order that is not the daemon's sits in the
symbol (the broker would refuse the sale as a potential wash trade), and marks the refusal with
`meta["foreign_open_buy"]`. The refusal comes back at every iteration until the order is gone; the
owner is told once per symbol and session: one warning line and an `ExitBlocked` event (notified).
No requests.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

import structlog

from core.domain.models import Rejection
from core.events import EventSink, ExitBlocked

log = structlog.get_logger("exit_blockers")

FOREIGN_OPEN_BUY = "foreign_open_buy"


class ExitBlockerWatch:
    def __init__(self, events: EventSink) -> None:
        self.events = events
        self._told: set[tuple[str, date]] = set()

    def observe(self, rejections: Iterable[Rejection], session: date, now: datetime) -> None:
        self._told = {key for key in self._told if key[1] == session}
        for rejection in rejections:
            blocker = rejection.meta.get(FOREIGN_OPEN_BUY)
            if blocker is None or (rejection.symbol, session) in self._told:
                continue
            self._told.add((rejection.symbol, session))
            log.warning("exit_blocked_by_foreign_order", symbol=rejection.symbol, order=blocker,
                        reason=rejection.reason, effect="the exit is retried at every iteration; told once a session")
            self.events.emit(ExitBlocked(at=now, symbol=rejection.symbol, reason=rejection.reason, session=session))
