"""The daily summary after the close: equity, the day's P&L, positions, orders and requests used.

It runs as a scheduled task of the loop at 16:07 New York on session days (after the close, early
closes included), and costs one request a day: the account, which also gives the equity curve
its daily point. Positions and their prices are the loop's last look (no request); they are also
stored as a snapshot, so a stopped daemon's status page still shows prices.
"""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

import structlog

from core.domain.errors import TradingDaemonError
from core.domain.market_calendar import NEW_YORK, MarketCalendar, new_york_time
from core.events import DailySummary, EventSink, PositionLine
from core.live_figures import LiveFigures, position_views
from core.loop_observers import account_observed

log = structlog.get_logger("daily_summary")

SUMMARY_HOUR, SUMMARY_MINUTE = 16, 7   # after the 16:00 close and the 16:05 scan


class DailySummaryReporter:
    def __init__(self, gateway: Any, store: Any, events: EventSink, live: LiveFigures) -> None:
        self.gateway = gateway
        self.store = store
        self.events = events
        self.live = live
        self._requests_seen = self._request_totals()

    def _request_totals(self) -> dict[str, int]:
        stats = getattr(self.gateway, "stats", None)
        return dict(stats.by_api_total) if stats is not None else {}

    def __call__(self, now: datetime) -> None:
        session = new_york_time(now).date()
        account = None
        try:
            account = self.gateway.get_account()
        except TradingDaemonError as exc:
            log.warning("daily_summary_account_unavailable", error=str(exc), effect="summary sent without equity")
        if account is not None:
            self.events.emit(account_observed(account, session, now, "close"))
        marks = self.live.snapshot().positions or ()
        book = self.store.book()
        if marks:
            self.store.record_position_snapshot(position_views(marks))
        prices = {m.symbol: m.current_price for m in marks}
        lines = tuple(
            PositionLine(symbol=s, qty=p.qty,
                         market_value=round(prices[s] * p.qty, 2) if s in prices else None,
                         unrealised_pnl=round((prices[s] - p.avg_entry_price) * p.qty, 2) if s in prices else None)
            for s, p in sorted(book.items()))
        day_starts = datetime.combine(session, time(0), tzinfo=NEW_YORK)
        todays = self.store.orders_submitted_between(day_starts, day_starts + timedelta(days=1))
        totals = self._request_totals()
        used = tuple(sorted((api, n - self._requests_seen.get(api, 0)) for api, n in totals.items()
                            if n - self._requests_seen.get(api, 0) > 0))
        self._requests_seen = totals
        summary = DailySummary(
            at=now, session=session, equity=account.equity if account else None, cash=account.cash if account else None,
            day_pnl=(account.equity - account.last_equity) if account else None, positions=lines,
            orders_submitted=len(todays), orders_filled=sum(1 for o in todays if o.status.value == "filled"),
            requests=used)
        log.info("daily_summary", session=session.isoformat(), equity=summary.equity, day_pnl=summary.day_pnl,
                 positions=len(lines), orders=summary.orders_submitted, requests=dict(used))
        self.events.emit(summary)


def daily_summary_task(reporter: DailySummaryReporter, calendar: MarketCalendar, now: datetime) -> Any:
    from core.orchestrator import ScheduledTask

    return ScheduledTask("daily_summary", SUMMARY_HOUR, SUMMARY_MINUTE, reporter, calendar, now)
