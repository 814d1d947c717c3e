"""Unscheduled closures of the simulated market through the real alpaca-py SDK: a day that
exchange_calendars lists as a session but on which the market does not open is closed everywhere
the SDK looks (clock, calendar, bars, latest data, fills), and every other session is unchanged.

Wednesday 2025-03-12 is closed; the market starts Monday 2025-03-10 11:00 New York."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

import pytest
import requests
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import GetCalendarRequest, LimitOrderRequest, MarketOrderRequest

from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, bar_timestamp, get_market_calendar
from core.sim import SimMarket, start_sim_market
from core.sim.bars import SyntheticBars

MON, TUE, WED, THU, FRI = (date(2025, 3, d) for d in (10, 11, 12, 13, 14))
MODEL = SyntheticBars(42)


def _ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=NEW_YORK)


@pytest.fixture
def closed() -> Iterator[SimMarket]:
    market = start_sim_market(clock=SimClock(_ny(MON, 11)), seed=42, closures=[WED])
    try:
        yield market
    finally:
        market.stop()


def _clients(market: SimMarket) -> tuple[Any, Any]:
    trading, data = market.trading_client(), market.data_client()
    trading._retry = data._retry = 0
    return trading, data


def _sessions(data: Any, start: date, **kw: Any) -> list[date]:
    request = StockBarsRequest(
        symbol_or_symbols=["AAPL"], timeframe=TimeFrame.Day, start=bar_timestamp(start), feed=DataFeed.IEX, **kw
    )
    return [b.timestamp.astimezone(NEW_YORK).date() for b in data.get_stock_bars(request)["AAPL"]]


def test_the_calendar_library_says_open(closed: SimMarket) -> None:
    assert get_market_calendar().is_session(WED) and closed.bars.closures == [WED]


def test_clock_is_closed_all_day_and_skips_the_closure(closed: SimMarket) -> None:
    trading, _ = _clients(closed)
    clock = closed.clock
    assert isinstance(clock, SimClock)
    clock.set(_ny(TUE, 17))
    tuesday_evening = trading.get_clock()
    assert not tuesday_evening.is_open
    assert tuesday_evening.next_open == _ny(THU, 9, 30) and tuesday_evening.next_close == _ny(THU, 16)
    for hour in (9, 10, 12, 15):
        clock.set(_ny(WED, hour, 45))
        wednesday = trading.get_clock()
        assert not wednesday.is_open and wednesday.next_open == _ny(THU, 9, 30)
    clock.set(_ny(THU, 10))
    assert trading.get_clock().is_open and trading.get_clock().next_close == _ny(THU, 16)


def test_calendar_leaves_the_closure_out(closed: SimMarket) -> None:
    trading, _ = _clients(closed)
    days = trading.get_calendar(GetCalendarRequest(start=MON, end=FRI))
    assert [d.date for d in days] == [MON, TUE, THU, FRI]
    raw = requests.get(
        f"{closed.url}/v2/calendar", params={"start": "2025-03-11", "end": "2025-03-11"},
        headers={"APCA-API-KEY-ID": closed.api_key, "APCA-API-SECRET-KEY": closed.secret_key}, timeout=5,
    ).json()
    assert raw[0]["settlement_date"] == "2025-03-13"  # T+1 is the next day the market opens


def test_no_bar_for_the_closure_and_the_other_bars_are_unchanged(closed: SimMarket) -> None:
    _, data = _clients(closed)
    clock = closed.clock
    assert isinstance(clock, SimClock)
    clock.set(_ny(WED, 12))  # no in-progress bar on a closed day: Tuesday is the latest
    assert _sessions(data, MON) == [MON, TUE]
    latest = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert latest.timestamp.astimezone(NEW_YORK) == _ny(TUE, 15, 59)
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert trade.price == MODEL.session_bar("AAPL", TUE).close and trade.timestamp == _ny(TUE, 16)

    clock.set(_ny(FRI, 18))
    assert _sessions(data, MON) == [MON, TUE, THU, FRI]
    assert _sessions(data, MON, adjustment=Adjustment.ALL, sort="desc") == [FRI, THU, TUE, MON]
    request = StockBarsRequest(symbol_or_symbols=["AAPL"], timeframe=TimeFrame.Day, start=bar_timestamp(MON))
    bars = {b.timestamp.astimezone(NEW_YORK).date(): b for b in data.get_stock_bars(request)["AAPL"]}
    for day in (MON, TUE, THU, FRI):
        model = MODEL.session_bar("AAPL", day)
        assert (bars[day].open, bars[day].close, bars[day].volume) == (model.open, model.close, model.volume)
    assert closed.bars.daily_bars("AAPL", MON, FRI) == [MODEL.session_bar("AAPL", d) for d in (MON, TUE, THU, FRI)]
    clock.set(_ny(THU, 12))
    snapshot = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert snapshot.previous_daily_bar.timestamp == bar_timestamp(TUE)


def test_pages_step_over_the_closure(closed: SimMarket) -> None:
    clock = closed.clock
    assert isinstance(clock, SimClock)
    clock.set(_ny(FRI, 18))
    headers = {"APCA-API-KEY-ID": closed.api_key, "APCA-API-SECRET-KEY": closed.secret_key}
    for sort in ("asc", "desc"):
        params: dict[str, Any] = {
            "symbols": "AAPL,MSFT", "timeframe": "1Day", "start": "2025-03-10", "end": "2025-03-14", "limit": 3,
            "sort": sort,
        }
        rows, token = [], None
        while True:
            page = requests.get(
                f"{closed.url}/v2/stocks/bars", params={**params, **({"page_token": token} if token else {})},
                headers=headers, timeout=5,
            ).json()
            rows += [(s, b["t"][:10]) for s, bars in page["bars"].items() for b in bars]
            token = page["next_page_token"]
            if token is None:
                break
        days = ["2025-03-10", "2025-03-11", "2025-03-13", "2025-03-14"]
        days = days if sort == "asc" else days[::-1]
        assert rows == [("AAPL", d) for d in days] + [("MSFT", d) for d in days]


def test_orders_wait_through_the_closure(closed: SimMarket) -> None:
    trading, _ = _clients(closed)
    clock = closed.clock
    assert isinstance(clock, SimClock)
    clock.set(_ny(TUE, 10))
    resting = trading.submit_order(
        LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.GTC, limit_price=1.0)
    )
    clock.set(_ny(WED, 11))
    during = trading.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=2, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    clock.set(_ny(WED, 15, 59))
    assert trading.get_order_by_id(during.id).status == OrderStatus.ACCEPTED
    assert trading.get_order_by_id(resting.id).status == OrderStatus.NEW  # rolled past Wednesday, still open
    assert closed.exchange.all_orders()[0].session == closed.bars.index_of(THU)
    clock.set(_ny(THU, 9, 31))
    filled = trading.get_order_by_id(during.id)
    assert filled.status == OrderStatus.FILLED and filled.filled_at == _ny(THU, 9, 30)
    assert float(filled.filled_avg_price) == MODEL.session_bar("AAPL", THU).open
    position = trading.get_open_position("AAPL")
    assert float(position.lastday_price) == MODEL.session_bar("AAPL", TUE).close
    account = trading.get_account()
    assert float(account.last_equity) == 10_000.0  # Tuesday's close, the last one


def test_a_closure_added_later_moves_waiting_orders(market: SimMarket, clock: SimClock) -> None:
    trading, _ = _clients(market)
    clock.set(_ny(TUE, 17))
    waiting = trading.submit_order(
        MarketOrderRequest(symbol="AAPL", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)
    )
    with pytest.raises(ValueError, match="opened already"):
        market.exchange.add_closure(TUE)
    with pytest.raises(ValueError, match="not an NYSE session"):
        market.exchange.add_closure(date(2025, 3, 15))
    answer = requests.post(
        f"{market.url}/_sim/add_closure", json={"date": "2025-03-12"},
        headers={"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}, timeout=5,
    )
    assert answer.status_code == 200 and market.bars.closures == [WED]
    clock.set(_ny(WED, 12))
    assert trading.get_order_by_id(waiting.id).status == OrderStatus.ACCEPTED
    assert not trading.get_clock().is_open
    clock.set(_ny(THU, 10))
    assert trading.get_order_by_id(waiting.id).filled_at == _ny(THU, 9, 30)


def test_a_split_whose_ex_date_is_closed_takes_effect_at_the_next_open(closed: SimMarket) -> None:
    clock = closed.clock
    assert isinstance(clock, SimClock)
    closed.exchange.add_split("NVDA", WED, 10.0)
    closed.exchange.add_position("NVDA", 2, 1180.0)
    clock.set(_ny(WED, 12))
    assert closed.exchange.positions()["NVDA"].qty == 2
    clock.set(_ny(THU, 9, 31))
    assert closed.exchange.positions()["NVDA"].qty == 20
