"""An in-process broker over historical bars that implements `core.domain.ports.BrokerPort`.

The agents talk to it exactly as they talk to `AlpacaGateway`. Rules (see docs/backtest.md):

- Market orders only, `time_in_force=day`, by `qty` (whole or fractional) or, for buys, `notional`.
- Fill price: the open of the session after the decision (`fill_at="next_open"`, the default) or
  the close of the decision session (`fill_at="close"`), moved against the trader by
  `slippage_bps` (buys pay open * (1 + bps/10,000), sells get open * (1 - bps/10,000)).
- Commission per fill: `commission_per_order` dollars + `commission_bps` of the fill value, rounded
  to the cent; paid in cash on top of a buy, deducted from a sell's proceeds.
- A notional buy fills `floor_9dp(notional / fill price)` shares; a qty order fills its qty.
- A symbol without a bar on the fill session: the order stays open for one more session, then
  expires (status `expired`) and releases its reserved cash.
- Refusals, as Alpaca refuses them: a duplicate `client_order_id` raises
  `DuplicateClientOrderIdError`; selling more than held (net of open sells), a buy whose estimated
  cost (qty x last close, or the notional, plus slippage and commission) exceeds cash less the cash
  reserved by open buys, a fractional or notional order on a non-fractionable asset or with
  fractional trading off (except a sell that closes a fractional position), a notional under $1 and an
  order against an open order of the opposite side (wash trade) raise `OrderRejectedError`.
- Cash may go below zero only when a next-open fill gaps above the price a buy was checked at; the
  run reports the lowest cash seen.

It also counts every call by endpoint, so the report can state the Alpaca requests the live
daemon would have made.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal

import numpy as np

from config.universe import DEFAULT_NON_FRACTIONABLE
from core.backtest.data import History
from core.domain.errors import DuplicateClientOrderIdError, NotFoundError, OrderRejectedError
from core.domain.market_calendar import MarketCalendar, get_market_calendar
from core.domain.models import (
    AccountView,
    AssetInfo,
    BrokerOrder,
    ClockView,
    Fill,
    MarketDay,
    OrderSpec,
    OrderStatus,
    PositionView,
    Side,
)
from core.domain.tiered_position_sizer import FRACTIONAL_DECIMALS, floor_to

FillAt = Literal["next_open", "close"]
OPEN_TIME_UTC = time(14, 30)
CLOSE_TIME_UTC = time(21, 0)
DECISION_DELAY = timedelta(minutes=1)   # the engine decides a minute after the close
MISSED_BARS_BEFORE_EXPIRY = 2   # the fill session and one more
QTY_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class CostModel:
    commission_per_order: float = 0.0
    commission_bps: float = 0.0
    slippage_bps: float = 0.0

    def __post_init__(self) -> None:
        for name in ("commission_per_order", "commission_bps", "slippage_bps"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} {value!r} must be a finite number >= 0")
        for name in ("commission_bps", "slippage_bps"):   # 10,000 bps = 100 %: a sale at a price of zero
            if getattr(self, name) >= 10_000.0:
                raise ValueError(f"{name} {getattr(self, name)!r} must be below 10000 (100 %)")

    def commission(self, value: float) -> float:
        if self.commission_per_order == 0.0 and self.commission_bps == 0.0:
            return 0.0
        return round(self.commission_per_order + abs(value) * self.commission_bps / 10_000.0, 2)

    def fill_price(self, reference: float, side: Side) -> float:
        if self.slippage_bps == 0.0:
            return reference
        factor = self.slippage_bps / 10_000.0
        return reference * (1.0 + factor) if side is Side.BUY else reference * (1.0 - factor)


@dataclass(slots=True)
class _Order:
    id: str
    client_order_id: str
    symbol: str
    col: int
    side: Side
    qty: float | None
    notional: float | None
    row: int                 # history row of the decision session
    submitted_at: datetime
    reserved: float = 0.0
    status: OrderStatus = OrderStatus.ACCEPTED
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    missed: int = 0

    def view(self) -> BrokerOrder:
        return BrokerOrder(self.id, self.client_order_id, self.symbol, self.side, self.status, self.qty,
                           self.notional, self.filled_qty, self.filled_avg_price, self.submitted_at)


class _LastCloses(Mapping[str, float]):
    """A read-only view of the broker's last closes by symbol (no copy per decision)."""

    __slots__ = ("_col", "_closes")

    def __init__(self, col: dict[str, int], closes: np.ndarray) -> None:
        self._col = col
        self._closes = closes

    def __getitem__(self, symbol: str) -> float:
        return self._closes.item(self._col[symbol])

    def get(self, symbol: str, default: Any = None) -> Any:  # one look-up (Mapping.get goes through a KeyError)
        col = self._col.get(symbol)
        return default if col is None else self._closes.item(col)

    def __iter__(self) -> Iterator[str]:
        return iter(self._col)

    def __len__(self) -> int:
        return len(self._col)


@dataclass(slots=True)
class _Position:
    qty: float
    avg_price: float


@dataclass
class CallCounter:
    """Calls per endpoint since the last `reset()`, plus running totals."""

    current: dict[str, int] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)

    def hit(self, endpoint: str) -> None:
        self.current[endpoint] = self.current.get(endpoint, 0) + 1

    def reset(self) -> dict[str, int]:
        snapshot = self.current
        for key, count in snapshot.items():
            self.totals[key] = self.totals.get(key, 0) + count
        self.current = {}
        return snapshot


class BacktestBroker:
    """BrokerPort over a `History`. Drive it with `start_session(row)` then `mark(row)` each session."""

    def __init__(self, history: History, *, initial_cash: float, costs: CostModel | None = None,
                 fill_at: FillAt = "next_open", fractional_trading: bool = True,
                 non_fractionable: Iterable[str] = DEFAULT_NON_FRACTIONABLE,
                 calendar: MarketCalendar | None = None) -> None:
        if not (math.isfinite(initial_cash) and initial_cash > 0):
            raise ValueError(f"initial_cash {initial_cash!r} must be a positive number")
        if fill_at not in ("next_open", "close"):
            raise ValueError(f"fill_at {fill_at!r} must be 'next_open' or 'close'")
        self.history = history
        self._calendar = calendar
        self.costs = costs or CostModel()
        self.fill_at: FillAt = fill_at
        self.fractional_trading = fractional_trading
        self.non_fractionable = frozenset(non_fractionable)
        self.cash = float(initial_cash)
        self.min_cash = float(initial_cash)
        self.positions: dict[str, _Position] = {}
        self.fills: list[Fill] = []
        self.calls = CallCounter()
        self._col = {s: i for i, s in enumerate(history.symbols)}
        self._orders: dict[str, _Order] = {}
        self._by_cid: dict[str, _Order] = {}
        self._open: list[_Order] = []
        self._next_id = 1
        self._row = -1
        self._last_close = np.full(len(history.symbols), np.nan)
        self._prices = _LastCloses(self._col, self._last_close)
        self._equity = float(initial_cash)
        self._last_equity = float(initial_cash)
        self.expired_orders = 0
        # A nominal time of day (UTC) for fills and orders: a daily backtest has no intraday clock.
        self._fill_time = OPEN_TIME_UTC if fill_at == "next_open" else CLOSE_TIME_UTC
        self._times: dict[tuple[int, time], datetime] = {}
        self._assets: dict[str, AssetInfo] = {}
        self._finite_closes: np.ndarray | None = None   # which closes exist, per row: found once, on first mark

    # ------------------------------------------------------------------ session driving
    @property
    def row(self) -> int:
        return self._row

    def start_session(self, row: int) -> list[Fill]:
        """Open of session `row`: fill (or age) the orders decided on earlier sessions."""
        self._last_equity = self._equity
        self._row = row
        if not self._open or self.fill_at != "next_open":
            return []
        return self._work_orders(row, self.history.open[row])

    def mark(self, row: int) -> float:
        """Close of session `row`: mark positions at the close (the last known one if no bar). Returns equity."""
        closes = self.history.close[row]
        finite = self._finite_closes
        if finite is None:
            finite = self._finite_closes = np.isfinite(self.history.close)
        np.copyto(self._last_close, closes, where=finite[row])
        if self.fill_at == "close" and self._open:
            # Orders carried over from a session whose close was missing.
            self._work_orders(row, closes, only_before=row)
        self._equity = self._mark_to_market()
        return self._equity

    def _mark_to_market(self) -> float:
        """Cash plus every position at its last close (Python floats: the same sums, in the same order)."""
        closes, col = self._last_close, self._col
        value = 0.0
        for symbol, position in self.positions.items():
            value += position.qty * closes.item(col[symbol])
        return self.cash + value

    def _time(self, row: int, at: time) -> datetime:
        key = (row, at)
        moment = self._times.get(key)
        if moment is None:
            moment = self._times[key] = datetime.combine(self.history.sessions[row], at, tzinfo=UTC)
        return moment

    @property
    def equity(self) -> float:
        return self._equity

    def last_price(self, symbol: str) -> float:
        return self._last_close.item(self._col[symbol])

    @property
    def last_prices(self) -> Mapping[str, float]:
        """Every symbol's last close (NaN before its first bar): the current prices of a decision made after
        the close, as the live DataAgent's are the latest bars' closes."""
        return self._prices


    def position_values(self) -> Iterator[tuple[str, float]]:
        """(symbol, quantity x last close) of every position, in the positions' order."""
        closes, col = self._last_close, self._col
        for symbol, position in self.positions.items():
            yield symbol, position.qty * closes.item(col[symbol])

    def open_order_symbols(self) -> set[str]:
        """Symbols with an open order (the daemon knows these from its own store: not a request)."""
        return {o.symbol for o in self._open}

    def _work_orders(self, row: int, prices: np.ndarray, only_before: int | None = None) -> list[Fill]:
        fills: list[Fill] = []
        still_open: list[_Order] = []
        limit = row if only_before is None else only_before
        for order in self._open:
            if order.row >= limit:
                still_open.append(order)
                continue
            price = prices.item(order.col)
            if math.isfinite(price) and price > 0:
                fill = self._fill(order, row, price)
                if fill is not None:
                    fills.append(fill)
                continue
            order.missed += 1
            if order.missed >= MISSED_BARS_BEFORE_EXPIRY:
                order.status = OrderStatus.EXPIRED
                order.reserved = 0.0
                self.expired_orders += 1
            else:
                still_open.append(order)
        self._open = still_open
        return fills

    def _fill(self, order: _Order, row: int, reference: float) -> Fill | None:
        price = self.costs.fill_price(reference, order.side)
        if order.qty is not None:
            qty = order.qty
        else:
            qty = floor_to((order.notional or 0.0) / price, FRACTIONAL_DECIMALS)
        if order.side is Side.SELL:
            held = self.positions.get(order.symbol)
            qty = min(qty, held.qty if held else 0.0)
        if qty <= 0:
            order.status = OrderStatus.CANCELED
            order.reserved = 0.0
            return None
        value = qty * price
        commission = self.costs.commission(value)
        position = self.positions.get(order.symbol)
        if order.side is Side.BUY:
            self.cash -= value + commission
            if position is None:
                self.positions[order.symbol] = _Position(qty, price)
            else:
                total = position.qty + qty
                position.avg_price = (position.qty * position.avg_price + value) / total
                position.qty = total
        else:
            self.cash += value - commission
            assert position is not None
            position.qty -= qty
            if position.qty <= QTY_EPSILON:
                del self.positions[order.symbol]
        self.min_cash = min(self.min_cash, self.cash)
        order.status = OrderStatus.FILLED
        order.filled_qty = qty
        order.filled_avg_price = price
        order.reserved = 0.0
        session = self.history.sessions[row]
        fill = Fill(order.id, order.client_order_id, order.symbol, order.side, qty, price,
                    self._time(row, self._fill_time), session, commission=commission)
        self.fills.append(fill)
        return fill

    # ------------------------------------------------------------------ BrokerPort
    def get_account(self) -> AccountView:
        self.calls.hit("GET /v2/account")
        reserved = sum(o.reserved for o in self._open)
        return AccountView(equity=self._equity, cash=self.cash, buying_power=max(0.0, self.cash - reserved),
                           last_equity=self._last_equity, fractional_trading=self.fractional_trading)

    def get_clock(self) -> ClockView:
        """A minute after the current session's close, the moment the engine decides (not counted: the live
        daemon caches its clock until the next open or close, so a decision costs it no clock request)."""
        calendar = self.calendar
        session = self.history.sessions[max(self._row, 0)]
        now = calendar.session_close(session) + DECISION_DELAY
        following = calendar.next_session(session)
        return ClockView(timestamp=now, is_open=False, next_open=calendar.session_open(following),
                         next_close=calendar.session_close(following))

    def get_calendar(self, start: date, end: date) -> list[MarketDay]:
        calendar = self.calendar
        return [MarketDay(day, calendar.session_open(day), calendar.session_close(day))
                for day in calendar.sessions_between(start, end)]

    @property
    def calendar(self) -> MarketCalendar:
        if self._calendar is None:
            self._calendar = get_market_calendar()
        return self._calendar

    def get_fractional_trading(self) -> bool:
        self.calls.hit("GET /v2/account/configurations")
        return self.fractional_trading

    def get_positions(self) -> dict[str, PositionView]:
        self.calls.hit("GET /v2/positions")
        out: dict[str, PositionView] = {}
        closes, col = self._last_close, self._col
        for symbol, pos in self.positions.items():
            price = closes.item(col[symbol])
            out[symbol] = PositionView(symbol, pos.qty, pos.avg_price, pos.qty * price, price)
        return out

    def get_open_orders(self) -> list[BrokerOrder]:
        self.calls.hit("GET /v2/orders")
        return [o.view() for o in self._open]

    def get_order_by_client_id(self, client_order_id: str) -> BrokerOrder | None:
        self.calls.hit("GET /v2/orders:by_client_order_id")
        order = self._by_cid.get(client_order_id)
        return order.view() if order is not None else None

    def get_asset(self, symbol: str) -> AssetInfo:
        self.calls.hit("GET /v2/assets/{symbol}")
        asset = self._assets.get(symbol)
        if asset is None:
            if symbol not in self._col:
                raise NotFoundError(f"asset {symbol} not found", status=404, endpoint="GET /v2/assets/{symbol}")
            asset = self._assets[symbol] = AssetInfo(symbol, tradable=True,
                                                     fractionable=symbol not in self.non_fractionable)
        return asset

    def cancel_order(self, order_id: str) -> None:
        self.calls.hit("DELETE /v2/orders/{id}")
        order = self._orders.get(order_id)
        if order is None:
            raise NotFoundError(f"order {order_id} not found", status=404, endpoint="DELETE /v2/orders/{id}")
        if order in self._open:
            self._open.remove(order)
            order.status = OrderStatus.CANCELED
            order.reserved = 0.0

    def submit_order(self, spec: OrderSpec) -> BrokerOrder:
        self.calls.hit("POST /v2/orders")
        if spec.client_order_id in self._by_cid:
            raise DuplicateClientOrderIdError(f"client_order_id {spec.client_order_id} must be unique",
                                              status=422, code=40010001, endpoint="POST /v2/orders")
        order = self._validate(spec)
        self._orders[order.id] = order
        self._by_cid[order.client_order_id] = order
        self._open.append(order)
        if self.fill_at == "close":
            price = float(self.history.close[self._row, order.col])
            if math.isfinite(price) and price > 0:
                self._open.remove(order)
                self._fill(order, self._row, price)
                self._equity = self._mark_to_market()
        return order.view()

    def _reject(self, message: str) -> OrderRejectedError:
        return OrderRejectedError(message, status=403, code=40310000, endpoint="POST /v2/orders")

    def _validate(self, spec: OrderSpec) -> _Order:
        symbol = spec.symbol
        col = self._col.get(symbol)
        if col is None:
            raise OrderRejectedError(f"asset {symbol} is not in the backtest's data", status=422,
                                     endpoint="POST /v2/orders")
        if spec.order_type != "market":
            raise self._reject(f"order type {spec.order_type!r} is not supported by the backtest (market only)")
        if (spec.qty is None) == (spec.notional is None):
            raise self._reject("exactly one of qty and notional is required")
        fractionable = self.fractional_trading and symbol not in self.non_fractionable
        if spec.notional is not None:
            if spec.side is Side.SELL:
                raise self._reject("notional sell orders are not supported by the backtest")
            if not (math.isfinite(spec.notional) and spec.notional >= 1.0):
                raise self._reject(f"notional {spec.notional!r} must be at least $1")
            if not fractionable or spec.time_in_force != "day":
                raise self._reject(f"{symbol}: notional orders need a fractionable asset, fractional trading on "
                                   "and time_in_force=day")
        else:
            qty = spec.qty or 0.0
            if not (math.isfinite(qty) and qty > 0):
                raise self._reject(f"qty {spec.qty!r} must be positive")
            # Selling a fractional position closes it, which Alpaca allows whatever the flags say.
            held_qty = self.positions[symbol].qty if symbol in self.positions else 0.0
            closing = spec.side is Side.SELL and qty <= held_qty + QTY_EPSILON
            if (abs(qty - round(qty)) > QTY_EPSILON and not closing
                    and (not fractionable or spec.time_in_force != "day")):
                raise self._reject(f"{symbol}: fractional qty {qty} needs a fractionable asset, fractional trading "
                                   "on and time_in_force=day")
        opposite = Side.SELL if spec.side is Side.BUY else Side.BUY
        if any(o.symbol == symbol and o.side is opposite for o in self._open):
            raise self._reject(f"{symbol}: potential wash trade detected (an open {opposite.value} order exists)")
        reference = float(self._last_close[col])
        reserved = 0.0
        if spec.side is Side.SELL:
            held = self.positions[symbol].qty if symbol in self.positions else 0.0
            pending = sum((o.qty or 0.0) for o in self._open if o.symbol == symbol and o.side is Side.SELL)
            if (spec.qty or 0.0) > held - pending + QTY_EPSILON:
                raise self._reject(f"insufficient qty available for order (requested: {spec.qty}, available: "
                                   f"{max(0.0, held - pending)})")
        else:
            if not (math.isfinite(reference) and reference > 0):
                raise self._reject(f"{symbol}: no price yet to check buying power against")
            price = self.costs.fill_price(reference, Side.BUY)
            value = spec.notional if spec.notional is not None else (spec.qty or 0.0) * price
            reserved = value + self.costs.commission(value)
            available = self.cash - sum(o.reserved for o in self._open)
            if reserved > available + 1e-9:
                raise self._reject(f"insufficient buying power: the order needs {reserved:,.2f}, "
                                   f"available {max(0.0, available):,.2f}")
        order_id = f"bt-{self._next_id:08d}"
        self._next_id += 1
        submitted = self._time(self._row, CLOSE_TIME_UTC)
        return _Order(order_id, spec.client_order_id, symbol, col, spec.side, spec.qty, spec.notional,
                      self._row, submitted, reserved)

    # ------------------------------------------------------------------ helpers for the engine
    def get_orders(self) -> list[BrokerOrder]:
        """Every order ever submitted, in submission order (not a live-daemon call; not counted)."""
        return [o.view() for o in self._orders.values()]
