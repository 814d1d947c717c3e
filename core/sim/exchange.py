"""The simulated brokerage behind the emulator: one cash account, assets, positions and orders,
with Alpaca's order rules and error bodies.

Time only moves when the clock does. Order state is brought up to the clock lazily (`process()`,
called by every public method and by the server before each request): each open order's next event
(routing, fill, expiry, roll-over of a GTC order) is replayed in time order up to now, interleaved
with the session closes, so an order submitted on Friday night and looked at on Tuesday was filled
at Monday's open at Monday's opening price, and the account's equity at every close in between is
known (`last_equity`).

Errors are raised as `SimAPIError(status, body)`; the server sends them as they are.

Real-market events (none unless a test registers one; docs/simulated-market.md): splits and cash
dividends take effect at their ex-date's open in the same time-ordered replay, before that open's
fills; deposits, withdrawals, a trading block, bad prints (data feed only) and unscheduled closures
have their own controls; every fill and cash movement is an account activity.
"""

from __future__ import annotations

import bisect
import copy
import heapq
import math
import threading
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import numpy as np

from config.universe import DEFAULT_NON_FRACTIONABLE, DEFAULT_SYMBOL_TIERS, is_valid_ticker
from core.clock import Clock
from core.market_calendar import NEW_YORK, MarketCalendar
from core.models import Fill, Side
from core.sim.activities import ActivityLog, ActivityQueryError
from core.sim.bars import SyntheticBars
from core.sim.corporate_actions import Action, CashDividend, Split, previous_close

ASSET_NAMESPACE = uuid.UUID("6f1d9a52-3c1e-4c8e-9f57-5a3e0b1d2c40")
ACCOUNT_ID = "9b1c6a1e-5f0e-4f7a-9a8e-51a0c0de0001"
ACCOUNT_NUMBER = "PA3SIM000001"

_ETF_ARCA = frozenset({"SPY", "DIA", "IWM", "XLK", "XLF", "XLV", "XLE", "XLY"})
_NASDAQ = frozenset({"QQQ", "AAPL", "MSFT", "GOOGL", "AMZN", "NVDA", "META", "TSLA", "COST", "AVGO", "NFLX"})

OPEN_STATUSES = frozenset(
    {"accepted", "new", "partially_filled", "pending_new", "accepted_for_bidding", "held"}
)
QTY_EPS = 1e-9
MAX_CLIENT_ORDER_ID = 128

CODE_INVALID = 40010000  # 400: body or parameter format
CODE_UNPROCESSABLE = 40010001  # 422: order parameters
CODE_FORBIDDEN = 40310000  # 403: buying power, qty, wash trade, cost basis
CODE_NOT_FOUND = 40410000
CODE_NOT_CANCELABLE = 42210000


class SimAPIError(Exception):
    """An Alpaca error answer: HTTP status plus the JSON body Alpaca sends."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status}: {body.get('message')}")
        self.status = status
        self.body = body


def _error(status: int, code: int | None, message: str, **extra: Any) -> SimAPIError:
    body: dict[str, Any] = {} if code is None else {"code": code}
    body["message"] = message
    body.update(extra)
    return SimAPIError(status, body)


# ------------------------------------------------------------------------------ formatting
def fmt_num(value: float, places: int = 9) -> str:
    """Alpaca's decimal strings: no exponent, no trailing zeros ("10000", "0.357142857")."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def fmt_money(value: float) -> str:
    return fmt_num(round(value, 2), 2)


def fmt_time(when: datetime | None) -> str | None:
    if when is None:
        return None
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str, what: str) -> datetime:
    """RFC-3339 (Z or offset, fractions allowed) or YYYY-MM-DD (midnight New York)."""
    value = text.strip().replace(" ", "+")  # an unencoded '+' arrives as a space
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            return datetime(day.year, day.month, day.day, tzinfo=NEW_YORK)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise _error(422, CODE_UNPROCESSABLE, f"invalid {what}: {text!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _floor9(value: float) -> float:
    return math.floor(value * 1e9 + 1e-6) / 1e9


def _is_whole(value: float) -> bool:
    return abs(value - round(value)) < QTY_EPS


# ------------------------------------------------------------------------------ state records
@dataclass
class SimAsset:
    symbol: str
    id: str
    exchange: str
    name: str
    tradable: bool = True
    fractionable: bool = True
    marginable: bool = True
    shortable: bool = True
    easy_to_borrow: bool = True
    status: str = "active"

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": "us_equity",
            "exchange": self.exchange,
            "symbol": self.symbol,
            "name": self.name,
            "status": self.status,
            "tradable": self.tradable,
            "marginable": self.marginable,
            "maintenance_margin_requirement": 30,
            "margin_requirement_long": "30",
            "margin_requirement_short": "100",
            "shortable": self.shortable,
            "easy_to_borrow": self.easy_to_borrow,
            "fractionable": self.fractionable,
            "attributes": [],
        }


@dataclass
class SimPosition:
    symbol: str
    asset_id: str
    qty: float
    avg_entry_price: float

    @property
    def cost_basis(self) -> float:
        return self.qty * self.avg_entry_price


@dataclass
class SimOrder:
    id: str
    client_order_id: str
    symbol: str
    asset_id: str
    side: str
    type: str
    time_in_force: str
    qty: float | None
    notional: float | None
    limit_price: float | None
    extended_hours: bool
    position_intent: str | None
    created_at: datetime
    session: int  # calendar index of the session the order is working in
    start_ts: float  # earliest fill time in that session (epoch seconds)
    seq: int
    status: str = "accepted"
    updated_at: datetime | None = None
    filled_at: datetime | None = None
    expired_at: datetime | None = None
    canceled_at: datetime | None = None
    filled_qty: float = 0.0
    filled_avg_price: float | None = None
    partial_fraction: float | None = None
    source: str = "api"

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def remaining_qty(self) -> float | None:
        return None if self.qty is None else max(self.qty - self.filled_qty, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "client_order_id": self.client_order_id,
            "created_at": fmt_time(self.created_at),
            "updated_at": fmt_time(self.updated_at or self.created_at),
            "submitted_at": fmt_time(self.created_at),
            "filled_at": fmt_time(self.filled_at),
            "expired_at": fmt_time(self.expired_at),
            "canceled_at": fmt_time(self.canceled_at),
            "failed_at": None,
            "replaced_at": None,
            "replaced_by": None,
            "replaces": None,
            "asset_id": self.asset_id,
            "symbol": self.symbol,
            "asset_class": "us_equity",
            "notional": None if self.notional is None else fmt_num(self.notional),
            "qty": None if self.qty is None else fmt_num(self.qty),
            "filled_qty": fmt_num(self.filled_qty),
            "filled_avg_price": None if self.filled_avg_price is None else fmt_num(self.filled_avg_price, 4),
            "order_class": "",
            "order_type": self.type,
            "type": self.type,
            "side": self.side,
            "position_intent": self.position_intent,
            "time_in_force": self.time_in_force,
            "limit_price": None if self.limit_price is None else fmt_num(self.limit_price, 4),
            "stop_price": None,
            "status": self.status,
            "extended_hours": self.extended_hours,
            "legs": None,
            "trail_percent": None,
            "trail_price": None,
            "hwm": None,
            "subtag": None,
            "source": None,
            "expires_at": None,
        }


@dataclass(frozen=True)
class AccountSnapshot:
    cash: float
    equity: float
    buying_power: float
    last_equity: float
    long_market_value: float
    reserved: float
    fractional_trading: bool


@dataclass(order=True)
class _Event:
    ts: float
    seq: int
    kind: str = field(compare=False)
    order: SimOrder | None = field(compare=False, default=None)
    price: float = field(compare=False, default=0.0)


class SimExchange:
    """Thread-safe simulated Alpaca account. See the module docstring for the time model."""

    def __init__(
        self,
        clock: Clock,
        bars: SyntheticBars,
        calendar: MarketCalendar | None = None,
        initial_cash: float = 10_000.0,
        fractional_trading: bool = True,
        assets: Mapping[str, Mapping[str, Any]] | None = None,
        fill_delay_seconds: float = 1.0,
    ) -> None:
        self.clock = clock
        self.bars = bars
        self.calendar = calendar or bars.calendar
        self.fill_delay_seconds = fill_delay_seconds
        self.fractional_trading = fractional_trading
        self.initial_cash = float(initial_cash)
        self._lock = threading.RLock()
        self._cash = float(initial_cash)
        self._assets: dict[str, SimAsset] = {}
        self._removed: set[str] = set()
        self._positions: dict[str, SimPosition] = {}
        self._orders: list[SimOrder] = []
        self._by_id: dict[str, SimOrder] = {}
        self._by_client_id: dict[str, SimOrder] = {}
        self._client_ids_used: dict[str, int] = {}
        self._partial: dict[str, float] = {}
        self._seq = 0
        self.fills: list[Fill] = []
        self._created = clock.now()
        self._cursor = self._created.timestamp()
        self._close_equity: dict[date, float] = {}
        self._baseline_positions: dict[str, float] = {}
        self._trading_blocked = False
        self._bad_prints: dict[tuple[str, date], float] = {}
        self._applied_actions: set[str] = set()
        self._activities = ActivityLog(ACCOUNT_ID)
        for symbol in DEFAULT_SYMBOL_TIERS:
            self._asset(symbol)
        for symbol, flags in (assets or {}).items():
            self.set_asset(symbol, **flags)

    # ================================================================== controls for tests
    def set_asset(
        self,
        symbol: str,
        *,
        fractionable: bool | None = None,
        tradable: bool | None = None,
        status: str | None = None,
        shortable: bool | None = None,
    ) -> SimAsset:
        with self._lock:
            self._removed.discard(symbol)
            asset = self._asset(symbol)
            if fractionable is not None:
                asset.fractionable = fractionable
            if tradable is not None:
                asset.tradable = tradable
            if status is not None:
                asset.status = status
            if shortable is not None:
                asset.shortable = shortable
            return copy.copy(asset)

    def remove_asset(self, symbol: str) -> None:
        """Make a symbol unknown: 404 from /v2/assets, no bars, orders rejected."""
        with self._lock:
            self._assets.pop(symbol, None)
            self._removed.add(symbol)

    def set_fractional_trading(self, enabled: bool) -> None:
        with self._lock:
            self.fractional_trading = enabled

    def set_partial_fill(self, symbol: str, fraction: float) -> None:
        """The next order on `symbol` fills only `fraction` of its size and stays partially_filled."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction {fraction!r} must be in (0, 1)")
        with self._lock:
            self._partial[symbol] = fraction

    def set_cash(self, cash: float) -> None:
        with self._lock:
            self._cash = float(cash)

    def add_position(self, symbol: str, qty: float, avg_price: float, *, debit_cash: bool = False) -> None:
        """Put shares in the account as if they had been there all along (cash untouched by default)."""
        if qty <= 0 or avg_price <= 0:
            raise ValueError("qty and avg_price must be positive")
        with self._lock:
            self._process_locked()
            asset = self._asset(symbol)
            pos = self._positions.get(symbol)
            if pos is None:
                self._positions[symbol] = SimPosition(symbol, asset.id, float(qty), float(avg_price))
            else:
                total = pos.qty + qty
                pos.avg_entry_price = (pos.cost_basis + qty * avg_price) / total
                pos.qty = total
            if debit_cash:
                self._cash = round(self._cash - qty * avg_price, 2)
            self._baseline_positions[symbol] = self._baseline_positions.get(symbol, 0.0) + qty

    def close_position_externally(self, symbol: str) -> dict[str, Any]:
        """Close a position as a person would by hand: a filled sell with a foreign client_order_id."""
        with self._lock:
            now = self._process_locked()
            pos = self._positions.get(symbol)
            if pos is None:
                raise ValueError(f"no position in {symbol}")
            if self._trading_blocked:  # no hand either, while the account is blocked
                raise ValueError("the account is blocked from trading (set_trading_blocked)")
            order = self._new_order(
                symbol,
                "sell",
                "market",
                "day",
                pos.qty,
                None,
                None,
                False,
                None,
                str(uuid.uuid4()),
                now,
                source="external",
            )
            self._fill(order, now, self.bars.price_at(symbol, now), pos.qty)
            return order.to_json()

    def trade_externally(self, symbol: str, side: str, qty: float) -> dict[str, Any]:
        """A trade the user makes by hand (the web app, another program): a market order with a
        foreign client_order_id, filled now at the exchange's price, in the order list and the FILL
        activities like any other. A buy needs the cash; a sell at most the shares held; neither
        while the account is blocked from trading."""
        if side not in ("buy", "sell"):
            raise ValueError(f"side must be 'buy' or 'sell', not {side!r}")
        if not (isinstance(qty, int | float) and math.isfinite(qty) and qty > 0):
            raise ValueError(f"qty must be a finite number > 0, not {qty!r}")
        with self._lock:
            now = self._process_locked()
            asset = self._lookup_asset(symbol) if is_valid_ticker(symbol) else None
            if asset is None:
                raise ValueError(f"unknown symbol {symbol!r}")
            if self._trading_blocked:
                raise ValueError("the account is blocked from trading (set_trading_blocked)")
            price = self.bars.price_at(symbol, now)
            held = self._positions[symbol].qty if symbol in self._positions else 0.0
            if side == "sell" and qty > held + QTY_EPS:
                raise ValueError(f"cannot sell {fmt_num(qty)} {symbol}: {fmt_num(held)} held")
            if side == "buy" and qty * price > self._cash + 1e-9:
                raise ValueError(f"buying {fmt_num(qty)} {symbol} at {price} needs more than the cash {fmt_money(self._cash)}")
            order = self._new_order(
                symbol, side, "market", "day", float(qty), None, None, False, None, str(uuid.uuid4()), now,
                source="external",
            )
            self._fill(order, now, price, float(qty))
            return order.to_json()

    def orders_for_client_id(self, client_order_id: str) -> int:
        """How many orders were ever created with this client_order_id (0 or 1 when the rules hold)."""
        with self._lock:
            return self._client_ids_used.get(client_order_id, 0)

    def all_orders(self) -> list[SimOrder]:
        with self._lock:
            self._process_locked()
            return [copy.copy(o) for o in self._orders]

    def order_by_client_id(self, client_order_id: str) -> SimOrder | None:
        with self._lock:
            self._process_locked()
            order = self._by_client_id.get(client_order_id)
            return copy.copy(order) if order else None

    def positions(self) -> dict[str, SimPosition]:
        with self._lock:
            self._process_locked()
            return {s: copy.copy(p) for s, p in self._positions.items()}

    def account(self) -> AccountSnapshot:
        with self._lock:
            now = self._process_locked()
            return self._snapshot(now)

    def process(self, now: datetime | None = None) -> datetime:
        """Bring every order and the account up to `now` (default: the clock)."""
        with self._lock:
            return self._process_locked(now)

    def has_data(self, symbol: str) -> bool:
        """Whether the data API serves bars for the symbol."""
        return is_valid_ticker(symbol) and symbol not in self._removed

    # ================================================================== real-market events (docs/simulated-market.md)
    def set_trading_blocked(self, blocked: bool) -> None:
        """Alpaca's `trading_blocked` account flag: while set, /v2/account reports it and every order
        POST (and every DELETE /v2/positions, which places an order) gets Alpaca's 403
        `{"code": 40310000, "message": "account is not authorized to trade"}`. Cancels still work."""
        with self._lock:
            self._trading_blocked = bool(blocked)

    @property
    def trading_blocked(self) -> bool:
        return self._trading_blocked

    def set_bad_print(self, symbol: str, session: date, factor: float) -> None:
        """A bad print on the data feed only: the data API serves `symbol`'s daily bar of `session`
        (its in-progress bar while the session trades, and the latest minute bar while that bar
        belongs to the session) with open/high/low/close/vwap x `factor`, volume unchanged, in
        /v2/stocks/bars, /bars/latest and the snapshot's bars. The latest trade and quote, fills,
        positions and the account keep the true price."""
        if not is_valid_ticker(symbol):
            raise ValueError(f"invalid symbol {symbol!r}")
        if not (isinstance(factor, int | float) and math.isfinite(factor) and factor > 0):
            raise ValueError(f"factor must be a finite number > 0, not {factor!r}")
        self.bars.index_of(session)  # a session of the calendar, else ValueError
        with self._lock:
            self._bad_prints[(symbol, session)] = float(factor)

    def clear_bad_prints(self) -> None:
        with self._lock:
            self._bad_prints.clear()

    def bad_prints(self) -> dict[tuple[str, date], float]:
        """{(symbol, session): factor} registered now (a copy; empty unless a test set one)."""
        with self._lock:
            return dict(self._bad_prints)

    def deposit(self, amount: float) -> dict[str, Any]:
        """Cash in (a bank transfer landing now): cash += amount, recorded as a `CSD` activity
        with a positive net_amount. Returns the activity."""
        amount = self._cash_amount(amount)
        with self._lock:
            now = self._process_locked()
            self._cash = round(self._cash + amount, 2)
            return self._activities.add_non_trade("CSD", now, fmt_money(amount), "Cash deposit")

    def withdraw(self, amount: float) -> dict[str, Any]:
        """Cash out now: cash -= amount, recorded as a `CSW` activity with a negative net_amount.
        More than the cash is refused (Alpaca lets only withdrawable cash go). Returns the activity."""
        amount = self._cash_amount(amount)
        with self._lock:
            now = self._process_locked()
            if amount > self._cash + 1e-9:
                raise ValueError(f"withdrawal {fmt_money(amount)} exceeds the cash {fmt_money(self._cash)}")
            self._cash = round(self._cash - amount, 2)
            return self._activities.add_non_trade("CSW", now, fmt_money(-amount), "Cash withdrawal")

    @staticmethod
    def _cash_amount(amount: float) -> float:
        if not (isinstance(amount, int | float) and math.isfinite(amount) and round(amount, 2) > 0):
            raise ValueError(f"amount must be a finite number of dollars >= 0.01, not {amount!r}")
        return round(float(amount), 2)

    def activities(self) -> list[dict[str, Any]]:
        """Every account activity so far, oldest first (the JSON /v2/account/activities serves)."""
        with self._lock:
            self._process_locked()
            return [dict(a.body) for a in self._activities.items()]

    def add_closure(self, day: date) -> None:
        """An unscheduled closure (a day of mourning, a storm): the market does not open on `day`
        although exchange_calendars says it does. /v2/clock is closed all day and its next_open skips
        the day, /v2/calendar leaves it out, the data API has no bar for it, and orders waiting for
        its open (or a GTC order rolling into it) wait for the next session instead. The day's open
        must still be ahead. `start_sim_market(closures=[...])` closes days from the start."""
        with self._lock:
            now = self._process_locked()
            i = self.bars.index_of(day)
            if self.bars.open_ts(i) <= now.timestamp():
                raise ValueError(f"the session {day} has opened already; close a day before its open")
            self.bars.add_closure(day)
            following = self.bars.next_trading_index(i)
            for order in self._orders:
                if order.is_open and order.session == i:
                    order.session = following
                    if following < len(self.bars):
                        order.start_ts = max(order.start_ts, self.bars.open_ts(following))

    def add_split(self, symbol: str, ex_date: date, ratio: float) -> Split:
        """A split of `ratio` new shares per old share (10.0: 10-for-1; 0.1: 1-for-10 reverse).

        Raw prices of the sessions before `ex_date` become the model price x ratio (volume / ratio),
        so prices after the split stay at the model's level; at the ex-date's open a held position's
        qty is multiplied by the ratio and its avg_entry_price divided by it (cost kept), open orders
        in the symbol are canceled, and `lastday_price` is given in the new basis. Bars requested with
        `adjustment=split|all` on or after the ex-date are divided by the ratio before it. The
        ex-date's open must still be ahead, and the symbol must not have traded in this market yet
        (registering rewrites the raw tape of every earlier session, so register at set-up).
        """
        if not is_valid_ticker(symbol):
            raise ValueError(f"invalid symbol {symbol!r}")
        if not (isinstance(ratio, int | float) and math.isfinite(ratio) and ratio > 0 and ratio != 1):
            raise ValueError(f"ratio must be a finite number > 0 other than 1, not {ratio!r}")
        with self._lock:
            now = self._process_locked()
            if self._action_open_ts(ex_date) <= now.timestamp():
                raise ValueError(f"the ex-date {ex_date} has opened already; register a split before its open")
            if symbol in self._positions or any(o.symbol == symbol for o in self._orders):
                raise ValueError(
                    f"{symbol} has traded in this market already; register its splits before it trades"
                )
            split = self.bars.actions.add_split(symbol, ex_date, float(ratio))
            self.bars.splits_changed()
            return split

    def add_dividend(self, symbol: str, ex_date: date, amount: float) -> CashDividend:
        """A cash dividend of `amount` per share (in the ex-date's share basis).

        At the ex-date's open a held position earns qty x amount in cash (rounded to the cent), recorded
        as a `DIV` account activity; the shares and the raw tape are unchanged (the model's price does
        not drop by the dividend). Bars requested with `adjustment=dividend|all` on or after the
        ex-date have every bar before it multiplied by 1 - amount / previous close. The ex-date's open
        must still be ahead and the amount below the previous session's close.
        """
        if not is_valid_ticker(symbol):
            raise ValueError(f"invalid symbol {symbol!r}")
        if not (isinstance(amount, int | float) and math.isfinite(amount) and amount > 0):
            raise ValueError(f"amount must be a finite number > 0, not {amount!r}")
        with self._lock:
            now = self._process_locked()
            if self._action_open_ts(ex_date) <= now.timestamp():
                raise ValueError(f"the ex-date {ex_date} has opened already; register a dividend before its open")
            close = previous_close(self.bars, self.bars.actions, symbol, ex_date)
            if close is not None and amount >= close:
                raise ValueError(f"amount {amount} is not below the previous close {close}")
            return self.bars.actions.add_dividend(symbol, ex_date, float(amount))

    # ================================================================== assets
    def _asset(self, symbol: str) -> SimAsset:
        asset = self._assets.get(symbol)
        if asset is None:
            if not is_valid_ticker(symbol) or symbol in self._removed:
                raise KeyError(symbol)
            asset_id = str(uuid.uuid5(ASSET_NAMESPACE, symbol))
            if symbol in _ETF_ARCA:
                exchange = "ARCA"
            elif symbol in _NASDAQ:
                exchange = "NASDAQ"
            else:
                exchange = "NASDAQ" if uuid.UUID(asset_id).int % 2 else "NYSE"
            asset = SimAsset(
                symbol,
                asset_id,
                exchange,
                f"{symbol} (simulated)",
                fractionable=symbol not in DEFAULT_NON_FRACTIONABLE,
            )
            self._assets[symbol] = asset
        return asset

    def _lookup_asset(self, symbol_or_id: str) -> SimAsset | None:
        try:
            return self._asset(symbol_or_id)
        except KeyError:
            pass
        for asset in self._assets.values():
            if asset.id == symbol_or_id:
                return asset
        return None

    # ================================================================== time and events
    def _session_state(self, when: datetime) -> tuple[int, bool]:
        """(session index, open now): the session trading at `when`, else the next one to open."""
        i = self.bars.last_started(when)
        if i >= 0 and when.timestamp() < self.bars.close_ts(i):
            return i, True
        return self.bars.next_trading_index(i + 1), False

    def _next_event(self, order: SimOrder) -> _Event | None:
        bars = self.bars
        if order.session >= len(bars):
            return None
        open_ts, close_ts = bars.open_ts(order.session), bars.close_ts(order.session)
        if order.status == "accepted":
            return _Event(
                max(order.created_at.timestamp(), min(order.start_ts, open_ts)), order.seq, "route", order
            )
        if order.status == "new":
            immediate = order.time_in_force in ("ioc", "fok")
            # IOC/FOK get one look at the market: a one-second window from their start.
            end_ts = min(order.start_ts + 1.0, close_ts) if immediate else close_ts
            fill = self._find_fill(order, order.start_ts, end_ts)
            if fill is not None:
                return _Event(fill[0], order.seq, "fill", order, fill[1])
            if immediate:
                return _Event(min(order.start_ts, close_ts), order.seq, "cancel", order)
        if order.time_in_force == "gtc":
            return _Event(close_ts, order.seq, "roll", order)
        return _Event(close_ts, order.seq, "expire", order)

    def _find_fill(self, order: SimOrder, start_ts: float, close_ts: float) -> tuple[float, float] | None:
        if start_ts >= close_ts:
            return None
        i = order.session
        if order.type == "market":
            return start_ts, self.bars.price_at(order.symbol, datetime.fromtimestamp(start_ts, UTC))
        assert order.limit_price is not None
        open_ts = self.bars.open_ts(i)
        span = self.bars.close_ts(i) - open_ts
        f0, f1 = (start_ts - open_ts) / span, (close_ts - open_ts) / span
        steps = max(2, int((f1 - f0) * 390) + 1)  # about one look per minute
        grid = np.linspace(f0, f1, steps, endpoint=False)
        path = self.bars._path(order.symbol, i, grid)
        ok = path <= order.limit_price if order.side == "buy" else path >= order.limit_price
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return None
        k = int(hits[0])
        price = float(path[0]) if k == 0 else order.limit_price  # marketable on arrival: the better price
        return open_ts + float(grid[k]) * span, price

    def _process_locked(self, now: datetime | None = None) -> datetime:
        now = now or self.clock.now()
        now_ts = now.timestamp()
        heap: list[_Event] = []
        for order in self._orders:
            if order.is_open:
                event = self._next_event(order)
                if event is not None and event.ts <= now_ts:
                    heapq.heappush(heap, event)
        closes = self._closes_between(self._cursor, now_ts)
        due = self._actions_due(now_ts) if self.bars.actions.has_any else []
        ci = ai = 0
        while heap or ci < len(closes) or ai < len(due):
            next_close = self.bars.close_ts(closes[ci]) if ci < len(closes) else math.inf
            if ai < len(due) and due[ai][0] <= min(heap[0].ts if heap else math.inf, next_close):
                self._apply_action(due[ai][2], due[ai][0])  # at the open, before any fill
                ai += 1
            elif heap and (ci >= len(closes) or heap[0].ts <= self.bars.close_ts(closes[ci])):
                event = heapq.heappop(heap)
                target = event.order
                assert target is not None
                if not target.is_open:
                    continue
                self._apply(event, target)
                if target.is_open:
                    nxt = self._next_event(target)
                    if nxt is not None and nxt.ts <= now_ts:
                        heapq.heappush(heap, nxt)
            else:
                i = closes[ci]
                self._record_close(i)
                ci += 1
        self._cursor = max(self._cursor, now_ts)
        return now

    # ================================================================== corporate actions
    def _action_open_ts(self, ex_date: date) -> float:
        """When an action takes effect: the open of the first session on or after its ex-date."""
        i = self.bars.next_trading_index(self.bars.first_session_on_or_after(ex_date))
        if i >= len(self.bars):
            raise ValueError(f"ex-date {ex_date} is beyond the calendar")
        return self.bars.open_ts(i)

    def _actions_due(self, now_ts: float) -> list[tuple[float, int, Action]]:
        """Actions not applied yet whose ex-date open is at or before now: (open ts, splits before
        dividends, action), in time order."""
        due = []
        for action in self.bars.actions.all():
            if action.id not in self._applied_actions:
                ts = self._action_open_ts(action.ex_date)
                if ts <= now_ts:
                    due.append((ts, 0 if isinstance(action, Split) else 1, action))
        due.sort(key=lambda item: (item[0], item[1], item[2].seq))
        return due

    def _apply_action(self, action: Action, ts: float) -> None:
        self._applied_actions.add(action.id)
        when = datetime.fromtimestamp(ts, UTC)
        if isinstance(action, Split):
            self._apply_split(action, when)
        else:
            self._apply_dividend(action, when)

    def _apply_dividend(self, dividend: CashDividend, when: datetime) -> None:
        """At the ex-date's open the holder of record is paid: qty x amount, to the cent, as a `DIV`
        activity. (Alpaca pays on the payable date; the sim pays at the ex-date's open, so a test
        sees the whole event on one day.)"""
        pos = self._positions.get(dividend.symbol)
        if pos is None:
            return
        paid = round(pos.qty * dividend.amount, 2)
        self._cash = round(self._cash + paid, 2)
        self._activities.add_non_trade(
            "DIV",
            when,
            fmt_money(paid),
            f"Cash dividend of ${fmt_num(dividend.amount)} per share on {fmt_num(pos.qty)} {dividend.symbol} shares",
            symbol=dividend.symbol,
            qty=fmt_num(pos.qty),
            per_share_amount=fmt_num(dividend.amount),
        )

    def _apply_split(self, split: Split, when: datetime) -> None:
        """At the ex-date open: open orders in the symbol are canceled (their prices and quantities
        are in the old share basis), and a held position's qty x ratio, avg_entry_price / ratio, cost
        kept. A fractional remainder (a reverse split of 15 shares 1-for-10: 1.5) is kept as
        fractional shares, as Alpaca has done since 2021 instead of paying cash in lieu."""
        for order in self._orders:
            if order.is_open and order.symbol == split.symbol:
                order.status = "canceled"
                order.canceled_at = order.updated_at = when
        pos = self._positions.get(split.symbol)
        if pos is not None:
            old_qty = pos.qty
            pos.qty = round(pos.qty * split.ratio, 9)
            pos.avg_entry_price = pos.avg_entry_price / split.ratio
            new_rate, old_rate = split.rates
            self._activities.add_non_trade(
                "SPLIT",
                when,
                "0",
                f"{new_rate}-for-{old_rate} {'reverse ' if split.is_reverse else ''}split: "
                f"{fmt_num(old_qty)} -> {fmt_num(pos.qty)} {split.symbol} shares",
                symbol=split.symbol,
                qty=fmt_num(round(pos.qty - old_qty, 9)),
            )

    def _record_fill_activity(self, order: SimOrder, when: datetime, price: float, qty: float) -> None:
        leaves = 0.0 if order.qty is None or order.status == "filled" else max(order.qty - order.filled_qty, 0.0)
        self._activities.add(
            "FILL",
            when,
            {
                "transaction_time": fmt_time(when),
                "type": "fill" if order.status == "filled" else "partial_fill",
                "price": fmt_num(price, 4),
                "qty": fmt_num(qty),
                "side": order.side,
                "symbol": order.symbol,
                "leaves_qty": fmt_num(leaves),
                "order_id": order.id,
                "cum_qty": fmt_num(order.filled_qty),
                "order_status": order.status,
            },
        )

    def _split_adjusted_lastday(self, symbol: str, prev: int, close: float) -> float:
        """The previous close in today's share basis: / the ratio of each split applied since."""
        for split in self.bars.actions.splits(symbol):
            k = self.bars.next_trading_index(self.bars.first_session_on_or_after(split.ex_date))
            if k > prev and split.id in self._applied_actions:
                close /= split.ratio
        return close

    def _closes_between(self, after_ts: float, upto_ts: float) -> list[int]:
        closes = self.bars._closes
        lo = bisect.bisect_right(closes, after_ts)
        hi = bisect.bisect_right(closes, upto_ts)
        return [i for i in range(lo, hi) if not self.bars.is_closed(i)]

    def _record_close(self, i: int) -> None:
        session = self.bars.session_at(i)
        value = self._cash + sum(
            p.qty * self.bars.bar_by_index(p.symbol, i).close for p in self._positions.values()
        )
        self._close_equity[session] = value

    def _apply(self, event: _Event, order: SimOrder) -> None:
        when = datetime.fromtimestamp(event.ts, UTC)
        if event.kind == "route":
            order.status = "new"
            order.updated_at = when
        elif event.kind == "fill":
            target = order.qty if order.qty is not None else _floor9((order.notional or 0.0) / event.price)
            if order.partial_fraction is not None:
                target = _floor9(target * order.partial_fraction)
            self._fill(order, when, event.price, target)
        elif event.kind == "cancel":
            order.status = "canceled"
            order.canceled_at = order.updated_at = when
        elif event.kind == "expire":
            order.status = "expired"
            order.expired_at = order.updated_at = when
        elif event.kind == "roll":
            order.session = self.bars.next_trading_index(order.session + 1)
            if order.session < len(self.bars):
                order.start_ts = self.bars.open_ts(order.session)

    def _fill(self, order: SimOrder, when: datetime, price: float, qty: float) -> None:
        symbol = order.symbol
        pos = self._positions.get(symbol)
        if order.side == "sell":
            qty = min(qty, pos.qty if pos else 0.0)
            if qty <= QTY_EPS:  # the shares went elsewhere (closed by hand): nothing to sell
                order.status = "canceled"
                order.canceled_at = order.updated_at = when
                return
        qty = round(qty, 9)
        value = qty * price
        if order.side == "buy":
            self._cash = round(self._cash - value, 2)
            if pos is None:
                self._positions[symbol] = SimPosition(symbol, order.asset_id, qty, price)
            else:
                total = pos.qty + qty
                pos.avg_entry_price = (pos.cost_basis + value) / total
                pos.qty = round(total, 9)
        else:
            assert pos is not None
            self._cash = round(self._cash + value, 2)
            pos.qty = round(pos.qty - qty, 9)
            if pos.qty <= QTY_EPS:
                del self._positions[symbol]
        order.filled_avg_price = price
        order.filled_qty = round(order.filled_qty + qty, 9)
        order.filled_at = order.updated_at = when
        full = order.qty is None or order.filled_qty >= order.qty - QTY_EPS
        order.status = "partially_filled" if order.partial_fraction is not None or not full else "filled"
        self.fills.append(Fill(order.id, order.client_order_id, symbol, Side(order.side), qty, price, when))
        self._record_fill_activity(order, when, price, qty)

    # ================================================================== account math
    def _reserved(self, now: datetime) -> float:
        total = 0.0
        for order in self._orders:
            if order.is_open and order.side == "buy":
                total += self._order_cost(order, now)
        return total

    def _order_cost(self, order: SimOrder, now: datetime) -> float:
        if order.notional is not None:
            if order.filled_qty > 0:
                return 0.0  # a notional order fills once; a partial fill leaves nothing to buy
            return order.notional
        price = order.limit_price if order.limit_price is not None else self.bars.price_at(order.symbol, now)
        return (order.remaining_qty or 0.0) * price

    def _held_for_sells(self, symbol: str, now: datetime, exclude: SimOrder | None = None) -> float:
        held = 0.0
        for order in self._orders:
            if order.is_open and order.side == "sell" and order.symbol == symbol and order is not exclude:
                if order.qty is not None:
                    held += order.remaining_qty or 0.0
                elif order.filled_qty <= 0 and order.notional is not None:
                    held += order.notional / self.bars.price_at(symbol, now)
        return held

    def _market_value(self, now: datetime) -> float:
        return sum(p.qty * self.bars.price_at(p.symbol, now) for p in self._positions.values())

    def _previous_session(self, now: datetime) -> int:
        """Index of the last session dated before today (New York)."""
        today = now.astimezone(NEW_YORK).date()
        return self.bars.trading_index_before(self.bars.first_session_on_or_after(today))

    def _last_equity(self, now: datetime) -> float:
        i = self._previous_session(now)
        if i < 0:
            return self.initial_cash
        session = self.bars.session_at(i)
        if session in self._close_equity:
            return self._close_equity[session]
        # A close before the exchange existed: what it started with, valued at that close.
        return self.initial_cash + sum(
            qty * self.bars.bar_by_index(symbol, i).close for symbol, qty in self._baseline_positions.items()
        )

    def _snapshot(self, now: datetime) -> AccountSnapshot:
        long_value = self._market_value(now)
        reserved = self._reserved(now)
        return AccountSnapshot(
            cash=self._cash,
            equity=self._cash + long_value,
            buying_power=max(self._cash - reserved, 0.0),
            last_equity=self._last_equity(now),
            long_market_value=long_value,
            reserved=reserved,
            fractional_trading=self.fractional_trading,
        )

    # ================================================================== order creation
    def _new_order(
        self,
        symbol: str,
        side: str,
        type_: str,
        tif: str,
        qty: float | None,
        notional: float | None,
        limit_price: float | None,
        extended_hours: bool,
        position_intent: str | None,
        client_order_id: str,
        now: datetime,
        source: str = "api",
    ) -> SimOrder:
        session, is_open = self._session_state(now)
        start_ts = (
            now.timestamp() + self.fill_delay_seconds
            if is_open
            else (self.bars.open_ts(session) if session < len(self.bars) else math.inf)
        )
        self._seq += 1
        order = SimOrder(
            id=str(uuid.uuid4()),
            client_order_id=client_order_id,
            symbol=symbol,
            asset_id=self._asset(symbol).id,
            side=side,
            type=type_,
            time_in_force=tif,
            qty=qty,
            notional=notional,
            limit_price=limit_price,
            extended_hours=extended_hours,
            position_intent=position_intent,
            created_at=now,
            updated_at=now,
            session=session,
            start_ts=start_ts,
            seq=self._seq,
            partial_fraction=self._partial.pop(symbol, None) if source == "api" else None,
            source=source,
        )
        self._orders.append(order)
        self._by_id[order.id] = order
        self._by_client_id[client_order_id] = order
        self._client_ids_used[client_order_id] = self._client_ids_used.get(client_order_id, 0) + 1
        return order

    def submit_order(self, body: Any) -> SimOrder:
        """POST /v2/orders: validate like Alpaca, then create an `accepted` order."""
        with self._lock:
            now = self._process_locked()
            return self._submit(body, now)

    def _submit(self, body: Any, now: datetime, *, closing: bool = False) -> SimOrder:
        if self._trading_blocked:
            raise _error(403, CODE_FORBIDDEN, "account is not authorized to trade")
        if not isinstance(body, dict):
            raise _error(400, CODE_INVALID, "request body format is invalid")
        symbol = body.get("symbol")
        if not isinstance(symbol, str) or not symbol:
            raise _error(422, CODE_UNPROCESSABLE, "symbol is required")
        side = body.get("side")
        if side not in ("buy", "sell"):
            raise _error(422, CODE_UNPROCESSABLE, f"invalid side: {side!r}" if side else "side is required")
        type_ = body.get("type", body.get("order_type"))
        if type_ not in ("market", "limit", "stop", "stop_limit", "trailing_stop"):
            raise _error(
                422, CODE_UNPROCESSABLE, f"invalid order type: {type_!r}" if type_ else "type is required"
            )
        if type_ not in ("market", "limit"):
            raise _error(
                422, CODE_UNPROCESSABLE, f"order type {type_} is not supported by the simulated market"
            )
        tif = body.get("time_in_force")
        if tif not in ("day", "gtc", "opg", "cls", "ioc", "fok"):
            raise _error(
                422,
                CODE_UNPROCESSABLE,
                f"invalid time_in_force: {tif!r}" if tif else "time_in_force is required",
            )
        if tif in ("opg", "cls"):
            raise _error(
                422, CODE_UNPROCESSABLE, f"time_in_force {tif} is not supported by the simulated market"
            )
        order_class = body.get("order_class") or "simple"
        if order_class != "simple":
            raise _error(
                422, CODE_UNPROCESSABLE, f"order_class {order_class} is not supported by the simulated market"
            )

        qty = self._number(body, "qty")
        notional = self._number(body, "notional")
        if qty is not None and notional is not None:
            raise _error(400, CODE_INVALID, "qty and notional can not be used together")
        if qty is None and notional is None:
            raise _error(422, CODE_UNPROCESSABLE, "qty or notional is required")
        if qty is not None and qty <= 0:
            raise _error(422, CODE_UNPROCESSABLE, "qty must be > 0")
        if notional is not None and notional <= 0:
            raise _error(422, CODE_UNPROCESSABLE, "notional must be > 0")
        limit_price = self._number(body, "limit_price")
        if type_ == "limit":
            if limit_price is None:
                raise _error(422, CODE_UNPROCESSABLE, "limit_price is required for limit orders")
            if limit_price <= 0:
                raise _error(422, CODE_UNPROCESSABLE, "limit_price must be > 0")
            places = 2 if limit_price >= 1.0 else 4
            if abs(limit_price * 10**places - round(limit_price * 10**places)) > 1e-6:
                raise _error(
                    422,
                    CODE_NOT_CANCELABLE,
                    f"invalid limit_price {fmt_num(limit_price)}. sub-penny increment does not fulfill "
                    "minimum pricing criteria",
                )
        elif limit_price is not None:
            raise _error(422, CODE_UNPROCESSABLE, "limit_price is not allowed for market orders")
        extended_hours = bool(body.get("extended_hours") or False)
        if extended_hours and not (type_ == "limit" and tif == "day"):
            raise _error(422, CODE_UNPROCESSABLE, "extended hours order must be DAY limit orders")

        client_order_id = body.get("client_order_id")
        if client_order_id is None or client_order_id == "":
            client_order_id = str(uuid.uuid4())
        if not isinstance(client_order_id, str):
            raise _error(422, CODE_UNPROCESSABLE, "client_order_id must be a string")
        if len(client_order_id) > MAX_CLIENT_ORDER_ID:
            raise _error(422, CODE_UNPROCESSABLE, "client_order_id must be no more than 128 characters")
        if client_order_id in self._client_ids_used:
            raise _error(422, CODE_UNPROCESSABLE, "client_order_id must be unique")

        asset = self._lookup_asset(symbol) if is_valid_ticker(symbol) else None
        if asset is None:
            raise _error(422, CODE_UNPROCESSABLE, f"asset {symbol} not found")
        symbol = asset.symbol
        if not asset.tradable or asset.status != "active":
            raise _error(422, CODE_UNPROCESSABLE, f"asset {symbol} is not tradable")

        fractional = notional is not None or (qty is not None and not _is_whole(qty))
        if fractional and not closing:
            if not self.fractional_trading:
                message = (
                    "fractional trading is not enabled for this account"
                    if notional is not None
                    else "qty must be integer"
                )
                raise _error(422, CODE_UNPROCESSABLE, message)
            if not asset.fractionable:
                raise _error(422, CODE_UNPROCESSABLE, "requested asset is not fractionable")
            if tif != "day":
                raise _error(422, CODE_UNPROCESSABLE, "fractional orders must be DAY orders")
            if notional is not None and type_ != "market":
                raise _error(422, CODE_UNPROCESSABLE, "notional orders must be market orders")

        price = self.bars.price_at(symbol, now)
        ref_price = limit_price if limit_price is not None else price
        cost_basis = notional if notional is not None else (qty or 0.0) * ref_price
        if fractional and not closing and cost_basis < 1.0 - 1e-9:
            raise _error(403, CODE_FORBIDDEN, "cost basis must be >= 1")

        opposite = "sell" if side == "buy" else "buy"
        for other in self._orders:
            if other.is_open and other.symbol == symbol and other.side == opposite:
                raise _error(
                    403,
                    CODE_FORBIDDEN,
                    "potential wash trade detected. use complex orders",
                    reject_reason="opposite side order exists",
                    existing_order_id=other.id,
                )

        if side == "buy":
            buying_power = max(self._cash - self._reserved(now), 0.0)
            if cost_basis > buying_power + 1e-9:
                raise _error(
                    403,
                    CODE_FORBIDDEN,
                    "insufficient buying power",
                    buying_power=fmt_money(buying_power),
                    cost_basis=fmt_money(cost_basis),
                )
        else:
            pos = self._positions.get(symbol)
            existing = pos.qty if pos else 0.0
            held = self._held_for_sells(symbol, now)
            wanted = qty if qty is not None else (notional or 0.0) / price
            available = max(existing - held, 0.0)
            if wanted > available + QTY_EPS:
                if fractional and wanted > existing + QTY_EPS:
                    raise _error(403, CODE_FORBIDDEN, "fractional orders cannot be sold short")
                raise _error(
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
            raise _error(422, CODE_UNPROCESSABLE, f"invalid position_intent: {position_intent!r}")
        return self._new_order(
            symbol,
            side,
            type_,
            tif,
            qty,
            notional,
            limit_price,
            extended_hours,
            position_intent,
            client_order_id,
            now,
        )

    @staticmethod
    def _number(body: Mapping[str, Any], name: str) -> float | None:
        raw = body.get(name)
        if raw is None or raw == "":
            return None
        try:
            value = float(raw)
        except (TypeError, ValueError):
            raise _error(422, CODE_UNPROCESSABLE, f"invalid {name}: {raw!r}") from None
        if not math.isfinite(value):
            raise _error(422, CODE_UNPROCESSABLE, f"invalid {name}: {raw!r}")
        return value

    # ================================================================== API views (JSON-ready)
    def api_account(self) -> dict[str, Any]:
        with self._lock:
            now = self._process_locked()
            s = self._snapshot(now)
            prev = self._previous_session(now)
            return {
                "id": ACCOUNT_ID,
                "admin_configurations": {},
                "user_configurations": None,
                "account_number": ACCOUNT_NUMBER,
                "status": "ACTIVE",
                "crypto_status": "INACTIVE",
                "options_approved_level": 0,
                "options_trading_level": 0,
                "currency": "USD",
                "buying_power": fmt_money(s.buying_power),
                "regt_buying_power": fmt_money(s.buying_power),
                "non_marginable_buying_power": fmt_money(s.buying_power),
                "options_buying_power": fmt_money(s.buying_power),
                "cash": fmt_money(s.cash),
                "accrued_fees": "0",
                "portfolio_value": fmt_money(s.equity),
                "trading_blocked": self._trading_blocked,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": fmt_time(self._created),
                "trade_suspended_by_user": False,
                "multiplier": "1",
                "shorting_enabled": False,
                "equity": fmt_money(s.equity),
                "last_equity": fmt_money(s.last_equity),
                "long_market_value": fmt_money(s.long_market_value),
                "short_market_value": "0",
                "position_market_value": fmt_money(s.long_market_value),
                "initial_margin": fmt_money(s.long_market_value),
                "maintenance_margin": "0",
                "last_maintenance_margin": "0",
                "sma": "0",
                "crypto_tier": 0,
                "intraday_adjustments": "0",
                "pending_reg_taf_fees": "0",
                "balance_asof": self.bars.session_at(prev).isoformat() if prev >= 0 else None,
            }

    def api_account_configurations(self) -> dict[str, Any]:
        with self._lock:
            return {
                "fractional_trading": self.fractional_trading,
                "max_margin_multiplier": "1",
                "no_shorting": True,
                "suspend_trade": False,
                "trade_confirm_email": "all",
                "ptp_no_exception_entry": False,
                "max_options_trading_level": 0,
            }

    def api_patch_account_configurations(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _error(400, CODE_INVALID, "request body format is invalid")
        if "fractional_trading" in body:
            self.set_fractional_trading(bool(body["fractional_trading"]))
        return self.api_account_configurations()

    def api_clock(self) -> dict[str, Any]:
        now = self.process()
        if self.bars.closures:
            return self._clock_with_closures(now)
        cal = self.calendar
        return {
            "timestamp": now.astimezone(NEW_YORK).isoformat(),
            "is_open": cal.is_open(now),
            "next_open": cal.next_open(now).astimezone(NEW_YORK).isoformat(),
            "next_close": cal.next_close(now).astimezone(NEW_YORK).isoformat(),
        }

    def _clock_with_closures(self, now: datetime) -> dict[str, Any]:
        """/v2/clock from the sim's own sessions, unscheduled closures left out."""
        bars, ts = self.bars, now.timestamp()
        i = bars.last_started(now)
        next_open = bars.next_trading_index(bisect.bisect_right(bars._opens, ts))
        next_close = bars.next_trading_index(bisect.bisect_right(bars._closes, ts))
        if max(next_open, next_close) >= len(bars):
            raise ValueError("date outside the calendar's range")
        return {
            "timestamp": now.astimezone(NEW_YORK).isoformat(),
            "is_open": i >= 0 and ts < bars.close_ts(i),
            "next_open": datetime.fromtimestamp(bars.open_ts(next_open), NEW_YORK).isoformat(),
            "next_close": datetime.fromtimestamp(bars.close_ts(next_close), NEW_YORK).isoformat(),
        }

    def api_calendar(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        bars = self.bars
        lo, hi = 0, len(bars)
        for name in ("start", "end"):
            raw = params.get(name)
            if raw:
                try:
                    day = date.fromisoformat(raw[:10])
                except ValueError:
                    raise _error(400, CODE_INVALID, f"invalid {name}: {raw!r}") from None
                if name == "start":
                    lo = bars.first_session_on_or_after(day)
                else:
                    hi = bars.last_session_on_or_before(day) + 1
        out = []
        for i in range(lo, hi):
            if bars.is_closed(i):  # an unscheduled closure is not a trading day
                continue
            session = bars.session_at(i)
            open_ny = datetime.fromtimestamp(bars.open_ts(i), NEW_YORK)
            close_ny = datetime.fromtimestamp(bars.close_ts(i), NEW_YORK)
            lag = 1 if session >= date(2024, 5, 28) else 2  # T+1 settlement since 2024-05-28
            settle_i = i
            for _ in range(lag):
                settle_i = bars.next_trading_index(settle_i + 1)
            settle = bars.session_at(min(settle_i, len(bars) - 1))
            out.append(
                {
                    "date": session.isoformat(),
                    "open": open_ny.strftime("%H:%M"),
                    "close": close_ny.strftime("%H:%M"),
                    "session_open": "0400",
                    "session_close": "2000",
                    "settlement_date": settle.isoformat(),
                }
            )
        return out

    def api_assets(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            status = params.get("status")
            asset_class = params.get("asset_class")
            exchange = params.get("exchange")
            if asset_class not in (None, "", "us_equity"):
                return []
            out = []
            for asset in sorted(self._assets.values(), key=lambda a: a.symbol):
                if status and asset.status != status:
                    continue
                if exchange and asset.exchange != exchange:
                    continue
                out.append(asset.to_json())
            return out

    def api_asset(self, symbol_or_id: str) -> dict[str, Any]:
        with self._lock:
            asset = self._lookup_asset(symbol_or_id)
            if asset is None:
                raise _error(404, CODE_NOT_FOUND, f"asset not found for {symbol_or_id}")
            return asset.to_json()

    def _position_json(self, pos: SimPosition, now: datetime) -> dict[str, Any]:
        asset = self._asset(pos.symbol)
        price = self.bars.price_at(pos.symbol, now)
        prev = self._previous_session(now)
        lastday = self.bars.bar_by_index(pos.symbol, prev).close if prev >= 0 else pos.avg_entry_price
        if prev >= 0 and self.bars.actions.has_splits:
            lastday = self._split_adjusted_lastday(pos.symbol, prev, lastday)
        market_value = pos.qty * price
        cost = pos.cost_basis
        held = self._held_for_sells(pos.symbol, now)
        return {
            "asset_id": pos.asset_id,
            "symbol": pos.symbol,
            "exchange": asset.exchange,
            "asset_class": "us_equity",
            "asset_marginable": asset.marginable,
            "qty": fmt_num(pos.qty),
            "qty_available": fmt_num(max(pos.qty - held, 0.0)),
            "avg_entry_price": fmt_num(pos.avg_entry_price, 6),
            "side": "long",
            "market_value": fmt_num(market_value, 4),
            "cost_basis": fmt_num(cost, 4),
            "unrealized_pl": fmt_num(market_value - cost, 4),
            "unrealized_plpc": fmt_num((market_value - cost) / cost if cost else 0.0, 6),
            "unrealized_intraday_pl": fmt_num((price - lastday) * pos.qty, 4),
            "unrealized_intraday_plpc": fmt_num(price / lastday - 1.0 if lastday else 0.0, 6),
            "current_price": fmt_num(price, 4),
            "lastday_price": fmt_num(lastday, 4),
            "change_today": fmt_num(price / lastday - 1.0 if lastday else 0.0, 6),
        }

    def api_positions(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self._process_locked()
            return [self._position_json(p, now) for _, p in sorted(self._positions.items())]

    def _position_for(self, symbol_or_id: str) -> SimPosition:
        pos = self._positions.get(symbol_or_id)
        if pos is None:
            pos = next((p for p in self._positions.values() if p.asset_id == symbol_or_id), None)
        if pos is None:
            raise _error(404, CODE_NOT_FOUND, "position does not exist")
        return pos

    def api_position(self, symbol_or_id: str) -> dict[str, Any]:
        with self._lock:
            now = self._process_locked()
            return self._position_json(self._position_for(symbol_or_id), now)

    def api_close_position(self, symbol_or_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """DELETE /v2/positions/{symbol}: a market sell for all (or ?qty= / ?percentage=) of it."""
        with self._lock:
            now = self._process_locked()
            pos = self._position_for(symbol_or_id)
            qty = pos.qty
            if params.get("qty"):
                qty = self._number(params, "qty") or 0.0
            elif params.get("percentage"):
                pct = self._number(params, "percentage") or 0.0
                if not 0 < pct <= 100:
                    raise _error(422, CODE_UNPROCESSABLE, "percentage must be in (0, 100]")
                qty = _floor9(pos.qty * pct / 100.0)
            body = {
                "symbol": pos.symbol,
                "qty": qty,
                "side": "sell",
                "type": "market",
                "time_in_force": "day",
            }
            return self._submit(body, now, closing=True).to_json()

    def api_close_all_positions(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            if str(params.get("cancel_orders", "")).lower() == "true":
                self.api_cancel_all_orders()
            out = []
            for symbol in sorted(self._positions):
                try:
                    order = self.api_close_position(symbol, {})
                    out.append({"symbol": symbol, "status": 200, "body": order})
                except SimAPIError as exc:
                    out.append({"symbol": symbol, "status": exc.status, "body": exc.body})
            return out

    def api_activities(self, params: Mapping[str, str], activity_type: str | None = None) -> list[dict[str, Any]]:
        """GET /v2/account/activities[/{activity_type}] (core/sim/activities.py)."""
        with self._lock:
            self._process_locked()
            try:
                return self._activities.query(params, activity_type)
            except ActivityQueryError as exc:
                raise _error(422, CODE_UNPROCESSABLE, str(exc)) from None

    def api_submit_order(self, body: Any) -> dict[str, Any]:
        return self.submit_order(body).to_json()

    def api_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            self._process_locked()
            status = params.get("status") or "open"
            if status not in ("open", "closed", "all"):
                raise _error(422, CODE_UNPROCESSABLE, f"invalid status: {status!r}")
            try:
                limit = int(params.get("limit") or 50)
            except ValueError:
                raise _error(422, CODE_UNPROCESSABLE, f"invalid limit: {params.get('limit')!r}") from None
            if not 1 <= limit <= 500:
                raise _error(422, CODE_UNPROCESSABLE, "limit must be between 1 and 500")
            direction = (params.get("direction") or "desc").lower()
            if direction not in ("asc", "desc"):
                raise _error(422, CODE_UNPROCESSABLE, f"invalid direction: {direction!r}")
            after = parse_time(params["after"], "after") if params.get("after") else None
            until = parse_time(params["until"], "until") if params.get("until") else None
            symbols = (
                {s.strip() for s in params["symbols"].split(",") if s.strip()}
                if params.get("symbols")
                else None
            )
            side = params.get("side") or None
            selected = []
            for order in self._orders:
                if status == "open" and not order.is_open or status == "closed" and order.is_open:
                    continue
                if after is not None and order.created_at <= after:
                    continue
                if until is not None and order.created_at >= until:
                    continue
                if symbols is not None and order.symbol not in symbols:
                    continue
                if side is not None and order.side != side:
                    continue
                selected.append(order)
            selected.sort(key=lambda o: (o.created_at, o.seq), reverse=direction == "desc")
            return [o.to_json() for o in selected[:limit]]

    def _order(self, order_id: str) -> SimOrder:
        order = self._by_id.get(order_id)
        if order is None:
            raise _error(404, CODE_NOT_FOUND, "order not found")
        return order

    def api_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            self._process_locked()
            return self._order(order_id).to_json()

    def api_order_by_client_id(self, client_order_id: str) -> dict[str, Any]:
        with self._lock:
            self._process_locked()
            order = self._by_client_id.get(client_order_id)
            if order is None:
                raise _error(404, CODE_NOT_FOUND, "order not found")
            return order.to_json()

    def cancel_order(self, order_id: str) -> None:
        with self._lock:
            now = self._process_locked()
            order = self._order(order_id)
            if not order.is_open:
                raise _error(422, CODE_NOT_CANCELABLE, f'order is already in "{order.status}" state')
            order.status = "canceled"
            order.canceled_at = order.updated_at = now

    def api_cancel_all_orders(self) -> list[dict[str, Any]]:
        with self._lock:
            self._process_locked()
            out = []
            for order in list(self._orders):
                if order.is_open:
                    self.cancel_order(order.id)
                    out.append({"id": order.id, "status": 200, "body": None})
            return out

    def open_orders(self) -> Iterable[SimOrder]:
        with self._lock:
            self._process_locked()
            return [copy.copy(o) for o in self._orders if o.is_open]
