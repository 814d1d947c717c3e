"""TierExposureTracker: budget, exposure, remaining and fits per tier; with_added() leaves the original alone."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.tier_exposure_tracker import UNTIERED, TierExposureTracker

ALLOC = {"TIER1": 0.40, "TIER2": 0.30, "TIER3": 0.30}
ACCOUNT = 10_000.0


def _tracker(positions: dict[str, float] | None = None, account: float = ACCOUNT) -> TierExposureTracker:
    return TierExposureTracker(positions or {}, DEFAULT_SYMBOL_TIERS, ALLOC, account)


def test_empty_book() -> None:
    tracker = _tracker()
    for tier, allocation in ALLOC.items():
        assert tracker.budget(tier) == pytest.approx(ACCOUNT * allocation)
        assert tracker.exposure(tier) == 0.0
        assert tracker.remaining(tier) == pytest.approx(ACCOUNT * allocation)


def test_exposure_and_remaining() -> None:
    # budgets on $10k: TIER1 4000, TIER2 3000, TIER3 3000
    tracker = _tracker({"SPY": 2500.0, "QQQ": 1000.0, "XLK": 600.0, "AAPL": 190.0, "COST": 150.0})
    assert tracker.exposure("TIER1") == pytest.approx(3500.0)
    assert tracker.remaining("TIER1") == pytest.approx(500.0)
    assert tracker.exposure("TIER2") == pytest.approx(600.0)
    assert tracker.remaining("TIER2") == pytest.approx(2400.0)
    assert tracker.exposure("TIER3") == pytest.approx(340.0)
    assert tracker.remaining("TIER3") == pytest.approx(2660.0)


def test_short_or_negative_market_value_counts_by_magnitude() -> None:
    tracker = _tracker({"SPY": -1500.0, "QQQ": 500.0})
    assert tracker.exposure("TIER1") == pytest.approx(2000.0)
    assert tracker.remaining("TIER1") == pytest.approx(2000.0)


def test_remaining_never_negative() -> None:
    tracker = _tracker({"SPY": 3000.0, "QQQ": 2000.0})  # 5000 > 4000 budget
    assert tracker.exposure("TIER1") == pytest.approx(5000.0)
    assert tracker.remaining("TIER1") == 0.0
    assert not tracker.fits("DIA", 0.01)


def test_fits() -> None:
    tracker = _tracker({"SPY": 3500.0})
    assert tracker.fits("DIA", 500.0)  # exactly the remaining capacity
    assert tracker.fits("DIA", 499.99)
    assert not tracker.fits("DIA", 500.01)
    assert tracker.fits("XLK", 3000.0)
    assert not tracker.fits("XLK", 3000.01)
    assert not tracker.fits("DIA", float("inf"))
    assert not tracker.fits("DIA", float("nan"))


def test_with_added_returns_a_new_tracker_and_leaves_the_original() -> None:
    original = _tracker({"SPY": 3000.0})
    before = original.report()
    added = original.with_added("DIA", 800.0)
    assert added is not original
    assert added.exposure("TIER1") == pytest.approx(3800.0)
    assert added.remaining("TIER1") == pytest.approx(200.0)
    assert not added.fits("IWM", 300.0)
    assert added.fits("IWM", 200.0)
    # The original is untouched.
    assert original.exposure("TIER1") == pytest.approx(3000.0)
    assert original.fits("IWM", 300.0)
    assert original.report() == before
    # Other tiers carry over unchanged.
    assert added.exposure("TIER2") == 0.0 and added.budget("TIER3") == pytest.approx(3000.0)


def test_with_added_chains_within_one_risk_pass() -> None:
    tracker = _tracker()
    approved = []
    for symbol in ("XLK", "XLF", "XLV", "XLE", "XLY", "XLK"):
        if tracker.fits(symbol, 700.0):
            approved.append(symbol)
            tracker = tracker.with_added(symbol, 700.0)
    assert approved == ["XLK", "XLF", "XLV", "XLE"]  # 4 x 700 = 2800 of 3000; a fifth would be 3500
    assert tracker.exposure("TIER2") == pytest.approx(2800.0)


def test_with_added_counts_magnitude() -> None:
    assert _tracker().with_added("SPY", -250.0).exposure("TIER1") == pytest.approx(250.0)


def test_untiered_symbols() -> None:
    tracker = _tracker({"ZZZZ": 1234.0, "SPY": 100.0})
    assert tracker.tier_of("ZZZZ") == UNTIERED
    assert tracker.tier_of("SPY") == "TIER1"
    assert tracker.exposure(UNTIERED) == pytest.approx(1234.0)
    assert tracker.exposure("TIER1") == pytest.approx(100.0)
    assert tracker.budget(UNTIERED) == 0.0
    # Untiered symbols are not limited by tier budgets (the caller's fallback sizing applies).
    assert tracker.fits("ZZZZ", 1_000_000.0)
    added = tracker.with_added("YYYY", 66.0)
    assert added.exposure(UNTIERED) == pytest.approx(1300.0)
    assert tracker.exposure(UNTIERED) == pytest.approx(1234.0)
    report = tracker.report()
    assert list(report) == ["TIER1", "TIER2", "TIER3", UNTIERED]
    assert report[UNTIERED]["exposure"] == pytest.approx(1234.0)
    assert report[UNTIERED]["utilisation"] == 0.0


def test_unknown_tier_label_has_no_budget() -> None:
    tracker = TierExposureTracker({"SPY": 10.0}, {"SPY": "TIER9"}, ALLOC, ACCOUNT)
    assert tracker.exposure("TIER9") == pytest.approx(10.0)
    assert tracker.budget("TIER9") == 0.0
    assert tracker.remaining("TIER9") == 0.0
    assert not tracker.fits("SPY", 1.0)


def test_report() -> None:
    report = _tracker({"SPY": 1000.0, "AAPL": 750.0}).report()
    assert report["TIER1"] == {
        "allocation": 0.40,
        "budget": 4000.0,
        "exposure": 1000.0,
        "remaining": 3000.0,
        "utilisation": pytest.approx(0.25),
    }
    assert report["TIER3"]["utilisation"] == pytest.approx(0.25)
    assert report["TIER2"]["utilisation"] == 0.0


def test_zero_allocation_tier_reports_zero_utilisation() -> None:
    tracker = TierExposureTracker({"SPY": 100.0}, {"SPY": "TIER1"}, {"TIER1": 0.0}, ACCOUNT)
    assert tracker.report()["TIER1"]["utilisation"] == 0.0
    assert tracker.remaining("TIER1") == 0.0


@pytest.mark.parametrize("account", [0.0, -1.0, -10_000.0, float("nan"), float("inf"), float("-inf")])
def test_bad_account_value(account: float) -> None:
    with pytest.raises(ValueError, match="account_value"):
        _tracker(account=account)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_market_value(value: float) -> None:
    with pytest.raises(ValueError, match="SPY"):
        _tracker({"SPY": value})


def test_inputs_are_copied_not_shared() -> None:
    positions = {"SPY": 1000.0}
    symbol_tiers: dict[str, str] = {"SPY": "TIER1"}
    allocations: dict[str, Any] = dict(ALLOC)
    snapshot = copy.deepcopy((positions, symbol_tiers, allocations))
    tracker = TierExposureTracker(positions, symbol_tiers, allocations, ACCOUNT)
    tracker.with_added("SPY", 500.0)
    assert (positions, symbol_tiers, allocations) == snapshot  # inputs untouched
    positions["SPY"] = 9999.0
    symbol_tiers["SPY"] = "TIER3"
    allocations["TIER1"] = 0.0
    assert tracker.exposure("TIER1") == pytest.approx(1000.0)
    assert tracker.tier_of("SPY") == "TIER1"
    assert tracker.budget("TIER1") == pytest.approx(4000.0)


def test_tracker_has_no_instance_dict() -> None:
    tracker = _tracker()
    with pytest.raises(AttributeError):
        tracker.something = 1  # type: ignore[attr-defined]


def test_with_added_rejects_non_finite_notional() -> None:
    import math

    import pytest as _pytest

    from core.domain.tier_exposure_tracker import TierExposureTracker as _Tracker

    tracker = _Tracker({}, {"SPY": "TIER1"}, {"TIER1": 0.4}, 10_000.0)
    for bad in (math.nan, math.inf):
        with _pytest.raises(ValueError, match="must be finite"):
            tracker.with_added("SPY", bad)
