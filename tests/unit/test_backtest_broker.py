"""BacktestBroker: the BrokerPort contract the agents rely on, with Alpaca's refusals."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from core.backtest.broker import BacktestBroker, CostModel
from core.backtest.data import History
from core.domain.errors import DuplicateClientOrderIdError, OrderRejectedError
from core.domain.market_calendar import get_market_calendar
from core.domain.models import OrderSpec, OrderStatus, Side
from core.domain.ports import BrokerPort

CAL = get_market_calendar()


def _history(opens: list[list[float]], closes: list[list[float]], symbols: list[str]) -> History:
    sessions = CAL.sessions_between(date(2024, 3, 4), date(2024, 3, 29))[: len(closes)]
    o, c = np.array(opens, dtype=float), np.array(closes, dtype=float)
    return History(sessions, symbols, o, np.fmax(o, c), np.fmin(o, c), c, np.zeros_like(c))


def _broker(**kw: object) -> BacktestBroker:
    nan = float("nan")
    history = _history([[10, 900], [11, 910], [nan, 920], [nan, 930], [14, 940]],
                       [[10, 900], [11, 910], [nan, 920], [nan, 930], [14, 940]], ["AAA", "AVGO"])
    broker = BacktestBroker(history, initial_cash=1_000.0, **kw)  # type: ignore[arg-type]
    broker.start_session(0)
    broker.mark(0)
    return broker


def test_it_is_a_broker_port() -> None:
    broker: BrokerPort = _broker()
    assert broker.get_fractional_trading() is True
    assert broker.get_asset("AVGO").fractionable is False   # the sim market's non-fractionable default
    assert broker.get_asset("AAA").fractionable is True


def test_fills_at_the_next_open_with_costs() -> None:
    broker = _broker(costs=CostModel(commission_per_order=1.0, slippage_bps=100.0))
    order = broker.submit_order(OrderSpec("c1", "AAA", Side.BUY, qty=10))
    assert order.status is OrderStatus.ACCEPTED and broker.get_open_orders()
    fills = broker.start_session(1)
    assert len(fills) == 1 and fills[0].price == pytest.approx(11 * 1.01)
    assert broker.cash == pytest.approx(1_000.0 - 10 * 11.11 - 1.0)
    assert broker.get_order_by_client_id("c1").status is OrderStatus.FILLED  # type: ignore[union-attr]
    broker.mark(1)
    assert broker.get_positions()["AAA"].qty == 10


def test_notional_orders_floor_to_nine_decimals() -> None:
    broker = _broker()
    broker.submit_order(OrderSpec("n1", "AAA", Side.BUY, notional=100.0))
    broker.start_session(1)
    assert broker.positions["AAA"].qty == pytest.approx(9.090909090)
    assert broker.positions["AAA"].qty <= 100.0 / 11


def test_refusals() -> None:
    broker = _broker()
    broker.submit_order(OrderSpec("d1", "AAA", Side.BUY, qty=1))
    with pytest.raises(DuplicateClientOrderIdError):
        broker.submit_order(OrderSpec("d1", "AAA", Side.BUY, qty=1))
    with pytest.raises(OrderRejectedError, match="insufficient buying power"):
        broker.submit_order(OrderSpec("big", "AAA", Side.BUY, qty=100))
    with pytest.raises(OrderRejectedError, match="insufficient qty"):
        _broker().submit_order(OrderSpec("s1", "AAA", Side.SELL, qty=1))
    with pytest.raises(OrderRejectedError, match="notional orders need a fractionable asset"):
        broker.submit_order(OrderSpec("n2", "AVGO", Side.BUY, notional=50.0))
    with pytest.raises(OrderRejectedError, match="fractional qty"):
        broker.submit_order(OrderSpec("f1", "AVGO", Side.BUY, qty=0.5))
    no_frac = _broker(fractional_trading=False)
    with pytest.raises(OrderRejectedError):
        no_frac.submit_order(OrderSpec("n3", "AAA", Side.BUY, notional=50.0))


def test_selling_more_than_held_is_refused_counting_open_sells() -> None:
    broker = _broker()
    broker.submit_order(OrderSpec("b", "AAA", Side.BUY, qty=5))
    broker.start_session(1)
    broker.mark(1)
    broker.submit_order(OrderSpec("s1", "AAA", Side.SELL, qty=3))
    with pytest.raises(OrderRejectedError, match="available: 2"):
        broker.submit_order(OrderSpec("s2", "AAA", Side.SELL, qty=3))


def test_missing_bar_keeps_the_order_one_more_session_then_expires() -> None:
    broker = _broker()
    broker.start_session(1)
    broker.mark(1)
    order = broker.submit_order(OrderSpec("m1", "AAA", Side.BUY, qty=5))
    assert broker.get_account().buying_power == pytest.approx(1_000.0 - 55.0)
    assert broker.start_session(2) == []                      # no bar: still open
    assert broker.get_order_by_client_id("m1").status is OrderStatus.ACCEPTED  # type: ignore[union-attr]
    assert broker.start_session(3) == []                      # no bar again: expired
    assert broker.get_order_by_client_id("m1").status is OrderStatus.EXPIRED  # type: ignore[union-attr]
    assert not broker.get_open_orders() and order.id
    assert broker.get_account().buying_power == pytest.approx(1_000.0)


def test_calls_are_counted_per_endpoint() -> None:
    broker = _broker()
    broker.calls.reset()
    broker.get_positions()
    broker.get_account()
    broker.submit_order(OrderSpec("c", "AAA", Side.BUY, qty=1))
    assert broker.calls.reset() == {"GET /v2/positions": 1, "GET /v2/account": 1, "POST /v2/orders": 1}


def test_wash_trades_are_refused_and_closing_fractional_sells_allowed() -> None:
    broker = _broker()
    broker.submit_order(OrderSpec("b1", "AAA", Side.BUY, notional=55.0))
    broker.start_session(1)
    broker.mark(1)
    held = broker.positions["AAA"].qty
    assert held == pytest.approx(5.0)
    broker.submit_order(OrderSpec("b2", "AAA", Side.BUY, qty=1))
    with pytest.raises(OrderRejectedError, match="wash trade"):
        broker.submit_order(OrderSpec("s1", "AAA", Side.SELL, qty=1))
    no_frac = _broker(fractional_trading=True, non_fractionable=())
    no_frac.submit_order(OrderSpec("b", "AVGO", Side.BUY, notional=500.0))
    no_frac.start_session(1)
    no_frac.mark(1)
    no_frac.fractional_trading = False          # the account turns fractional trading off later
    qty = no_frac.positions["AVGO"].qty
    no_frac.submit_order(OrderSpec("s", "AVGO", Side.SELL, qty=qty))  # closing: allowed


def test_non_fractionable_defaults_match_the_simulated_market() -> None:
    exchange = pytest.importorskip("core.sim.exchange")
    from config.universe import DEFAULT_NON_FRACTIONABLE

    # One set, defined once: the simulated brokerage and the backtest's broker both read it.
    assert exchange.DEFAULT_NON_FRACTIONABLE is DEFAULT_NON_FRACTIONABLE
    assert not _broker().get_asset("AVGO").fractionable and _broker().get_asset("AAA").fractionable
