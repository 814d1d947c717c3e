"""Per-tier exposure: how much of each tier's allocation is in use, and what still fits.

    tier_budget(t)    = account_value * allocation(t)
    exposure(t)       = sum of |market value| of positions (and reserved open buys) in tier t
    remaining(t)      = max(0, tier_budget(t) - exposure(t))
    fits(sym, x)      = x <= remaining(tier of sym)

Immutable: `with_added()` returns a new tracker, so a batch of approvals inside one risk pass
can account for each other without touching shared state. Pure, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from types import MappingProxyType

UNTIERED = "UNTIERED"


class TierExposureTracker:
    __slots__ = ("_account_value", "_allocations", "_symbol_tiers", "_exposure")

    def __init__(
        self,
        positions: Mapping[str, float],
        symbol_tiers: Mapping[str, str],
        allocations: Mapping[str, float],
        account_value: float,
    ) -> None:
        if not (math.isfinite(account_value) and account_value > 0):
            raise ValueError(f"account_value {account_value!r} must be a positive finite number")
        exposure: dict[str, float] = {name: 0.0 for name in allocations}
        for symbol, market_value in positions.items():
            if not math.isfinite(market_value):
                raise ValueError(f"market value {market_value!r} for {symbol} must be finite")
            tier = symbol_tiers.get(symbol, UNTIERED)
            exposure[tier] = exposure.get(tier, 0.0) + abs(market_value)
        self._account_value = float(account_value)
        # A read-only mapping is kept as it is (the RiskAgent hands the same frozen copies to every pass).
        self._allocations = allocations if isinstance(allocations, MappingProxyType) else MappingProxyType(dict(allocations))
        self._symbol_tiers = (symbol_tiers if isinstance(symbol_tiers, MappingProxyType)
                              else MappingProxyType(dict(symbol_tiers)))
        self._exposure = MappingProxyType(exposure)

    def tier_of(self, symbol: str) -> str:
        return self._symbol_tiers.get(symbol, UNTIERED)

    def budget(self, tier: str) -> float:
        return self._account_value * self._allocations.get(tier, 0.0)

    def exposure(self, tier: str) -> float:
        return self._exposure.get(tier, 0.0)

    def remaining(self, tier: str) -> float:
        return max(0.0, self.budget(tier) - self.exposure(tier))

    def fits(self, symbol: str, notional: float) -> bool:
        tier = self.tier_of(symbol)
        if tier == UNTIERED:
            return True
        return notional <= self.remaining(tier) + 1e-6

    def with_added(self, symbol: str, notional: float) -> TierExposureTracker:
        """A new tracker that also counts `notional` in the symbol's tier."""
        if not math.isfinite(notional):
            raise ValueError(f"notional {notional!r} for {symbol} must be finite")
        clone = object.__new__(TierExposureTracker)
        exposure = dict(self._exposure)
        tier = self.tier_of(symbol)
        exposure[tier] = exposure.get(tier, 0.0) + abs(notional)
        clone._account_value = self._account_value
        clone._allocations = self._allocations
        clone._symbol_tiers = self._symbol_tiers
        clone._exposure = MappingProxyType(exposure)
        return clone

    def report(self) -> dict[str, dict[str, float]]:
        tiers = list(self._allocations) + [t for t in self._exposure if t not in self._allocations]
        return {
            tier: {
                "allocation": self._allocations.get(tier, 0.0),
                "budget": round(self.budget(tier), 2),
                "exposure": round(self.exposure(tier), 2),
                "remaining": round(self.remaining(tier), 2),
                "utilisation": (self.exposure(tier) / self.budget(tier)) if self.budget(tier) > 0 else 0.0,
            }
            for tier in tiers
        }
