"""The equity peak and the day's figures, net of deposits and withdrawals (reads the broker and the store).

Run once per decision, after the account is fetched (a decision needs it anyway; a steady
iteration fetches neither). One `GET /v2/account/activities` for CSD/CSW/JNLC dated after the
last check (less a day of overlap), so it is one page in practice. A flow is applied once: its
broker id goes into the `cash_flows` table in the same transaction that moves the stored peak
(core/domain/cash_flows.py has the arithmetic). Then, as before, the peak is raised to the equity.

When the activities cannot be read, nothing is guessed: the peak stays as stored (a deposit must
not raise it), and the RiskAgent halts entries for that pass instead of judging the loss figures.
The same holds for one activity the parser cannot read (every other one is still read): it is named
(id, field, value) in the `cash_flows_unknown` halt and the log, and the check window does not move
past it. `trading-daemon halts clear cash_flows_unknown` acknowledges the activities named: each then
counts as no cash flow, so the clear sticks and the window moves on.
"""

from __future__ import annotations

import json
import math
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING

import structlog

from core.decision_ports import FlowFigures
from core.domain.cash_flows import CashFlows, UnreadableActivity, adjust_peak, net_amount, since_close
from core.domain.errors import BrokerError, TradingDaemonError
from core.domain.market_calendar import NEW_YORK, MarketCalendar
from core.domain.models import AccountView, CashFlow

if TYPE_CHECKING:
    from core.domain.ports import TradingGateway
    from core.state.store import StateStore

log = structlog.get_logger("cash_flows")

PEAK_KEY = "peak_equity"
CHECKED_KEY = "cash_flows_checked_on"
# Activities that could not be read: the ones the current halt names, and those the owner acknowledged
# (`halts clear cash_flows_unknown`), which count as no cash flow from then on.
UNREADABLE_KEY = "cash_flows_unreadable"
ACKNOWLEDGED_KEY = "cash_flows_acknowledged"
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
        pending = self._unacknowledged(fetched)
        if pending:
            # Nothing applied, the window kept: the unknown amount could be a deposit or a withdrawal.
            named = "; ".join(item.describe() for item in pending[:3]) + (
                f"; and {len(pending) - 3} more" if len(pending) > 3 else "")
            log.warning("cash_flows_unreadable", activities=[item.describe() for item in pending],
                        effect="entries halted (cash_flows_unknown) until it is readable or acknowledged with "
                               "`trading-daemon halts clear cash_flows_unknown`")
            return FlowFigures(peak=peak, flows_today=0.0, unknown=f"unreadable {named}; if it moved no money, "
                               "acknowledge it with `trading-daemon halts clear cash_flows_unknown`")
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

    def _unacknowledged(self, fetched: list[CashFlow]) -> list[UnreadableActivity]:
        """The unreadable activities the owner has not acknowledged; remembers them for `halts clear`."""
        found = list(fetched.unreadable) if isinstance(fetched, CashFlows) else []
        if not found:
            return []
        acknowledged = set(_json_list(self.store.get_value(ACKNOWLEDGED_KEY)))
        pending = [item for item in found if item.key not in acknowledged]
        keys = sorted({item.key for item in pending})
        if keys != sorted(_json_list(self.store.get_value(UNREADABLE_KEY))):
            self.store.set_value(UNREADABLE_KEY, json.dumps(keys))
        return pending

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


def acknowledge_unreadable(store: StateStore) -> list[str]:
    """`halts clear cash_flows_unknown`: the unreadable activities last named become acknowledged (each is
    then treated as no cash flow, and the check window moves on). Returns their keys."""
    seen = _json_list(store.get_value(UNREADABLE_KEY))
    if not seen:
        return []
    acknowledged = sorted(set(_json_list(store.get_value(ACKNOWLEDGED_KEY))) | set(seen))
    store.set_value(ACKNOWLEDGED_KEY, json.dumps(acknowledged))
    store.set_value(UNREADABLE_KEY, "[]")
    return seen


def _json_list(text: str | None) -> list[str]:
    try:
        value = json.loads(text or "[]")
    except ValueError:
        return []
    return [str(item) for item in value] if isinstance(value, list) else []
