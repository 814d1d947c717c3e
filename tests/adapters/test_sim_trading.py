"""Trading API of the simulated market, through the real alpaca-py SDK: every shape the daemon
relies on parses into the SDK's models, and Alpaca's order rules answer with Alpaca's errors."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.common.exceptions import APIError
from alpaca.trading.enums import AssetStatus, OrderSide, OrderStatus, QueryOrderStatus, TimeInForce
from alpaca.trading.models import Asset, Calendar, Clock, Order, Position, TradeAccount
from alpaca.trading.requests import (
    ClosePositionRequest,
    GetAssetsRequest,
    GetCalendarRequest,
    GetOrdersRequest,
    LimitOrderRequest,
    MarketOrderRequest,
)

from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.sim import SimMarket

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # where the market fixture's clock starts

CAL = get_market_calendar()


def _buy(
    symbol: str,
    qty: float | None = None,
    notional: float | None = None,
    cid: str | None = None,
    tif: TimeInForce = TimeInForce.DAY,
) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, notional=notional, side=OrderSide.BUY, time_in_force=tif, client_order_id=cid
    )


def _sell(symbol: str, qty: float | None = None, notional: float | None = None) -> MarketOrderRequest:
    return MarketOrderRequest(
        symbol=symbol, qty=qty, notional=notional, side=OrderSide.SELL, time_in_force=TimeInForce.DAY
    )


def _error(call: Any) -> tuple[int, dict[str, Any]]:
    with pytest.raises(APIError) as info:
        call()
    return int(info.value.status_code or 0), json.loads(str(info.value))


# ------------------------------------------------------------------------------ conformance
def test_account_clock_calendar_and_assets_parse(trading: Any) -> None:
    account = trading.get_account()
    assert isinstance(account, TradeAccount)
    assert account.cash == "10000" and account.equity == "10000" and account.buying_power == "10000"
    assert account.last_equity == "10000" and account.multiplier == "1" and account.status.value == "ACTIVE"
    assert trading.get_account_configurations().fractional_trading is True

    clock = trading.get_clock()
    assert isinstance(clock, Clock) and clock.is_open
    assert clock.timestamp.utcoffset() == timedelta(hours=-4)  # ET offset (EDT on 2025-03-10)
    assert clock.next_close == datetime(2025, 3, 10, 16, 0, tzinfo=NEW_YORK)
    assert clock.next_open == datetime(2025, 3, 11, 9, 30, tzinfo=NEW_YORK)

    days = trading.get_calendar(GetCalendarRequest(start=date(2025, 11, 26), end=date(2025, 12, 1)))
    assert all(isinstance(d, Calendar) for d in days)
    assert [(d.date, d.close.hour) for d in days] == [
        (date(2025, 11, 26), 16),
        (date(2025, 11, 28), 13),
        (date(2025, 12, 1), 16),
    ]

    assets = trading.get_all_assets(GetAssetsRequest(status=AssetStatus.ACTIVE))
    assert len(assets) == 29 and all(isinstance(a, Asset) for a in assets)
    flags = {a.symbol: a.fractionable for a in assets}
    assert not flags["AVGO"] and not flags["NFLX"] and not flags["XLE"] and flags["AAPL"]
    aapl = trading.get_asset("AAPL")
    assert aapl.symbol == "AAPL" and aapl.tradable and aapl.asset_class.value == "us_equity"
    assert trading.get_asset(str(aapl.id)).symbol == "AAPL"


def test_unknown_asset_is_404(market: SimMarket, trading: Any) -> None:
    market.exchange.remove_asset("ZZZZ")
    status, body = _error(lambda: trading.get_asset("ZZZZ"))
    assert status == 404 and body == {"code": 40410000, "message": "asset not found for ZZZZ"}


def test_orders_positions_and_lookups_parse(market: SimMarket, clock: SimClock, trading: Any) -> None:
    qty_order = trading.submit_order(_buy("AAPL", qty=2, cid="qty-1"))
    notional_order = trading.submit_order(_buy("MSFT", notional=150.0))
    limit_order = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY", qty=1, limit_price=100.0, side=OrderSide.BUY, time_in_force=TimeInForce.GTC
        )
    )
    for order in (qty_order, notional_order, limit_order):
        assert isinstance(order, Order) and order.status is OrderStatus.ACCEPTED
    assert qty_order.qty == "2" and qty_order.notional is None and qty_order.client_order_id == "qty-1"
    assert notional_order.notional == "150" and notional_order.qty is None
    assert len(notional_order.client_order_id) == 36  # generated uuid4
    assert limit_order.limit_price == "100" and limit_order.time_in_force is TimeInForce.GTC

    clock.advance(5)
    filled = trading.get_order_by_id(qty_order.id)
    assert filled.status is OrderStatus.FILLED and filled.filled_qty == "2"
    price = market.bars.price_at("AAPL", START + timedelta(seconds=1))
    assert float(filled.filled_avg_price) == pytest.approx(price)
    assert filled.filled_at == START + timedelta(seconds=1)
    assert trading.get_order_by_client_id("qty-1").id == qty_order.id
    msft = trading.get_order_by_id(notional_order.id)
    assert float(msft.filled_qty) == pytest.approx(150.0 / float(msft.filled_avg_price), abs=1e-8)

    positions = trading.get_all_positions()
    assert all(isinstance(p, Position) for p in positions)
    assert sorted(p.symbol for p in positions) == ["AAPL", "MSFT"]
    aapl = trading.get_open_position("AAPL")
    assert aapl.qty == "2" and aapl.side.value == "long" and aapl.qty_available == "2"
    assert float(aapl.cost_basis) == pytest.approx(2 * price)
    assert float(aapl.market_value) == pytest.approx(2 * market.bars.price_at("AAPL", clock.now()))

    everything = trading.get_orders(
        GetOrdersRequest(status=QueryOrderStatus.ALL, limit=500, nested=True, symbols=["AAPL", "MSFT", "SPY"])
    )
    assert [o.symbol for o in everything] == ["SPY", "MSFT", "AAPL"]  # newest first
    open_only = trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.OPEN))
    assert [o.id for o in open_only] == [limit_order.id]
    assert trading.get_orders(GetOrdersRequest(status=QueryOrderStatus.CLOSED, symbols=["SPY"])) == []

    assert trading.cancel_order_by_id(limit_order.id) is None
    assert trading.get_order_by_id(limit_order.id).status is OrderStatus.CANCELED
    status, body = _error(lambda: trading.cancel_order_by_id(limit_order.id))
    assert status == 422 and "canceled" in body["message"]

    closing = trading.close_position("AAPL")
    assert isinstance(closing, Order) and closing.side is OrderSide.SELL and closing.qty == "2"
    clock.advance(5)
    assert trading.get_order_by_id(closing.id).status is OrderStatus.FILLED
    status, body = _error(lambda: trading.get_open_position("AAPL"))
    assert status == 404 and body == {"code": 40410000, "message": "position does not exist"}
    assert [p.symbol for p in trading.get_all_positions()] == ["MSFT"]


def test_order_not_found_answers(trading: Any) -> None:
    status, body = _error(lambda: trading.get_order_by_client_id("never-sent"))
    assert status == 404 and body == {"code": 40410000, "message": "order not found"}
    missing = "00000000-0000-4000-8000-000000000000"
    assert _error(lambda: trading.get_order_by_id(missing))[0] == 404
    assert _error(lambda: trading.cancel_order_by_id(missing))[0] == 404


def test_close_part_of_a_position(market: SimMarket, trading: Any) -> None:
    market.exchange.add_position("XLF", 10, 40.0)
    order = trading.close_position("XLF", ClosePositionRequest(percentage="50"))
    assert order.qty == "5"


# ------------------------------------------------------------------------------ rules
def test_buying_power_is_reserved_by_open_buys_and_enforced(market: SimMarket, trading: Any) -> None:
    trading.submit_order(
        LimitOrderRequest(
            symbol="AAPL", qty=40, limit_price=200.0, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
    )
    assert trading.get_account().buying_power == "2000"
    assert trading.get_account().cash == "10000"
    status, body = _error(lambda: trading.submit_order(_buy("MSFT", qty=20)))
    assert status == 403 and body["code"] == 40310000 and body["message"] == "insufficient buying power"
    assert body["buying_power"] == "2000" and float(body["cost_basis"]) > 2000
    assert market.exchange.orders_for_client_id("x") == 0


def test_duplicate_client_order_id_is_422_even_after_cancel(market: SimMarket, trading: Any) -> None:
    first = trading.submit_order(_buy("XLF", qty=1, cid="dup-1"))
    trading.cancel_order_by_id(first.id)
    status, body = _error(lambda: trading.submit_order(_buy("XLF", qty=1, cid="dup-1")))
    assert status == 422 and body == {"code": 40010001, "message": "client_order_id must be unique"}
    with pytest.raises(APIError) as info:
        trading.submit_order(_buy("XLF", qty=1, cid="dup-1"))
    assert info.value.status_code == 422 and info.value.code == 40010001
    assert market.exchange.orders_for_client_id("dup-1") == 1
    assert _error(lambda: trading.submit_order(_buy("XLF", qty=1, cid="c" * 129)))[0] == 422


def test_a_sub_penny_limit_price_gets_alpacas_documented_422(market: SimMarket, trading: Any) -> None:
    """Alpaca's minimum price variance (docs/orders-at-alpaca): 2 decimals at $1.00 and above, 4 below;
    the documented answer is 422 {"code": 42210000, "message": "invalid limit_price 290.123. sub-penny ..."}."""
    def limit_buy(price: float) -> Any:
        return lambda: trading.submit_order(LimitOrderRequest(symbol="JPM", qty=1, limit_price=price,
                                                              side=OrderSide.BUY, time_in_force=TimeInForce.DAY))

    status, body = _error(limit_buy(290.123))
    assert status == 422 and body == {
        "code": 42210000,
        "message": "invalid limit_price 290.123. sub-penny increment does not fulfill minimum pricing criteria"}
    status, body = _error(limit_buy(0.12345))
    assert status == 422 and body["code"] == 42210000 and body["message"].startswith("invalid limit_price 0.12345.")
    assert [o.client_order_id for o in market.exchange.all_orders()] == []
    assert limit_buy(0.1234)().limit_price == "0.1234" and limit_buy(290.12)().limit_price == "290.12"


def test_fractional_and_notional_rules(market: SimMarket, trading: Any) -> None:
    status, body = _error(lambda: trading.submit_order(_buy("AAPL", notional=0.5)))
    assert status == 403 and body == {"code": 40310000, "message": "cost basis must be >= 1"}
    status, body = _error(lambda: trading.submit_order(_buy("AAPL", notional=50.0, tif=TimeInForce.GTC)))
    assert status == 422 and "DAY" in body["message"]
    status, body = _error(lambda: trading.submit_order(_buy("AVGO", notional=150.0)))
    assert status == 422 and "not fractionable" in body["message"]
    status, _ = _error(lambda: trading.submit_order(_buy("AVGO", qty=0.1)))
    assert status == 422
    assert trading.submit_order(_buy("AVGO", qty=1)).qty == "1"  # whole shares are fine

    market.exchange.set_asset("AVGO", fractionable=True)
    assert trading.submit_order(_buy("AVGO", notional=20.0)).notional == "20"

    market.exchange.set_fractional_trading(False)
    assert trading.get_account_configurations().fractional_trading is False
    status, body = _error(lambda: trading.submit_order(_buy("XLK", qty=1.5)))
    assert status == 422 and body["message"] == "qty must be integer"
    assert _error(lambda: trading.submit_order(_buy("XLK", notional=50.0)))[0] == 422


def test_qty_and_notional_together_is_400(market: SimMarket) -> None:
    # The SDK refuses this before sending, so speak HTTP directly.
    answer = requests.post(
        f"{market.url}/v2/orders",
        timeout=5,
        json={
            "symbol": "AAPL",
            "qty": 1,
            "notional": 10,
            "side": "buy",
            "type": "market",
            "time_in_force": "day",
        },
        headers={"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key},
    )
    assert (
        answer.status_code == 400 and answer.json()["message"] == "qty and notional can not be used together"
    )


def test_sells_cannot_exceed_what_is_held_and_never_go_short(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    status, body = _error(lambda: trading.submit_order(_sell("AAPL", qty=1)))
    assert status == 403 and body["code"] == 40310000
    assert body["message"] == "insufficient qty available for order"
    status, body = _error(lambda: trading.submit_order(_sell("AAPL", qty=0.5)))
    assert status == 403 and body["message"] == "fractional orders cannot be sold short"

    market.exchange.add_position("MSFT", 0.357142857, 420.0)
    first = trading.submit_order(_sell("MSFT", qty=0.2))
    status, body = _error(
        lambda: trading.submit_order(_sell("MSFT", qty=0.2))
    )  # 0.157 left after the open sell
    assert status == 403 and body["message"] == "insufficient qty available for order"
    assert body["held_for_orders"] == "0.2"
    trading.cancel_order_by_id(first.id)
    whole = trading.submit_order(_sell("MSFT", qty=0.357142857))
    clock.advance(5)
    assert trading.get_order_by_id(whole.id).status is OrderStatus.FILLED
    assert trading.get_all_positions() == []


def test_opposite_side_open_order_is_a_wash_trade(market: SimMarket, trading: Any) -> None:
    market.exchange.add_position("XOM", 5, 110.0)
    trading.submit_order(
        LimitOrderRequest(
            symbol="XOM", qty=1, limit_price=50.0, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
    )
    status, body = _error(lambda: trading.submit_order(_sell("XOM", qty=1)))
    assert status == 403 and body["code"] == 40310000
    assert body["message"] == "potential wash trade detected. use complex orders"


def test_unknown_and_untradable_symbols(market: SimMarket, trading: Any) -> None:
    market.exchange.remove_asset("ZZZZ")
    status, body = _error(lambda: trading.submit_order(_buy("ZZZZ", qty=1)))
    assert status == 422 and body["message"] == "asset ZZZZ not found"
    market.exchange.set_asset("XLV", tradable=False)
    assert "not tradable" in _error(lambda: trading.submit_order(_buy("XLV", qty=1)))[1]["message"]
    assert trading.submit_order(_buy("ABCD", qty=1)).symbol == "ABCD"  # any valid ticker exists by default


# ------------------------------------------------------------------------------ lifecycle
def test_lifecycle_accepted_new_filled_only_while_open(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    during = trading.submit_order(_buy("AAPL", qty=1))
    assert during.status is OrderStatus.ACCEPTED
    assert trading.get_order_by_id(during.id).status is OrderStatus.NEW
    clock.advance(1)
    assert trading.get_order_by_id(during.id).status is OrderStatus.FILLED

    clock.set(datetime(2025, 3, 10, 21, 0, tzinfo=UTC))  # 17:00 New York: closed
    after = trading.submit_order(_buy("MSFT", qty=1))
    clock.advance(3600)
    assert trading.get_order_by_id(after.id).status is OrderStatus.ACCEPTED
    assert market.exchange.account().buying_power < 10_000 - 190 - 400  # still reserved overnight
    clock.set(datetime(2025, 3, 11, 15, 0, tzinfo=UTC))  # Tuesday, long after the open
    filled = trading.get_order_by_id(after.id)
    tuesday_open = CAL.session_open(date(2025, 3, 11))
    assert filled.status is OrderStatus.FILLED and filled.filled_at == tuesday_open
    assert float(filled.filled_avg_price) == market.bars.session_bar("MSFT", date(2025, 3, 11)).open


def test_day_orders_expire_at_the_close_including_early_closes(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    clock.set(datetime(2025, 11, 28, 17, 0, tzinfo=UTC))  # 12:00 New York, closes 13:00
    resting = trading.submit_order(
        LimitOrderRequest(
            symbol="SPY", qty=1, limit_price=1.0, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
        )
    )
    gtc = trading.submit_order(
        LimitOrderRequest(
            symbol="QQQ", qty=1, limit_price=1.0, side=OrderSide.BUY, time_in_force=TimeInForce.GTC
        )
    )
    market.exchange.set_partial_fill("XLF", 0.5)
    partial = trading.submit_order(_buy("XLF", qty=4))
    clock.advance(5)
    got = trading.get_order_by_id(partial.id)
    assert got.status is OrderStatus.PARTIALLY_FILLED and got.filled_qty == "2"
    clock.set(datetime(2025, 11, 28, 17, 59, 59, tzinfo=UTC))
    assert trading.get_order_by_id(resting.id).status is OrderStatus.NEW
    clock.set(datetime(2025, 11, 28, 18, 0, 1, tzinfo=UTC))
    expired = trading.get_order_by_id(resting.id)
    assert expired.status is OrderStatus.EXPIRED
    assert expired.expired_at == datetime(2025, 11, 28, 13, 0, tzinfo=NEW_YORK)
    kept = trading.get_order_by_id(partial.id)
    assert kept.status is OrderStatus.EXPIRED and kept.filled_qty == "2"
    assert trading.get_order_by_id(gtc.id).status is OrderStatus.NEW
    assert trading.get_open_position("XLF").qty == "2"


def test_limit_orders_fill_when_marketable(market: SimMarket, clock: SimClock, trading: Any) -> None:
    now = clock.now()
    close = CAL.session_close(date(2025, 3, 10))
    rest = [
        market.bars.price_at("JPM", now + timedelta(minutes=m, seconds=1))
        for m in range(int((close - now).total_seconds() // 60))
    ]
    now_price = market.bars.price_at("JPM", now + timedelta(seconds=1))
    assert min(rest) < now_price - 0.05, "pick a symbol that dips later in the session"

    def limit_buy(limit: float) -> Any:
        return trading.submit_order(
            LimitOrderRequest(
                symbol="JPM", qty=1, limit_price=limit, side=OrderSide.BUY, time_in_force=TimeInForce.DAY
            )
        )

    marketable = limit_buy(round(now_price + 1.0, 2))
    crossing = limit_buy(round((min(rest) + now_price) / 2, 2))
    never = limit_buy(round(min(rest) - 0.5, 2))
    clock.set(close + timedelta(minutes=1))
    got = trading.get_order_by_id(marketable.id)
    assert got.status is OrderStatus.FILLED and float(got.filled_avg_price) == now_price  # the better price
    got = trading.get_order_by_id(crossing.id)
    assert got.status is OrderStatus.FILLED and float(got.filled_avg_price) == round(
        (min(rest) + now_price) / 2, 2
    )
    assert trading.get_order_by_id(never.id).status is OrderStatus.EXPIRED


def test_external_close_and_last_equity(market: SimMarket, clock: SimClock, trading: Any) -> None:
    market.exchange.add_position("HD", 3, 380.0)
    external = market.exchange.close_position_externally("HD")
    assert external["status"] == "filled" and not external["client_order_id"].startswith("zmr")
    assert trading.get_all_positions() == []
    fills = market.exchange.fills
    assert fills[-1].symbol == "HD" and fills[-1].side == "sell" and fills[-1].qty == 3
    cash = float(trading.get_account().cash)
    assert cash == pytest.approx(10_000 + 3 * market.bars.price_at("HD", clock.now()), abs=0.01)

    trading.submit_order(_buy("PG", qty=2))
    clock.set(datetime(2025, 3, 11, 15, 0, tzinfo=UTC))
    account = trading.get_account()
    close_pg = market.bars.session_bar("PG", date(2025, 3, 10)).close
    pos = market.exchange.positions()["PG"]
    expected_last = market.exchange.account().cash + pos.qty * close_pg
    assert float(account.last_equity) == pytest.approx(expected_last, abs=0.01)
    assert float(account.equity) == pytest.approx(
        market.exchange.account().cash + 2 * market.bars.price_at("PG", clock.now()), abs=0.01
    )
