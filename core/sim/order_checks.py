"""An order request checked against Alpaca's rules before the simulated brokerage accepts it, with
the error Alpaca answers for each broken rule (status, code and message: core/sim/wire.py).

The checks run in Alpaca's order: the account may trade, the body's fields, the client_order_id, the
asset, fractional rules, the cost basis, a wash trade, buying power or the shares available, the
position intent. `closing` is a DELETE /v2/positions sell, which may sell a fractional remainder.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from config.universe import is_valid_ticker
from core.sim.account import MAX_CLIENT_ORDER_ID, QTY_EPS, SimAccount, is_whole
from core.sim.wire import (
    CODE_FORBIDDEN,
    CODE_INVALID,
    CODE_ORDER_REFUSED,
    CODE_UNPROCESSABLE,
    api_error,
    fmt_money,
    fmt_num,
)


@dataclass(frozen=True)
class OrderRequest:
    """An order request that passed every check."""

    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: float | None
    notional: float | None
    limit_price: float | None
    extended_hours: bool
    position_intent: str | None
    client_order_id: str


def number(body: Mapping[str, Any], name: str) -> float | None:
    """A numeric field of a request (string or number); None when absent or empty; 422 otherwise."""
    raw = body.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise api_error(422, CODE_UNPROCESSABLE, f"invalid {name}: {raw!r}") from None
    if not math.isfinite(value):
        raise api_error(422, CODE_UNPROCESSABLE, f"invalid {name}: {raw!r}")
    return value


def check_order(body: Any, account: SimAccount, now: datetime, *, closing: bool = False) -> OrderRequest:
    """The request of POST /v2/orders as Alpaca would accept it, or the `SimAPIError` it would answer."""
    if account.trading_blocked:
        raise api_error(403, CODE_FORBIDDEN, "account is not authorized to trade")
    if not isinstance(body, dict):
        raise api_error(400, CODE_INVALID, "request body format is invalid")
    symbol = body.get("symbol")
    if not isinstance(symbol, str) or not symbol:
        raise api_error(422, CODE_UNPROCESSABLE, "symbol is required")
    side = body.get("side")
    if side not in ("buy", "sell"):
        raise api_error(422, CODE_UNPROCESSABLE, f"invalid side: {side!r}" if side else "side is required")
    type_ = body.get("type", body.get("order_type"))
    if type_ not in ("market", "limit", "stop", "stop_limit", "trailing_stop"):
        raise api_error(
            422, CODE_UNPROCESSABLE, f"invalid order type: {type_!r}" if type_ else "type is required"
        )
    if type_ not in ("market", "limit"):
        raise api_error(
            422, CODE_UNPROCESSABLE, f"order type {type_} is not supported by the simulated market"
        )
    tif = body.get("time_in_force")
    if tif not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
        raise api_error(
            422,
            CODE_UNPROCESSABLE,
            f"invalid time_in_force: {tif!r}" if tif else "time_in_force is required",
        )
    if tif in ("opg", "cls"):
        raise api_error(
            422, CODE_UNPROCESSABLE, f"time_in_force {tif} is not supported by the simulated market"
        )
    order_class = body.get("order_class") or "simple"
    if order_class != "simple":
        raise api_error(
            422, CODE_UNPROCESSABLE, f"order_class {order_class} is not supported by the simulated market"
        )

    qty = number(body, "qty")
    notional = number(body, "notional")
    if qty is not None and notional is not None:
        raise api_error(400, CODE_INVALID, "qty and notional can not be used together")
    if qty is None and notional is None:
        raise api_error(422, CODE_UNPROCESSABLE, "qty or notional is required")
    if qty is not None and qty <= 0:
        raise api_error(422, CODE_UNPROCESSABLE, "qty must be > 0")
    if notional is not None and notional <= 0:
        raise api_error(422, CODE_UNPROCESSABLE, "notional must be > 0")
    limit_price = number(body, "limit_price")
    if type_ == "limit":
        if limit_price is None:
            raise api_error(422, CODE_UNPROCESSABLE, "limit_price is required for limit orders")
        if limit_price <= 0:
            raise api_error(422, CODE_UNPROCESSABLE, "limit_price must be > 0")
        # Alpaca's minimum price variance: 2 decimals at $1.00 and above, 4 below.
        places = 2 if limit_price >= 1.0 else 4
        if abs(limit_price * 10**places - round(limit_price * 10**places)) > 1e-6:
            raise api_error(
                422,
                CODE_ORDER_REFUSED,
                f"invalid limit_price {fmt_num(limit_price)}. sub-penny increment does not fulfill "
                "minimum pricing criteria",
            )
    elif limit_price is not None:
        raise api_error(422, CODE_UNPROCESSABLE, "limit_price is not allowed for market orders")
    extended_hours = bool(body.get("extended_hours") or False)
    if extended_hours and not (type_ == "limit" and tif == "day"):
        raise api_error(422, CODE_UNPROCESSABLE, "extended hours order must be DAY limit orders")

    client_order_id = body.get("client_order_id")
    if client_order_id is None or client_order_id == "":
        client_order_id = str(uuid.uuid4())
    if not isinstance(client_order_id, str):
        raise api_error(422, CODE_UNPROCESSABLE, "client_order_id must be a string")
    if len(client_order_id) > MAX_CLIENT_ORDER_ID:
        raise api_error(422, CODE_UNPROCESSABLE, "client_order_id must be no more than 128 characters")
    if client_order_id in account.client_ids_used:
        raise api_error(422, CODE_UNPROCESSABLE, "client_order_id must be unique")

    asset = account.lookup_asset(symbol) if is_valid_ticker(symbol) else None
    if asset is None:
        raise api_error(422, CODE_UNPROCESSABLE, f"asset {symbol} not found")
    symbol = asset.symbol
    if not asset.tradable or asset.status != "active":
        raise api_error(422, CODE_UNPROCESSABLE, f"asset {symbol} is not tradable")

    fractional = notional is not None or (qty is not None and not is_whole(qty))
    if fractional and not closing:
        if not account.fractional_trading:
            message = (
                "fractional trading is not enabled for this account"
                if notional is not None
                else "qty must be integer"
            )
            raise api_error(422, CODE_UNPROCESSABLE, message)
        if not asset.fractionable:
            raise api_error(422, CODE_UNPROCESSABLE, "requested asset is not fractionable")
        if tif != "day":
            raise api_error(422, CODE_UNPROCESSABLE, "fractional orders must be DAY orders")
        if notional is not None and type_ != "market":
            raise api_error(422, CODE_UNPROCESSABLE, "notional orders must be market orders")

    price = account.bars.price_at(symbol, now)
    ref_price = limit_price if limit_price is not None else price
    cost_basis = notional if notional is not None else (qty or 0.0) * ref_price
    if fractional and not closing and cost_basis < 1.0 - 1e-9:
        raise api_error(403, CODE_FORBIDDEN, "cost basis must be >= 1")

    opposite = "sell" if side == "buy" else "buy"
    for other in account.orders:
        if other.is_open and other.symbol == symbol and other.side == opposite:
            raise api_error(
                403,
                CODE_FORBIDDEN,
                "potential wash trade detected. use complex orders",
                reject_reason="opposite side order exists",
                existing_order_id=other.id,
            )

    if side == "buy":
        buying_power = max(account.cash - account.reserved(now), 0.0)
        if cost_basis > buying_power + 1e-9:
            raise api_error(
                403,
                CODE_FORBIDDEN,
                "insufficient buying power",
                buying_power=fmt_money(buying_power),
                cost_basis=fmt_money(cost_basis),
            )
    else:
        pos = account.positions.get(symbol)
        existing = pos.qty if pos else 0.0
        held = account.held_for_sells(symbol, now)
        wanted = qty if qty is not None else (notional or 0.0) / price
        available = max(existing - held, 0.0)
        if wanted > available + QTY_EPS:
            if fractional and wanted > existing + QTY_EPS:
                raise api_error(403, CODE_FORBIDDEN, "fractional orders cannot be sold short")
            raise api_error(
                403,
                CODE_FORBIDDEN,
                "insufficient qty available for order",
                requested=fmt_num(wanted),
                available=fmt_num(available),
                existing_qty=fmt_num(existing),
                held_for_orders=fmt_num(held),
                symbol=symbol,
            )

    position_intent = body.get("position_intent")
    if position_intent not in (None, "buy_to_open", "buy_to_close", "sell_to_open", "sell_to_close"):
        raise api_error(422, CODE_UNPROCESSABLE, f"invalid position_intent: {position_intent!r}")
    return OrderRequest(symbol, side, type_, tif, qty, notional, limit_price, extended_hours, position_intent,
                        client_order_id)
