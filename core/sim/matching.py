"""The simulated brokerage's matching: how accepted orders become fills, expiries and roll-overs.

Time only moves when the clock does. Order state is brought up to the clock lazily (`process()`,
called by every public method of the exchange and by the server before each request): each open
order's next event (routing, fill, expiry, roll-over of a GTC order) is replayed in time order up to
now, interleaved with the session closes, so an order submitted on Friday night and looked at on
Tuesday was filled at Monday's open at Monday's opening price, and the account's equity at every
close in between is known (`last_equity`).

Splits and cash dividends take effect at their ex-date's open in the same time-ordered replay, before
that open's fills; every fill and cash movement is an account activity.
"""

from __future__ import annotations

import heapq
import math
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import numpy as np

from core.domain.clock import Clock
from core.domain.models import Fill, Side
from core.sim.account import QTY_EPS, SimAccount, SimOrder, SimPosition, floor9
from core.sim.bars import SyntheticBars
from core.sim.corporate_actions import Action, CashDividend, Split
from core.sim.order_checks import OrderRequest
from core.sim.wire import fmt_money, fmt_num, fmt_time


@dataclass(order=True)
class Event:
    ts: float
    seq: int
    kind: str = field(compare=False)
    order: SimOrder | None = field(compare=False, default=None)
    price: float = field(compare=False, default=0.0)


class MatchingEngine:
    """Works the account's orders against the synthetic tape. Not thread-safe on its own: the
    exchange's lock guards it."""

    def __init__(self, account: SimAccount, bars: SyntheticBars, clock: Clock, *, fill_delay_seconds: float) -> None:
        self.account = account
        self.bars = bars
        self.clock = clock
        self.fill_delay_seconds = fill_delay_seconds
        self._seq = 0
        self._cursor = account.created.timestamp()
        self._applied_actions: set[str] = set()

    # ================================================================== accepting orders
    def new_order(self, request: OrderRequest, now: datetime, source: str = "api") -> SimOrder:
        """An `accepted` order for `request`, working from the next moment it can fill: a second after
        now while the session trades (`fill_delay_seconds`), else at the next open."""
        session, is_open = self.session_state(now)
        start_ts = (
            now.timestamp() + self.fill_delay_seconds
            if is_open
            else (self.bars.open_ts(session) if session < len(self.bars) else math.inf)
        )
        self._seq += 1
        order = SimOrder(
            id=str(uuid.uuid4()),
            client_order_id=request.client_order_id,
            symbol=request.symbol,
            asset_id=self.account.asset(request.symbol).id,
            side=request.side,
            type=request.type,
            time_in_force=request.time_in_force,
            qty=request.qty,
            notional=request.notional,
            limit_price=request.limit_price,
            extended_hours=request.extended_hours,
            position_intent=request.position_intent,
            created_at=now,
            updated_at=now,
            session=session,
            start_ts=start_ts,
            seq=self._seq,
            partial_fraction=self.account.partial.pop(request.symbol, None) if source == "api" else None,
            source=source,
        )
        self.account.add_order(order)
        return order

    def session_state(self, when: datetime) -> tuple[int, bool]:
        """(session index, open now): the session trading at `when`, else the next one to open."""
        i = self.bars.last_started(when)
        if i >= 0 and when.timestamp() < self.bars.close_ts(i):
            return i, True
        return self.bars.next_trading_index(i + 1), False

    # ================================================================== time and events
    def next_event(self, order: SimOrder) -> Event | None:
        bars = self.bars
        if order.session >= len(bars):
            return None
        open_ts, close_ts = bars.open_ts(order.session), bars.close_ts(order.session)
        if order.status == "accepted":
            return Event(
                max(order.created_at.timestamp(), min(order.start_ts, open_ts)), order.seq, "route", order
            )
        if order.status == "new":
            immediate = order.time_in_force in ("ioc", "fok")
            # IOC/FOK get one look at the market: a one-second window from their start.
            end_ts = min(order.start_ts + 1.0, close_ts) if immediate else close_ts
            fill = self.find_fill(order, order.start_ts, end_ts)
            if fill is not None:
                return Event(fill[0], order.seq, "fill", order, fill[1])
            if immediate:
                return Event(min(order.start_ts, close_ts), order.seq, "cancel", order)
        if order.time_in_force == "gtc":
            return Event(close_ts, order.seq, "roll", order)
        return Event(close_ts, order.seq, "expire", order)

    def find_fill(self, order: SimOrder, start_ts: float, close_ts: float) -> tuple[float, float] | None:
        """(time, price) of the order's first fill in [start_ts, close_ts), or None."""
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
        path = self.bars.intraday_path(order.symbol, i, grid)
        ok = path <= order.limit_price if order.side == "buy" else path >= order.limit_price
        hits = np.flatnonzero(ok)
        if hits.size == 0:
            return None
        k = int(hits[0])
        price = float(path[0]) if k == 0 else order.limit_price  # marketable on arrival: the better price
        return open_ts + float(grid[k]) * span, price

    def process(self, now: datetime | None = None) -> datetime:
        """Replay every event due up to `now` (default: the clock), in time order."""
        now = now or self.clock.now()
        now_ts = now.timestamp()
        heap: list[Event] = []
        for order in self.account.orders:
            if order.is_open:
                event = self.next_event(order)
                if event is not None and event.ts <= now_ts:
                    heapq.heappush(heap, event)
        closes = self.bars.closes_between(self._cursor, now_ts)
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
                    nxt = self.next_event(target)
                    if nxt is not None and nxt.ts <= now_ts:
                        heapq.heappush(heap, nxt)
            else:
                i = closes[ci]
                self.account.record_close(i)
                ci += 1
        self._cursor = max(self._cursor, now_ts)
        return now

    def _apply(self, event: Event, order: SimOrder) -> None:
        when = datetime.fromtimestamp(event.ts, UTC)
        if event.kind == "route":
            order.status = "new"
            order.updated_at = when
        elif event.kind == "fill":
            target = order.qty if order.qty is not None else floor9((order.notional or 0.0) / event.price)
            if order.partial_fraction is not None:
                target = floor9(target * order.partial_fraction)
            self.fill(order, when, event.price, target)
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

    def fill(self, order: SimOrder, when: datetime, price: float, qty: float) -> None:
        """Fill `qty` of `order` at `price`: cash, the position, the order and a FILL activity."""
        account = self.account
        symbol = order.symbol
        pos = account.positions.get(symbol)
        if order.side == "sell":
            qty = min(qty, pos.qty if pos else 0.0)
            if qty <= QTY_EPS:  # the shares went elsewhere (closed by hand): nothing to sell
                order.status = "canceled"
                order.canceled_at = order.updated_at = when
                return
        qty = round(qty, 9)
        value = qty * price
        if order.side == "buy":
            account.cash = round(account.cash - value, 2)
            if pos is None:
                account.positions[symbol] = SimPosition(symbol, order.asset_id, qty, price)
            else:
                total = pos.qty + qty
                pos.avg_entry_price = (pos.cost_basis + value) / total
                pos.qty = round(total, 9)
        else:
            assert pos is not None
            account.cash = round(account.cash + value, 2)
            pos.qty = round(pos.qty - qty, 9)
            if pos.qty <= QTY_EPS:
                del account.positions[symbol]
        order.filled_avg_price = price
        order.filled_qty = round(order.filled_qty + qty, 9)
        order.filled_at = order.updated_at = when
        full = order.qty is None or order.filled_qty >= order.qty - QTY_EPS
        order.status = "partially_filled" if order.partial_fraction is not None or not full else "filled"
        account.fills.append(Fill(order.id, order.client_order_id, symbol, Side(order.side), qty, price, when))
        self._record_fill_activity(order, when, price, qty)

    def _record_fill_activity(self, order: SimOrder, when: datetime, price: float, qty: float) -> None:
        leaves = 0.0 if order.qty is None or order.status == "filled" else max(order.qty - order.filled_qty, 0.0)
        self.account.activities.add(
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

    # ================================================================== corporate actions
    def action_open_ts(self, ex_date: date) -> float:
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
                ts = self.action_open_ts(action.ex_date)
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
        account = self.account
        pos = account.positions.get(dividend.symbol)
        if pos is None:
            return
        paid = round(pos.qty * dividend.amount, 2)
        account.cash = round(account.cash + paid, 2)
        account.activities.add_non_trade(
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
        for order in self.account.orders:
            if order.is_open and order.symbol == split.symbol:
                order.status = "canceled"
                order.canceled_at = order.updated_at = when
        pos = self.account.positions.get(split.symbol)
        if pos is not None:
            old_qty = pos.qty
            pos.qty = round(pos.qty * split.ratio, 9)
            pos.avg_entry_price = pos.avg_entry_price / split.ratio
            new_rate, old_rate = split.rates
            self.account.activities.add_non_trade(
                "SPLIT",
                when,
                "0",
                f"{new_rate}-for-{old_rate} {'reverse ' if split.is_reverse else ''}split: "
                f"{fmt_num(old_qty)} -> {fmt_num(pos.qty)} {split.symbol} shares",
                symbol=split.symbol,
                qty=fmt_num(round(pos.qty - old_qty, 9)),
            )

    def split_adjusted_lastday(self, symbol: str, prev: int, close: float) -> float:
        """The previous close in today's share basis: / the ratio of each split applied since."""
        for split in self.bars.actions.splits(symbol):
            k = self.bars.next_trading_index(self.bars.first_session_on_or_after(split.ex_date))
            if k > prev and split.id in self._applied_actions:
                close /= split.ratio
        return close
