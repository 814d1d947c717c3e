"""Account activities of the simulated account: Alpaca's `GET /v2/account/activities[/{type}]`.

Recorded by SimExchange (under its lock): `FILL` for every execution (trade activity), and the
non-trade activities `CSD` (deposit), `CSW` (withdrawal), `DIV` (cash dividend) and `SPLIT` (a
position re-based by a split). alpaca-py 0.44 has no method for these routes; a client reaches them
with `TradingClient.get("/account/activities", params)` and may parse the items with
`alpaca.trading.models.TradeActivity` / `NonTradeActivity`.

Shapes (Alpaca's, every number a decimal string):
- trade: id, account_id, activity_type "FILL", transaction_time, type "fill"|"partial_fill", price,
  qty, side, symbol, leaves_qty, order_id, cum_qty, order_status.
- non-trade: id, account_id, activity_type, date (New York), net_amount (signed), description,
  status "executed", symbol, qty, per_share_amount (null where they do not apply).
The id is Alpaca's `<YYYYMMDDHHMMSSmmm New York>::<uuid>`; it is also the page token.

Query parameters, as Alpaca documents them: `activity_types` (comma list; the path's type instead on
`/activities/{type}`), `category` (trade_activity | non_trade_activity), `date` (one New York date;
not with after/until), `after` and `until` (exclusive, RFC-3339 or YYYY-MM-DD), `direction` (desc by
default), `page_size` (without `date`: default and maximum 100, a larger value is served as 100; with
`date`: everything unless given), `page_token` (an id: desc continues with older activities, asc
with newer ones). Bad values are Alpaca's 422 with one message.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from core.domain.market_calendar import NEW_YORK
from core.sim.wire import wire_time

# alpaca.trading.enums.ActivityType of alpaca-py 0.44: the types Alpaca may report.
ACTIVITY_TYPES = frozenset(
    {
        "FILL", "ACATC", "ACATS", "CFEE", "CIL", "CSD", "CSW", "DIV", "DIVCGL", "DIVCGS", "DIVNRA", "DIVROC",
        "DIVTXEX", "DIVWH", "EXTRD", "FEE", "FXTRD", "INT", "INTPNL", "JNLC", "JNLS", "MA", "MEM", "NC", "OCT",
        "OPASN", "OPCSH", "OPEXC", "OPEXP", "OPTRD", "PTC", "REORG", "SPIN", "SPLIT", "SWP", "VOF", "WH",
    }
)
CATEGORIES = {"trade_activity": True, "non_trade_activity": False}  # -> is a trade activity
MAX_PAGE_SIZE = 100


class ActivityQueryError(ValueError):
    """A query parameter Alpaca would refuse (422)."""


@dataclass(frozen=True)
class Activity:
    id: str
    activity_type: str
    time: datetime
    seq: int
    body: dict[str, Any]

    @property
    def is_trade(self) -> bool:
        return self.activity_type == "FILL"


def activity_id(when: datetime) -> str:
    local = when.astimezone(NEW_YORK)
    return f"{local.strftime('%Y%m%d%H%M%S')}{local.microsecond // 1000:03d}::{uuid.uuid4()}"


class ActivityLog:
    """Append-only, in time order (the exchange records events as its clock replays them)."""

    def __init__(self, account_id: str) -> None:
        self.account_id = account_id
        self._items: list[Activity] = []
        self._by_id: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[Activity]:
        return list(self._items)

    def add(self, activity_type: str, when: datetime, body: dict[str, Any]) -> dict[str, Any]:
        ident = activity_id(when)
        full = {"id": ident, "account_id": self.account_id, "activity_type": activity_type, **body}
        self._by_id[ident] = len(self._items)
        self._items.append(Activity(ident, activity_type, when, len(self._items), full))
        return dict(full)

    def add_non_trade(
        self,
        activity_type: str,
        when: datetime,
        net_amount: str,
        description: str,
        *,
        symbol: str | None = None,
        qty: str | None = None,
        per_share_amount: str | None = None,
    ) -> dict[str, Any]:
        body = {
            "date": when.astimezone(NEW_YORK).date().isoformat(),
            "net_amount": net_amount,
            "description": description,
            "status": "executed",
            "symbol": symbol,
            "qty": qty,
            "per_share_amount": per_share_amount,
        }
        return self.add(activity_type, when, body)

    def query(self, params: Mapping[str, str], path_type: str | None = None) -> list[dict[str, Any]]:
        types = self._types(params, path_type)
        category = params.get("category") or None
        if category is not None and category not in CATEGORIES:
            raise ActivityQueryError(f"invalid category: {category!r}")
        day = self._date(params.get("date"))
        after = self._time(params.get("after"), "after")
        until = self._time(params.get("until"), "until")
        if day is not None and (after is not None or until is not None):
            raise ActivityQueryError("date cannot be used with after or until")
        direction = (params.get("direction") or "desc").lower()
        if direction not in ("asc", "desc"):
            raise ActivityQueryError(f"invalid direction: {params.get('direction')!r}")
        size = self._page_size(params.get("page_size"), dated=day is not None)
        token = params.get("page_token") or None
        start = None
        if token is not None:
            if token not in self._by_id:
                raise ActivityQueryError(f"invalid page_token: {token!r}")
            start = self._by_id[token]

        ordered = self._items if direction == "asc" else list(reversed(self._items))
        out = []
        for item in ordered:
            if start is not None and (item.seq <= start if direction == "asc" else item.seq >= start):
                continue
            if types is not None and item.activity_type not in types:
                continue
            if category is not None and item.is_trade != CATEGORIES[category]:
                continue
            if day is not None and item.time.astimezone(NEW_YORK).date() != day:
                continue
            if after is not None and item.time <= after:
                continue
            if until is not None and item.time >= until:
                continue
            out.append(dict(item.body))
            if size is not None and len(out) >= size:
                break
        return out

    @staticmethod
    def _types(params: Mapping[str, str], path_type: str | None) -> frozenset[str] | None:
        raw = [path_type] if path_type is not None else (params.get("activity_types") or "").split(",")
        wanted = {t.strip().upper() for t in raw if t and t.strip()}
        unknown = sorted(wanted - ACTIVITY_TYPES)
        if unknown:
            raise ActivityQueryError(f"invalid activity type: {', '.join(unknown)}")
        return frozenset(wanted) or None

    @staticmethod
    def _date(raw: str | None) -> date | None:
        if not raw:
            return None
        try:
            return date.fromisoformat(raw.strip()[:10])
        except ValueError:
            raise ActivityQueryError(f"invalid date: {raw!r}") from None

    @staticmethod
    def _time(raw: str | None, name: str) -> datetime | None:
        """RFC-3339 (Z or offset) or YYYY-MM-DD (midnight New York)."""
        if not raw:
            return None
        try:
            return wire_time(raw)
        except ValueError:
            raise ActivityQueryError(f"invalid {name}: {raw!r}") from None

    @staticmethod
    def _page_size(raw: str | None, *, dated: bool) -> int | None:
        if not raw:
            return None if dated else MAX_PAGE_SIZE
        try:
            size = int(raw)
        except ValueError:
            raise ActivityQueryError(f"invalid page_size: {raw!r}") from None
        if size < 1:
            raise ActivityQueryError(f"invalid page_size: {raw!r} (must be at least 1)")
        return size if dated else min(size, MAX_PAGE_SIZE)
