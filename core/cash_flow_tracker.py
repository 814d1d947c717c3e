"""The equity peak and the day's figures, net of deposits and withdrawals (reads the broker and the store).

Run once per decision, after the account is fetched (a decision needs it anyway; a steady
iteration fetches neither). One `GET /v2/account/activities` for CSD/CSW/JNLC dated after the
last check (less a day of overlap), so it is one page in practice. A flow is applied once: its
broker id goes into the `cash_flows` table in the same transaction that moves the stored peak
(core/cash_flows.py has the arithmetic). Then, as before, the peak is raised to the equity.

When the activities cannot be read, nothing is guessed: the peak stays as stored (a deposit must
not raise it), and the RiskAgent halts entries for that pass instead of judging the loss figures.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from core.cash_flows import adjust_peak, net_amount, since_close
from core.decision_ports import FlowFigures
from core.errors import BrokerError, TradingDaemonError
from core.market_calendar import NEW_YORK, MarketCalendar
from core.models import AccountView

if TYPE_CHECKING:
    from core.ports import TradingGateway
    from core.state.store import StateStore

log = structlog.get_logger("cash_flows")

PEAK_KEY = "peak_equity"
CHECKED_KEY = "cash_flows_checked_on"
OVERLAP = timedelta(days=1)


def stored_peak(store: StateStore) -> float:
    """The stored peak, or 0 (no peak yet) for a missing or unreadable value."""
    try:
        peak = float(store.get_value(PEAK_KEY, "0") or 0.0)
    except ValueError:
        return 0.0
    return peak if math.isfinite(peak) and peak > 0 else 0.0


class CashFlowTracker:
    """The live `EquityPeak` of the decision pipeline (core/decision_ports.py)."""

    def __init__(self, gateway: TradingGateway, store: StateStore, calendar: MarketCalendar) -> None:
        self.gateway = gateway
        self.store = store
        self.calendar = calendar

    def update(self, account: AccountView, now: datetime) -> FlowFigures:
        today = now.astimezone(NEW_YORK).date()
        previous_session = self.calendar.previous_session(today)
        previous_close = self.calendar.session_close(previous_session)
        peak = stored_peak(self.store)
        try:
            fetched = self.gateway.get_cash_flows(self._after(previous_session))
        except TradingDaemonError as exc:
            log.warning("cash_flows_unavailable", reason=str(exc))
            return FlowFigures(peak=peak, flows_today=0.0, unknown=f"account activities unavailable ({_summary(exc)})")
        known = self.store.known_cash_flow_ids(flow.id for flow in fetched)
        new = [flow for flow in fetched if flow.id not in known]
        adjusted = adjust_peak(peak, account.equity, net_amount(new)) if new else peak
        self.store.apply_cash_flows(new, equity=account.equity, peak_before=peak, peak_after=adjusted,
                                    checked_on=today)
        if new:
            log.info("cash_flows_applied", flows=[f"{f.kind} {f.amount:+,.2f} on {f.on}" for f in new],
                     equity=account.equity, peak_before=round(peak, 2), peak_after=round(adjusted, 2),
                     note="deposits and withdrawals move the equity peak; they are not trading gains or losses")
        raised = max(adjusted, account.equity) if math.isfinite(account.equity) else adjusted
        if raised != adjusted:
            self.store.set_value(PEAK_KEY, repr(raised))
        flows_today = net_amount(flow for flow in self.store.cash_flows_since(previous_session)
                                 if since_close(flow, previous_session, previous_close))
        return FlowFigures(peak=raised, flows_today=flows_today)

    def _after(self, previous_session: date) -> date:
        """Ask from the last check (a day of overlap; ids de-duplicate), or from the previous session."""
        checked = self.store.get_value(CHECKED_KEY)
        start = previous_session
        if checked:
            try:
                start = min(date.fromisoformat(checked), previous_session)
            except ValueError:
                pass
        return start - OVERLAP


def _summary(exc: TradingDaemonError) -> str:
    """Endpoint, status and kind of a failure, for the halt row: not the broker's text, which may echo a request."""
    if not isinstance(exc, BrokerError):
        return f"request: {type(exc).__name__}"
    return f"{exc.endpoint or 'request'}: " + (f"HTTP {exc.status}" if exc.status else type(exc).__name__)
