"""Real-market events of the simulated market that are not corporate actions, through the real
alpaca-py SDK: latest trades and quotes at the true price, a trading block, bad prints on the data
feed only, and the front proxy's 414 for an over-long URL. The HTTP controls (`POST /_sim/...`) are
exercised with plain requests, as a test whose market runs in another process would."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import (
    StockBarsRequest,
    StockLatestBarRequest,
    StockLatestQuoteRequest,
    StockLatestTradeRequest,
    StockSnapshotRequest,
)
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderSide, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from core.domain.clock import SimClock
from core.domain.market_calendar import bar_timestamp
from core.sim import SimMarket

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York, where the fixture starts
TODAY = date(2025, 3, 10)
FRIDAY = date(2025, 3, 7)


def _headers(market: SimMarket) -> dict[str, str]:
    return {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}


def _control(market: SimMarket, name: str, body: Any) -> requests.Response:
    return requests.post(f"{market.url}/_sim/{name}", json=body, headers=_headers(market), timeout=5)


def _buy(symbol: str, qty: float) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)


def _daily(data: Any, symbol: str, start: date, **kw: Any) -> list[Any]:
    request = StockBarsRequest(
        symbol_or_symbols=[symbol], timeframe=TimeFrame.Day, start=bar_timestamp(start), feed=DataFeed.IEX, **kw
    )
    return list(data.get_stock_bars(request)[symbol])


# ------------------------------------------------------------------------------ latest trade / quote
def test_latest_trades_and_quotes_are_batched_at_the_exchange_price(market: SimMarket, data: Any) -> None:
    market.exchange.remove_asset("XLE")
    trades = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols=["AAPL", "SPY", "XLE"]))
    quotes = data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols=["AAPL", "SPY", "XLE"]))
    assert sorted(trades) == sorted(quotes) == ["AAPL", "SPY"]  # no data, no entry (as Alpaca)
    for symbol in ("AAPL", "SPY"):
        price = market.bars.price_at(symbol, START)
        assert trades[symbol].price == price and trades[symbol].timestamp == START
        quote = quotes[symbol]
        assert quote.bid_price < price < quote.ask_price
        assert quote.ask_price - quote.bid_price == pytest.approx(max(round(price * 0.0002, 2), 0.01), abs=0.011)


def test_latest_trade_after_the_close_is_the_close_stamped_at_the_close(
    market: SimMarket, clock: SimClock, data: Any
) -> None:
    clock.set(datetime(2025, 3, 11, 1, 0, tzinfo=UTC))  # Monday 21:00 New York
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="MSFT"))["MSFT"]
    assert trade.price == market.bars.session_bar("MSFT", TODAY).close
    assert trade.timestamp == datetime(2025, 3, 10, 20, 0, tzinfo=UTC)


def test_latest_endpoints_refuse_unknown_parameters(market: SimMarket) -> None:
    for path in ("/v2/stocks/trades/latest", "/v2/stocks/quotes/latest"):
        answer = requests.get(
            f"{market.url}{path}", params={"symbols": "AAPL", "limit": 5}, headers=_headers(market), timeout=5
        )
        assert answer.status_code == 400 and answer.json() == {"message": "unexpected query parameter(s): limit"}


# ------------------------------------------------------------------------------ trading block
def test_trading_block_reports_the_flag_and_rejects_every_order_post(
    market: SimMarket, trading: Any, clock: SimClock
) -> None:
    trading.submit_order(_buy("AAPL", 2))
    clock.advance(5)
    resting = trading.submit_order(
        LimitOrderRequest(symbol="MSFT", qty=1, side=OrderSide.BUY, time_in_force=TimeInForce.DAY, limit_price=1.0)
    )
    market.exchange.set_trading_blocked(True)
    assert trading.get_account().trading_blocked is True
    for call in (lambda: trading.submit_order(_buy("SPY", 1)), lambda: trading.close_position("AAPL")):
        with pytest.raises(APIError) as info:
            call()
        assert info.value.status_code == 403
        assert json.loads(str(info.value)) == {"code": 40310000, "message": "account is not authorized to trade"}
    trading.cancel_order_by_id(resting.id)  # cancels still work while blocked
    assert len(market.exchange.all_orders()) == 2 and market.exchange.positions()["AAPL"].qty == 2

    market.exchange.set_trading_blocked(False)
    assert trading.get_account().trading_blocked is False
    assert trading.submit_order(_buy("SPY", 1)).status.value == "accepted"


# ------------------------------------------------------------------------------ bad prints
def test_bad_print_in_progress_shows_in_bars_but_not_in_trades_fills_or_positions(
    market: SimMarket, data: Any, trading: Any, clock: SimClock
) -> None:
    true_today = market.bars.partial_bar("SPY", TODAY, START)
    true_friday = market.bars.session_bar("SPY", FRIDAY)
    market.exchange.set_bad_print("SPY", TODAY, 0.1)

    bars = _daily(data, "SPY", date(2025, 3, 3), adjustment=Adjustment.ALL)
    assert bars[-1].timestamp == bar_timestamp(TODAY)
    assert bars[-1].close == round(true_today.close * 0.1, 4) and bars[-1].open == round(true_today.open * 0.1, 4)
    assert bars[-1].volume == true_today.volume
    assert bars[-2].close == true_friday.close  # the other sessions are untouched
    latest_bar = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="SPY"))["SPY"]
    _, true_minute = market.bars.minute_bar("SPY", START)  # type: ignore[misc]
    assert latest_bar.close == round(true_minute.close * 0.1, 4)
    snapshot = data.get_stock_snapshot(StockSnapshotRequest(symbol_or_symbols="SPY"))["SPY"]
    assert snapshot.daily_bar.close == bars[-1].close and snapshot.minute_bar.close == latest_bar.close
    assert snapshot.previous_daily_bar.close == true_friday.close

    price = market.bars.price_at("SPY", START)
    assert snapshot.latest_trade.price == price
    assert data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="SPY"))["SPY"].price == price
    assert data.get_stock_latest_quote(StockLatestQuoteRequest(symbol_or_symbols="SPY"))["SPY"].bid_price > price / 2

    order = trading.submit_order(_buy("SPY", 1))
    clock.advance(5)
    filled = trading.get_order_by_id(order.id)
    fill_price = market.bars.price_at("SPY", START + timedelta(seconds=1))
    assert float(filled.filled_avg_price) == fill_price
    position = trading.get_open_position("SPY")
    assert float(position.current_price) == market.bars.price_at("SPY", clock.now())
    assert float(position.avg_entry_price) == fill_price

    market.exchange.clear_bad_prints()
    assert _daily(data, "SPY", date(2025, 3, 3))[-1].close == market.bars.price_at("SPY", clock.now())


def test_bad_print_on_a_completed_session_stays_in_the_history(
    market: SimMarket, data: Any, clock: SimClock
) -> None:
    true_friday = market.bars.session_bar("AAPL", FRIDAY)
    market.exchange.set_bad_print("AAPL", FRIDAY, 10.0)
    clock.set(datetime(2025, 3, 10, 12, 0, tzinfo=UTC))  # Monday 08:00: Friday's bar is the latest
    bars = _daily(data, "AAPL", date(2025, 3, 3))
    assert [b.timestamp for b in bars][-1] == bar_timestamp(FRIDAY)
    assert bars[-1].high == round(true_friday.high * 10.0, 4) and bars[-1].vwap == round(true_friday.vwap * 10, 4)
    assert bars[-2].close == market.bars.session_bar("AAPL", date(2025, 3, 6)).close
    latest = data.get_stock_latest_bar(StockLatestBarRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert latest.close == round(true_friday.close * 10.0, 4)  # Friday's last minute is still the latest
    trade = data.get_stock_latest_trade(StockLatestTradeRequest(symbol_or_symbols="AAPL"))["AAPL"]
    assert trade.price == true_friday.close
    clock.set(START)  # Monday's session has its own, true, bars
    assert _daily(data, "AAPL", TODAY)[-1].close == market.bars.price_at("AAPL", START)


def test_bad_print_arguments_are_checked(market: SimMarket) -> None:
    with pytest.raises(ValueError, match="factor"):
        market.exchange.set_bad_print("SPY", TODAY, 0.0)
    with pytest.raises(ValueError, match="not an NYSE session"):
        market.exchange.set_bad_print("SPY", date(2025, 3, 8), 0.1)
    with pytest.raises(ValueError, match="symbol"):
        market.exchange.set_bad_print("not a symbol", TODAY, 0.1)
    assert market.exchange.bad_prints() == {}


# ------------------------------------------------------------------------------ 414
def test_a_url_longer_than_max_url_bytes_gets_the_proxys_414(market: SimMarket, data: Any) -> None:
    symbols = [f"Z{chr(65 + i // 26 % 26)}{chr(65 + i % 26)}{chr(65 + i // 676)}" for i in range(2000)]
    request = StockBarsRequest(symbol_or_symbols=symbols, timeframe=TimeFrame.Day, start=bar_timestamp(TODAY))
    before = requests.get(f"{market.url}/v2/clock", headers=_headers(market), timeout=5)
    with pytest.raises(APIError) as info:
        data.get_stock_bars(request)
    assert info.value.status_code == 414
    assert "414 Request-URI Too Large" in str(info.value)
    record = market.server.request_log[-1]
    assert record.status == 414 and record.path == "/v2/stocks/bars"
    after = requests.get(f"{market.url}/v2/clock", headers=_headers(market), timeout=5)
    # The proxy's refusal takes no rate-limit slot: only the two clock calls counted.
    assert int(before.headers["X-RateLimit-Remaining"]) - int(after.headers["X-RateLimit-Remaining"]) == 1

    market.server.max_url_bytes = 100_000
    assert len(data.get_stock_bars(request).data) == 2000  # the same request is served under a higher bound


def test_the_414_bound_is_on_the_whole_request_target(market: SimMarket) -> None:
    market.server.max_url_bytes = 60
    path = "/v2/stocks/trades/latest?symbols="
    fits = path + "A" * (60 - len(path))
    assert len(fits) == 60
    ok = requests.get(f"{market.url}{fits}", headers=_headers(market), timeout=5)
    too_long = requests.get(f"{market.url}{fits},B", headers=_headers(market), timeout=5)
    assert ok.status_code == 400  # reached the API: a 60-letter symbol is invalid there
    assert too_long.status_code == 414 and too_long.headers["Content-Type"] == "text/html"


# ------------------------------------------------------------------------------ HTTP controls
def test_controls_over_http_drive_the_same_events(market: SimMarket, trading: Any) -> None:
    assert _control(market, "set_trading_blocked", {"blocked": True}).json() == {"ok": True}
    assert market.exchange.trading_blocked and trading.get_account().trading_blocked
    assert _control(market, "set_trading_blocked", {"blocked": False}).status_code == 200
    assert not market.exchange.trading_blocked

    assert _control(market, "set_bad_print", {"symbol": "SPY", "session": "2025-03-10", "factor": 0.1}).ok
    assert market.exchange.bad_prints() == {("SPY", TODAY): 0.1}
    assert _control(market, "clear_bad_prints", {}).ok and market.exchange.bad_prints() == {}

    halted = _control(market, "set_asset", {"symbol": "AAPL", "tradable": False})
    assert halted.json()["result"]["tradable"] is False and trading.get_asset("AAPL").tradable is False


@pytest.mark.parametrize(
    ("name", "body", "status", "message"),
    [
        ("no_such_control", {}, 404, "no control endpoint POST /_sim/no_such_control"),
        ("set_trading_blocked", [], 400, "expected a JSON object body"),
        ("set_trading_blocked", {}, 400, "missing parameter blocked"),
        ("set_trading_blocked", {"blocked": "yes"}, 400, "blocked must be true or false, not 'yes'"),
        ("set_trading_blocked", {"blocked": True, "why": 1}, 400, "unknown parameter(s) why"),
        ("set_bad_print", {"symbol": "SPY", "session": "10/03/2025", "factor": 0.1}, 400, "session must be a date"),
        ("set_bad_print", {"symbol": "SPY", "session": "2025-03-08", "factor": 0.1}, 422, "not an NYSE session"),
        ("set_bad_print", {"symbol": "SPY", "session": "2025-03-10", "factor": -1}, 422, "factor must be"),
        ("set_asset", {"symbol": "NOT A SYMBOL", "tradable": False}, 422, "unknown symbol"),
    ],
)
def test_controls_refuse_bad_requests_with_one_clear_message(
    market: SimMarket, name: str, body: Any, status: int, message: str
) -> None:
    answer = _control(market, name, body)
    assert answer.status_code == status and message in answer.json()["message"]


def test_controls_need_the_api_keys(market: SimMarket) -> None:
    answer = requests.post(f"{market.url}/_sim/set_trading_blocked", json={"blocked": True}, timeout=5)
    assert answer.status_code == 401 and not market.exchange.trading_blocked


def test_start_sim_market_takes_the_url_bound(clock: SimClock) -> None:
    from core.sim import start_sim_market

    small = start_sim_market(clock=clock, max_url_bytes=100)
    try:
        assert small.server.max_url_bytes == 100
        url = f"{small.url}/v2/stocks/trades/latest?symbols=" + ",".join(["AAPL"] * 20)
        assert requests.get(url, headers=_headers(small), timeout=5).status_code == 414
    finally:
        small.stop()


# ------------------------------------------------------------------------------ trades by hand
def test_a_trade_by_hand_is_an_order_with_a_foreign_id_and_a_fill(market: SimMarket, trading: Any) -> None:
    trading.submit_order(_buy("AAPL", 2))
    order = market.exchange.trade_externally("AAPL", "buy", 3)
    price = market.bars.price_at("AAPL", START)
    assert order["status"] == "filled" and float(order["filled_avg_price"]) == price
    assert market.exchange.orders_for_client_id(order["client_order_id"]) == 1
    assert float(trading.get_open_position("AAPL").qty) == 3  # the API order has not filled yet (1 s delay)
    assert trading.get_order_by_id(order["id"]).client_order_id == order["client_order_id"]
    fills = trading.get("/account/activities/FILL")
    assert [(f["side"], f["qty"], f["order_id"]) for f in fills] == [("buy", "3", order["id"])]
    assert market.exchange.account().cash == pytest.approx(10_000 - 3 * price, abs=0.01)

    sold = _control(market, "trade_externally", {"symbol": "AAPL", "side": "sell", "qty": 1})
    assert sold.status_code == 200 and market.exchange.positions()["AAPL"].qty == 2
    too_many = _control(market, "trade_externally", {"symbol": "AAPL", "side": "sell", "qty": 5})
    assert too_many.status_code == 422 and too_many.json()["message"] == "cannot sell 5 AAPL: 2 held"
    with pytest.raises(ValueError, match="needs more than the cash"):
        market.exchange.trade_externally("COST", "buy", 100)
    closed = _control(market, "close_position_externally", {"symbol": "AAPL"})
    assert closed.status_code == 200 and closed.json()["result"]["filled_qty"] == "2"
    assert "AAPL" not in market.exchange.positions()
    assert _control(market, "close_position_externally", {"symbol": "AAPL"}).status_code == 422  # none left
    market.exchange.trade_externally("AAPL", "buy", 1)
    market.exchange.set_trading_blocked(True)
    with pytest.raises(ValueError, match="blocked"):
        market.exchange.trade_externally("AAPL", "buy", 1)
    with pytest.raises(ValueError, match="blocked"):
        market.exchange.close_position_externally("AAPL")
