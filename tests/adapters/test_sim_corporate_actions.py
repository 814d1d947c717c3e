"""Corporate actions of the simulated market through the real alpaca-py SDK: splits and reverse
splits (raw against split-adjusted bars as of the request's date, positions re-based at the
ex-date's open), cash dividends, and Alpaca's corporate-actions endpoint.

Market: the shared fixture, Monday 2025-03-10 11:00 New York. NVDA splits 10-for-1 with ex-date
Wednesday 2025-03-12 unless a test says otherwise. `MODEL` is the same seed's market without actions:
the split-adjusted series the raw tape is derived from.
"""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import requests
from alpaca.data.enums import Adjustment, DataFeed
from alpaca.data.requests import StockBarsRequest
from alpaca.data.timeframe import TimeFrame
from alpaca.trading.enums import OrderSide, OrderStatus, TimeInForce
from alpaca.trading.requests import LimitOrderRequest, MarketOrderRequest

from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, bar_timestamp
from core.sim import SimMarket
from core.sim.bars import SyntheticBars

START = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)  # Monday 11:00 New York
MON, TUE, WED, THU = date(2025, 3, 10), date(2025, 3, 11), date(2025, 3, 12), date(2025, 3, 13)
MODEL = SyntheticBars(42)


def _ny(day: date, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=NEW_YORK)


def _bars(data: Any, symbol: str, adjustment: Adjustment, start: date = date(2025, 3, 5)) -> dict[date, Any]:
    request = StockBarsRequest(
        symbol_or_symbols=[symbol],
        timeframe=TimeFrame.Day,
        start=bar_timestamp(start),
        feed=DataFeed.IEX,
        adjustment=adjustment,
    )
    return {bar.timestamp.astimezone(NEW_YORK).date(): bar for bar in data.get_stock_bars(request)[symbol]}


def _buy(symbol: str, qty: float) -> MarketOrderRequest:
    return MarketOrderRequest(symbol=symbol, qty=qty, side=OrderSide.BUY, time_in_force=TimeInForce.DAY)


# ------------------------------------------------------------------------------ splits: bars
def test_forward_split_raw_bars_before_and_after_the_ex_date(market: SimMarket, clock: SimClock, data: Any) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    clock.set(_ny(WED, 18))
    raw = _bars(data, "NVDA", Adjustment.RAW)
    for day in (date(2025, 3, 7), MON, TUE):  # before the ex-date: the model x 10, volume / 10
        model = MODEL.session_bar("NVDA", day)
        assert raw[day].close == round(model.close * 10, 2) and raw[day].open == round(model.open * 10, 2)
        assert raw[day].high == round(model.high * 10, 2) and raw[day].low == round(model.low * 10, 2)
        assert raw[day].vwap == round(model.vwap * 10, 4)
        assert raw[day].volume == round(model.volume / 10) and raw[day].trade_count == model.trade_count
    assert raw[TUE].close == 1188.2  # 118.82 in the model
    wed = MODEL.session_bar("NVDA", WED)
    assert (raw[WED].open, raw[WED].close, raw[WED].volume) == (wed.open, wed.close, wed.volume) == (120.07, 118.24, 33945475)


def test_split_adjusted_history_is_as_of_the_request_date(market: SimMarket, clock: SimClock, data: Any) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    clock.set(_ny(TUE, 18))  # the day before: nothing to adjust yet, every adjustment is the raw tape
    raw_tue = _bars(data, "NVDA", Adjustment.RAW)
    for adjustment in (Adjustment.SPLIT, Adjustment.ALL, Adjustment.DIVIDEND):
        assert _bars(data, "NVDA", adjustment) == raw_tue
    assert raw_tue[TUE].close == 1188.2

    clock.set(_ny(WED, 8))  # the ex-date, before the open: Alpaca adjusts by date
    split = _bars(data, "NVDA", Adjustment.SPLIT)
    assert split[TUE].close == 118.82 and max(split) == TUE

    clock.set(_ny(WED, 18))
    raw = _bars(data, "NVDA", Adjustment.RAW)
    split = _bars(data, "NVDA", Adjustment.SPLIT)
    assert _bars(data, "NVDA", Adjustment.ALL) == split  # no dividend: all == split
    assert _bars(data, "NVDA", Adjustment.DIVIDEND) == raw
    for day in (date(2025, 3, 7), MON, TUE):
        model = MODEL.session_bar("NVDA", day)
        assert (split[day].open, split[day].high, split[day].low, split[day].close) == (
            model.open, model.high, model.low, model.close
        )
        assert split[day].vwap == model.vwap
        assert split[day].volume == raw[day].volume * 10
    assert split[WED] == raw[WED]
    assert [split[d].close for d in (MON, TUE, WED)] == [117.79, 118.82, 118.24]  # no fake crash


def test_raw_tape_during_the_sessions_before_the_split(market: SimMarket, data: Any) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    today = _bars(data, "NVDA", Adjustment.ALL, start=MON)[MON]  # Monday, in progress
    price = market.bars.price_at("NVDA", START)
    assert today.close == price and round(price, 2) == price
    assert today.open == round(MODEL.session_bar("NVDA", MON).open * 10, 2) == 1185.3
    monday = market.bars.session_bar("NVDA", MON)
    assert (monday.low, monday.high) == (1170.5, 1188.9)
    assert all(monday.low <= market.bars.price_at("NVDA", START + timedelta(minutes=m)) <= monday.high
               for m in range(0, 300, 7))


# ------------------------------------------------------------------------------ splits: positions
def test_forward_split_rebases_the_position_at_the_ex_date_open(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    order = trading.submit_order(_buy("NVDA", 3))
    clock.advance(5)
    fill = float(trading.get_order_by_id(order.id).filled_avg_price)
    assert fill == market.bars.price_at("NVDA", START + timedelta(seconds=1)) and fill > 1000
    cost = 3 * fill

    clock.set(_ny(TUE, 17))
    gtc = trading.submit_order(
        LimitOrderRequest(symbol="NVDA", qty=1, side=OrderSide.SELL, time_in_force=TimeInForce.GTC, limit_price=5000)
    )
    clock.set(_ny(WED, 9, 29, 59))  # the ex-date, before the open: still the old basis
    before = trading.get_open_position("NVDA")
    assert float(before.qty) == 3 and float(before.avg_entry_price) == pytest.approx(fill)
    assert float(before.current_price) == 1188.2 and float(before.lastday_price) == 1188.2
    assert trading.get_order_by_id(gtc.id).status == OrderStatus.ACCEPTED  # waits for the open

    clock.set(_ny(WED, 9, 30, 1))
    after = trading.get_open_position("NVDA")
    assert float(after.qty) == 30
    assert float(after.avg_entry_price) == pytest.approx(fill / 10, abs=1e-6)
    assert float(after.cost_basis) == pytest.approx(cost, abs=1e-3)
    assert float(after.lastday_price) == 118.82  # Tuesday's close in the new basis
    assert float(after.current_price) == market.bars.price_at("NVDA", clock.now()) < 125
    assert float(after.market_value) == pytest.approx(30 * float(after.current_price), abs=1e-3)
    canceled = trading.get_order_by_id(gtc.id)
    assert canceled.status == OrderStatus.CANCELED and canceled.canceled_at == _ny(WED, 9, 30)
    assert float(trading.get_account().cash) == pytest.approx(10_000 - cost, abs=0.01)


def test_orders_queued_for_the_ex_date_open_are_canceled_not_filled_in_the_old_basis(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    market.exchange.add_position("NVDA", 2, 1100.0)
    clock.set(_ny(TUE, 20))
    queued = trading.submit_order(
        MarketOrderRequest(symbol="NVDA", qty=2, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    clock.set(_ny(WED, 10))
    assert trading.get_order_by_id(queued.id).status == OrderStatus.CANCELED
    assert float(trading.get_open_position("NVDA").qty) == 20  # nothing sold in the old basis


def test_reverse_split_keeps_the_fractional_remainder(
    market: SimMarket, clock: SimClock, trading: Any, data: Any
) -> None:
    market.exchange.add_split("XLF", WED, 0.1)  # 1-for-10
    order = trading.submit_order(_buy("XLF", 15))
    clock.advance(5)
    fill = float(trading.get_order_by_id(order.id).filled_avg_price)
    assert 3.5 < fill < 4.5  # the model's ~$39.5 / 10

    clock.set(_ny(WED, 10))
    position = trading.get_open_position("XLF")
    assert float(position.qty) == 1.5
    assert float(position.avg_entry_price) == pytest.approx(fill * 10, abs=1e-6)
    assert float(position.cost_basis) == pytest.approx(15 * fill, abs=1e-4)

    bars = _bars(data, "XLF", Adjustment.RAW)
    split = _bars(data, "XLF", Adjustment.SPLIT)
    tue = MODEL.session_bar("XLF", TUE)
    assert bars[TUE].close == round(tue.close / 10, 2) == 4.1  # cents: 40.99 / 10 = 4.099
    assert split[TUE].close == 41.0  # the adjusted history is the cent-rounded tape x 10
    assert bars[TUE].volume == tue.volume * 10

    sell = trading.submit_order(
        MarketOrderRequest(symbol="XLF", qty=1.5, side=OrderSide.SELL, time_in_force=TimeInForce.DAY)
    )
    clock.advance(5)
    assert trading.get_order_by_id(sell.id).status == OrderStatus.FILLED
    assert "XLF" not in market.exchange.positions()


def test_a_deep_reverse_split_trades_below_a_dollar_in_sub_pennies(market: SimMarket) -> None:
    market.exchange.add_split("XLF", THU, 0.01)  # 1-for-100: the tape before is about $0.40
    assert market.bars.session_bar("XLF", TUE).close == round(MODEL.session_bar("XLF", TUE).close / 100, 4) == 0.4099
    monday = market.bars.session_bar("XLF", MON)
    prices = [market.bars.price_at("XLF", START + timedelta(minutes=m)) for m in range(0, 300, 7)]
    assert all(monday.low <= p <= monday.high < 1 for p in prices)
    assert all(round(p, 4) == p for p in prices)
    assert any(round(p, 2) != p for p in prices)  # sub-penny prices exist


def test_two_splits_compound(market: SimMarket, clock: SimClock, data: Any) -> None:
    market.exchange.add_split("NVDA", WED, 2.0)
    market.exchange.add_split("NVDA", THU, 5.0)
    assert market.bars.session_bar("NVDA", TUE).close == round(118.82 * 10, 2)
    assert market.bars.session_bar("NVDA", WED).close == round(118.24 * 5, 2)
    clock.set(_ny(WED, 18))  # only the first split has come: / 2 before Wednesday, Wednesday raw
    split = _bars(data, "NVDA", Adjustment.SPLIT)
    assert split[TUE].close == 594.1 and split[WED].close == 591.2
    clock.set(_ny(THU, 18))
    split = _bars(data, "NVDA", Adjustment.SPLIT)
    assert [split[d].close for d in (TUE, WED)] == [118.82, 118.24]


# ------------------------------------------------------------------------------ splits: registration
def test_split_registration_rules(market: SimMarket, clock: SimClock, trading: Any) -> None:
    ex = market.exchange
    with pytest.raises(ValueError, match="opened already"):
        ex.add_split("NVDA", MON, 10.0)
    with pytest.raises(ValueError, match="ratio"):
        ex.add_split("NVDA", WED, 1.0)
    with pytest.raises(ValueError, match="ratio"):
        ex.add_split("NVDA", WED, -2.0)
    ex.add_split("NVDA", WED, 10.0)
    with pytest.raises(ValueError, match="already has a split"):
        ex.add_split("NVDA", WED, 2.0)
    trading.submit_order(_buy("AAPL", 1))
    with pytest.raises(ValueError, match="AAPL has traded in this market already"):
        ex.add_split("AAPL", WED, 4.0)


def test_split_over_http(market: SimMarket) -> None:
    headers = {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}
    ok = requests.post(
        f"{market.url}/_sim/add_split", json={"symbol": "NVDA", "ex_date": "2025-03-12", "ratio": 10},
        headers=headers, timeout=5,
    )
    assert ok.status_code == 200 and ok.json()["result"]["ex_date"] == "2025-03-12"
    assert [s.ratio for s in market.bars.actions.splits("NVDA")] == [10.0]
    late = requests.post(
        f"{market.url}/_sim/add_split", json={"symbol": "MSFT", "ex_date": "2025-03-10", "ratio": 2},
        headers=headers, timeout=5,
    )
    assert late.status_code == 422 and "opened already" in json.loads(late.text)["message"]


def test_no_action_registered_leaves_the_tape_untouched(market: SimMarket, clock: SimClock, data: Any) -> None:
    clock.set(_ny(WED, 18))
    raw = _bars(data, "NVDA", Adjustment.RAW)
    assert _bars(data, "NVDA", Adjustment.ALL) == raw
    assert [raw[d].close for d in (MON, TUE, WED)] == [MODEL.session_bar("NVDA", d).close for d in (MON, TUE, WED)]


# ------------------------------------------------------------------------------ cash dividends
def test_dividend_adjustment_factor_once_the_ex_date_has_come(market: SimMarket, clock: SimClock, data: Any) -> None:
    market.exchange.add_dividend("JPM", WED, 1.5)
    clock.set(_ny(TUE, 18))
    raw_tue = _bars(data, "JPM", Adjustment.RAW)
    assert _bars(data, "JPM", Adjustment.DIVIDEND) == _bars(data, "JPM", Adjustment.ALL) == raw_tue

    clock.set(_ny(WED, 18))
    raw = _bars(data, "JPM", Adjustment.RAW)
    dividend = _bars(data, "JPM", Adjustment.DIVIDEND)
    assert _bars(data, "JPM", Adjustment.ALL) == dividend
    assert _bars(data, "JPM", Adjustment.SPLIT) == raw
    factor = 1 - 1.5 / raw[TUE].close
    assert raw[TUE].close == MODEL.session_bar("JPM", TUE).close  # the raw tape does not move
    for day in (date(2025, 3, 7), MON, TUE):
        for field in ("open", "high", "low", "close", "vwap"):
            assert getattr(dividend[day], field) == round(getattr(raw[day], field) * factor, 4)
        assert dividend[day].volume == raw[day].volume
    assert dividend[WED] == raw[WED]


def test_dividend_cash_is_credited_to_holders_at_the_ex_date_open(
    market: SimMarket, clock: SimClock, trading: Any
) -> None:
    market.exchange.add_dividend("JPM", WED, 1.5)
    market.exchange.add_dividend("MSFT", WED, 0.83)  # not held: nothing
    trading.submit_order(_buy("JPM", 10))
    clock.advance(5)
    cash = float(trading.get_account().cash)
    clock.set(_ny(WED, 9, 29))
    assert float(trading.get_account().cash) == cash
    clock.set(_ny(WED, 9, 31))
    assert float(trading.get_account().cash) == pytest.approx(cash + 15.0, abs=1e-9)
    assert float(trading.get_open_position("JPM").qty) == 10
    clock.set(_ny(THU, 12))
    assert float(trading.get_account().cash) == pytest.approx(cash + 15.0, abs=1e-9)  # paid once


def test_dividend_with_splits_is_in_the_ex_date_share_basis(
    market: SimMarket, clock: SimClock, trading: Any, data: Any
) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    market.exchange.add_dividend("NVDA", WED, 0.04)  # per post-split share
    market.exchange.add_dividend("NVDA", THU, 0.05)
    market.exchange.add_position("NVDA", 3, 1150.0)
    cash = market.exchange.account().cash
    clock.set(_ny(WED, 10))
    assert market.exchange.account().cash == pytest.approx(cash + 30 * 0.04, abs=1e-9)  # 3 x 10 shares
    clock.set(_ny(THU, 18))
    assert market.exchange.account().cash == pytest.approx(cash + 30 * 0.04 + 30 * 0.05, abs=1e-9)

    raw = _bars(data, "NVDA", Adjustment.RAW)
    every = _bars(data, "NVDA", Adjustment.ALL)
    wed_factor = 1 - 0.04 / (raw[TUE].close / 10)  # Tuesday's close in Wednesday's basis: 118.82
    thu_factor = 1 - 0.05 / raw[WED].close
    assert every[TUE].close == round(raw[TUE].close / 10 * wed_factor * thu_factor, 4)
    assert every[WED].close == round(raw[WED].close * thu_factor, 4)
    assert every[THU] == raw[THU]
    assert _bars(data, "NVDA", Adjustment.DIVIDEND)[TUE].close == round(raw[TUE].close * wed_factor * thu_factor, 4)


def test_dividend_registration_rules(market: SimMarket) -> None:
    ex = market.exchange
    with pytest.raises(ValueError, match="opened already"):
        ex.add_dividend("JPM", MON, 1.0)
    with pytest.raises(ValueError, match="amount"):
        ex.add_dividend("JPM", WED, 0.0)
    with pytest.raises(ValueError, match="not below the previous close"):
        ex.add_dividend("JPM", WED, 10_000.0)
    ex.add_dividend("JPM", WED, 1.0)
    with pytest.raises(ValueError, match="already has a cash dividend"):
        ex.add_dividend("JPM", WED, 2.0)


# ------------------------------------------------------------------------------ GET /v1/corporate-actions
def _ca_client(market: SimMarket) -> Any:
    client = market.corporate_actions_client()  # alpaca-py's CorporateActionsClient on the sim's URL
    client._retry = 0
    return client


def _register_some(market: SimMarket) -> None:
    market.exchange.add_split("NVDA", WED, 10.0)
    market.exchange.add_split("XLF", THU, 0.1)
    market.exchange.add_dividend("JPM", WED, 1.5)
    market.exchange.add_dividend("MSFT", date(2025, 3, 20), 0.83)


def test_corporate_actions_parse_in_the_sdks_models(market: SimMarket) -> None:
    from alpaca.data.models.corporate_actions import CashDividend, ForwardSplit, ReverseSplit
    from alpaca.data.requests import CorporateActionsRequest

    _register_some(market)
    found = _ca_client(market).get_corporate_actions(CorporateActionsRequest(start=MON, end=date(2025, 3, 31)))
    assert sorted(found.data) == ["cash_dividends", "forward_splits", "reverse_splits"]
    (nvda,) = found.data["forward_splits"]
    assert isinstance(nvda, ForwardSplit)
    assert (nvda.symbol, nvda.new_rate, nvda.old_rate, nvda.ex_date, nvda.process_date) == ("NVDA", 10, 1, WED, WED)
    assert (nvda.record_date, nvda.payable_date) == (MON, TUE) and len(nvda.cusip) == 9
    assert str(nvda.id) == market.bars.actions.splits("NVDA")[0].id
    (xlf,) = found.data["reverse_splits"]
    assert isinstance(xlf, ReverseSplit)
    assert (xlf.symbol, xlf.new_rate, xlf.old_rate, xlf.ex_date) == ("XLF", 1, 10, THU)
    assert xlf.old_cusip != xlf.new_cusip
    dividends = found.data["cash_dividends"]
    assert all(isinstance(d, CashDividend) for d in dividends)
    assert [(d.symbol, d.rate, d.ex_date, d.payable_date) for d in dividends] == [
        ("JPM", 1.5, WED, WED), ("MSFT", 0.83, date(2025, 3, 20), date(2025, 3, 20))
    ]
    assert found.df.shape[0] == 4


def test_corporate_actions_filters_default_window_and_ids(market: SimMarket, clock: SimClock) -> None:
    from alpaca.data.enums import CorporateActionsType
    from alpaca.data.requests import CorporateActionsRequest

    _register_some(market)
    client = _ca_client(market)
    assert client.get_corporate_actions(CorporateActionsRequest()).data == {}  # default: today (Monday)
    clock.set(_ny(WED, 8))
    today = client.get_corporate_actions(CorporateActionsRequest())
    assert {a.symbol for group in today.data.values() for a in group} == {"NVDA", "JPM"}
    month = {"start": date(2025, 3, 1), "end": date(2025, 3, 31)}
    splits = client.get_corporate_actions(
        CorporateActionsRequest(
            types=[CorporateActionsType.FORWARD_SPLIT, CorporateActionsType.REVERSE_SPLIT], **month
        )
    )
    assert sorted(splits.data) == ["forward_splits", "reverse_splits"]
    jpm = client.get_corporate_actions(CorporateActionsRequest(symbols=["JPM", "AAPL"], **month))
    assert [a.symbol for a in jpm.data["cash_dividends"]] == ["JPM"] and list(jpm.data) == ["cash_dividends"]
    by_cusip = client.get_corporate_actions(
        CorporateActionsRequest(cusips=[jpm.data["cash_dividends"][0].cusip], **month)
    )
    assert [a.symbol for a in by_cusip.data["cash_dividends"]] == ["JPM"]
    wanted = market.bars.actions.dividends("MSFT")[0].id
    by_id = client.get_corporate_actions(CorporateActionsRequest(ids=[wanted]))
    assert [str(a.id) for a in by_id.data["cash_dividends"]] == [wanted]


def test_corporate_actions_page_with_a_token_across_groups(market: SimMarket) -> None:
    from alpaca.data.requests import CorporateActionsRequest

    symbols = ["AAPL", "AMZN", "COST", "GOOGL", "HD", "JNJ", "KO", "LLY", "MA", "META", "PG"]
    for k, symbol in enumerate(symbols):
        market.exchange.add_dividend(symbol, date(2025, 3, 11) + timedelta(days=k), 0.5)
    market.exchange.add_split("NVDA", date(2025, 3, 14), 10.0)
    headers = {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}
    params: dict[str, Any] = {"start": "2025-03-01", "end": "2025-03-31", "limit": 5}
    pages, token = [], None
    while True:
        answer = requests.get(
            f"{market.url}/v1/corporate-actions", params={**params, **({"page_token": token} if token else {})},
            headers=headers, timeout=5,
        ).json()
        pages.append(answer["corporate_actions"])
        token = answer["next_page_token"]
        if token is None:
            break
    assert [sum(len(g) for g in page.values()) for page in pages] == [5, 5, 2]
    seen = [(a["ex_date"], a["symbol"]) for page in pages for group in page.values() for a in group]
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 12
    assert "forward_splits" in pages[0]  # NVDA's ex-date 03-14 is among the first five

    whole = _ca_client(market).get_corporate_actions(
        CorporateActionsRequest(start=date(2025, 3, 1), end=date(2025, 3, 31), limit=7)
    )
    assert sum(len(g) for g in whole.data.values()) == 7  # the SDK's own limit loop
    desc = requests.get(
        f"{market.url}/v1/corporate-actions", params={**params, "limit": 3, "sort": "desc"}, headers=headers,
        timeout=5,
    ).json()
    assert [a["symbol"] for a in desc["corporate_actions"]["cash_dividends"]] == ["PG", "META", "MA"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"types": "forward_split,spinoff"}, "invalid types: spinoff"),
        ({"start": "03/10/2025"}, "invalid start"),
        ({"start": "2025-03-12", "end": "2025-03-11"}, "start must not be after end"),
        ({"limit": "1001"}, "invalid limit"),
        ({"sort": "up"}, "invalid sort"),
        ({"ids": "x", "symbols": "AAPL"}, "ids cannot be combined"),
        ({"page_token": "%%%"}, "invalid page_token"),
    ],
)
def test_corporate_actions_refuse_bad_parameters(market: SimMarket, params: dict[str, str], message: str) -> None:
    headers = {"APCA-API-KEY-ID": market.api_key, "APCA-API-SECRET-KEY": market.secret_key}
    answer = requests.get(f"{market.url}/v1/corporate-actions", params=params, headers=headers, timeout=5)
    assert answer.status_code == 400 and message in answer.json()["message"]
    assert "code" not in answer.json()  # a data-API error: a message only
    assert market.server.request_log[-1].api == "data"
