"""TieredPositionSizer: the seed's examples, the formulas with hand-computed numbers, the six safety
fixes, bad input, immutability, and hypothesis properties over random accounts, prices and tiers."""

from __future__ import annotations

import copy
import dataclasses
import math
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from config.universe import DEFAULT_SYMBOL_TIERS
from core.tiered_position_sizer import (
    DEFAULT_TIERS,
    FRACTIONAL_DECIMALS,
    TierConfig,
    TieredPositionSizer,
    build_tiers,
    floor_to,
)

REQUIRED_META = ("tier", "target_notional", "effective_allocation", "position_notional", "price", "fractional")
TIERS = ("TIER1", "TIER2", "TIER3")
# Money comparisons allow a millionth of a cent for binary floating point, never more.
EPS = 1e-8


def _decimals(value: float) -> int:
    exponent = Decimal(repr(value)).normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def _true_notional(sizer: TieredPositionSizer, shares: float | int, meta: dict[str, Any], fractional: bool) -> float:
    """The dollars the order commits: the `notional` of a fractional order, qty x price for whole shares."""
    if fractional:
        return float(meta["position_notional"])
    return float(shares) * float(meta["price"])


# --- the seed's examples -------------------------------------------------------------------


def test_seed_cost_fractional() -> None:
    sizer = TieredPositionSizer(10000.0, use_fractional=True)
    shares, meta = sizer.calculate_shares("COST", 900.0, "TIER3")
    assert shares is not None and shares > 0
    assert round(shares, 4) == 0.1667
    assert f"{shares:.4f}" == "0.1667"
    assert shares == 0.166666666  # 150 / 900 floored to 9 decimals
    assert meta["position_notional"] >= 10.0
    assert meta["position_notional"] == 150.0
    assert meta["target_notional"] == 150.0
    assert meta["effective_allocation"] == pytest.approx(0.015)
    assert meta["fractional"] is True
    assert meta["tier"] == "TIER3"
    assert meta["price"] == 900.0
    assert "reason" not in meta


def test_seed_cost_whole_shares_is_the_zero_share_trap() -> None:
    sizer = TieredPositionSizer(10000.0, use_fractional=False)
    shares, meta = sizer.calculate_shares("COST", 900.0, "TIER3")
    assert shares is None
    assert "zero-share trap" in meta["reason"]
    assert "COST" in meta["reason"]
    assert meta["position_notional"] == 0.0
    assert meta["effective_allocation"] == 0.0
    assert meta["compressed"] is False  # $900 is above the $600 TIER3 cap: compression cannot help
    assert meta["fractional"] is False


def test_seed_risk_agent_snippet_call_shape() -> None:
    sizer = TieredPositionSizer(
        account_value=10_000.0, use_fractional=True, min_notional=10.0, enable_compression=True
    )
    tier = sizer.get_tier_for_symbol("AAPL", DEFAULT_SYMBOL_TIERS)
    assert tier == "TIER3"
    shares, meta = sizer.calculate_shares("AAPL", 190.0, tier)
    assert shares
    qty = shares if sizer.use_fractional else int(shares)
    assert qty == pytest.approx(150.0 / 190.0, abs=1e-9)
    assert meta.get("reason") is None


# --- formulas ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "tier", "target", "cap"),
    [
        # target = A * a / s, cap = A * a * 0.20, target = min(target, cap)
        (10_000.0, "TIER1", 800.0, 800.0),  # 10000*0.40/4 = 1000 -> capped at 10000*0.40*0.2 = 800
        (10_000.0, "TIER2", 600.0, 600.0),  # 10000*0.30/5 = 600;   cap 600
        (10_000.0, "TIER3", 150.0, 600.0),  # 10000*0.30/20 = 150;  cap 600
        (50_000.0, "TIER1", 4000.0, 4000.0),  # 5000 -> capped 4000
        (50_000.0, "TIER2", 3000.0, 3000.0),
        (50_000.0, "TIER3", 750.0, 3000.0),
        (1_000.0, "TIER3", 15.0, 60.0),
    ],
)
def test_default_tier_formulas(account: float, tier: str, target: float, cap: float) -> None:
    sizer = TieredPositionSizer(account)
    assert sizer.tier_cap(tier) == pytest.approx(cap)
    assert sizer.target_notional(tier) == pytest.approx(target)
    _, meta = sizer.calculate_shares("X", 1.0, tier)
    assert meta["target_notional"] == pytest.approx(target)
    assert meta["tier_cap"] == pytest.approx(cap)


@pytest.mark.parametrize(
    ("tier_cfg", "account", "target", "cap"),
    [
        (TierConfig("TIER1", 0.5, 10), 20_000.0, 1000.0, 2000.0),  # 20000*0.5/10 = 1000 < cap 2000
        (TierConfig("TIER1", 0.5, 2), 20_000.0, 2000.0, 2000.0),  # 5000 -> capped at 2000
        (TierConfig("TIER1", 0.4, 4, max_position_pct=0.5), 10_000.0, 1000.0, 2000.0),
        (TierConfig("TIER1", 0.0, 4), 10_000.0, 0.0, 0.0),
    ],
)
def test_custom_tier_formulas(tier_cfg: TierConfig, account: float, target: float, cap: float) -> None:
    sizer = TieredPositionSizer(account, tiers={"TIER1": tier_cfg})
    assert sizer.target_notional("TIER1") == pytest.approx(target)
    assert sizer.tier_cap("TIER1") == pytest.approx(cap)


@pytest.mark.parametrize(
    ("symbol", "price", "tier", "shares", "notional"),
    [
        ("SPY", 500.0, "TIER1", 1.6, 800.0),
        ("XLK", 210.0, "TIER2", 2.857142857, 600.0),  # 600/210 = 2.857142857142..., floored
        ("AAPL", 190.0, "TIER3", 0.789473684, 150.0),  # 150/190 = 0.789473684210..., floored
        ("MSFT", 420.0, "TIER3", 0.357142857, 150.0),
    ],
)
def test_fractional_sizing_numbers(symbol: str, price: float, tier: str, shares: float, notional: float) -> None:
    got, meta = TieredPositionSizer(10_000.0).calculate_shares(symbol, price, tier)
    assert got == shares
    assert meta["position_notional"] == notional
    assert meta["effective_allocation"] == pytest.approx(notional / 10_000.0)
    assert meta["compressed"] is False


@pytest.mark.parametrize(
    ("symbol", "price", "tier", "shares", "notional"),
    [
        ("SPY", 500.0, "TIER1", 1, 500.0),  # floor(800/500) = 1
        ("XLK", 210.0, "TIER2", 2, 420.0),  # floor(600/210) = 2
        ("IWM", 200.0, "TIER1", 4, 800.0),  # exactly 4: 800/200
        ("F", 12.0, "TIER3", 12, 144.0),  # floor(150/12) = 12
    ],
)
def test_whole_share_sizing_numbers(symbol: str, price: float, tier: str, shares: int, notional: float) -> None:
    got, meta = TieredPositionSizer(10_000.0, use_fractional=False).calculate_shares(symbol, price, tier)
    assert got == shares
    assert type(got) is int
    assert meta["position_notional"] == pytest.approx(notional)
    assert meta["effective_allocation"] == pytest.approx(notional / 10_000.0)
    assert meta["compressed"] is False


def test_fractional_override_per_call() -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=True)
    shares, meta = sizer.calculate_shares("SPY", 500.0, "TIER1", fractional=False)
    assert shares == 1 and type(shares) is int
    assert meta["fractional"] is False
    shares, meta = TieredPositionSizer(10_000.0, use_fractional=False).calculate_shares(
        "SPY", 500.0, "TIER1", fractional=True
    )
    assert shares == 1.6 and meta["fractional"] is True


# --- floors: never rounded up ---------------------------------------------------------------


@pytest.mark.parametrize(("price", "shares"), [(75.01, 1), (75.0, 2), (50.0, 3), (150.0, 1), (149.99, 1), (38.0, 3)])
def test_whole_shares_are_floored(price: float, shares: int) -> None:
    got, _ = TieredPositionSizer(10_000.0, use_fractional=False).calculate_shares("X", price, "TIER3")
    assert got == shares


@pytest.mark.parametrize(
    ("price", "shares"),
    [
        (900.0, 0.166666666),  # 0.1666666666..., not 0.166666667
        (7.0, 21.428571428),  # 150/7 = 21.4285714285714...
        (0.7, 214.285714285),  # 150/0.7 = 214.28571428571...
        (3.0, 50.0),
    ],
)
def test_fractional_quantity_floored_to_nine_decimals(price: float, shares: float) -> None:
    got, _ = TieredPositionSizer(10_000.0).calculate_shares("X", price, "TIER3")
    assert got == shares
    assert got is not None and _decimals(got) <= FRACTIONAL_DECIMALS
    assert got * price <= 150.0 + EPS


@pytest.mark.parametrize(("account", "notional"), [(10_000.66, 150.0), (10_000.999, 150.01), (10_001.0, 150.01)])
def test_fractional_notional_floored_to_cents(account: float, notional: float) -> None:
    # TIER3 target = A * 0.30 / 20: 150.0099 -> 150.00, 150.014985 -> 150.01, 150.015 -> 150.01
    _, meta = TieredPositionSizer(account).calculate_shares("X", 100.0, "TIER3")
    assert meta["position_notional"] == notional


def test_floor_to() -> None:
    assert floor_to(1.239, 2) == 1.23
    assert floor_to(0.29, 2) == 0.29  # 0.29 * 100 is 28.999999999999996 in binary
    assert floor_to(1 / 3, 9) == 0.333333333
    assert floor_to(2 / 3, 9) == 0.666666666
    assert floor_to(5.0, 2) == 5.0


# --- compression (fix 6) --------------------------------------------------------------------


def test_compression_buys_one_share_of_an_expensive_tier3_stock() -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=False)
    shares, meta = sizer.calculate_shares("MSFT", 420.0, "TIER3")
    assert shares == 1 and type(shares) is int
    assert meta["compressed"] is True
    assert meta["target_notional"] == 420.0  # the per-call target grew to one share ...
    assert meta["position_notional"] == 420.0
    assert meta["position_notional"] <= sizer.tier_cap("TIER3")  # ... within the $600 cap
    assert meta["effective_allocation"] == pytest.approx(0.042)
    assert "reason" not in meta
    # Fix 1/2: the configuration is untouched, only the effective allocation is reported.
    assert sizer.tiers["TIER3"] == TierConfig("TIER3", 0.30, 20)
    assert DEFAULT_TIERS["TIER3"].allocation == 0.30


def test_compression_at_exactly_the_cap() -> None:
    shares, meta = TieredPositionSizer(10_000.0, use_fractional=False).calculate_shares("X", 600.0, "TIER3")
    assert shares == 1 and meta["compressed"] is True


def test_no_compression_above_the_cap() -> None:
    shares, meta = TieredPositionSizer(10_000.0, use_fractional=False).calculate_shares("X", 600.01, "TIER3")
    assert shares is None
    assert meta["compressed"] is False
    assert "zero-share trap" in meta["reason"] and "cap $600.00" in meta["reason"]


@pytest.mark.parametrize(
    ("tier_cfg", "price"),
    [
        (TierConfig("TIER1", 0.40, 10), 500.0),  # target 400 < price 500 <= cap 800
        (TierConfig("TIER2", 0.30, 10), 450.0),  # target 300 < price 450 <= cap 600
    ],
)
def test_no_compression_for_tier1_and_tier2(tier_cfg: TierConfig, price: float) -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=False, tiers={tier_cfg.name: tier_cfg})
    assert sizer.target_notional(tier_cfg.name) < price <= sizer.tier_cap(tier_cfg.name)
    shares, meta = sizer.calculate_shares("X", price, tier_cfg.name)
    assert shares is None
    assert meta["compressed"] is False
    assert "zero-share trap" in meta["reason"]


def test_no_compression_when_disabled() -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=False, enable_compression=False)
    shares, meta = sizer.calculate_shares("MSFT", 420.0, "TIER3")
    assert shares is None
    assert meta["compressed"] is False
    assert "zero-share trap" in meta["reason"]


def test_no_compression_in_fractional_mode() -> None:
    shares, meta = TieredPositionSizer(10_000.0).calculate_shares("MSFT", 420.0, "TIER3")
    assert shares == 0.357142857
    assert meta["compressed"] is False
    assert meta["position_notional"] == 150.0


def test_compressed_position_still_needs_the_minimum_notional() -> None:
    # A $1k account: TIER3 target $15, cap $60. One $20 share is compressed in, but min_notional is $25.
    sizer = TieredPositionSizer(1_000.0, use_fractional=False, min_notional=25.0)
    shares, meta = sizer.calculate_shares("X", 20.0, "TIER3")
    assert shares is None
    assert "below the minimum notional" in meta["reason"]


# --- minimum notional (fix 4) and zero shares (fix 5) --------------------------------------------


def test_below_min_notional_fractional() -> None:
    # $500 account: TIER3 target = 500 * 0.3 / 20 = $7.50 < $10
    shares, meta = TieredPositionSizer(500.0).calculate_shares("AAPL", 190.0, "TIER3")
    assert shares is None
    assert "below the minimum notional $10.00" in meta["reason"]
    assert "$7.50" in meta["reason"]


def test_below_min_notional_whole_shares() -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=False, min_notional=500.0)
    shares, meta = sizer.calculate_shares("XLK", 210.0, "TIER2")  # 2 x 210 = 420 < 500
    assert shares is None
    assert "below the minimum notional" in meta["reason"]


def test_exactly_min_notional_is_allowed() -> None:
    shares, meta = TieredPositionSizer(10_000.0, min_notional=150.0).calculate_shares("AAPL", 190.0, "TIER3")
    assert shares is not None and meta["position_notional"] == 150.0


def test_fractional_quantity_rounding_to_zero() -> None:
    shares, meta = TieredPositionSizer(10_000.0).calculate_shares("X", 1e12, "TIER3")
    assert shares is None
    assert "rounds to zero" in meta["reason"]


def test_zero_allocation_tier_gives_no_position() -> None:
    tiers = {"TIER3": TierConfig("TIER3", 0.0, 20)}
    for fractional in (True, False):
        shares, meta = TieredPositionSizer(10_000.0, use_fractional=fractional, tiers=tiers).calculate_shares(
            "X", 100.0, "TIER3"
        )
        assert shares is None and meta["reason"]


# --- meta ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "fractional", "symbol", "price", "tier"),
    [
        (10_000.0, True, "COST", 900.0, "TIER3"),
        (10_000.0, False, "COST", 900.0, "TIER3"),
        (10_000.0, False, "MSFT", 420.0, "TIER3"),
        (10_000.0, True, "SPY", 500.0, "TIER1"),
        (500.0, True, "AAPL", 190.0, "TIER3"),
        (10_000.0, True, "SPY", 0.0, "TIER1"),
        (10_000.0, True, "SPY", float("nan"), "TIER1"),
        (10_000.0, True, "SPY", 500.0, "TIER9"),
    ],
)
def test_meta_always_carries_the_required_keys(
    account: float, fractional: bool, symbol: str, price: float, tier: str
) -> None:
    shares, meta = TieredPositionSizer(account, use_fractional=fractional).calculate_shares(symbol, price, tier)
    for key in REQUIRED_META:
        assert key in meta, key
    assert meta["tier"] == tier
    assert meta["fractional"] is fractional
    assert meta["symbol"] == symbol
    if shares is None:
        assert isinstance(meta["reason"], str) and meta["reason"]
    else:
        assert "reason" not in meta


# --- bad input --------------------------------------------------------------------------------


BAD_NUMBERS = [0, 0.0, -1.0, -10_000.0, float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("account", [*BAD_NUMBERS, True, None, "10000"])
def test_bad_account_value_is_a_value_error(account: Any) -> None:
    with pytest.raises(ValueError, match="account_value"):
        TieredPositionSizer(account)
    with pytest.raises(ValueError, match="account_value"):
        TieredPositionSizer(10_000.0).with_account_value(account)


@pytest.mark.parametrize("min_notional", [0.0, -5.0, float("nan"), float("inf")])
def test_bad_min_notional_is_a_value_error(min_notional: float) -> None:
    with pytest.raises(ValueError, match="min_notional"):
        TieredPositionSizer(10_000.0, min_notional=min_notional)


@pytest.mark.parametrize("price", [*BAD_NUMBERS, True, None, "900"])
@pytest.mark.parametrize("fractional", [True, False])
def test_bad_price_gives_no_position(price: Any, fractional: bool) -> None:
    shares, meta = TieredPositionSizer(10_000.0, use_fractional=fractional).calculate_shares("COST", price, "TIER3")
    assert shares is None
    assert "invalid price" in meta["reason"]
    assert meta["position_notional"] == 0.0


@pytest.mark.parametrize("tier", ["TIER4", "tier3", "", None, "UNTIERED"])
def test_unknown_tier_gives_no_position(tier: Any) -> None:
    shares, meta = TieredPositionSizer(10_000.0).calculate_shares("COST", 900.0, tier)
    assert shares is None
    assert "unknown tier" in meta["reason"]
    assert meta["position_notional"] == 0.0


def test_non_tierconfig_tier_table_is_rejected() -> None:
    with pytest.raises(ValueError, match="TierConfig"):
        TieredPositionSizer(10_000.0, tiers={"TIER1": 0.4})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allocation": -0.1, "slots": 4},
        {"allocation": 1.1, "slots": 4},
        {"allocation": float("nan"), "slots": 4},
        {"allocation": float("inf"), "slots": 4},
        {"allocation": 0.4, "slots": 0},
        {"allocation": 0.4, "slots": 1.5},
        {"allocation": 0.4, "slots": 4, "max_position_pct": 0.0},
        {"allocation": 0.4, "slots": 4, "max_position_pct": 1.5},
        {"allocation": 0.4, "slots": 4, "max_position_pct": float("nan")},
    ],
)
def test_invalid_tier_config(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        TierConfig("TIER1", **kwargs)


# --- tier lookup ------------------------------------------------------------------------------


def test_get_tier_for_symbol() -> None:
    sizer = TieredPositionSizer(10_000.0)
    assert sizer.get_tier_for_symbol("SPY", DEFAULT_SYMBOL_TIERS) == "TIER1"
    assert sizer.get_tier_for_symbol("XLE", DEFAULT_SYMBOL_TIERS) == "TIER2"
    assert sizer.get_tier_for_symbol("COST", DEFAULT_SYMBOL_TIERS) == "TIER3"
    assert sizer.get_tier_for_symbol("ZZZZ", DEFAULT_SYMBOL_TIERS) is None
    assert sizer.get_tier_for_symbol("SPY", None) is None
    assert sizer.get_tier_for_symbol("SPY", {}) is None
    assert sizer.get_tier_for_symbol("SPY", {"SPY": "TIER9"}) is None  # a tier this sizer does not know
    only_tier1 = TieredPositionSizer(10_000.0, tiers={"TIER1": DEFAULT_TIERS["TIER1"]})
    assert only_tier1.get_tier_for_symbol("COST", DEFAULT_SYMBOL_TIERS) is None


# --- immutability (fix 1) -----------------------------------------------------------------------


def test_sizer_refuses_attribute_assignment() -> None:
    sizer = TieredPositionSizer(10_000.0)
    for name, value in [("account_value", 1.0), ("use_fractional", False), ("min_notional", 1.0),
                        ("enable_compression", False), ("tiers", {}), ("something_new", 1)]:
        with pytest.raises(AttributeError):
            setattr(sizer, name, value)
    assert sizer.account_value == 10_000.0 and sizer.use_fractional is True
    assert sizer.min_notional == 10.0 and sizer.enable_compression is True


def test_sizer_refuses_attribute_deletion() -> None:
    sizer = TieredPositionSizer(10_000.0)
    with pytest.raises(AttributeError):
        del sizer.account_value
    assert sizer.account_value == 10_000.0


def test_tier_config_is_frozen() -> None:
    tier = TierConfig("TIER1", 0.40, 4)
    with pytest.raises(dataclasses.FrozenInstanceError):
        tier.allocation = 0.9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        tier.slots = 1  # type: ignore[misc]
    assert tier.allocation == 0.40


def test_tier_tables_are_read_only() -> None:
    sizer = TieredPositionSizer(10_000.0)
    with pytest.raises(TypeError):
        sizer.tiers["TIER1"] = TierConfig("TIER1", 1.0, 1)  # type: ignore[index]
    with pytest.raises(TypeError):
        del sizer.tiers["TIER1"]  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        DEFAULT_TIERS["TIER4"] = TierConfig("TIER4", 0.1, 1)  # type: ignore[index]
    assert set(DEFAULT_TIERS) == set(TIERS)


def test_sizer_copies_the_given_tier_table() -> None:
    table = {"TIER1": TierConfig("TIER1", 0.40, 4)}
    sizer = TieredPositionSizer(10_000.0, tiers=table)
    table["TIER1"] = TierConfig("TIER1", 1.0, 1)
    table["TIER2"] = TierConfig("TIER2", 0.3, 5)
    assert sizer.tiers["TIER1"] == TierConfig("TIER1", 0.40, 4)
    assert "TIER2" not in sizer.tiers


def test_with_account_value_returns_a_new_sizer() -> None:
    sizer = TieredPositionSizer(10_000.0, use_fractional=False, min_notional=20.0, enable_compression=False)
    bigger = sizer.with_account_value(50_000.0)
    assert bigger is not sizer
    assert sizer.account_value == 10_000.0
    assert bigger.account_value == 50_000.0
    assert (bigger.use_fractional, bigger.min_notional, bigger.enable_compression) == (False, 20.0, False)
    assert dict(bigger.tiers) == dict(sizer.tiers)


def test_default_tiers_and_build_tiers() -> None:
    assert DEFAULT_TIERS["TIER1"] == TierConfig("TIER1", 0.40, 4, 0.20)
    assert DEFAULT_TIERS["TIER2"] == TierConfig("TIER2", 0.30, 5, 0.20)
    assert DEFAULT_TIERS["TIER3"] == TierConfig("TIER3", 0.30, 20, 0.20)
    allocations = {"TIER1": 0.40, "TIER2": 0.30, "TIER3": 0.30}
    assert dict(build_tiers(allocations)) == dict(DEFAULT_TIERS)
    assert dict(build_tiers(allocations, DEFAULT_SYMBOL_TIERS)) == dict(DEFAULT_TIERS)
    custom = build_tiers(allocations, {"SPY": "TIER1", "AAPL": "TIER3", "MSFT": "TIER3"})
    assert [custom[t].slots for t in TIERS] == [1, 1, 2]  # TIER2 has no member: at least one slot
    with pytest.raises(TypeError):
        custom["TIER1"] = DEFAULT_TIERS["TIER1"]  # type: ignore[index]


def test_repr_names_the_settings() -> None:
    text = repr(TieredPositionSizer(10_000.0, use_fractional=False))
    assert "account_value=10000.00" in text and "use_fractional=False" in text


# --- known gap: cent flooring may overshoot the cap by < 1e-8 dollars ---------------------------


def test_fractional_notional_never_exceeds_the_cap_exactly() -> None:
    account = (600 - 5e-9) / 0.06  # TIER2 cap = A * 0.30 * 0.20 = 599.999999995
    sizer = TieredPositionSizer(account)
    _, meta = sizer.calculate_shares("XLK", 210.0, "TIER2")
    assert meta["position_notional"] <= sizer.tier_cap("TIER2")


# --- properties -------------------------------------------------------------------------------

accounts = st.floats(min_value=100.0, max_value=10_000_000.0, allow_nan=False, allow_infinity=False)
prices = st.floats(min_value=0.5, max_value=5000.0, allow_nan=False, allow_infinity=False)
min_notionals = st.floats(min_value=1.0, max_value=50.0, allow_nan=False, allow_infinity=False)
tier_configs = st.builds(
    TierConfig,
    name=st.just("X"),
    allocation=st.floats(min_value=0.0, max_value=1.0),
    slots=st.integers(min_value=1, max_value=30),
    max_position_pct=st.floats(min_value=0.01, max_value=1.0),
)


@st.composite
def tier_tables(draw: st.DrawFn) -> dict[str, TierConfig]:
    """Either the default table or random allocations, slots and caps for TIER1..TIER3."""
    if draw(st.booleans()):
        return dict(DEFAULT_TIERS)
    table = {}
    for name in TIERS:
        cfg = draw(tier_configs)
        table[name] = dataclasses.replace(cfg, name=name)
    return table


def _check_sizing(
    account: float,
    price: float,
    tier: str,
    fractional: bool,
    compression: bool,
    min_notional: float,
    table: dict[str, TierConfig],
) -> None:
    before_table = copy.deepcopy(table)
    before_defaults = copy.deepcopy(dict(DEFAULT_TIERS))
    sizer = TieredPositionSizer(account, use_fractional=fractional, min_notional=min_notional,
                                enable_compression=compression, tiers=table)
    attributes = (sizer.account_value, sizer.use_fractional, sizer.min_notional, sizer.enable_compression,
                  dict(sizer.tiers))
    cfg = table[tier]
    cap = account * cfg.allocation * cfg.max_position_pct  # computed independently of the sizer
    target = min(account * cfg.allocation / cfg.slots, cap)

    shares, meta = sizer.calculate_shares("SYM", price, tier)

    # The configuration is never mutated (fix 1), by deep comparison, and neither is the sizer.
    assert table == before_table
    assert dict(DEFAULT_TIERS) == before_defaults
    assert dict(sizer.tiers) == before_table
    assert (sizer.account_value, sizer.use_fractional, sizer.min_notional, sizer.enable_compression,
            dict(sizer.tiers)) == attributes

    for key in REQUIRED_META:
        assert key in meta
    assert meta["tier"] == tier and meta["price"] == price and meta["fractional"] is fractional
    assert meta["position_notional"] >= 0.0 and meta["effective_allocation"] >= 0.0

    if shares is None:
        assert meta["reason"]
        return

    assert "reason" not in meta
    assert shares > 0  # never negative, never a zero-size position
    notional = _true_notional(sizer, shares, meta, fractional)
    # Fix 3: never above the tier cap (a millionth of a cent of float slack).
    assert notional <= cap + EPS
    # Fix 4: never below the minimum notional.
    assert notional >= min_notional - 1e-9
    # What is reported matches what is ordered (meta rounds to cents).
    assert meta["position_notional"] == pytest.approx(notional, abs=0.005 + 1e-9)
    assert meta["effective_allocation"] == pytest.approx(notional / account, rel=1e-9, abs=1e-12)
    if fractional:
        assert isinstance(shares, float)
        assert _decimals(shares) <= FRACTIONAL_DECIMALS
        assert _decimals(notional) <= 2
        assert notional <= target + EPS  # floored to cents, never rounded up past the target
        assert shares * price <= notional + 1e-9 * max(1.0, notional)  # the quantity estimate is floored too
        assert meta["compressed"] is False
    else:
        assert type(shares) is int  # whole shares are integers
        if meta["compressed"]:
            assert compression and tier == "TIER3" and shares == 1
            assert price > target and price <= cap + 1e-9
        else:
            assert shares == math.floor(target / price + 1e-12)  # floored, never rounded up
            assert notional <= target + EPS


@settings(max_examples=300, deadline=None)
@given(
    account=accounts,
    price=prices,
    tier=st.sampled_from(TIERS),
    fractional=st.booleans(),
    compression=st.booleans(),
    min_notional=min_notionals,
)
def test_property_default_tiers(
    account: float, price: float, tier: str, fractional: bool, compression: bool, min_notional: float
) -> None:
    _check_sizing(account, price, tier, fractional, compression, min_notional, dict(DEFAULT_TIERS))


@settings(max_examples=300, deadline=None)
@given(
    account=accounts,
    price=prices,
    tier=st.sampled_from(TIERS),
    fractional=st.booleans(),
    compression=st.booleans(),
    min_notional=min_notionals,
    table=tier_tables(),
)
def test_property_random_tier_tables(
    account: float,
    price: float,
    tier: str,
    fractional: bool,
    compression: bool,
    min_notional: float,
    table: dict[str, TierConfig],
) -> None:
    _check_sizing(account, price, tier, fractional, compression, min_notional, table)


@settings(max_examples=300, deadline=None)
@given(account=accounts, price=prices, tier=st.sampled_from(TIERS),
       min_notional=st.integers(min_value=100, max_value=5000).map(lambda cents: cents / 100))
def test_property_fractional_never_skips_what_whole_shares_buy(
    account: float, price: float, tier: str, min_notional: float
) -> None:
    """Fractional shares only ever widen what can be bought (no compression to muddy the comparison).

    The minimum is a whole number of cents here: with a sub-cent minimum such as $10.005, a $10.009
    target buys one $10.007 share but floors to a $10.00 notional, legitimately below the minimum.
    """
    whole, _ = TieredPositionSizer(account, use_fractional=False, min_notional=min_notional,
                                   enable_compression=False).calculate_shares("S", price, tier)
    frac, meta = TieredPositionSizer(account, use_fractional=True, min_notional=min_notional,
                                     enable_compression=False).calculate_shares("S", price, tier)
    if whole is not None:
        assert frac is not None, meta.get("reason")
