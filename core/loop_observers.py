"""Turn state the loop already has into events and log lines, at each change only.

- `MarketStateAnnouncer`: one log line when the market closes ("market closed; waiting until ...")
  and one when it opens, instead of silence (or a line per sleep step) through the night.
- `HaltWatcher`: compares the active halts in the state database with the previous look, so a
  halt tripped by risk, expired with its session or cleared by hand (another process, through the
  same database) is announced once, wherever it came from.

Both read only what the loop has in hand or in its own database: no broker request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING

import structlog

from core.domain.market_calendar import new_york_time
from core.domain.models import AccountView, BrokerOrder, PositionView
from core.events import (
    AccountObserved,
    EventSink,
    HaltCleared,
    HaltTripped,
    IterationCompleted,
    MarketStateChanged,
    OrderFilled,
    PositionExited,
    PositionMark,
    StartupRefused,
)

if TYPE_CHECKING:
    from core.iteration_result import IterationResult
    from core.state.store import Halt, StateStore

log = structlog.get_logger("orchestrator")


class MarketStateAnnouncer:
    def __init__(self, events: EventSink) -> None:
        self._events = events
        self._open: bool | None = None

    def observe(self, is_open: bool, next_change: datetime | None, now: datetime) -> None:
        if is_open is self._open:
            return
        self._open = is_open
        when = new_york_time(next_change).strftime("%Y-%m-%d %H:%M %Z") if next_change is not None else "unknown"
        if is_open:
            log.info("market_open", closes_at=when, message=f"market open; it closes at {when}")
        else:
            log.info("market_closed", waiting_until=when, message=f"market closed; waiting until {when}")
        self._events.emit(MarketStateChanged(at=now, is_open=is_open, next_change=next_change))


class HaltWatcher:
    def __init__(self, events: EventSink) -> None:
        self._events = events
        self._active: dict[str, tuple[str, date]] | None = None

    def prime(self, halts: Iterable[Halt]) -> None:
        """Remember what is active now without announcing it (a restart is not a new halt)."""
        self._active = {h.kind: (h.reason, h.session) for h in halts}

    def observe(self, halts: Iterable[Halt], now: datetime) -> None:
        current = {h.kind: (h.reason, h.session) for h in halts}
        previous = self._active if self._active is not None else {}
        self._active = current
        for kind, (reason, session) in current.items():
            if kind not in previous:
                log.warning("halt_tripped", kind=kind, reason=reason)
                self._events.emit(HaltTripped(at=now, kind=kind, reason=reason, session=session))
        for kind, (reason, _) in previous.items():
            if kind not in current:
                log.info("halt_cleared", kind=kind, reason=reason)
                self._events.emit(HaltCleared(at=now, kind=kind, reason=reason))


# ---------------------------------------------------------------------- events from the loop's own objects
def iteration_completed(result: IterationResult, positions: Mapping[str, PositionView], now: datetime, *,
                        dry_run: bool) -> IterationCompleted:
    marks = tuple(PositionMark(symbol=s, qty=p.qty, avg_entry_price=p.avg_entry_price, current_price=p.current_price,
                               market_value=p.market_value) for s, p in sorted(positions.items()))
    return IterationCompleted(at=now, number=result.number, duration_s=result.duration_s,
                              requests=tuple(sorted(result.requests.items())), signals=result.signals,
                              submitted=result.submitted, rejected=result.rejected, dry_run=dry_run,
                              market_open=result.market_open, positions=marks)


def account_observed(account: AccountView, session: date, now: datetime, source: str) -> AccountObserved:
    return AccountObserved(at=now, session=session, equity=account.equity, cash=account.cash,
                           last_equity=account.last_equity, source=source)


def startup_refused(exc: BaseException, now: datetime) -> StartupRefused:
    message = str(exc)
    differences = tuple(line.strip()[2:] for line in message.splitlines() if line.strip().startswith("- "))
    return StartupRefused(at=now, message=message, differences=differences)


def announce_fill(events: EventSink, store: StateStore, order: BrokerOrder, delta: float, price: float,
                  now: datetime) -> None:
    """OrderFilled for a new fill; PositionExited too when a sell just closed the book's position."""
    try:
        _announce_fill(events, store, order, delta, price, now)
    except Exception as exc:  # noqa: BLE001 - announcing must never fail the fill that was just booked
        log.warning("fill_announcement_failed", symbol=order.symbol, error=f"{type(exc).__name__}: {exc}"[:300])


def _announce_fill(events: EventSink, store: StateStore, order: BrokerOrder, delta: float, price: float,
                   now: datetime) -> None:
    intent = store.get_intent(order.client_order_id)
    reason = intent.reason if intent is not None else "unknown"
    side = order.side.value
    events.emit(OrderFilled(at=now, symbol=order.symbol, side=side, qty=delta, price=price, reason=reason,
                            client_order_id=order.client_order_id, order_status=order.status.value,
                            cumulative_qty=order.filled_qty))
    if side != "sell" or order.symbol in store.book():
        return
    closed = store.closed_positions(order.symbol)
    if not closed:
        return
    last = closed[-1]
    events.emit(PositionExited(at=now, symbol=last.symbol, qty=last.qty, entry_price=last.entry_price,
                               exit_price=last.exit_price, reason=reason if intent is not None else last.reason,
                               entry_session=last.entry_session, exit_session=last.exit_session))
