"""The simulated account's state: cash, assets, positions and orders (with the records the API
shows), and the account math Alpaca's answers and order checks need (reserved cash, shares held for
open sells, equity, last_equity). It changes only through core/sim/matching.py (fills, corporate
actions, closes) and the exchange's controls; core/sim/order_checks.py reads it."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from config.universe import DEFAULT_NON_FRACTIONABLE, is_valid_ticker
from core.domain.market_calendar import NEW_YORK
from core.domain.models import Fill
from core.sim.activities import ActivityLog
from core.sim.bars import SyntheticBars
from core.sim.wire import fmt_num, fmt_time

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


def floor9(value: float) -> float:
    """A quantity floored to Alpaca's 9 decimals."""
    return math.floor(value * 1e9 + 1e-6) / 1e9


def is_whole(value: float) -> bool:
    return abs(value - round(value)) < QTY_EPS


# ------------------------------------------------------------------------------ records
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


# ------------------------------------------------------------------------------ the account
@dataclass
class SimAccount:
    """One cash account. Not thread-safe on its own: the exchange's lock guards it."""

    bars: SyntheticBars
    initial_cash: float
    fractional_trading: bool
    created: datetime
    cash: float = 0.0
    assets: dict[str, SimAsset] = field(default_factory=dict)
    removed: set[str] = field(default_factory=set)             # symbols made unknown (remove_asset)
    positions: dict[str, SimPosition] = field(default_factory=dict)
    orders: list[SimOrder] = field(default_factory=list)
    by_id: dict[str, SimOrder] = field(default_factory=dict)
    by_client_id: dict[str, SimOrder] = field(default_factory=dict)
    client_ids_used: dict[str, int] = field(default_factory=dict)
    partial: dict[str, float] = field(default_factory=dict)    # the next order's partial fill, by symbol
    fills: list[Fill] = field(default_factory=list)
    close_equity: dict[date, float] = field(default_factory=dict)
    baseline_positions: dict[str, float] = field(default_factory=dict)  # shares put in by add_position
    trading_blocked: bool = False
    activities: ActivityLog = field(default_factory=lambda: ActivityLog(ACCOUNT_ID))

    def __post_init__(self) -> None:
        self.cash = float(self.initial_cash)

    # ------------------------------------------------------------------ assets
    def asset(self, symbol: str) -> SimAsset:
        """The asset of `symbol`, made on first use; KeyError for an invalid or removed symbol."""
        asset = self.assets.get(symbol)
        if asset is None:
            if not is_valid_ticker(symbol) or symbol in self.removed:
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
            self.assets[symbol] = asset
        return asset

    def lookup_asset(self, symbol_or_id: str) -> SimAsset | None:
        try:
            return self.asset(symbol_or_id)
        except KeyError:
            pass
        for asset in self.assets.values():
            if asset.id == symbol_or_id:
                return asset
        return None

    def add_order(self, order: SimOrder) -> None:
        self.orders.append(order)
        self.by_id[order.id] = order
        self.by_client_id[order.client_order_id] = order
        self.client_ids_used[order.client_order_id] = self.client_ids_used.get(order.client_order_id, 0) + 1

    # ------------------------------------------------------------------ account math
    def reserved(self, now: datetime) -> float:
        """Cash held by open buy orders."""
        total = 0.0
        for order in self.orders:
            if order.is_open and order.side == "buy":
                total += self.order_cost(order, now)
        return total

    def order_cost(self, order: SimOrder, now: datetime) -> float:
        if order.notional is not None:
            if order.filled_qty > 0:
                return 0.0  # a notional order fills once; a partial fill leaves nothing to buy
            return order.notional
        price = order.limit_price if order.limit_price is not None else self.bars.price_at(order.symbol, now)
        return (order.remaining_qty or 0.0) * price

    def held_for_sells(self, symbol: str, now: datetime, exclude: SimOrder | None = None) -> float:
        """Shares of `symbol` held by open sell orders."""
        held = 0.0
        for order in self.orders:
            if order.is_open and order.side == "sell" and order.symbol == symbol and order is not exclude:
                if order.qty is not None:
                    held += order.remaining_qty or 0.0
                elif order.filled_qty <= 0 and order.notional is not None:
                    held += order.notional / self.bars.price_at(symbol, now)
        return held

    def market_value(self, now: datetime) -> float:
        return sum(p.qty * self.bars.price_at(p.symbol, now) for p in self.positions.values())

    def previous_session(self, now: datetime) -> int:
        """Index of the last session dated before today (New York)."""
        today = now.astimezone(NEW_YORK).date()
        return self.bars.trading_index_before(self.bars.first_session_on_or_after(today))

    def last_equity(self, now: datetime) -> float:
        i = self.previous_session(now)
        if i < 0:
            return self.initial_cash
        session = self.bars.session_at(i)
        if session in self.close_equity:
            return self.close_equity[session]
        # A close before the exchange existed: what it started with, valued at that close.
        return self.initial_cash + sum(
            qty * self.bars.bar_by_index(symbol, i).close for symbol, qty in self.baseline_positions.items()
        )

    def record_close(self, i: int) -> None:
        """The equity at session `i`'s close (the next day's `last_equity`)."""
        session = self.bars.session_at(i)
        value = self.cash + sum(
            p.qty * self.bars.bar_by_index(p.symbol, i).close for p in self.positions.values()
        )
        self.close_equity[session] = value

    def snapshot(self, now: datetime) -> AccountSnapshot:
        long_value = self.market_value(now)
        reserved = self.reserved(now)
        return AccountSnapshot(
            cash=self.cash,
            equity=self.cash + long_value,
            buying_power=max(self.cash - reserved, 0.0),
            last_equity=self.last_equity(now),
            long_market_value=long_value,
            reserved=reserved,
            fractional_trading=self.fractional_trading,
        )
