"""Pure parts of issue 10 items 4 and 5: the refusal classification, the skew measurement and the
broker's corrections of the calendar. (The end-to-end cases are in test_market_events_*.py.)"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from core.broker_calendar import BrokerCalendar
from core.broker_time import BrokerTimeClock
from core.domain.broker_refusals import RefusalKind, classify_refusal
from core.domain.clock import SimClock
from core.domain.errors import (
    BadBrokerResponseError,
    BrokerServerError,
    BrokerTimeout,
    NotFoundError,
    OrderRejectedError,
    RateLimitedError,
)
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.domain.models import ClockView, MarketDay

EP = "POST /v2/orders"


# ---------------------------------------------------------------------- refusals
@pytest.mark.parametrize(("error", "kind", "cause"), [
    (OrderRejectedError(f"{EP}: HTTP 403 code 40310000: account is not authorized to trade", status=403),
     RefusalKind.TRANSIENT, "trading_blocked"),
    (OrderRejectedError(f"{EP}: HTTP 403 code 40310000: new orders are rejected by user request", status=403),
     RefusalKind.TRANSIENT, "trading_suspended_by_user"),
    (OrderRejectedError(f"{EP}: HTTP 422 code 40010001: asset MA is not tradable", status=422),
     RefusalKind.TRANSIENT, "asset_not_tradable"),
    (OrderRejectedError(f"{EP}: HTTP 403: insufficient qty available for order", status=403),
     RefusalKind.TRANSIENT, "shares_held_by_another_order"),
    (OrderRejectedError(f"{EP}: HTTP 403 code 40310000: potential wash trade detected. use complex orders",
                        status=403), RefusalKind.TRANSIENT, "opposite_order_open"),
    (RateLimitedError(f"{EP}: HTTP 429: too many requests"), RefusalKind.TRANSIENT, "rate_limited"),
    (BrokerServerError(f"{EP}: HTTP 503: service unavailable", status=503), RefusalKind.TRANSIENT, "server_error"),
    (BrokerTimeout(f"{EP}: no answer within 10s"), RefusalKind.TRANSIENT, "server_error"),
    (BadBrokerResponseError("GET /v2/assets/MA: the answer is not JSON: '<html>'"), RefusalKind.TRANSIENT,
     "unreadable_answer"),
    (OrderRejectedError(f"{EP}: HTTP 422 code 40010001: qty must be integer", status=422),
     RefusalKind.PERMANENT, "http_422"),
    (OrderRejectedError(f"{EP}: HTTP 403 code 40310000: cost basis must be >= 1", status=403),
     RefusalKind.PERMANENT, "http_403"),
    (NotFoundError("GET /v2/assets/MA: HTTP 404 code 40410000: asset not found", status=404),
     RefusalKind.PERMANENT, "http_404"),
])
def test_every_refusal_is_classified_in_one_place(error: Exception, kind: RefusalKind, cause: str) -> None:
    refusal = classify_refusal(error)  # type: ignore[arg-type]
    assert (refusal.kind, refusal.cause) == (kind, cause)


# ---------------------------------------------------------------------- skew
T0 = datetime(2025, 2, 11, 15, 0, tzinfo=UTC)


def test_skew_is_measured_against_the_midpoint_and_believed_only_beyond_its_error_bar() -> None:
    host = SimClock(T0)
    clock = BrokerTimeClock(host, max_skew_seconds=10.0)
    # A 30 s round trip: the broker stamped its answer 20 s after the host sent it -> skew +5 s +- 15 s.
    clock.observe(T0 + timedelta(seconds=20), T0, T0 + timedelta(seconds=30))
    assert clock.skew_seconds == pytest.approx(5.0) and clock.uncertainty_seconds == pytest.approx(15.0)
    assert not clock.corrected and clock.now() == host.now()
    # The same broker stamp with a quick answer: 12 s beyond the bound, so the broker's time is used.
    with capture_logs() as logs:
        clock.observe(T0 + timedelta(seconds=12.1), T0, T0 + timedelta(seconds=0.2))
        clock.observe(T0 + timedelta(seconds=12.1), T0, T0 + timedelta(seconds=0.2))
    assert clock.corrected and clock.now() == host.now() + timedelta(seconds=12.0)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["clock_skew_beyond_bound"]
    assert clock.to_broker(clock.now()) == clock.now()


def test_skew_warning_then_resolution_are_one_line_each() -> None:
    clock = BrokerTimeClock(SimClock(T0), max_skew_seconds=10.0)
    with capture_logs() as logs:
        for _ in range(3):
            clock.observe(T0 - timedelta(seconds=4), T0, T0)
        clock.observe(T0, T0, T0)
    assert [e["event"] for e in logs if e["log_level"] != "debug"] == ["clock_skew_warning", "clock_skew_resolved"]
    assert "ahead of" in logs[0]["message"]
    # Within the bound the host's time is kept, but the broker's timeline is still known.
    clock.observe(T0 - timedelta(seconds=4), T0, T0)
    assert clock.now() == T0 and clock.to_broker(T0) == T0 - timedelta(seconds=4)


def test_a_host_clock_step_is_detected_against_the_monotonic_clock() -> None:
    class SteppingClock(SimClock):
        step = timedelta(0)

        def now(self) -> datetime:
            return super().now() + self.step

    host = SteppingClock(T0)
    clock = BrokerTimeClock(host, max_skew_seconds=10.0)
    clock.observe(T0, T0, T0)
    host.advance(3600)
    assert not clock.host_stepped(clock.now())
    host.step = timedelta(seconds=30)
    host.advance(60)
    assert clock.host_stepped(clock.now())


# ---------------------------------------------------------------------- calendar
def _day(session: date, open_hm: tuple[int, int] = (9, 30), close_hm: tuple[int, int] = (16, 0)) -> MarketDay:
    return MarketDay(session, datetime(session.year, session.month, session.day, *open_hm, tzinfo=NEW_YORK).astimezone(UTC),
                     datetime(session.year, session.month, session.day, *close_hm, tzinfo=NEW_YORK).astimezone(UTC))


def test_the_broker_calendar_removes_a_closure_and_retimes_a_day_only_where_it_answers() -> None:
    base = get_market_calendar()
    cal = BrokerCalendar(base)
    sessions = base.sessions_between(date(2025, 2, 3), date(2025, 2, 28))
    closed, early = date(2025, 2, 13), date(2025, 2, 20)
    answer = [_day(s, close_hm=(13, 0)) if s == early else _day(s) for s in sessions if s != closed]
    # The answer stops on 2025-02-27: the 28th is not its to close.
    answer = [d for d in answer if d.session <= date(2025, 2, 27)]
    removed, changed = cal.apply_broker_days(answer, date(2025, 2, 1), date(2025, 3, 31))
    assert (removed, changed) == ([closed], [early])
    assert not cal.is_session(closed) and base.is_session(closed), "the process-wide calendar is untouched"
    assert cal.is_session(date(2025, 2, 28)) and cal.is_early_close(early)
    assert cal.last_completed_session(datetime(2025, 2, 14, 12, 0, tzinfo=NEW_YORK)) == date(2025, 2, 12)
    assert cal.session_distance(date(2025, 2, 12), date(2025, 2, 14)) == 1


def test_a_broker_calendar_answer_that_disagrees_on_too_many_days_is_refused() -> None:
    cal = BrokerCalendar(get_market_calendar())
    sessions = cal.sessions_between(date(2025, 1, 2), date(2025, 3, 31))
    answer = [_day(s) for i, s in enumerate(sessions) if i % 3]   # a third of the days missing
    with capture_logs() as logs:
        assert cal.apply_broker_days(answer, date(2025, 1, 1), date(2025, 3, 31)) == ([], [])
    assert [e["event"] for e in logs] == ["broker_calendar_refused"]
    assert all(cal.is_session(s) for s in sessions)


def test_the_broker_clock_decides_which_session_is_in_progress() -> None:
    cal = BrokerCalendar(get_market_calendar())
    close = datetime(2025, 2, 11, 16, 0, tzinfo=NEW_YORK)
    after_close = close + timedelta(seconds=2)
    assert cal.last_completed_session(after_close) == date(2025, 2, 11)   # the table alone
    # The broker said "open" 3 s before its close; for a host 5 s fast that answer still holds.
    cal.set_clock_view(ClockView(close - timedelta(seconds=3), True, datetime(2025, 2, 12, 9, 30, tzinfo=NEW_YORK),
                                 close))
    skewed = BrokerCalendar(get_market_calendar(), lambda moment: moment - timedelta(seconds=5))
    skewed.set_clock_view(ClockView(close - timedelta(seconds=3), True, datetime(2025, 2, 12, 9, 30, tzinfo=NEW_YORK),
                                    close))
    assert skewed.last_completed_session(after_close) == date(2025, 2, 10)
    assert skewed.current_or_next_session(after_close) == date(2025, 2, 11)
    # Once the broker's own time passes its close, the answer no longer holds: back to the table.
    assert cal.last_completed_session(after_close) == date(2025, 2, 11)


def test_a_closed_clock_whose_next_open_skips_sessions_closes_them_for_good() -> None:
    cal = BrokerCalendar(get_market_calendar())
    tuesday_evening = datetime(2025, 2, 12, 16, 0, tzinfo=NEW_YORK)
    friday_open = datetime(2025, 2, 14, 9, 30, tzinfo=NEW_YORK)
    view = ClockView(tuesday_evening, False, friday_open, datetime(2025, 2, 14, 16, 0, tzinfo=NEW_YORK))
    assert cal.close_sessions_skipped_by(view) == [date(2025, 2, 13)]
    assert not cal.is_session(date(2025, 2, 13))
    # A calendar answer that is late to list the closure does not bring the day back.
    late = [_day(s) for s in get_market_calendar().sessions_between(date(2025, 2, 3), date(2025, 2, 28))]
    assert cal.apply_broker_days(late, date(2025, 2, 1), date(2025, 2, 28)) == ([], [])
    assert not cal.is_session(date(2025, 2, 13))
    # A next open weeks away is a broken answer, not closures.
    far = ClockView(tuesday_evening, False, datetime(2025, 3, 14, 9, 30, tzinfo=NEW_YORK), friday_open)
    with capture_logs() as logs:
        assert cal.close_sessions_skipped_by(far) == []
    assert [e["event"] for e in logs] == ["broker_clock_skip_refused"]
