"""Tiered position sizing with the seed's six safety fixes.

Formulas (all money in dollars, A = account value, for a tier with allocation a and s slots):

    target      = A * a / s                      # equal split of the tier across its slots
    tier_cap    = A * a * max_position_pct       # no single position above 20% of its tier
    target      = min(target, tier_cap)          # fix 3: cap enforced on the target ...

Fractional mode (use_fractional=True):
    notional    = floor_to_cent(target)          # what is sent as a `notional` order
    shares      = floor_9dp(notional / price)    # estimate; Alpaca fills to 9 decimals
Whole-share mode:
    shares      = floor(target / price)          # never rounded up
    if shares == 0 and compression applies (TIER3, enabled) and price <= tier_cap:
        shares  = 1                              # fix 6: the target grows to one share, within the cap
    notional    = shares * price

Then, for both modes:
    position_notional <= tier_cap                # fix 3: ... and re-checked after sizing
    position_notional >= min_notional            # fix 4: else no position, with a reason
    shares == 0                                  # fix 5: zero-share trap -> None with a reason
    effective_allocation = position_notional / A # fix 2: reported in meta, config untouched

Fix 1: `TierConfig` is a frozen dataclass, the tier table is a read-only mapping, and the sizer itself
refuses attribute assignment. Nothing here mutates configuration; compression only changes the
per-call target and reports it in `meta`.

This module imports only the standard library; `python core/tiered_position_sizer.py` (the seed's path,
a thin entry point) prints the seed's demo from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

FRACTIONAL_DECIMALS = 9
DEFAULT_MAX_POSITION_PCT_OF_TIER = 0.20
COMPRESSIBLE_TIERS = frozenset({"TIER3"})


@dataclass(frozen=True)
class TierConfig:
    """One tier's share of the account. Immutable by construction (seed fix 1)."""

    name: str
    allocation: float
    slots: int
    max_position_pct: float = DEFAULT_MAX_POSITION_PCT_OF_TIER

    def __post_init__(self) -> None:
        if not (isinstance(self.allocation, int | float) and math.isfinite(self.allocation)):
            raise ValueError(f"{self.name}: allocation {self.allocation!r} must be a finite number")
        if not 0.0 <= self.allocation <= 1.0:
            raise ValueError(f"{self.name}: allocation {self.allocation!r} must be within [0, 1]")
        if not isinstance(self.slots, int) or self.slots < 1:
            raise ValueError(f"{self.name}: slots {self.slots!r} must be a whole number >= 1")
        if not (math.isfinite(self.max_position_pct) and 0.0 < self.max_position_pct <= 1.0):
            raise ValueError(f"{self.name}: max_position_pct {self.max_position_pct!r} must be within (0, 1]")


DEFAULT_TIERS: Mapping[str, TierConfig] = MappingProxyType(
    {
        "TIER1": TierConfig("TIER1", 0.40, 4),
        "TIER2": TierConfig("TIER2", 0.30, 5),
        "TIER3": TierConfig("TIER3", 0.30, 20),
    }
)


def build_tiers(allocations: Mapping[str, float], symbol_tiers: Mapping[str, str] | None = None) -> Mapping[str, TierConfig]:
    """Tier table from configured allocations; slots default to the seed's 4/5/20.

    When a symbol map is given, a tier's slot count is its number of members (at least 1), so a
    custom universe keeps the "equal split across the tier" meaning of the formula.
    """
    tiers: dict[str, TierConfig] = {}
    for name, allocation in allocations.items():
        slots = DEFAULT_TIERS[name].slots if name in DEFAULT_TIERS else 1
        if symbol_tiers is not None:
            slots = max(1, sum(1 for tier in symbol_tiers.values() if tier == name))
        tiers[name] = TierConfig(name, float(allocation), slots)
    return MappingProxyType(tiers)


def floor_to(value: float, decimals: int) -> float:
    """Floor (never round up) to a number of decimals, tolerant of binary representation."""
    scale = 10**decimals
    result = math.floor(value * scale + 1e-6) / scale
    if result > value:  # the tolerance absorbs binary noise; it must never round up past the true value
        result = math.floor(value * scale) / scale
    return result


def _is_positive_finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0


class TieredPositionSizer:
    """Immutable sizer: one instance per account value. See the module docstring for the formulas."""

    __slots__ = ("account_value", "use_fractional", "min_notional", "enable_compression", "tiers")

    account_value: float
    use_fractional: bool
    min_notional: float
    enable_compression: bool
    tiers: Mapping[str, TierConfig]

    def __init__(
        self,
        account_value: float,
        use_fractional: bool = True,
        min_notional: float = 10.0,
        enable_compression: bool = True,
        tiers: Mapping[str, TierConfig] | None = None,
    ) -> None:
        if not _is_positive_finite(account_value):
            raise ValueError(f"account_value {account_value!r} must be a positive finite number")
        if not _is_positive_finite(min_notional):
            raise ValueError(f"min_notional {min_notional!r} must be a positive finite number")
        table = dict(DEFAULT_TIERS if tiers is None else tiers)
        for name, tier in table.items():
            if not isinstance(tier, TierConfig):
                raise ValueError(f"tier {name!r} must be a TierConfig, got {type(tier).__name__}")
        object.__setattr__(self, "account_value", float(account_value))
        object.__setattr__(self, "use_fractional", bool(use_fractional))
        object.__setattr__(self, "min_notional", float(min_notional))
        object.__setattr__(self, "enable_compression", bool(enable_compression))
        object.__setattr__(self, "tiers", MappingProxyType(table))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"TieredPositionSizer is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"TieredPositionSizer is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        return (
            f"TieredPositionSizer(account_value={self.account_value:.2f}, use_fractional={self.use_fractional}, "
            f"min_notional={self.min_notional}, enable_compression={self.enable_compression}, "
            f"tiers={list(self.tiers)})"
        )

    def with_account_value(self, account_value: float) -> TieredPositionSizer:
        return TieredPositionSizer(
            account_value, self.use_fractional, self.min_notional, self.enable_compression, self.tiers
        )

    def get_tier_for_symbol(self, symbol: str, symbol_tiers: Mapping[str, str] | None) -> str | None:
        """The symbol's tier if it has one this sizer knows, else None (caller falls back)."""
        if not symbol_tiers:
            return None
        tier = symbol_tiers.get(symbol)
        return tier if tier in self.tiers else None

    def tier_cap(self, tier: str) -> float:
        cfg = self.tiers[tier]
        return self.account_value * cfg.allocation * cfg.max_position_pct

    def target_notional(self, tier: str) -> float:
        cfg = self.tiers[tier]
        return min(self.account_value * cfg.allocation / cfg.slots, self.tier_cap(tier))

    def calculate_shares(
        self, symbol: str, price: float, tier: str, *, fractional: bool | None = None
    ) -> tuple[float | int | None, dict[str, Any]]:
        """Size one position. Returns (shares, meta); shares is None when no position should be taken.

        `fractional` overrides `use_fractional` for one call, e.g. for an asset that is not fractionable.
        """
        use_fractional = self.use_fractional if fractional is None else bool(fractional)
        meta: dict[str, Any] = {
            "symbol": symbol,
            "tier": tier,
            "price": price,
            "fractional": use_fractional,
            "target_notional": 0.0,
            "effective_allocation": 0.0,
            "position_notional": 0.0,
            "compressed": False,
        }

        def skip(reason: str) -> tuple[None, dict[str, Any]]:
            meta["reason"] = reason
            return None, meta

        if tier not in self.tiers:
            return skip(f"unknown tier {tier!r} for {symbol}: expected one of {', '.join(self.tiers)}")
        if not _is_positive_finite(price):
            return skip(f"invalid price {price!r} for {symbol}: expected a positive finite number")

        cap = self.tier_cap(tier)
        target = self.target_notional(tier)
        meta["target_notional"] = round(target, 2)
        meta["tier_cap"] = round(cap, 2)

        shares: float | int
        if use_fractional:
            notional = floor_to(target, 2)
            shares = floor_to(notional / price, FRACTIONAL_DECIMALS)
            position_notional = notional
        else:
            shares = math.floor(target / price + 1e-12)
            if shares == 0 and self.enable_compression and tier in COMPRESSIBLE_TIERS and price <= cap:
                shares = 1
                meta["compressed"] = True
                meta["target_notional"] = round(price, 2)
            position_notional = shares * price

        # Fix 3, re-checked after sizing: rounding or compression must never breach the cap.
        if position_notional > cap + 1e-9:
            if use_fractional:
                position_notional = floor_to(cap, 2)
                shares = floor_to(position_notional / price, FRACTIONAL_DECIMALS)
            else:
                shares = math.floor(cap / price)
                position_notional = shares * price

        meta["position_notional"] = round(position_notional, 2)
        meta["effective_allocation"] = position_notional / self.account_value

        if shares <= 0:
            if use_fractional:
                return skip(f"{symbol}: fractional quantity rounds to zero at price {price:.2f}")
            return skip(
                f"zero-share trap: one share of {symbol} at ${price:,.2f} exceeds the {tier} "
                f"position target ${target:,.2f}"
                + (f" and cap ${cap:,.2f}" if price > cap else "")
                + "; enable fractional shares or raise the account value"
            )
        if position_notional < self.min_notional - 1e-9:
            return skip(
                f"{symbol}: position ${position_notional:,.2f} is below the minimum notional "
                f"${self.min_notional:,.2f}"
            )
        return shares, meta


def print_demo() -> None:
    """Print the seed's expensive-stock demo plus a small sizing table."""
    account = 10_000.0
    frac = TieredPositionSizer(account, use_fractional=True)
    whole = TieredPositionSizer(account, use_fractional=False)
    cases = [("SPY", 500.0, "TIER1"), ("XLK", 210.0, "TIER2"), ("AAPL", 190.0, "TIER3"),
             ("MSFT", 420.0, "TIER3"), ("COST", 900.0, "TIER3")]
    print(f"Tiered sizing for a ${account:,.0f} account (min notional ${frac.min_notional:.2f})")
    print(f"{'symbol':<6} {'tier':<6} {'price':>9} {'mode':<10} {'shares':>12} {'notional':>10} {'alloc':>7}  note")
    for symbol, price, tier in cases:
        for sizer, mode in ((frac, "fractional"), (whole, "whole")):
            shares, meta = sizer.calculate_shares(symbol, price, tier)
            shown = "-" if shares is None else (f"{shares:.4f}" if mode == "fractional" else str(shares))
            note = meta.get("reason", "compressed to 1 share" if meta["compressed"] else "")
            print(
                f"{symbol:<6} {tier:<6} {price:>9.2f} {mode:<10} {shown:>12} "
                f"{meta['position_notional']:>10.2f} {meta['effective_allocation']:>7.2%}  {note}"
            )
    print()
    shares, meta = frac.calculate_shares("COST", 900.0, "TIER3")
    if shares:
        print(f"✅ COST: {shares:.4f} shares (fractional) for $10k account "
              f"(notional ${meta['position_notional']:.2f})")
    shares, meta = whole.calculate_shares("COST", 900.0, "TIER3")
    if shares is None:
        print(f"❌ COST: Skipped (no fractional) for $10k account ({meta['reason']})")


if __name__ == "__main__":
    print_demo()
