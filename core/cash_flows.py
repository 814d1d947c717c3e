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

import math
import re
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from core.market_calendar import NEW_YORK
from core.models import CashFlow

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


def parse_activity(raw: Any) -> CashFlow:
    """One activity object from `GET /v2/account/activities` as a CashFlow; ValueError names what is wrong."""
    if not isinstance(raw, dict):
        raise ValueError(f"an activity must be an object, got {type(raw).__name__}")
    activity_id, kind = raw.get("id"), raw.get("activity_type")
    if not isinstance(activity_id, str) or not activity_id:
        raise ValueError(f"activity id {activity_id!r} is not a non-empty string")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"activity {activity_id}: activity_type {kind!r} is not a string")
    try:
        amount = float(raw.get("net_amount"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ValueError(f"activity {activity_id}: net_amount {raw.get('net_amount')!r} is not a number") from None
    if not math.isfinite(amount):
        raise ValueError(f"activity {activity_id}: net_amount {raw.get('net_amount')!r} is not a finite number")
    when = raw.get("date")
    try:
        on = date.fromisoformat(str(when)[:10])
    except ValueError:
        raise ValueError(f"activity {activity_id}: date {when!r} is not YYYY-MM-DD") from None
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
