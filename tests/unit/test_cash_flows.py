"""Cash-flow netting (core/domain/cash_flows.py): deposits and withdrawals are not P&L. Hand-worked numbers."""

from __future__ import annotations

import random
from datetime import date, datetime

import pytest

from core.domain.cash_flows import (
    adjust_peak,
    day_change,
    net_amount,
    parse_activity,
    pnl_today,
    signed_amount,
    since_close,
    time_from_activity_id,
)
from core.domain.market_calendar import NEW_YORK
from core.domain.models import CashFlow

ALPACA_CSD = {"activity_type": "CSD", "id": "20250604103000123::5f596936-6f23-4cef-bdf1-3806aae57dbf",
              "date": "2025-06-04", "net_amount": "5000", "description": "", "status": "executed"}


def test_the_sign_comes_from_the_type_for_deposits_and_withdrawals() -> None:
    assert signed_amount("CSD", 5000.0) == 5000.0
    assert signed_amount("CSD", -5000.0) == 5000.0     # a returned withdrawal is still money in
    assert signed_amount("CSW", -2500.0) == -2500.0
    assert signed_amount("CSW", 2500.0) == -2500.0
    assert signed_amount("JNLC", -100.0) == -100.0      # journals keep their own sign
    assert net_amount([CashFlow("a", "CSD", 5000.0, date(2025, 6, 4)),
                       CashFlow("b", "CSW", -1500.0, date(2025, 6, 4))]) == 3500.0


def test_an_alpaca_activity_is_parsed_with_its_time_from_the_id() -> None:
    flow = parse_activity(ALPACA_CSD)
    assert flow.kind == "CSD" and flow.amount == 5000.0 and flow.on == date(2025, 6, 4)
    assert flow.occurred_at == datetime(2025, 6, 4, 10, 30, 0, 123_000, tzinfo=NEW_YORK)
    assert time_from_activity_id("not-an-alpaca-id") is None
    assert parse_activity({**ALPACA_CSD, "id": "csw-1", "activity_type": "CSW", "net_amount": "-20"}).occurred_at is None


@pytest.mark.parametrize("bad, message", [
    ({**ALPACA_CSD, "net_amount": "lots"}, "net_amount 'lots' is not a number"),
    ({**ALPACA_CSD, "net_amount": "NaN"}, "not a finite number"),
    ({**ALPACA_CSD, "date": "June 4th"}, "date 'June 4th' is not YYYY-MM-DD"),
    ({**ALPACA_CSD, "id": None}, "id None is not a non-empty string"),
    ("CSD", "must be an object"),
])
def test_a_bad_activity_names_what_is_wrong(bad: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_activity(bad)


def test_daily_change_is_net_of_the_days_flows() -> None:
    # $10,000 at the last close; $5,000 withdrawn today and nothing traded: equity $5,000, change 0 %.
    assert day_change(5_000.0, 10_000.0, -5_000.0) == 0.0
    # $5,000 deposited today hides a $400 loss: equity $14,600 is +46 % raw, -4 % net of the deposit.
    assert pnl_today(14_600.0, 10_000.0, 5_000.0) == -400.0
    assert day_change(14_600.0, 10_000.0, 5_000.0) == pytest.approx(-0.04)
    # A $300 loss with no flow: -3 %.
    assert day_change(9_700.0, 10_000.0, 0.0) == pytest.approx(-0.03)
    assert day_change(-500.0, 0.0, 0.0) is None       # no positive previous close to compare with


def test_with_no_flows_the_daily_change_is_bit_for_bit_the_old_formula() -> None:
    rng = random.Random(7)
    for _ in range(2000):
        equity, last = rng.uniform(1, 1e6), rng.uniform(1, 1e6)
        assert day_change(equity, last, 0.0) == equity / last - 1.0


def test_the_peak_moves_in_proportion_to_a_flow() -> None:
    # Peak $10,000, equity $9,000 (-10 %); $4,000 withdrawn: equity $5,000, peak 10,000 x 5,000 / 9,000.
    peak = adjust_peak(10_000.0, 5_000.0, -4_000.0)
    assert peak == pytest.approx(5_555.5556, abs=1e-4)
    assert 1 - 5_000.0 / peak == pytest.approx(0.10)            # the drawdown is still 10 %
    # Peak $10,000, equity $10,000; $5,000 deposited: equity $15,000, peak $15,000 (no drawdown, no profit).
    assert adjust_peak(10_000.0, 15_000.0, 5_000.0) == pytest.approx(15_000.0)
    # A deposit after a 50 % loss keeps the 50 %: peak 10,000, equity 5,000 + 5,000 deposit -> peak 20,000.
    assert adjust_peak(10_000.0, 10_000.0, 5_000.0) == pytest.approx(20_000.0)
    assert adjust_peak(10_000.0, 7_000.0, 0.0) == 10_000.0


def test_a_flow_that_empties_or_refills_an_account_restarts_the_peak() -> None:
    assert adjust_peak(10_000.0, -2_000.0, -12_000.0) == 0.0     # withdrawn beyond the account
    assert adjust_peak(10_000.0, 0.0, -10_000.0) == 0.0
    assert adjust_peak(10_000.0, 3_000.0, 3_000.0) == 0.0        # deposited into an empty account
    assert adjust_peak(0.0, 5_000.0, 5_000.0) == 0.0             # no peak yet: nothing to move


def test_today_means_after_the_previous_close() -> None:
    close = datetime(2025, 6, 3, 16, 0, tzinfo=NEW_YORK)
    evening = CashFlow("x", "CSW", -100.0, date(2025, 6, 3), datetime(2025, 6, 3, 18, 0, tzinfo=NEW_YORK))
    noon = CashFlow("y", "CSW", -100.0, date(2025, 6, 3), datetime(2025, 6, 3, 12, 0, tzinfo=NEW_YORK))
    assert since_close(evening, date(2025, 6, 3), close) and not since_close(noon, date(2025, 6, 3), close)
    # Without a time stamp: by date, after the previous session's date.
    assert since_close(CashFlow("z", "CSD", 1.0, date(2025, 6, 4)), date(2025, 6, 3), close)
    assert not since_close(CashFlow("z", "CSD", 1.0, date(2025, 6, 3)), date(2025, 6, 3), close)
