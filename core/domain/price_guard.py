"""The last check before an order leaves: its size and its reason against the broker's own price. Pure.

Why: the daemon sizes an entry from its bars (the last completed close, the in-progress bar). A bad
print (a bad tick, an unadjusted feed) at a tenth of the true price made 186 SPY look like a
$8,000 position when it cost $79,900. The broker's latest trade (or quote midpoint) and a held
position's `current_price` come from the broker's side, not from the bars: a bar that disagrees
with them is not traded on.

Entries (`check_entries`), each approved target in turn:
1. The broker's price must exist, be a positive finite number and be from the current session
   (New York date). Otherwise the entry is refused: an order is never sized blind.
2. |sizing price / broker price - 1| <= MAX_PRICE_DISAGREEMENT_PCT, or refused naming both prices.
3. The order's value at the broker's price (qty x broker price for a whole-share order; the
   notional of a notional order) must not exceed the position cap (tier cap A x a x p, or the
   equal-weight target A / MAX_OPEN_POSITIONS for a symbol sized without a tier), nor what is left
   of the tier's budget (A x a, less the tier's positions at the broker's market value, open buys
   and the entries approved before it in this pass). Refused, never resized.
An entry that passes leaves with `price` = the broker's price (`meta["bar_price"]` keeps the one it
was sized from), so anything computed from it later (the whole-share fallback) uses that price.

Exits (`check_exits`): a sell is the held quantity, never sized from a price, so only its reason
can be fooled:
- stop-loss: sent only when the position's `current_price` (the broker's) confirms it, stop level =
  entry x (1 - STOP_LOSS_PCT): `current_price` at or below the stop level (a real fall, however far),
  or at most MAX_PRICE_DISAGREEMENT_PCT above it while the bars' close agrees with `current_price`
  within that bound. A bar at half the price, with the broker's price just above the stop, does not.
- mean-reverted: sent when the bar's close and `current_price` agree within the bound.
- max holding: not about price; always sent.
- no usable `current_price`: sent (missing data never blocks an exit).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from core.domain.market_calendar import NEW_YORK
from core.domain.models import (
    BrokerOrder,
    LatestPrice,
    OrderTarget,
    PositionView,
    Rejection,
    Side,
    SignalReason,
)
from core.domain.tiered_position_sizer import TierConfig, build_tiers

STAGE = "price_guard"
MONEY_TOLERANCE = 1e-6


@dataclass
class GuardResult:
    approved: list[OrderTarget] = field(default_factory=list)
    rejected: list[Rejection] = field(default_factory=list)


def _usable(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def disagreement(price: float, reference: float) -> float:
    """|price / reference - 1|: how far a price is from the reference, as a fraction of it."""
    return abs(price / reference - 1.0)


@dataclass(frozen=True, slots=True)
class PriceGuard:
    max_disagreement_pct: float
    stop_loss_pct: float
    tiers: Mapping[str, TierConfig]
    symbol_tiers: Mapping[str, str]
    enable_tiered_allocation: bool = True
    max_open_positions: int = 10

    @classmethod
    def from_config(cls, config: Any) -> PriceGuard:
        return cls(
            max_disagreement_pct=config.max_price_disagreement_pct, stop_loss_pct=config.stop_loss_pct,
            tiers=build_tiers(config.tier_allocations, config.symbol_tiers),
            symbol_tiers=dict(config.symbol_tiers), enable_tiered_allocation=config.enable_tiered_allocation,
            max_open_positions=config.max_open_positions,
        )

    # ------------------------------------------------------------------ entries
    def check_entries(self, targets: Sequence[OrderTarget], broker_prices: Mapping[str, LatestPrice], *,
                      equity: float, positions: Mapping[str, PositionView], open_orders: Iterable[BrokerOrder],
                      session: date, bar_prices: Mapping[str, float] | None = None,
                      unavailable: str | None = None) -> GuardResult:
        """Entries that may be sent, and refusals with reasons. Exits in `targets` pass through untouched.

        `unavailable` is why the broker's prices could not be fetched: every entry is refused with it.
        """
        result = GuardResult()
        used = self._tier_exposures(equity, positions, open_orders, broker_prices, bar_prices or {})
        for target in targets:
            if target.side is not Side.BUY:
                result.approved.append(target)
                continue
            reason, value, checked = self._check_entry(target, broker_prices.get(target.symbol), equity, used,
                                                       session, unavailable)
            if reason is not None:
                result.rejected.append(Rejection(target.symbol, target.side, STAGE, reason,
                                                 {"reason": reason, "bar_price": target.price, "qty": target.qty,
                                                  "notional": target.notional, "fractional": target.fractional}))
                continue
            tier = self._tier_of(target.symbol)
            if tier is not None:
                used[tier] = used.get(tier, 0.0) + value
            assert checked is not None
            result.approved.append(replace(target, price=checked.price,
                                           meta={**target.meta, "bar_price": target.price,
                                                 "broker_price": checked.price, "broker_price_source": checked.source,
                                                 "value_at_broker_price": round(value, 2)}))
        return result

    def _check_entry(self, target: OrderTarget, latest: LatestPrice | None, equity: float, used: dict[str, float],
                     session: date, unavailable: str | None) -> tuple[str | None, float, LatestPrice | None]:
        symbol = target.symbol
        if unavailable is not None:
            return (f"{symbol}: no independent price from the broker ({unavailable}); entries are not sized blind",
                    0.0, None)
        if latest is None or not _usable(latest.price):
            got = "none" if latest is None else repr(latest.price)
            return (f"{symbol}: the broker has no usable latest trade or quote (got {got}); entries are not "
                    "sized blind", 0.0, None)
        traded_on = latest.at.astimezone(NEW_YORK).date()
        if traded_on < session:
            return (f"{symbol}: the broker's latest {latest.source} (${latest.price:,.2f}) is from {traded_on}, "
                    f"not from the current session {session}; entries are not sized from an old price", 0.0, None)
        if not _usable(target.price):
            return f"{symbol}: the order was sized from no valid price ({target.price!r})", 0.0, None
        gap = disagreement(target.price, latest.price)
        if gap > self.max_disagreement_pct:
            return (f"{symbol}: the bars' price ${target.price:,.2f} disagrees with the broker's latest "
                    f"{latest.source} ${latest.price:,.2f} by {gap:.1%}, beyond MAX_PRICE_DISAGREEMENT_PCT "
                    f"{self.max_disagreement_pct:.1%}: a bad print or a stale feed; order not sent", 0.0, None)
        value = target.notional if target.fractional else target.qty * latest.price
        tier = self._tier_of(symbol)
        if tier is not None:
            cfg = self.tiers[tier]
            cap = equity * cfg.allocation * cfg.max_position_pct
            room = equity * cfg.allocation - used.get(tier, 0.0)
            if value > cap + MONEY_TOLERANCE:
                return (f"{symbol}: {self._describe(target, latest)} = ${value:,.2f} at the broker's price exceeds "
                        f"the {tier} position cap ${cap:,.2f}; order not sent (refused, not resized)", value, None)
            if value > room + MONEY_TOLERANCE:
                return (f"{symbol}: {self._describe(target, latest)} = ${value:,.2f} at the broker's price exceeds "
                        f"what is left of the {tier} budget (${max(room, 0.0):,.2f} of "
                        f"${equity * cfg.allocation:,.2f}); order not sent", value, None)
        else:
            cap = equity / max(1, self.max_open_positions)
            if value > cap + MONEY_TOLERANCE:
                return (f"{symbol}: {self._describe(target, latest)} = ${value:,.2f} at the broker's price exceeds "
                        f"the equal-weight position cap ${cap:,.2f}; order not sent (refused, not resized)",
                        value, None)
        return None, value, latest

    @staticmethod
    def _describe(target: OrderTarget, latest: LatestPrice) -> str:
        if target.fractional:
            return f"a notional order of ${target.notional:,.2f}"
        return f"{target.qty:g} shares x ${latest.price:,.2f}"

    def _tier_of(self, symbol: str) -> str | None:
        if not self.enable_tiered_allocation:
            return None
        tier = self.symbol_tiers.get(symbol)
        return tier if tier in self.tiers else None

    def _tier_exposures(self, equity: float, positions: Mapping[str, PositionView], open_orders: Iterable[BrokerOrder],
                        broker_prices: Mapping[str, LatestPrice], bar_prices: Mapping[str, float]) -> dict[str, float]:
        """Dollars in use per tier: positions at the broker's market value, plus what open buys still hold back."""
        used: dict[str, float] = {}
        for symbol, position in positions.items():
            tier = self._tier_of(symbol)
            if tier is not None and math.isfinite(position.market_value):
                used[tier] = used.get(tier, 0.0) + abs(position.market_value)
        for order in open_orders:
            tier = self._tier_of(order.symbol)
            if tier is None or order.side is not Side.BUY:
                continue
            latest = broker_prices.get(order.symbol)
            price = latest.price if latest is not None and _usable(latest.price) else bar_prices.get(order.symbol, 0.0)
            used[tier] = used.get(tier, 0.0) + order.reserved_notional(price if _usable(price) else 0.0)
        return used

    # ------------------------------------------------------------------ exits
    def check_exits(self, targets: Sequence[OrderTarget], positions: Mapping[str, PositionView],
                    entry_prices: Mapping[str, float]) -> GuardResult:
        """Exits whose reason the broker's price confirms, and refusals with reasons. Entries pass through."""
        result = GuardResult()
        for target in targets:
            reason = None
            if target.side is Side.SELL:
                position = positions.get(target.symbol)
                current = position.current_price if position is not None else None
                entry = entry_prices.get(target.symbol) or (position.avg_entry_price if position else None)
                reason = self._exit_refusal(target, current, entry)
            if reason is None:
                result.approved.append(target)
            else:
                result.rejected.append(Rejection(target.symbol, target.side, STAGE, reason,
                                                 {"reason": reason, "bar_price": target.signal.price}))
        return result

    def _exit_refusal(self, target: OrderTarget, current: float | None, entry: float | None) -> str | None:
        if not _usable(current):
            return None
        assert current is not None
        symbol, close = target.symbol, target.signal.price
        why = target.signal.reason
        if why is SignalReason.EXIT_STOP_LOSS and _usable(entry):
            assert entry is not None
            return self._stop_loss_refusal(symbol, close, current, entry)
        if why is SignalReason.EXIT_MEAN_REVERTED and _usable(close):
            gap = disagreement(close, current)
            if gap > self.max_disagreement_pct:
                return (f"{symbol}: mean-reversion exit not confirmed: the bars' close ${close:,.2f} disagrees with "
                        f"the broker's current price ${current:,.2f} by {gap:.1%}, beyond "
                        f"MAX_PRICE_DISAGREEMENT_PCT {self.max_disagreement_pct:.1%}; the position is kept")
        return None

    def _stop_loss_refusal(self, symbol: str, close: float, current: float, entry: float) -> str | None:
        """A stop-loss is confirmed by the broker's own price: at or below the stop level (a real fall,
        however far), or within MAX_PRICE_DISAGREEMENT_PCT above it while the bars' close agrees with
        it within the same bound. A close far from the broker's price near the stop is a bad print."""
        stop_level = entry * (1.0 - self.stop_loss_pct)
        if current <= stop_level:
            return None
        band_top = stop_level * (1.0 + self.max_disagreement_pct)
        if current > band_top:
            return (f"{symbol}: stop-loss not confirmed: the bars' close ${close:,.2f} is below the stop level "
                    f"${stop_level:,.2f} (entry ${entry:,.2f}), but the broker's current price "
                    f"${current:,.2f} is above it by more than MAX_PRICE_DISAGREEMENT_PCT "
                    f"{self.max_disagreement_pct:.1%}: a bad print; the position is kept")
        gap = disagreement(close, current) if _usable(close) else math.inf
        if gap > self.max_disagreement_pct:
            return (f"{symbol}: stop-loss not confirmed: the broker's current price ${current:,.2f} is above the "
                    f"stop level ${stop_level:,.2f} (entry ${entry:,.2f}) and the bars' close ${close:,.2f} "
                    f"disagrees with it by {gap:.1%}, beyond MAX_PRICE_DISAGREEMENT_PCT "
                    f"{self.max_disagreement_pct:.1%}: a bad print; the position is kept")
        return None
