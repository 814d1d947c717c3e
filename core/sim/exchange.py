"""The simulated brokerage behind the emulator: one cash account, assets, positions and orders,
with Alpaca's order rules and error bodies. `SimExchange` is the facade the server, the data API and
the tests use; the work is in four modules:

- core/sim/account.py: the account's state (cash, assets, positions, orders) and its math;
- core/sim/order_checks.py: an order request checked against Alpaca's rules, with Alpaca's errors;
- core/sim/matching.py: the time-ordered replay that fills, expires and rolls orders and applies
  corporate actions at the open (the module says how time moves);
- core/sim/wire.py: Alpaca's decimal strings, timestamps and error answers (`SimAPIError`).

Every public method brings the account up to the clock first (`process()`). Errors are raised as
`SimAPIError(status, body)`; the server sends them as they are.

Real-market events (none unless a test registers one; docs/simulated-market.md): splits and cash
dividends take effect at their ex-date's open in the same time-ordered replay, before that open's
fills; deposits, withdrawals, a trading block, bad prints (data feed only) and unscheduled closures
have their own controls; every fill and cash movement is an account activity.
"""

from __future__ import annotations

import copy
import math
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from typing import Any

from config.universe import DEFAULT_NON_FRACTIONABLE, DEFAULT_SYMBOL_TIERS, is_valid_ticker
from core.domain.clock import Clock
from core.domain.market_calendar import NEW_YORK, MarketCalendar
from core.domain.models import Fill
from core.sim.account import (
    ACCOUNT_ID,
    ACCOUNT_NUMBER,
    OPEN_STATUSES,
    QTY_EPS,
    AccountSnapshot,
    SimAccount,
    SimAsset,
    SimOrder,
    SimPosition,
    floor9,
)
from core.sim.activities import ActivityQueryError
from core.sim.bars import SyntheticBars
from core.sim.corporate_actions import CashDividend, Split, previous_close
from core.sim.matching import MatchingEngine
from core.sim.order_checks import OrderRequest, check_order, number
from core.sim.wire import (
    CODE_FORBIDDEN,
    CODE_INVALID,
    CODE_NOT_FOUND,
    CODE_ORDER_REFUSED,
    CODE_UNPROCESSABLE,
    SimAPIError,
    api_error,
    fmt_money,
    fmt_num,
    fmt_time,
    parse_time,
)


class SimExchange:
    """Thread-safe simulated Alpaca account: the facade over the account, the order checks and the
    matching engine (see the module docstring)."""

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
        self.initial_cash = float(initial_cash)
        self._lock = threading.RLock()
        self._bad_prints: dict[tuple[str, date], float] = {}
        self.cash_account = SimAccount(bars, self.initial_cash, fractional_trading, clock.now())
        self.matching = MatchingEngine(self.cash_account, bars, clock, fill_delay_seconds=fill_delay_seconds)
        for symbol in DEFAULT_SYMBOL_TIERS:
            self.cash_account.asset(symbol)
        for symbol, flags in (assets or {}).items():
            self.set_asset(symbol, **flags)

    @property
    def fractional_trading(self) -> bool:
        return self.cash_account.fractional_trading

    @property
    def fills(self) -> list[Fill]:
        """Every fill so far, oldest first (the account's own list)."""
        return self.cash_account.fills

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
            self.cash_account.removed.discard(symbol)
            asset = self.cash_account.asset(symbol)
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
            self.cash_account.assets.pop(symbol, None)
            self.cash_account.removed.add(symbol)

    def set_fractional_trading(self, enabled: bool) -> None:
        with self._lock:
            self.cash_account.fractional_trading = enabled

    def set_partial_fill(self, symbol: str, fraction: float) -> None:
        """The next order on `symbol` fills only `fraction` of its size and stays partially_filled."""
        if not 0.0 < fraction < 1.0:
            raise ValueError(f"fraction {fraction!r} must be in (0, 1)")
        with self._lock:
            self.cash_account.partial[symbol] = fraction

    def set_cash(self, cash: float) -> None:
        with self._lock:
            self.cash_account.cash = float(cash)

    def add_position(self, symbol: str, qty: float, avg_price: float, *, debit_cash: bool = False) -> None:
        """Put shares in the account as if they had been there all along (cash untouched by default)."""
        if qty <= 0 or avg_price <= 0:
            raise ValueError("qty and avg_price must be positive")
        with self._lock:
            self.matching.process()
            asset = self.cash_account.asset(symbol)
            pos = self.cash_account.positions.get(symbol)
            if pos is None:
                self.cash_account.positions[symbol] = SimPosition(symbol, asset.id, float(qty), float(avg_price))
            else:
                total = pos.qty + qty
                pos.avg_entry_price = (pos.cost_basis + qty * avg_price) / total
                pos.qty = total
            if debit_cash:
                self.cash_account.cash = round(self.cash_account.cash - qty * avg_price, 2)
            self.cash_account.baseline_positions[symbol] = self.cash_account.baseline_positions.get(symbol, 0.0) + qty

    def close_position_externally(self, symbol: str) -> dict[str, Any]:
        """Close a position as a person would by hand: a filled sell with a foreign client_order_id."""
        with self._lock:
            now = self.matching.process()
            pos = self.cash_account.positions.get(symbol)
            if pos is None:
                raise ValueError(f"no position in {symbol}")
            if self.cash_account.trading_blocked:  # no hand either, while the account is blocked
                raise ValueError("the account is blocked from trading (set_trading_blocked)")
            order = self.matching.new_order(_by_hand(symbol, "sell", pos.qty), now, source="external")
            self.matching.fill(order, now, self.bars.price_at(symbol, now), pos.qty)
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
            now = self.matching.process()
            asset = self.cash_account.lookup_asset(symbol) if is_valid_ticker(symbol) else None
            if asset is None:
                raise ValueError(f"unknown symbol {symbol!r}")
            if self.cash_account.trading_blocked:
                raise ValueError("the account is blocked from trading (set_trading_blocked)")
            price = self.bars.price_at(symbol, now)
            held = self.cash_account.positions[symbol].qty if symbol in self.cash_account.positions else 0.0
            if side == "sell" and qty > held + QTY_EPS:
                raise ValueError(f"cannot sell {fmt_num(qty)} {symbol}: {fmt_num(held)} held")
            if side == "buy" and qty * price > self.cash_account.cash + 1e-9:
                raise ValueError(f"buying {fmt_num(qty)} {symbol} at {price} needs more than the cash {fmt_money(self.cash_account.cash)}")
            order = self.matching.new_order(_by_hand(symbol, side, float(qty)), now, source="external")
            self.matching.fill(order, now, price, float(qty))
            return order.to_json()

    def orders_for_client_id(self, client_order_id: str) -> int:
        """How many orders were ever created with this client_order_id (0 or 1 when the rules hold)."""
        with self._lock:
            return self.cash_account.client_ids_used.get(client_order_id, 0)

    def all_orders(self) -> list[SimOrder]:
        with self._lock:
            self.matching.process()
            return [copy.copy(o) for o in self.cash_account.orders]

    def order_by_client_id(self, client_order_id: str) -> SimOrder | None:
        with self._lock:
            self.matching.process()
            order = self.cash_account.by_client_id.get(client_order_id)
            return copy.copy(order) if order else None

    def positions(self) -> dict[str, SimPosition]:
        with self._lock:
            self.matching.process()
            return {s: copy.copy(p) for s, p in self.cash_account.positions.items()}

    def account(self) -> AccountSnapshot:
        with self._lock:
            now = self.matching.process()
            return self.cash_account.snapshot(now)

    def process(self, now: datetime | None = None) -> datetime:
        """Bring every order and the account up to `now` (default: the clock)."""
        with self._lock:
            return self.matching.process(now)

    def has_data(self, symbol: str) -> bool:
        """Whether the data API serves bars for the symbol."""
        return is_valid_ticker(symbol) and symbol not in self.cash_account.removed

    # ================================================================== real-market events (docs/simulated-market.md)
    def set_trading_blocked(self, blocked: bool) -> None:
        """Alpaca's `trading_blocked` account flag: while set, /v2/account reports it and every order
        POST (and every DELETE /v2/positions, which places an order) gets Alpaca's 403
        `{"code": 40310000, "message": "account is not authorized to trade"}`. Cancels still work."""
        with self._lock:
            self.cash_account.trading_blocked = bool(blocked)

    @property
    def trading_blocked(self) -> bool:
        return self.cash_account.trading_blocked

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
        amount = _cash_amount(amount)
        with self._lock:
            now = self.matching.process()
            self.cash_account.cash = round(self.cash_account.cash + amount, 2)
            return self.cash_account.activities.add_non_trade("CSD", now, fmt_money(amount), "Cash deposit")

    def withdraw(self, amount: float) -> dict[str, Any]:
        """Cash out now: cash -= amount, recorded as a `CSW` activity with a negative net_amount.
        More than the cash is refused (Alpaca lets only withdrawable cash go). Returns the activity."""
        amount = _cash_amount(amount)
        with self._lock:
            now = self.matching.process()
            if amount > self.cash_account.cash + 1e-9:
                raise ValueError(f"withdrawal {fmt_money(amount)} exceeds the cash {fmt_money(self.cash_account.cash)}")
            self.cash_account.cash = round(self.cash_account.cash - amount, 2)
            return self.cash_account.activities.add_non_trade("CSW", now, fmt_money(-amount), "Cash withdrawal")

    def activities(self) -> list[dict[str, Any]]:
        """Every account activity so far, oldest first (the JSON /v2/account/activities serves)."""
        with self._lock:
            self.matching.process()
            return [dict(a.body) for a in self.cash_account.activities.items()]

    def add_closure(self, day: date) -> None:
        """An unscheduled closure (a day of mourning, a storm): the market does not open on `day`
        although exchange_calendars says it does. /v2/clock is closed all day and its next_open skips
        the day, /v2/calendar leaves it out, the data API has no bar for it, and orders waiting for
        its open (or a GTC order rolling into it) wait for the next session instead. The day's open
        must still be ahead. `start_sim_market(closures=[...])` closes days from the start."""
        with self._lock:
            now = self.matching.process()
            i = self.bars.index_of(day)
            if self.bars.open_ts(i) <= now.timestamp():
                raise ValueError(f"the session {day} has opened already; close a day before its open")
            self.bars.add_closure(day)
            following = self.bars.next_trading_index(i)
            for order in self.cash_account.orders:
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
            now = self.matching.process()
            if self.matching.action_open_ts(ex_date) <= now.timestamp():
                raise ValueError(f"the ex-date {ex_date} has opened already; register a split before its open")
            if symbol in self.cash_account.positions or any(o.symbol == symbol for o in self.cash_account.orders):
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
            now = self.matching.process()
            if self.matching.action_open_ts(ex_date) <= now.timestamp():
                raise ValueError(f"the ex-date {ex_date} has opened already; register a dividend before its open")
            close = previous_close(self.bars, self.bars.actions, symbol, ex_date)
            if close is not None and amount >= close:
                raise ValueError(f"amount {amount} is not below the previous close {close}")
            return self.bars.actions.add_dividend(symbol, ex_date, float(amount))

    # ================================================================== orders
    def submit_order(self, body: Any) -> SimOrder:
        """POST /v2/orders: check the request like Alpaca, then create an `accepted` order."""
        with self._lock:
            now = self.matching.process()
            return self.matching.new_order(check_order(body, self.cash_account, now), now)

    # ================================================================== API views (JSON-ready)
    def api_account(self) -> dict[str, Any]:
        with self._lock:
            now = self.matching.process()
            s = self.cash_account.snapshot(now)
            prev = self.cash_account.previous_session(now)
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
                "trading_blocked": self.cash_account.trading_blocked,
                "transfers_blocked": False,
                "account_blocked": False,
                "created_at": fmt_time(self.cash_account.created),
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
            raise api_error(400, CODE_INVALID, "request body format is invalid")
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
        next_open = bars.next_open_index(ts)
        next_close = bars.next_close_index(ts)
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
                    raise api_error(400, CODE_INVALID, f"invalid {name}: {raw!r}") from None
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
            for asset in sorted(self.cash_account.assets.values(), key=lambda a: a.symbol):
                if status and asset.status != status:
                    continue
                if exchange and asset.exchange != exchange:
                    continue
                out.append(asset.to_json())
            return out

    def api_asset(self, symbol_or_id: str) -> dict[str, Any]:
        with self._lock:
            asset = self.cash_account.lookup_asset(symbol_or_id)
            if asset is None:
                raise api_error(404, CODE_NOT_FOUND, f"asset not found for {symbol_or_id}")
            return asset.to_json()

    def _position_json(self, pos: SimPosition, now: datetime) -> dict[str, Any]:
        asset = self.cash_account.asset(pos.symbol)
        price = self.bars.price_at(pos.symbol, now)
        prev = self.cash_account.previous_session(now)
        lastday = self.bars.bar_by_index(pos.symbol, prev).close if prev >= 0 else pos.avg_entry_price
        if prev >= 0 and self.bars.actions.has_splits:
            lastday = self.matching.split_adjusted_lastday(pos.symbol, prev, lastday)
        market_value = pos.qty * price
        cost = pos.cost_basis
        held = self.cash_account.held_for_sells(pos.symbol, now)
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
            now = self.matching.process()
            return [self._position_json(p, now) for _, p in sorted(self.cash_account.positions.items())]

    def _position_for(self, symbol_or_id: str) -> SimPosition:
        pos = self.cash_account.positions.get(symbol_or_id)
        if pos is None:
            pos = next((p for p in self.cash_account.positions.values() if p.asset_id == symbol_or_id), None)
        if pos is None:
            raise api_error(404, CODE_NOT_FOUND, "position does not exist")
        return pos

    def api_position(self, symbol_or_id: str) -> dict[str, Any]:
        with self._lock:
            now = self.matching.process()
            return self._position_json(self._position_for(symbol_or_id), now)

    def api_close_position(self, symbol_or_id: str, params: Mapping[str, str]) -> dict[str, Any]:
        """DELETE /v2/positions/{symbol}: a market sell for all (or ?qty= / ?percentage=) of it."""
        with self._lock:
            now = self.matching.process()
            pos = self._position_for(symbol_or_id)
            qty = pos.qty
            if params.get("qty"):
                qty = number(params, "qty") or 0.0
            elif params.get("percentage"):
                pct = number(params, "percentage") or 0.0
                if not 0 < pct <= 100:
                    raise api_error(422, CODE_UNPROCESSABLE, "percentage must be in (0, 100]")
                qty = floor9(pos.qty * pct / 100.0)
            body = {
                "symbol": pos.symbol,
                "qty": qty,
                "side": "sell",
                "type": "market",
                "time_in_force": "day",
            }
            return self.matching.new_order(check_order(body, self.cash_account, now, closing=True), now).to_json()

    def api_close_all_positions(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            if str(params.get("cancel_orders", "")).lower() == "true":
                self.api_cancel_all_orders()
            out = []
            for symbol in sorted(self.cash_account.positions):
                try:
                    order = self.api_close_position(symbol, {})
                    out.append({"symbol": symbol, "status": 200, "body": order})
                except SimAPIError as exc:
                    out.append({"symbol": symbol, "status": exc.status, "body": exc.body})
            return out

    def api_activities(self, params: Mapping[str, str], activity_type: str | None = None) -> list[dict[str, Any]]:
        """GET /v2/account/activities[/{activity_type}] (core/sim/activities.py)."""
        with self._lock:
            self.matching.process()
            try:
                return self.cash_account.activities.query(params, activity_type)
            except ActivityQueryError as exc:
                raise api_error(422, CODE_UNPROCESSABLE, str(exc)) from None

    def api_submit_order(self, body: Any) -> dict[str, Any]:
        return self.submit_order(body).to_json()

    def api_orders(self, params: Mapping[str, str]) -> list[dict[str, Any]]:
        with self._lock:
            self.matching.process()
            status = params.get("status") or "open"
            if status not in ("open", "closed", "all"):
                raise api_error(422, CODE_UNPROCESSABLE, f"invalid status: {status!r}")
            try:
                limit = int(params.get("limit") or 50)
            except ValueError:
                raise api_error(422, CODE_UNPROCESSABLE, f"invalid limit: {params.get('limit')!r}") from None
            if not 1 <= limit <= 500:
                raise api_error(422, CODE_UNPROCESSABLE, "limit must be between 1 and 500")
            direction = (params.get("direction") or "desc").lower()
            if direction not in ("asc", "desc"):
                raise api_error(422, CODE_UNPROCESSABLE, f"invalid direction: {direction!r}")
            after = parse_time(params["after"], "after") if params.get("after") else None
            until = parse_time(params["until"], "until") if params.get("until") else None
            symbols = (
                {s.strip() for s in params["symbols"].split(",") if s.strip()}
                if params.get("symbols")
                else None
            )
            side = params.get("side") or None
            selected = []
            for order in self.cash_account.orders:
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
        order = self.cash_account.by_id.get(order_id)
        if order is None:
            raise api_error(404, CODE_NOT_FOUND, "order not found")
        return order

    def api_order(self, order_id: str) -> dict[str, Any]:
        with self._lock:
            self.matching.process()
            return self._order(order_id).to_json()

    def api_order_by_client_id(self, client_order_id: str) -> dict[str, Any]:
        with self._lock:
            self.matching.process()
            order = self.cash_account.by_client_id.get(client_order_id)
            if order is None:
                raise api_error(404, CODE_NOT_FOUND, "order not found")
            return order.to_json()

    def cancel_order(self, order_id: str) -> None:
        with self._lock:
            now = self.matching.process()
            order = self._order(order_id)
            if not order.is_open:
                raise api_error(422, CODE_ORDER_REFUSED, f'order is already in "{order.status}" state')
            order.status = "canceled"
            order.canceled_at = order.updated_at = now

    def api_cancel_all_orders(self) -> list[dict[str, Any]]:
        with self._lock:
            self.matching.process()
            out = []
            for order in list(self.cash_account.orders):
                if order.is_open:
                    self.cancel_order(order.id)
                    out.append({"id": order.id, "status": 200, "body": None})
            return out

    def open_orders(self) -> Iterable[SimOrder]:
        with self._lock:
            self.matching.process()
            return [copy.copy(o) for o in self.cash_account.orders if o.is_open]


def _by_hand(symbol: str, side: str, qty: float) -> OrderRequest:
    """A market day order a person places by hand (a foreign client_order_id, no API checks)."""
    return OrderRequest(symbol, side, "market", "day", qty, None, None, False, None, str(uuid.uuid4()))


def _cash_amount(amount: float) -> float:
    if not (isinstance(amount, int | float) and math.isfinite(amount) and round(amount, 2) > 0):
        raise ValueError(f"amount must be a finite number of dollars >= 0.01, not {amount!r}")
    return round(float(amount), 2)


__all__ = ["ACCOUNT_ID", "ACCOUNT_NUMBER", "CODE_FORBIDDEN", "CODE_INVALID", "CODE_NOT_FOUND", "CODE_ORDER_REFUSED",
           "CODE_UNPROCESSABLE", "DEFAULT_NON_FRACTIONABLE", "OPEN_STATUSES", "AccountSnapshot", "Fill",
           "SimAPIError", "SimAsset", "SimExchange", "SimOrder", "SimPosition", "fmt_money", "fmt_num", "fmt_time",
           "parse_time"]
