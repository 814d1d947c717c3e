"""Alpaca's trading API on the wire, as the simulated brokerage speaks it: decimal strings,
timestamps, and error answers (an HTTP status plus Alpaca's JSON body).

Error codes (the body's `code`; docs/orders-at-alpaca and answers seen from paper accounts):
- 40010000: the request body or a parameter is malformed (400);
- 40010001: an order parameter is refused (422): `client_order_id must be unique`, `qty must be integer`, ...;
- 40310000: forbidden (403): buying power, quantity available, wash trade, cost basis, a blocked account;
- 40410000: not found (404): an order, a position, an asset;
- 42210000: Alpaca's code for an order its rules refuse as it stands (422): a limit price finer than
  the minimum price variance (`invalid limit_price 290.123. sub-penny increment does not fulfill minimum
  pricing criteria`, as documented), or a cancel of an order already final
  (`order is already in "filled" state`).
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from core.domain.market_calendar import NEW_YORK

CODE_INVALID = 40010000  # 400: body or parameter format
CODE_UNPROCESSABLE = 40010001  # 422: order parameters
CODE_FORBIDDEN = 40310000  # 403: buying power, qty, wash trade, cost basis, blocked account
CODE_NOT_FOUND = 40410000
CODE_ORDER_REFUSED = 42210000  # 422: sub-penny price; cancel of a final order


class SimAPIError(Exception):
    """An Alpaca error answer: HTTP status plus the JSON body Alpaca sends."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message')}")
        self.status = status
        self.body = body


def api_error(status: int, code: int | None, message: str, **extra: Any) -> SimAPIError:
    """The error Alpaca answers with: `{"code": code, "message": message, **extra}` (no code if None)."""
    body: dict[str, Any] = {} if code is None else {"code": code}
    body["message"] = message
    body.update(extra)
    return SimAPIError(status, body)


def fmt_num(value: float, places: int = 9) -> str:
    """Alpaca's decimal strings: no exponent, no trailing zeros ("10000", "0.357142857")."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_money(value: float) -> str:
    return fmt_num(round(value, 2), 2)


def fmt_time(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def wire_time(text: str) -> datetime:
    """RFC-3339 (Z or offset, fractions allowed) or YYYY-MM-DD (midnight New York); ValueError if neither."""
    value = text.strip().replace(" ", "+")  # an unencoded '+' arrives as a space
    if len(value) == 10:
        day = date.fromisoformat(value)
        return datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def parse_time(text: str, what: str) -> datetime:
    """`wire_time`, or Alpaca's 422 naming the parameter."""
    try:
        return wire_time(text)
    except ValueError:
        raise api_error(422, CODE_UNPROCESSABLE, f"invalid {what}: {text!r}") from None
