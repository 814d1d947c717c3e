"""Market-data API of the simulated market, through the real alpaca-py SDK (and raw HTTP where the
SDK hides the detail: tokens, limits, error bodies)."""

from __future__ import annotations

import base64
import math
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.models import Bar, BarSet
from alpaca.data.requests import StockBarsRequest, StockLatestBarRequest
from alpaca.data.timeframe import TimeFrame, TimeFrameUnit

from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.clock import SimClock
from core.domain.market_calendar import bar_timestamp, get_market_calendar
from core.sim import SimMarket, start_sim_market

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # where the market fixture's clock starts

CAL = get_market_calendar()
BARS = "/v2/stocks/bars"


def _get(market: SimMarket, path: str, **params: Any) -> requests.Response:
    return requests.get(
        f"{market.url}{path}",
        params=params,
        timeout=5,
        headers={"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key},
    )


def _request(symbols: list[str], start: datetime, end: datetime | None = None, **kw: Any) -> StockBarsRequest:
    return StockBarsRequest(
        symbol_or_symbols=symbols, timeframe=TimeFrame.Day, start=start, end=end, feed=DataFeed.IEX, **kw
    )


def test_multi_symbol_bars_parse_and_page_through_10000_bar_pages(market: SimMarket, data: Any) -> None:
    symbols = list(DEFAULT_SYMBOL_TIERS)
    last = CAL.last_completed_session(START)
    first = CAL.sessions_back(last, 499)
    market.server.clear_log()
    barset = data.get_stock_bars(
        _request(symbols, bar_timestamp(first), bar_timestamp(last), adjustment=Adjustment.ALL)
    )
    assert isinstance(barset, BarSet) and sorted(barset.data) == sorted(symbols)
    assert all(len(barset[s]) == 500 for s in symbols)
    assert barset["AAPL"][0].timestamp == bar_timestamp(first) and barset["AAPL"][
        -1
    ].timestamp == bar_timestamp(last)
    assert all(isinstance(b, Bar) for b in barset["SPY"])
    assert market.server.count(path_prefix=BARS) == math.ceil(29 * 500 / 10_000) == 2
    first_query, second_query = (r.query for r in market.server.request_log)
    assert "page_token" not in first_query and second_query["page_token"]
    assert first_query["limit"] == second_query["limit"] == "10000"  # counted across all symbols
    frame = barset.df
    assert list(frame.columns) == ["open", "high", "low", "close", "volume", "trade_count", "vwap"]
    assert frame.index.names == ["symbol", "timestamp"]


def test_pages_are_symbol_ordered_tokens_change_and_end_with_null(market: SimMarket) -> None:
    params = {
        "symbols": "MSFT,AAPL",
        "timeframe": "1Day",
        "start": "2025-02-03",
        "end": "2025-02-14",
        "limit": 7,
    }
    whole = _get(market, BARS, **{**params, "limit": 1000}).json()
    assert list(whole["bars"]) == ["AAPL", "MSFT"] and whole["next_page_token"] is None
    rows: list[tuple[str, str]] = []
    tokens: list[str] = []
    token = None
    while True:
        page = _get(market, BARS, **params, **({"page_token": token} if token else {})).json()
        assert sum(len(v) for v in page["bars"].values()) <= 7
        rows += [(s, b["t"]) for s, bars in page["bars"].items() for b in bars]
        token = page["next_page_token"]
        if token is None:
            break
        tokens.append(token)
    assert rows == [(s, b["t"]) for s, bars in whole["bars"].items() for b in bars]
    assert len(rows) == 20 and len(tokens) == 2 and len(set(tokens)) == 2
    assert base64.b64decode(tokens[0]).decode() == "AAPL|D|2025-02-11T05:00:00.000000000Z"
    desc = _get(market, BARS, **{**params, "limit": 1000, "sort": "desc"}).json()
    assert [b["t"] for b in desc["bars"]["AAPL"]] == [b["t"] for b in reversed(whole["bars"]["AAPL"])]
    paged: list[tuple[str, str]] = []
    token = None
    while True:
        page = _get(market, BARS, **params, sort="desc", **({"page_token": token} if token else {})).json()
        paged += [(s, b["t"]) for s, bars in page["bars"].items() for b in bars]
        token = page["next_page_token"]
        if token is None:
            break
    assert paged == [(s, b["t"]) for s, bars in desc["bars"].items() for b in bars]


def test_daily_bars_are_stamped_midnight_new_york(market: SimMarket) -> None:
    got = _get(market, BARS, symbols="SPY", timeframe="1Day", start="2024-07-01", end="2024-07-03").json()
    assert [b["t"] for b in got["bars"]["SPY"]] == [
        "2024-07-01T04:00:00Z",
        "2024-07-02T04:00:00Z",
        "2024-07-03T04:00:00Z",
    ]
    got = _get(
        market,
        BARS,
        symbols="SPY",
        timeframe="1Day",
        start="2024-01-02T05:00:00Z",
        end="2024-01-03T05:00:00+00:00",
    ).json()
    assert [b["t"] for b in got["bars"]["SPY"]] == ["2024-01-02T05:00:00Z", "2024-01-03T05:00:00Z"]
    bar = got["bars"]["SPY"][0]
    assert set(bar) == {"t", "o", "h", "l", "c", "v", "n", "vw"} and isinstance(bar["v"], int)


def test_no_future_session_and_the_in_progress_bar(market: SimMarket, clock: SimClock, data: Any) -> None:
    far = datetime(2025, 12, 31, tzinfo=UTC)
    clock.set(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))  # Monday 08:00 New York
    bars = data.get_stock_bars(_request(["AAPL"], datetime(2025, 3, 3, tzinfo=UTC), far))["AAPL"]
    assert bars[-1].timestamp == bar_timestamp(date(2025, 3, 7))

    clock.set(START)  # Monday 11:00, open
    bars = data.get_stock_bars(_request(["AAPL"], datetime(2025, 3, 3, tzinfo=UTC), far))["AAPL"]
    today = bars[-1]
    full = market.bars.session_bar("AAPL", date(2025, 3, 10))
    assert today.timestamp == bar_timestamp(date(2025, 3, 10))
    assert today.close == market.bars.price_at("AAPL", START) and today.open == full.open
    assert today.volume < full.volume and today.low <= today.close <= today.high

    clock.set(datetime(2025, 3, 10, 21, 0, tzinfo=UTC))  # after the close
    bars = data.get_stock_bars(_request(["AAPL"], datetime(2025, 3, 3, tzinfo=UTC)))["AAPL"]
    assert (bars[-1].close, bars[-1].volume, bars[-1].vwap) == (full.close, full.volume, full.vwap)


def test_same_seed_same_bars_any_window(market: SimMarket, clock: SimClock, data: Any) -> None:
    other = start_sim_market(clock=clock, seed=42)
    different = start_sim_market(clock=clock, seed=43)
    try:
        wide = other.data_client().get_stock_bars(_request(["NVDA"], datetime(2024, 1, 1, tzinfo=UTC)))[
            "NVDA"
        ]
        narrow = data.get_stock_bars(_request(["NVDA"], datetime(2025, 2, 1, tzinfo=UTC)))["NVDA"]
        assert [(b.timestamp, b.close) for b in narrow] == [
            (b.timestamp, b.close) for b in wide[-len(narrow) :]
        ]
        again = different.data_client().get_stock_bars(_request(["NVDA"], datetime(2025, 2, 1, tzinfo=UTC)))
        assert [b.close for b in again["NVDA"]] != [b.close for b in narrow]
    finally:
        other.stop()
        different.stop()


def test_symbols_without_data_are_absent(market: SimMarket, data: Any) -> None:
    market.exchange.remove_asset("ZZZZ")
    barset = data.get_stock_bars(_request(["AAPL", "ZZZZ"], datetime(2025, 3, 3, tzinfo=UTC)))
    assert list(barset.data) == ["AAPL"]
    with pytest.raises(KeyError):
        barset["ZZZZ"]
    empty = _get(market, BARS, symbols="AAPL", timeframe="1Day", start="2000-01-01", end="2003-12-31").json()
    assert empty == {"bars": {}, "next_page_token": None, "currency": "USD"}


def test_bad_parameters_are_400_with_a_message(market: SimMarket, data: Any) -> None:
    cases: list[dict[str, Any]] = [
        {"symbols": "AAPL", "timeframe": "1Day", "limit": 10_001},
        {"symbols": "AAPL", "timeframe": "1Day", "limit": 0},
        {"symbols": "AAPL", "timeframe": "5Min"},
        {"symbols": "AAPL", "timeframe": "7Fortnight"},
        {"symbols": "../etc", "timeframe": "1Day"},
        {"timeframe": "1Day"},
        {"symbols": "AAPL", "timeframe": "1Day", "start": "yesterday"},
        {"symbols": "AAPL", "timeframe": "1Day", "page_token": "not-a-token"},
    ]
    for params in cases:
        answer = _get(market, BARS, **params)
        assert answer.status_code == 400 and set(answer.json()) == {"message"}, params
    with pytest.raises(APIError) as info:
        data.get_stock_bars(
            StockBarsRequest(
                symbol_or_symbols="AAPL",
                timeframe=TimeFrame(5, TimeFrameUnit.Minute),
                start=datetime(2025, 3, 3, tzinfo=UTC),
            )
        )
    assert info.value.status_code == 400 and "1Day" in str(info.value)


def test_latest_bar(market: SimMarket, clock: SimClock, data: Any) -> None:
    latest = data.get_stock_latest_bar(
        StockLatestBarRequest(symbol_or_symbols=["AAPL", "SPY"], feed=DataFeed.IEX)
    )
    assert sorted(latest) == ["AAPL", "SPY"]
    bar = latest["AAPL"]
    assert (
        isinstance(bar, Bar) and bar.timestamp == START and bar.close == market.bars.price_at("AAPL", START)
    )
    answer = _get(market, "/v2/stocks/bars/latest", symbols="AAPL", limit=1)
    assert answer.status_code == 400 and answer.json() == {"message": "unexpected query parameter(s): limit"}
    clock.advance(90)
    later = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert later.timestamp == START + timedelta(minutes=1)
