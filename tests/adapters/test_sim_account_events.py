"""Cash flows and account activities of the simulated account, through the real alpaca-py SDK:
deposits and withdrawals, and `GET /v2/account/activities[/{type}]` reached with the SDK client's
public `get()` (alpaca-py 0.44 has no method for it), parsed with the SDK's own activity models."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import (
    ActivityType,
    NonTradeActivityStatus,
    OrderSide,
    TimeInForce,
    TradeActivityType,
)
from alpaca.trading.models import NonTradeActivity, TradeActivity
from alpaca.trading.requests import MarketOrderRequest

from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK
from core.sim import SimMarket

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York
ACTIVITIES = "/account/activities"


def _ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


def _buy(symbol: str, qty: float) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)


def _parse(item: dict[str, Any]) -> TradeActivity | NonTradeActivity:
    if ActivityType.is_str_trade_activity(item["activity_type"]):
        return TradeActivity(**item)
    return NonTradeActivity(**item)


# ------------------------------------------------------------------------------ cash flows
def test_deposit_and_withdrawal_move_cash_not_last_equity(market: SimMarket, trading: Any, clock: SimClock) -> None:
    before = trading.get_account()
    assert (float(before.cash), float(before.last_equity)) == (10_000.0, 10_000.0)
    market.exchange.deposit(5_000)
    clock.advance(60)
    market.exchange.withdraw(2_500.25)
    after = trading.get_account()
    assert float(after.cash) == float(after.equity) == 12_499.75
    assert float(after.last_equity) == 10_000.0  # yesterday's close: the flows are today's
    assert float(after.buying_power) == 12_499.75

    items = trading.get(ACTIVITIES)
    assert [i["activity_type"] for i in items] == ["CSW", "CSD"]  # newest first
    withdrawal, deposit = (_parse(i) for i in items)
    assert isinstance(deposit, NonTradeActivity) and isinstance(withdrawal, NonTradeActivity)
    assert deposit.activity_type == ActivityType.CSD and deposit.net_amount == 5_000.0
    assert withdrawal.activity_type == ActivityType.CSW and withdrawal.net_amount == -2_500.25
    assert deposit.date == withdrawal.date == date(2025, 3, 10)
    assert deposit.status == NonTradeActivityStatus.EXECUTED and deposit.description == "Cash deposit"
    assert str(deposit.account_id) == trading.get_account().id.__str__()
    assert items[1]["id"].startswith("20250310110000000::")  # Alpaca's New York stamp :: uuid
    assert set(items[1]) == {
        "id", "account_id", "activity_type", "date", "net_amount", "description", "status", "symbol", "qty",
        "per_share_amount",
    }
    assert items[1]["net_amount"] == "5000" and items[0]["net_amount"] == "-2500.25"


def test_cash_flow_amounts_are_checked(market: SimMarket) -> None:
    for bad in (0, -5, float("nan"), float("inf"), 0.001):
        with pytest.raises(ValueError, match="amount"):
            market.exchange.deposit(bad)
    with pytest.raises(ValueError, match="exceeds the cash 10000"):
        market.exchange.withdraw(10_000.01)
    market.exchange.withdraw(10_000)
    assert market.exchange.account().cash == 0.0 and len(market.exchange.activities()) == 1


def test_cash_flows_over_http(market: SimMarket) -> None:
    headers = {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}
    answer = requests.post(f"{market.url}/_sim/deposit", json={"amount": 1234.5}, headers=headers, timeout=5)
    assert answer.status_code == 200 and answer.json()["result"]["net_amount"] == "1234.5"
    too_much = requests.post(f"{market.url}/_sim/withdraw", json={"amount": 1e9}, headers=headers, timeout=5)
    assert too_much.status_code == 422 and "exceeds the cash" in too_much.json()["message"]
    assert market.exchange.account().cash == 11_234.5


# ------------------------------------------------------------------------------ trade and corporate activities
def test_fills_are_trade_activities(market: SimMarket, trading: Any, clock: SimClock) -> None:
    market.exchange.set_partial_fill("MSFT", 0.5)
    partial = trading.submit_order(_buy("MSFT", 4))
    full = trading.submit_order(_buy("AAPL", 3))
    clock.advance(5)
    items = trading.get(f"{ACTIVITIES}/FILL", {"direction": "asc"})
    msft, aapl = (_parse(i) for i in items)
    assert isinstance(msft, TradeActivity) and isinstance(aapl, TradeActivity)
    assert (msft.type, msft.qty, msft.leaves_qty, msft.cum_qty) == (TradeActivityType.PARTIAL_FILL, 2, 2, 2)
    assert str(msft.order_id) == str(partial.id) and msft.side == OrderSide.BUY
    assert (aapl.type, aapl.qty, aapl.leaves_qty, aapl.cum_qty) == (TradeActivityType.FILL, 3, 0, 3)
    assert aapl.price == float(trading.get_order_by_id(full.id).filled_avg_price)
    assert aapl.transaction_time == START + timedelta(seconds=1) and aapl.order_status.value == "filled"


def test_dividend_and_split_are_non_trade_activities(market: SimMarket, trading: Any, clock: SimClock) -> None:
    wed = date(2025, 3, 12)
    market.exchange.add_dividend("JPM", wed, 1.5)
    market.exchange.add_split("NVDA", wed, 10.0)
    market.exchange.add_position("JPM", 10, 190.0)
    market.exchange.add_position("NVDA", 3, 1150.0)
    clock.set(_ny(wed, 10))
    split, div = (_parse(i) for i in trading.get(ACTIVITIES, {"activity_types": "DIV,SPLIT", "direction": "asc"}))
    assert isinstance(div, NonTradeActivity) and isinstance(split, NonTradeActivity)
    assert (div.activity_type, div.symbol, div.qty, div.per_share_amount, div.net_amount, div.date) == (
        ActivityType.DIV, "JPM", 10, 1.5, 15.0, wed
    )
    assert (split.activity_type, split.symbol, split.qty, split.net_amount) == (ActivityType.SPLIT, "NVDA", 27, 0)
    assert split.description == "10-for-1 split: 3 -> 30 NVDA shares"


# ------------------------------------------------------------------------------ query parameters and paging
def _make_activities(market: SimMarket, clock: SimClock, count: int) -> None:
    for k in range(count):
        market.exchange.deposit(k + 1)
        clock.advance(1)


def test_activities_page_by_token_100_at_a_time(market: SimMarket, trading: Any, clock: SimClock) -> None:
    _make_activities(market, clock, 250)
    pages: list[list[dict[str, Any]]] = []
    token = None
    while True:
        page = trading.get(ACTIVITIES, {"page_size": 500, **({"page_token": token} if token else {})})
        if not page:
            break
        pages.append(page)
        token = page[-1]["id"]
    assert [len(p) for p in pages] == [100, 100, 50]  # a page holds 100 at most
    amounts = [float(i["net_amount"]) for p in pages for i in p]
    assert amounts == [float(k) for k in range(250, 0, -1)]  # desc: newest first, none twice

    asc = trading.get(ACTIVITIES, {"direction": "asc", "page_size": 30})
    nxt = trading.get(ACTIVITIES, {"direction": "asc", "page_size": 30, "page_token": asc[-1]["id"]})
    assert [float(i["net_amount"]) for i in asc + nxt] == [float(k) for k in range(1, 61)]


def test_activities_filters(market: SimMarket, trading: Any, clock: SimClock) -> None:
    market.exchange.deposit(100)
    trading.submit_order(_buy("AAPL", 1))
    clock.advance(5)
    market.exchange.withdraw(50)
    clock.set(_ny(date(2025, 3, 11), 10))
    market.exchange.deposit(7)
    monday_noon = _ny(date(2025, 3, 10), 12)

    def types(**params: Any) -> list[str]:
        return [i["activity_type"] for i in trading.get(ACTIVITIES, params)]

    assert types() == ["CSD", "CSW", "FILL", "CSD"]
    assert types(activity_types="CSD") == ["CSD", "CSD"]
    assert [i["activity_type"] for i in trading.get(f"{ACTIVITIES}/CSW")] == ["CSW"]
    assert types(activity_types="CSD,CSW", direction="asc") == ["CSD", "CSW", "CSD"]
    assert types(category="trade_activity") == ["FILL"]
    assert types(category="non_trade_activity") == ["CSD", "CSW", "CSD"]
    assert types(date="2025-03-10") == ["CSW", "FILL", "CSD"]
    assert types(after=monday_noon.isoformat()) == ["CSD"]
    assert types(until=monday_noon.isoformat()) == ["CSW", "FILL", "CSD"]
    assert types(after="2025-03-10", until="2025-03-11") == ["CSW", "FILL", "CSD"]
    first = trading.get(ACTIVITIES, {"direction": "asc"})[0]
    assert types(after=START.isoformat()) == ["CSD", "CSW", "FILL"]  # exclusive: the 11:00:00 deposit is out
    assert first["activity_type"] == "CSD" and first["net_amount"] == "100"


@pytest.mark.parametrize(
    ("path", "params", "message"),
    [
        (ACTIVITIES, {"activity_types": "CSD,NOPE"}, "invalid activity type: NOPE"),
        (f"{ACTIVITIES}/NOPE", {}, "invalid activity type: NOPE"),
        (ACTIVITIES, {"date": "2025-03-10", "after": "2025-03-09"}, "date cannot be used with after or until"),
        (ACTIVITIES, {"direction": "sideways"}, "invalid direction"),
        (ACTIVITIES, {"page_size": "0"}, "invalid page_size"),
        (ACTIVITIES, {"page_token": "20250310110000000::nope"}, "invalid page_token"),
        (ACTIVITIES, {"after": "yesterday"}, "invalid after"),
        (ACTIVITIES, {"category": "fills"}, "invalid category"),
    ],
)
def test_activities_refuse_bad_parameters_with_alpacas_422(
    trading: Any, path: str, params: dict[str, Any], message: str
) -> None:
    with pytest.raises(APIError) as info:
        trading.get(path, params)
    assert info.value.status_code == 422 and message in info.value.message
    assert info.value.code == 40010001
