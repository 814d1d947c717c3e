"""Deposits and withdrawals are not trading gains or losses: the arithmetic that nets them out. Pure.

Alpaca reports cash moved into or out of the account as account activities: CSD (a deposit,
including a returned withdrawal: +), CSW (a withdrawal, including a returned deposit: -) and JNLC
(a cash journal between accounts, signed as given). Dividends (DIV) and interest are income that
the strategy's holdings earned, fees are costs: they stay in the figures like any other gain or loss.

Daily loss (the P&L since the previous close, as a fraction of that close's equity):

    pnl_today    = equity - last_equity - (net flows since the previous close)
    day_change   = pnl_today / last_equity  =  (equity - flows) / last_equity - 1

Drawdown: the equity peak is a high-water mark of trading, so a flow moves it in proportion
(time-weighted: a flow neither raises nor lowers the drawdown in percent):

    peak_after   = peak x equity / (equity - flow)        flow = the net of the flows not yet applied

where `equity` is the account's equity when the daemon first sees the flow (already including it),
so `equity - flow` is the equity just before it. A flow that leaves nothing (equity <= 0 after it),
or that arrives into an empty account (equity <= 0 before it), starts the high-water mark afresh: 0,
and the next positive equity becomes the peak.

Worked example: peak $10,000, equity $9,000 (a 10 % drawdown), then $4,000 is withdrawn: equity
$5,000, peak 10,000 x 5,000 / 9,000 = $5,555.56, drawdown still 10 %. Subtracting the withdrawal
from the peak instead ($6,000) would show 16.7 % and trip a 15 % kill switch with no trade lost.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.domain.market_calendar import NEW_YORK
from core.domain.models import CashFlow

FLOW_ACTIVITY_TYPES = ("CSD", "CSW", "JNLC")
_DEPOSITS = frozenset({"CSD"})
_WITHDRAWALS = frozenset({"CSW"})
# Alpaca activity ids are "YYYYMMDDHHMMSSmmm::uuid", the time stamp in New York time.
_ID_TIME = re.compile(r"^(\d{17})::")


def signed_amount(kind: str, net_amount: float) -> float:
    """+ into the account, - out of it. CSD/CSW take their sign from the type; others as given."""
    if kind in _DEPOSITS:
        return abs(net_amount)
    if kind in _WITHDRAWALS:
        return -abs(net_amount)
    return net_amount


def time_from_activity_id(activity_id: str) -> datetime | None:
    match = _ID_TIME.match(activity_id)
    if match is None:
        return None
    stamp = match.group(1)
    try:
        return datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(
            microsecond=int(stamp[14:]) * 1000, tzinfo=NEW_YORK)
    except ValueError:
        return None


class ActivityError(ValueError):
    """An activity that cannot be read: which one (`key`: its id, or a digest of it without one), which
    field, the value found and what was expected of it."""

    def __init__(self, key: str, field: str, value: Any, problem: str, kind: Any = None) -> None:
        super().__init__(f"activity {key}: {field} {value!r} {problem}")
        self.key = key
        self.field = field
        self.value = value
        self.problem = problem
        self.kind = kind


@dataclass(frozen=True, slots=True)
class UnreadableActivity:
    """One account activity the daemon could not read: named in the `cash_flows_unknown` halt."""

    key: str            # the activity id (or "sha256:..." of the object without a usable id)
    field: str
    value: str          # repr of what was found, shortened
    problem: str        # what is wrong with it, e.g. "is not a number"

    def describe(self) -> str:
        return f"account activity {self.key}: {self.field} {self.value} {self.problem}"


class CashFlows(list[CashFlow]):
    """The readable flows, plus the activities that could not be read (`unreadable`)."""

    def __init__(self, flows: Iterable[CashFlow] = (), unreadable: Iterable[UnreadableActivity] = ()) -> None:
        super().__init__(flows)
        self.unreadable: list[UnreadableActivity] = list(unreadable)


def activity_key(raw: Any) -> str:
    """An activity's id, or a stable digest of the whole object when it has no usable id."""
    if isinstance(raw, dict) and isinstance(raw.get("id"), str) and raw["id"]:
        return str(raw["id"])
    text = json.dumps(raw, sort_keys=True, default=str)
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def unreadable(exc: ActivityError) -> UnreadableActivity:
    return UnreadableActivity(exc.key, exc.field, repr(exc.value)[:60], exc.problem)


def parse_activity(raw: Any) -> CashFlow:
    """One activity object from `GET /v2/account/activities` as a CashFlow; ActivityError (a ValueError)
    names the activity, the field and the value that is wrong."""
    key = activity_key(raw)
    if not isinstance(raw, dict):
        raise ActivityError(key, "activity", raw, f"must be an object, got {type(raw).__name__}")
    activity_id, kind = raw.get("id"), raw.get("activity_type")
    if not isinstance(activity_id, str) or not activity_id:
        raise ActivityError(key, "id", activity_id, "is not a non-empty string", kind)
    if not isinstance(kind, str) or not kind:
        raise ActivityError(key, "activity_type", kind, "is not a string", kind)
    try:
        amount = float(raw.get("net_amount"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ActivityError(key, "net_amount", raw.get("net_amount"), "is not a number", kind) from None
    if not math.isfinite(amount):
        raise ActivityError(key, "net_amount", raw.get("net_amount"), "is not a finite number", kind)
    when = raw.get("date")
    try:
        on = date.fromisoformat(str(when)[:10])
    except ValueError:
        raise ActivityError(key, "date", when, "is not YYYY-MM-DD", kind) from None
    return CashFlow(id=activity_id, kind=kind, amount=signed_amount(kind, amount), on=on,
                    occurred_at=time_from_activity_id(activity_id))


def is_counted(raw: Any) -> bool:
    """False for an activity the broker cancelled (status "canceled"): it moved no money."""
    return not (isinstance(raw, dict) and str(raw.get("status", "")).lower() in {"canceled", "cancelled"})


def since_close(flow: CashFlow, previous_session: date, previous_close: datetime) -> bool:
    """Whether a flow happened after the previous session's close (so `last_equity` does not hold it).

    By its time stamp when the broker gives one; otherwise by its date: after the previous session's date.
    """
    if flow.occurred_at is not None:
        return flow.occurred_at >= previous_close
    return flow.on > previous_session


def net_amount(flows: Iterable[CashFlow]) -> float:
    return math.fsum(flow.amount for flow in flows)


def pnl_today(equity: float, last_equity: float, flows_today: float) -> float:
    """Trading P&L since the previous close: the change in equity less the money moved in or out."""
    return equity - last_equity - flows_today


def day_change(equity: float, last_equity: float, flows_today: float) -> float | None:
    """pnl_today / last_equity, or None when there is no positive previous close to compare with."""
    if not (math.isfinite(last_equity) and last_equity > 0 and math.isfinite(equity)):
        return None
    # (equity - flows) / last - 1 == pnl_today / last; written so that with no flows it is bit for bit
    # the old equity / last - 1 (the backtest's trades must not move).
    return (equity - flows_today) / last_equity - 1.0


def adjust_peak(peak: float, equity: float, flow: float) -> float:
    """The equity peak after a net `flow` that `equity` already includes (see the module docstring)."""
    if flow == 0.0 or peak <= 0.0:
        return max(peak, 0.0)
    before = equity - flow
    if not (math.isfinite(equity) and equity > 0.0 and before > 0.0):
        return 0.0
    return peak * equity / before
