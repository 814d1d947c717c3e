"""HTTP behaviour of the simulated market: auth, rate-limit headers and enforcement, fault
injection (each kind, seen through the SDK or a plain client), the request log, lifecycle."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import MarketOrderRequest

from core.domain.clock import SimClock
from core.sim import SimMarket, SimMarketServer

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # where the market fixture's clock starts

HEADERS = ("X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset")


def _get(market: SimMarket, path: str, timeout: float = 5.0, **params: Any) -> requests.Response:
    return requests.get(
        f"{market.url}{path}",
        params=params,
        timeout=timeout,
        headers={"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key},
    )


def _order(cid: str) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol="XLF", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, client_order_id=cid
    )


# ------------------------------------------------------------------------------ auth, headers, routing
def test_auth_is_required_and_keys_are_never_echoed(market: SimMarket) -> None:
    for headers in (
        {},
        {"APCA-API-KEY-ID": market.api_key},
        {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": "wrong-secret"},
    ):
        answer = requests.get(f"{market.url}/v2/account", headers=headers, timeout=5)
        assert answer.status_code == 401 and answer.json() == {"message": "unauthorized."}
        assert "wrong-secret" not in answer.text and market.api_key not in answer.text
        assert all(h in answer.headers for h in HEADERS)
    bad_client = market.trading_client()
    bad_client._secret_key = "nope"
    with pytest.raises(APIError) as info:
        bad_client.get_account()
    assert info.value.status_code == 401


def test_every_answer_carries_rate_limit_headers(market: SimMarket) -> None:
    for path, status in (("/v2/account", 200), ("/v2/nowhere", 404), ("/v2/stocks/nowhere", 404)):
        answer = _get(market, path)
        assert answer.status_code == status
        assert answer.headers["X-RateLimit-Limit"] == "200"
        assert int(answer.headers["X-RateLimit-Remaining"]) < 200
        assert int(answer.headers["X-RateLimit-Reset"]) == math.ceil(START.timestamp() + 60)
        assert answer.headers["Content-Type"].startswith("application/json")
    assert _get(market, "/v2/nowhere").json() == {"code": 40410000, "message": "endpoint not found"}


def test_rate_limit_is_enforced_per_api_in_simulated_time(
    market: SimMarket, clock: SimClock, trading: Any, data: Any
) -> None:
    market.server.rate_limit_per_minute = 3
    for _ in range(3):
        trading.get_clock()
    with pytest.raises(APIError) as info:
        trading.get_clock()
    assert info.value.status_code == 429 and json.loads(str(info.value)) == {"message": "too many requests."}
    headers = info.value.response.headers  # type: ignore[union-attr]
    assert headers["X-RateLimit-Remaining"] == "0"
    assert int(headers["X-RateLimit-Reset"]) == math.ceil(START.timestamp() + 60)
    assert market.server.rate_limited_count == 1
    data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="SPY", timeframe=TimeFrame.Day, start=datetime(2025, 3, 3, tzinfo=UTC)
        )
    )  # data has its own window
    clock.advance(60)
    assert trading.get_clock().is_open
    assert market.server.rate_limited_count == 1


def test_keep_alive_reuses_one_connection(market: SimMarket, trading: Any) -> None:
    for _ in range(5):
        trading.get_account()
    assert len(market.server._connections) == 1


def test_loopback_only(market: SimMarket) -> None:
    with pytest.raises(ValueError):
        SimMarketServer(market.exchange, market.bars, host="0.0.0.0")


def test_stop_closes_the_server(market: SimMarket, trading: Any) -> None:
    trading.get_account()
    url = market.url
    market.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/v2/clock", timeout=2)
    market.stop()  # idempotent


# ------------------------------------------------------------------------------ faults
def test_injected_429_has_a_reset_header(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject("429", path_prefix="/v2/account", reset_in=5)
    with pytest.raises(APIError) as info:
        trading.get_account()
    assert info.value.status_code == 429
    assert info.value.response.headers["X-RateLimit-Reset"] == str(math.ceil(START.timestamp() + 5))  # type: ignore[union-attr]
    assert trading.get_account().cash == "10000"  # consumed once
    assert market.server.rate_limited_count == 0  # injected, not the limiter's


@pytest.mark.parametrize("status", [500, 503, 504])
def test_injected_server_errors(market: SimMarket, trading: Any, status: int) -> None:
    market.server.faults.inject(str(status), method="GET", path_prefix="/v2/clock", count=2)
    for _ in range(2):
        with pytest.raises(APIError) as info:
            trading.get_clock()
        assert info.value.status_code == status and "code" in json.loads(str(info.value))
    assert trading.get_clock().is_open


def test_hang_times_the_client_out_and_clear_releases_it(market: SimMarket) -> None:
    market.server.faults.inject("hang", path_prefix="/v2/clock", seconds=30)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.ReadTimeout):
        _get(market, "/v2/clock", timeout=0.5)
    market.server.faults.clear()
    assert time.monotonic() - started < 2.0
    assert _get(market, "/v2/clock").status_code == 200


def test_hang_through_the_sdk_session_timeout(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject("hang", path_prefix="/v2/account", seconds=30)
    original = trading._session.request

    def with_timeout(method: str, url: str, **kwargs: Any) -> Any:
        kwargs["timeout"] = 0.3
        return original(method, url, **kwargs)

    trading._session.request = with_timeout
    with pytest.raises(requests.exceptions.Timeout):
        trading.get_account()
    market.server.faults.clear()
    assert trading.get_account().cash == "10000"


def test_drop_resets_the_connection_before_processing(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject("drop", method="POST", path_prefix="/v2/orders")
    with pytest.raises(requests.ConnectionError):
        trading.submit_order(_order("dropped"))
    assert market.exchange.orders_for_client_id("dropped") == 0
    record = market.server.request_log[-1]
    assert record.status is None and record.fault == "drop"
    assert trading.submit_order(_order("dropped")).client_order_id == "dropped"


def test_accept_then_drop_creates_the_order_but_answers_nothing(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject("accept_then_drop", method="POST", path_prefix="/v2/orders")
    with pytest.raises(requests.ConnectionError):
        trading.submit_order(_order("landed"))
    assert market.exchange.orders_for_client_id("landed") == 1
    with pytest.raises(APIError) as info:
        trading.submit_order(_order("landed"))
    assert info.value.status_code == 422
    assert trading.get_order_by_client_id("landed").client_order_id == "landed"


def test_504_after_accept(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject("504_after_accept", method="POST", path_prefix="/v2/orders")
    with pytest.raises(APIError) as info:
        trading.submit_order(_order("gw"))
    assert info.value.status_code == 504
    assert market.exchange.orders_for_client_id("gw") == 1


def test_body_fault_sends_raw_non_json(market: SimMarket, trading: Any) -> None:
    market.server.faults.inject(
        "body",
        path_prefix="/v2/account",
        status=502,
        body="<html><h1>502 Bad Gateway</h1></html>",
        content_type="text/html",
    )
    with pytest.raises(APIError) as info:
        trading.get_account()
    assert info.value.status_code == 502 and "<h1>502" in str(info.value)
    market.server.faults.inject("body", path_prefix="/v2/clock", status=200, body="not json")
    with pytest.raises(ValueError):
        trading.get_clock()


def test_transform_corrupts_the_payload(market: SimMarket) -> None:
    def corrupt(payload: dict[str, Any]) -> dict[str, Any]:
        payload["bars"]["AAPL"][-1]["c"] = float("nan")
        for bar in payload["bars"]["AAPL"]:
            bar.pop("n")
        return payload

    market.server.faults.inject("transform", method="GET", path_prefix="/v2/stocks/bars", fn=corrupt)
    raw = market.data_client(raw_data=True)
    raw._retry = 0
    got = raw.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2025, 3, 3, tzinfo=UTC)
        )
    )
    assert math.isnan(got["AAPL"][-1]["c"]) and "n" not in got["AAPL"][0]
    again = raw.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols="AAPL", timeframe=TimeFrame.Day, start=datetime(2025, 3, 3, tzinfo=UTC)
        )
    )
    assert "n" in again["AAPL"][0]


def test_fault_matching_count_forever_and_probability(market: SimMarket) -> None:
    faults = market.server.faults
    forever = faults.inject("500", method="GET", path_prefix="/v2/clock", count=None)
    assert [_get(market, "/v2/clock").status_code for _ in range(3)] == [500, 500, 500]
    assert _get(market, "/v2/account").status_code == 200  # other paths untouched
    assert requests.delete(f"{market.url}/v2/clock", timeout=5).status_code != 500  # other methods too
    assert forever.fired == 3
    faults.clear()
    faults.inject("503", path_prefix="/v2/calendar", count=None, probability=0.5)
    statuses = [
        _get(market, "/v2/calendar", start="2025-03-10", end="2025-03-10").status_code for _ in range(20)
    ]
    assert 0 < statuses.count(503) < 20
    with pytest.raises(ValueError):
        faults.inject("explode")


# ------------------------------------------------------------------------------ request log
def test_request_log_records_every_request(
    market: SimMarket, clock: SimClock, trading: Any, data: Any
) -> None:
    market.server.clear_log()
    trading.get_account()
    trading.submit_order(_order("logged"))
    clock.advance(30)
    data.get_stock_bars(
        StockBarsRequest(
            symbol_or_symbols=["SPY", "QQQ"], timeframe=TimeFrame.Day, start=datetime(2025, 3, 3, tzinfo=UTC)
        )
    )
    log = market.server.request_log
    assert [(r.method, r.path, r.api, r.status) for r in log] == [
        ("GET", "/v2/account", "trading", 200),
        ("POST", "/v2/orders", "trading", 200),
        ("GET", "/v2/stocks/bars", "data", 200),
    ]
    assert log[2].query["symbols"] == "SPY,QQQ" and log[2].query["timeframe"] == "1Day"
    assert log[0].sim_time == START and log[2].sim_time == START + timedelta(seconds=30)
    assert abs(log[0].wall_time - time.time()) < 60
    assert market.server.count() == 3 and market.server.count(path_prefix="/v2/orders", method="POST") == 1
    assert market.server.count(api="data") == 1
    market.server.clear_log()
    assert market.server.count() == 0
    assert market.server.errors == []
