"""core.domain.ownership: what explains a change of the broker's position that the daemon's own fills do not.

Pure functions, so every case is checked exactly: splits (forward, reverse, with cash in lieu, with
the user's shares next to the daemon's), the user's purchases and sales (the user's own shares are
taken first), a position closed outside the daemon, and changes that only look like splits."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from core.domain.ownership import (
    Cause,
    SeenPosition,
    SplitEvent,
    explain,
    matching_split,
    snap_ratio,
    split_fits,
    split_ratio,
    unexplained_change,
)

T = datetime(2025, 6, 9, 15, 0, tzinfo=UTC)


def seen(qty: float, avg: float, own: float) -> SeenPosition:
    return SeenPosition("NVDA", qty, avg, own, T)


def test_nothing_changed_is_unchanged_and_keeps_the_outside_shares() -> None:
    change = explain(10, seen(15, 100.0, 10), 15, 100.0)
    assert change.cause is Cause.UNCHANGED and change.own_qty == 10 and change.outside_qty == 5
    assert not change.outside_changed


def test_the_daemons_own_fills_since_explain_the_change() -> None:
    # Seen with 10 own + 5 outside; the daemon bought 4 more: the broker holds 19.
    change = explain(14, seen(15, 100.0, 10), 19, 101.0)
    assert change.cause is Cause.UNCHANGED and change.own_qty == 14 and change.outside_qty == 5


@pytest.mark.parametrize(("before_qty", "before_avg", "after_qty", "after_avg", "ratio"), [
    (10, 1200.0, 100, 120.0, 10.0),            # 10-for-1 (NVDA 2024)
    (7, 150.0, 10.5, 100.0, 1.5),              # 3-for-2
    (25, 2.0, 2.5, 20.0, 0.1),                 # 1-for-10, fractional shares kept
    (25, 2.0, 2, 20.0, 0.1),                   # 1-for-10, the half share paid in cash (cash in lieu)
    (3, 1325.123456, 30, 132.512346, 10.0),    # avg_entry_price rounded to 6 decimals by the broker
])
def test_a_split_multiplies_the_quantity_and_divides_the_average(before_qty: float, before_avg: float,
                                                                 after_qty: float, after_avg: float,
                                                                 ratio: float) -> None:
    assert split_ratio(before_qty, before_avg, after_qty, after_avg) == pytest.approx(ratio)
    change = explain(before_qty, seen(before_qty, before_avg, before_qty), after_qty, after_avg)
    assert change.cause is Cause.SPLIT and change.ratio == pytest.approx(ratio) and change.confirmed_by_prices
    # The daemon never thinks it holds more than the broker (cash in lieu of a reverse split).
    assert change.own_qty == pytest.approx(min(before_qty * ratio, after_qty))
    assert change.outside_qty == pytest.approx(0.0, abs=1e-9)


def test_a_split_with_the_users_shares_next_to_the_daemons_rebases_both() -> None:
    # Own 10 + the user's 5, bought at another price: the broker's average is theirs together.
    avg = (10 * 1000.0 + 5 * 1100.0) / 15
    change = explain(10, seen(15, avg, 10), 150, avg / 10)
    assert change.cause is Cause.SPLIT and change.ratio == 10.0
    assert change.own_qty == pytest.approx(100) and change.outside_qty == pytest.approx(50)
    assert change.previous_outside_qty == 5 and change.outside_changed


def test_without_an_observation_the_book_is_the_baseline() -> None:
    # A database from before observations were kept: the book's own entry price shows the split.
    change = explain(10, None, 100, 120.0, book_avg=1200.0)
    assert change.cause is Cause.SPLIT and change.ratio == 10.0 and change.own_qty == 100


def test_the_user_buying_grows_the_outside_shares_only() -> None:
    # The user buys 5 at 90: quantity up, average down, but the cost is NOT kept: not a split.
    change = explain(10, seen(10, 100.0, 10), 15, (1000 + 450) / 15)
    assert change.cause is Cause.OUTSIDE_BOUGHT and change.own_qty == 10 and change.outside_qty == 5


def test_the_user_selling_takes_their_own_shares_first() -> None:
    change = explain(10, seen(15, 100.0, 10), 12, 100.0)
    assert change.cause is Cause.OUTSIDE_SOLD and change.own_qty == 10 and change.outside_qty == 2
    change = explain(10, seen(15, 100.0, 10), 7, 100.0)
    assert change.cause is Cause.OWN_REDUCED and change.own_qty == 7 and change.outside_qty == 0
    change = explain(10, seen(15, 100.0, 10), 0, 0.0)
    assert change.cause is Cause.GONE and change.own_qty == 0 and change.outside_qty == 0


def test_a_sale_keeps_the_average_so_it_never_looks_like_a_split() -> None:
    assert split_ratio(20, 100.0, 2, 100.0) is None
    assert explain(20, seen(20, 100.0, 20), 2, 100.0).cause is Cause.OWN_REDUCED


def test_a_spin_off_lowers_the_average_but_not_the_quantity() -> None:
    assert explain(10, seen(10, 100.0, 10), 10, 80.0).cause is Cause.UNCHANGED


def test_a_confirmed_ratio_rebases_when_the_prices_cannot_tell() -> None:
    # The daemon's own fill of 2 shares landed in the same interval, so the average moved for two reasons.
    change = explain(12, seen(10, 100.0, 10), 120, 11.0, split=10.0)
    assert change.cause is Cause.SPLIT and change.own_qty == 120 and not change.confirmed_by_prices
    # ... and without that confirmation it is only reported as shares that are not the daemon's.
    change = explain(12, seen(10, 100.0, 10), 120, 11.0)
    assert change.cause is Cause.OUTSIDE_BOUGHT and change.own_qty == 12 and change.outside_qty == 108


def test_a_position_the_daemon_never_held_is_outside() -> None:
    change = explain(0, None, 7, 50.0)
    assert change.cause is Cause.OUTSIDE_BOUGHT and change.own_qty == 0 and change.outside_qty == 7


def test_snap_and_fit() -> None:
    assert snap_ratio(9.99997) == 10.0 and snap_ratio(0.1000004) == 0.1 and snap_ratio(1.5000001) == 1.5
    assert snap_ratio(3.14159265) == pytest.approx(3.14159265)
    assert split_fits(25, 2, 0.1) and split_fits(25, 2.5, 0.1) and not split_fits(25, 3, 0.1)
    assert not split_fits(25, 2.4, 0.1)  # cash in lieu leaves whole shares only


def test_matching_split_needs_the_symbol_the_dates_and_an_applied_average() -> None:
    event = SplitEvent("NVDA", date(2024, 6, 10), 10.0, "forward_split", 10, 1)
    assert matching_split([event], "NVDA", date(2024, 6, 7), date(2024, 6, 10), 1200.0, 120.0) is event
    assert matching_split([event], "AVGO", date(2024, 6, 7), date(2024, 6, 10), 1200.0, 120.0) is None
    assert matching_split([event], "NVDA", date(2024, 6, 11), date(2024, 6, 12), 1200.0, 120.0) is None
    # Listed, but the broker's average has not moved: not applied yet (or already seen applied).
    assert matching_split([event], "NVDA", date(2024, 6, 7), date(2024, 6, 10), 120.0, 120.0) is None
    # The quantity need not follow the ratio: a user's trade may sit next to the split.
    assert matching_split([event], "NVDA", date(2024, 6, 7), date(2024, 6, 10), 1200.0, 121.5) is event
    # No usable average: an ex-date after the day of the last look is enough.
    assert matching_split([event], "NVDA", date(2024, 6, 7), date(2024, 6, 10), 0.0, 0.0,
                          seen_on=date(2024, 6, 7)) is event
    assert matching_split([event], "NVDA", date(2024, 6, 10), date(2024, 6, 10), 0.0, 0.0,
                          seen_on=date(2024, 6, 10)) is None
    assert "10-for-1" in event.describe() and "2024-06-10" in event.describe()


def test_a_listed_split_rebases_first_and_the_rest_is_the_users_trade() -> None:
    # Own 2 next to the user's 3; a 2-for-1 split (-> 10), then the user sells 1 (-> 9).
    change = explain(2, seen(5, 270.0, 2), 9, 135.0, split=2.0)
    assert change.cause is Cause.SPLIT and change.own_qty == 4 and change.outside_qty == 5
    assert change.residual is Cause.OUTSIDE_SOLD and change.previous_outside_qty == 3
    # ... or buys 1 (-> 11)
    change = explain(2, seen(5, 270.0, 2), 11, 135.0, split=2.0)
    assert change.own_qty == 4 and change.outside_qty == 7 and change.residual is Cause.OUTSIDE_BOUGHT
    # ... or sells 7: more than their own 6, so the daemon's own falls to what is left.
    change = explain(2, seen(5, 270.0, 2), 3, 135.0, split=2.0)
    assert change.own_qty == 3 and change.outside_qty == 0 and change.residual is Cause.OWN_REDUCED
    # ... or sells exactly 5, which brings the quantity back to the old one: still a split.
    change = explain(2, seen(5, 270.0, 2), 5, 135.0, split=2.0)
    assert change.cause is Cause.SPLIT and change.own_qty == 4 and change.outside_qty == 1
    # An exact split has no residual.
    assert explain(2, seen(5, 270.0, 2), 10, 135.0, split=2.0).residual is None


def test_a_moved_average_alone_is_an_unexplained_change() -> None:
    assert unexplained_change(2, seen(5, 270.0, 2), 5, 135.0, Cause.UNCHANGED)
    assert not unexplained_change(2, seen(5, 270.0, 2), 5, 270.0, Cause.UNCHANGED)
    assert unexplained_change(2, seen(5, 270.0, 2), 9, 135.0, Cause.OUTSIDE_BOUGHT)
    assert not unexplained_change(0, seen(5, 270.0, 0), 9, 135.0, Cause.OUTSIDE_BOUGHT)
