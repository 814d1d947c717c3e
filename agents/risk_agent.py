"""RiskAgent: validated signals in, sized and approved `OrderTarget`s (or reasoned rejections) out.

Pure: everything it needs arrives in a `PortfolioSnapshot` and a `RiskContext`; it does no I/O.

Order of work in one pass:
1. Protections. A daily loss beyond `daily_loss_limit_pct` (equity vs last_equity, net of the
   day's deposits and withdrawals) or a drawdown beyond `max_drawdown_pct` from the equity peak
   (moved by cash flows, see core/domain/cash_flows.py) halts NEW ENTRIES with a reason; so do equity at
   or below zero and unreadable cash flows. Exits still run.
2. Exits first: a sell never exceeds the held quantity nor the daemon's own quantity (shares the
   user holds next to it are never sold), and never duplicates the daemon's own open sell. The user's
   open sell does not hold it back; an open buy does (a wash trade), the user's with a reason that
   says what to do (`meta["foreign_open_buy"]`).
3. Entries, most oversold first, each through: halt, already held or pending, stop-loss cooldown,
   max open positions, sizing (TieredPositionSizer when tiers are on and the symbol has a tier,
   else equal weight = equity / max_open_positions), tier exposure (TierExposureTracker), and the
   buying-power buffer (available = min(buying_power, cash - open buys), use at most
   (1 - buffer) of it). Approvals within the pass count against each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Any

import structlog

from core.domain.cash_flows import day_change
from core.domain.market_calendar import MarketCalendar
from core.domain.models import (
    BrokerOrder,
    OrderTarget,
    PortfolioSnapshot,
    Rejection,
    RiskDecision,
    Side,
    Signal,
)
from core.domain.tier_exposure_tracker import TierExposureTracker
from core.domain.tiered_position_sizer import FRACTIONAL_DECIMALS, TieredPositionSizer, build_tiers, floor_to

log = structlog.get_logger("risk_agent")

HALT_DAILY_LOSS = "daily_loss"
HALT_MAX_DRAWDOWN = "max_drawdown"
HALT_EQUITY = "equity_not_positive"
HALT_CASH_FLOWS = "cash_flows_unknown"
HALT_ACCOUNT_BLOCKED = "account_blocked"
# Found afresh from the account on every pass: a stored one is for the record and is not carried
# into the next pass, so it lifts as soon as its condition does.
REDETECTED_HALTS = frozenset({HALT_EQUITY, HALT_CASH_FLOWS, HALT_ACCOUNT_BLOCKED})


class RiskCheckError(Exception):
    """A risk check refused a signal. `meta['reason']` says why, for the logs and the rejection."""

    def __init__(self, reason: str, meta: dict[str, Any] | None = None) -> None:
        super().__init__(reason)
        self.meta = dict(meta or {})
        self.meta["reason"] = reason


@dataclass(frozen=True, slots=True)
class RiskParams:
    symbol_tiers: Mapping[str, str]
    tier_allocations: Mapping[str, float]
    enable_tiered_allocation: bool = True
    enable_fractional_shares: bool = True
    min_order_notional: float = 10.0
    max_open_positions: int = 10
    buying_power_buffer_pct: float = 0.05
    daily_loss_limit_pct: float = 0.03
    max_drawdown_pct: float = 0.15
    stop_loss_cooldown_sessions: int = 3
    # Switches for the backtest's --bare mode (comparison with other engines).
    enforce_position_limit: bool = True
    enforce_cooldown: bool = True
    enforce_halts: bool = True
    fixed_position_notional: float | None = None

    @classmethod
    def from_config(cls, config: Any) -> RiskParams:
        return cls(
            symbol_tiers=dict(config.symbol_tiers), tier_allocations=config.tier_allocations,
            enable_tiered_allocation=config.enable_tiered_allocation,
            enable_fractional_shares=config.enable_fractional_shares,
            min_order_notional=config.min_order_notional, max_open_positions=config.max_open_positions,
            buying_power_buffer_pct=config.buying_power_buffer_pct,
            daily_loss_limit_pct=config.daily_loss_limit_pct, max_drawdown_pct=config.max_drawdown_pct,
            stop_loss_cooldown_sessions=config.stop_loss_cooldown_sessions,
        )


@dataclass(frozen=True, slots=True)
class RiskContext:
    session: date
    current_prices: Mapping[str, float] = field(default_factory=dict)
    fractionable: Mapping[str, bool] = field(default_factory=dict)
    account_fractional: bool = True
    peak_equity: float = 0.0
    last_stop_loss_exits: Mapping[str, date] = field(default_factory=dict)
    active_halts: tuple[str, ...] = ()
    flows_today: float = 0.0                 # deposits (+) and withdrawals (-) since the previous close
    cash_flows_unknown: str | None = None    # why they could not be read (then loss figures are not judged)


class RiskAgent:
    def __init__(self, params: RiskParams, calendar: MarketCalendar) -> None:
        self.params = params
        self.calendar = calendar
        self._tiers = build_tiers(params.tier_allocations, params.symbol_tiers)
        # Read-only copies, taken once: every pass's exposure tracker shares them (a universe of thousands
        # of symbols is not copied per decision).
        self._symbol_tiers = MappingProxyType(dict(params.symbol_tiers))
        self._allocations = MappingProxyType(dict(params.tier_allocations))
        self._last_rounded: tuple[float, float] = (math.nan, math.nan)

    # ------------------------------------------------------------------ public
    def evaluate(self, signals: list[Signal], snapshot: PortfolioSnapshot, context: RiskContext) -> RiskDecision:
        approved: list[OrderTarget] = []
        rejected: list[Rejection] = []
        halts = self._protections(snapshot, context)

        for signal in (s for s in signals if s.side is Side.SELL):
            try:
                approved.append(self._exit(signal, snapshot))
            except RiskCheckError as exc:
                rejected.append(Rejection(signal.symbol, signal.side, "risk", exc.meta["reason"], exc.meta))

        entries = sorted((s for s in signals if s.side is Side.BUY), key=lambda s: s.zscore)
        if entries:
            state = _EntryState.start(self, snapshot, context)
            for signal in entries:
                try:
                    target = self._entry(signal, snapshot, context, state, halts)
                except RiskCheckError as exc:
                    rejected.append(Rejection(signal.symbol, signal.side, "risk", exc.meta["reason"], exc.meta))
                    continue
                approved.append(target)
                state.accept(target)
        for rejection in rejected:  # side: a StrEnum, logged as its value
            log.info("risk_rejected", symbol=rejection.symbol, side=rejection.side, reason=rejection.reason)
        return RiskDecision(tuple(approved), tuple(rejected), tuple(halts))

    # ------------------------------------------------------------------ protections
    def _protections(self, snapshot: PortfolioSnapshot, context: RiskContext) -> list[str]:
        if not self.params.enforce_halts:
            return []
        halts = list(context.active_halts)
        acct = snapshot.account
        if not (math.isfinite(acct.equity) and acct.equity > 0):
            halts.append(f"{HALT_EQUITY}: equity is ${acct.equity:,.2f}: no entries until it is positive")
        if context.cash_flows_unknown is not None:
            # A withdrawal would look like a loss and trip the (sticky) kill switch: judge nothing.
            halts.append(f"{HALT_CASH_FLOWS}: {context.cash_flows_unknown}: no entries until deposits and "
                         "withdrawals can be told from trading losses")
        change = day_change(acct.equity, acct.last_equity, context.flows_today)
        if context.cash_flows_unknown is None and change is not None and change <= -self.params.daily_loss_limit_pct:
            flows = f" net of {context.flows_today:+,.2f} deposited/withdrawn" if context.flows_today else ""
            halts.append(f"{HALT_DAILY_LOSS}: equity {acct.equity:,.2f} is {change:.2%} vs last close "
                         f"{acct.last_equity:,.2f}{flows}, beyond the -{self.params.daily_loss_limit_pct:.2%} limit")
        peak = max(context.peak_equity, acct.equity)
        if peak > 0 and context.cash_flows_unknown is None:
            drawdown = 1.0 - acct.equity / peak
            if drawdown >= self.params.max_drawdown_pct:
                halts.append(f"{HALT_MAX_DRAWDOWN}: drawdown {drawdown:.2%} from peak {peak:,.2f} reached the "
                             f"{self.params.max_drawdown_pct:.2%} kill switch")
        if acct.trading_blocked:
            halts.append(f"{HALT_ACCOUNT_BLOCKED}: the broker reports trading blocked")
        for halt in halts:
            log.warning("risk_halt", reason=halt)
        return halts

    # ------------------------------------------------------------------ exits
    def _exit(self, signal: Signal, snapshot: PortfolioSnapshot) -> OrderTarget:
        position = snapshot.positions.get(signal.symbol)
        if position is None or position.qty <= 0:
            raise RiskCheckError(f"{signal.symbol} is not held; nothing to sell (no shorts)")
        for order in snapshot.open_orders:
            if order.symbol == signal.symbol:
                _check_open_order(order, snapshot.own_order_ids)
        own = position.qty if snapshot.own_qty is None else min(position.qty, snapshot.own_qty.get(signal.symbol, 0.0))
        if own <= 0:
            raise RiskCheckError(f"{signal.symbol}: none of the {position.qty:g} shares held is the daemon's own")
        fractional = abs(own - round(own)) > 1e-9
        qty = own if fractional else float(math.floor(own + 1e-9))
        qty = min(qty, own)  # never more than held, never more than the daemon's own
        if qty <= 0:
            raise RiskCheckError(f"{signal.symbol}: held quantity {own} rounds to zero")
        price = position.current_price if position.current_price > 0 else signal.price
        return OrderTarget(
            symbol=signal.symbol, side=Side.SELL, qty=qty, notional=round(qty * price, 2), price=price,
            fractional=fractional, tier=self.params.symbol_tiers.get(signal.symbol), signal=signal,
            meta={"reason": signal.reason.value, "held_qty": position.qty, "own_qty": own},
        )

    # ------------------------------------------------------------------ entries
    def _entry(self, signal: Signal, snapshot: PortfolioSnapshot, context: RiskContext, state: _EntryState,
               halts: list[str]) -> OrderTarget:
        p = self.params
        symbol = signal.symbol
        if halts:
            raise RiskCheckError(f"entries halted: {halts[0]}", {"halts": list(halts)})
        if symbol in snapshot.positions and snapshot.positions[symbol].qty != 0:
            raise RiskCheckError(f"{symbol} is already held; no second entry")
        if symbol in state.pending_symbols:
            raise RiskCheckError(f"{symbol} already has an open order or an approved entry")
        if p.enforce_cooldown and p.stop_loss_cooldown_sessions > 0:
            last_stop = context.last_stop_loss_exits.get(symbol)
            if last_stop is not None and self.calendar.session_distance(last_stop, signal.session) <= p.stop_loss_cooldown_sessions:
                raise RiskCheckError(
                    f"{symbol} is cooling down after a stop-loss exit on {last_stop} "
                    f"({p.stop_loss_cooldown_sessions} sessions)"
                )
        if p.enforce_position_limit and state.position_count >= p.max_open_positions:
            raise RiskCheckError(
                f"max open positions reached ({state.position_count}/{p.max_open_positions})"
            )
        price = context.current_prices.get(symbol, signal.price)
        if p.fixed_position_notional is not None:
            price = signal.price
        if not (isinstance(price, int | float) and math.isfinite(price) and price > 0):
            raise RiskCheckError(f"{symbol}: no valid price to size from (got {price!r})")
        qty, notional, fractional, tier, meta = self._size(signal, price, snapshot, context)
        if not state.tracker.fits(symbol, notional) and p.fixed_position_notional is None:
            tier_name = state.tracker.tier_of(symbol)
            raise RiskCheckError(
                f"{tier_name} exposure {state.tracker.exposure(tier_name):,.2f} + {notional:,.2f} would exceed "
                f"its budget {state.tracker.budget(tier_name):,.2f}", meta
            )
        usable = state.available_buying_power * (1.0 - (0.0 if p.fixed_position_notional else p.buying_power_buffer_pct))
        if notional > usable - state.approved_notional + 1e-9:
            raise RiskCheckError(f"insufficient buying power for {symbol}: need {notional:,.2f}, usable "
                                 + state.buying_power_note(usable, p.buying_power_buffer_pct), meta)
        return OrderTarget(symbol=symbol, side=Side.BUY, qty=qty, notional=notional, price=price,
                           fractional=fractional, tier=tier, signal=signal, meta=meta)

    def _cents(self, amount: float) -> float:
        """round(amount, 2), remembered for the last amount: a pass sizes every entry from the same target."""
        if amount != self._last_rounded[0]:
            self._last_rounded = (amount, round(amount, 2))
        return self._last_rounded[1]

    def _size(self, signal: Signal, price: float, snapshot: PortfolioSnapshot,
              context: RiskContext) -> tuple[float, float, bool, str | None, dict[str, Any]]:
        p = self.params
        symbol = signal.symbol
        equity = snapshot.account.equity
        if not (math.isfinite(equity) and equity > 0) and p.fixed_position_notional is None:
            raise RiskCheckError(f"equity is ${equity:,.2f}: no entries until it is positive")
        if p.fixed_position_notional is not None:
            qty = float(math.floor(p.fixed_position_notional / price))
            if qty < 1:
                raise RiskCheckError(f"{symbol}: {p.fixed_position_notional:,.2f} buys zero whole shares at {price:,.2f}")
            return qty, qty * price, False, None, {"sizing": "fixed_notional"}
        fractional = (p.enable_fractional_shares and context.account_fractional
                      and context.fractionable.get(symbol, False))
        tier = p.symbol_tiers.get(symbol) if p.enable_tiered_allocation else None
        if tier is not None and tier in self._tiers:
            sizer = TieredPositionSizer(equity, use_fractional=fractional, min_notional=p.min_order_notional,
                                        tiers=self._tiers)
            shares, meta = sizer.calculate_shares(symbol, price, tier)
            if not shares:
                raise RiskCheckError(meta.get("reason", "Position sizing failed"), meta)
            meta["sizing"] = "tiered"
            # Fractional: the notional sent (already floored to cents). Whole: the exact cost, not the rounded meta.
            notional = float(meta["position_notional"]) if fractional else float(shares) * price
            return float(shares), notional, fractional, tier, meta
        # Equal-weight fallback: the account split across the maximum number of positions.
        target = equity / max(1, p.max_open_positions)
        if fractional:
            notional = floor_to(target, 2)
            qty = floor_to(notional / price, FRACTIONAL_DECIMALS)
        else:
            qty = float(math.floor(target / price))
            notional = qty * price
        meta = {"sizing": "equal_weight", "target_notional": self._cents(target), "position_notional": round(notional, 2),
                "price": price, "fractional": fractional, "tier": None,
                "effective_allocation": notional / equity if equity > 0 else 0.0}
        if qty <= 0:
            raise RiskCheckError(f"zero-share trap: one share of {symbol} at ${price:,.2f} exceeds the equal-weight "
                                 f"target ${target:,.2f}", meta)
        if notional < p.min_order_notional:
            raise RiskCheckError(f"{symbol}: position ${notional:,.2f} is below the minimum notional "
                                 f"${p.min_order_notional:,.2f}", meta)
        return qty, notional, fractional, None, meta


def _check_open_order(order: BrokerOrder, own_order_ids: frozenset[str] | None) -> None:
    """Whether an open order in the symbol holds the exit back. The daemon's own open sell is the exit
    already; its own open buy must finish first. Another's (the user's) open sell does not block: the
    broker takes a second sale while shares are available, and the daemon sells only its own. Another's
    open buy does: the broker refuses a sell against it (a potential wash trade), so the owner is told."""
    mine = own_order_ids is None or order.client_order_id in own_order_ids
    if order.side is Side.SELL:
        if mine:
            raise RiskCheckError(f"an exit order for {order.symbol} is already open ({order.client_order_id})")
        return
    if mine:
        raise RiskCheckError(
            f"an entry order for {order.symbol} is still open ({order.client_order_id}); "
            "the exit waits until it finishes (a sell against an open buy is a wash trade)"
        )
    raise RiskCheckError(
        f"an open buy order for {order.symbol} that is not the daemon's ({order.client_order_id}) blocks its exit: "
        "the broker refuses a sell against an open buy (a potential wash trade); cancel that order or let it "
        "fill, and the exit goes out at the next iteration", {"foreign_open_buy": order.client_order_id})


class _EntryState:
    """Running totals while entries are approved within one pass."""

    def __init__(self, tracker: TierExposureTracker, available: float, position_count: int,
                 pending_symbols: set[str]) -> None:
        self.tracker = tracker
        self.available_buying_power = available
        self.position_count = position_count
        self.pending_symbols = pending_symbols
        self.approved_notional = 0.0
        self._note: tuple[float, float, str] | None = None

    @classmethod
    def start(cls, agent: RiskAgent, snapshot: PortfolioSnapshot, context: RiskContext) -> _EntryState:
        acct = snapshot.account
        exposures: dict[str, float] = {s: abs(pos.market_value) for s, pos in snapshot.positions.items()}
        reserved = 0.0
        pending: set[str] = set()
        for order in snapshot.open_orders:
            pending.add(order.symbol)
            if order.side is Side.BUY:
                price = context.current_prices.get(order.symbol) or (order.filled_avg_price or 0.0)
                amount = order.reserved_notional(price)
                reserved += amount
                exposures[order.symbol] = exposures.get(order.symbol, 0.0) + amount
        held = {s for s, pos in snapshot.positions.items() if pos.qty != 0}
        pending_entries = {o.symbol for o in snapshot.open_orders if o.side is Side.BUY} - held
        equity = acct.equity if acct.equity > 0 else 1e-9
        tracker = TierExposureTracker(exposures, agent._symbol_tiers, agent._allocations, equity)
        available = max(0.0, min(acct.buying_power, acct.cash - reserved))
        return cls(tracker, available, len(held) + len(pending_entries), pending)

    def buying_power_note(self, usable: float, buffer_pct: float) -> str:
        """The tail of an "insufficient buying power" refusal: the same for every entry until one is approved."""
        note = self._note
        if note is None or note[0] != usable or note[1] != self.approved_notional:
            text = (f"{max(0.0, usable - self.approved_notional):,.2f} (available {self.available_buying_power:,.2f} "
                    f"after open buys, buffer {buffer_pct:.0%})")
            note = self._note = (usable, self.approved_notional, text)
        return note[2]

    def accept(self, target: OrderTarget) -> None:
        self.tracker = self.tracker.with_added(target.symbol, target.notional)
        self.approved_notional += target.notional
        self.position_count += 1
        self.pending_symbols.add(target.symbol)

