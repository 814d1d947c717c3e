"""Issue 10, item 5: clocks, end to end through the real SDK against the simulated market.

The simulated server keeps the true time (its ScenarioClock); the daemon runs on a `SkewedClock`, a
host clock `offset` away from it whose sleeps advance the market. The data: MA closes at z = -2.5 on
2025-02-11 (an entry; at 15:50 that day the in-progress bar already looks like one) and 5% below its
2025-02-12 open on 2025-02-12 (a stop-loss with STOP_LOSS_PCT=0.04). So a right decision buys MA at
the 2025-02-12 open on the 2025-02-11 close, and sells it at the 2025-02-13 open.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.execution_agent import client_order_id
from core.domain.market_calendar import NEW_YORK
from core.domain.models import Side
from tests.harness.clocks import SkewedClock, ny
from tests.harness.logs import events
from tests.harness.scenario import (
    SCENARIO_INSTANCE,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

MA_ENTRY_DECISION = date(2025, 2, 11)
MA_EXIT_DECISION = date(2025, 2, 12)
BUY = client_order_id("zmr", MA_ENTRY_DECISION, "MA", Side.BUY, SCENARIO_INSTANCE)
SELL = client_order_id("zmr", MA_EXIT_DECISION, "MA", Side.SELL, SCENARIO_INSTANCE)
CONFIG: dict[str, Any] = {"symbol_tiers": {"MA": "TIER3"}, "stop_loss_pct": 0.04}


@pytest.fixture
def scenario_config() -> dict[str, Any]:
    return CONFIG


def _require_ma_entry(scn: Scenario) -> None:
    assert scn.zscores(["MA"], MA_ENTRY_DECISION)["MA"] <= -scn.config.entry_z, "precondition: MA entry on 02-11"
    assert scn.zscores(["MA"], date(2025, 2, 10))["MA"] > -scn.config.entry_z, "precondition: no entry on 02-10"


def _assert_bought_at_the_open_on_the_close(scn: Scenario) -> None:
    """The 02-11 decision was taken once, on the final bar, and went out at the 02-12 open."""
    (order,) = scn.broker_orders()
    assert order.client_order_id == BUY and order.status == "filled"
    assert order.created_at == ny(2025, 2, 12, 9, 30)
    assert all(r.sim_time >= ny(2025, 2, 12, 9, 30) for r in scn.order_posts()), "an order before the real close"
    intents = scn.intents()
    assert list(intents) == [BUY] and intents[BUY]["signal_session"] == "2025-02-11"


def test_host_clock_ten_minutes_fast_near_the_close_decides_on_the_real_close(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 11, 15, 30), loop_interval_seconds=120.0)
    _require_ma_entry(scn)
    host = SkewedClock(scn.clock, timedelta(minutes=10))
    with capture_logs() as logs:   # the start-up reads the broker's clock first
        daemon = scn.boot(host_clock=host)
        daemon.orchestrator.run(until=ny(2025, 2, 12, 10, 0))

    _assert_bought_at_the_open_on_the_close(scn)
    # The loop worked only while the broker said open: nothing between the real close and the next open.
    started = [it["started_at"] for it in scn.iterations()]
    assert started and not [t for t in started if ny(2025, 2, 11, 16, 0) <= t < ny(2025, 2, 12, 9, 30)]
    assert max(t for t in started if t < ny(2025, 2, 12, 0, 0)) < ny(2025, 2, 11, 16, 0)
    (beyond,) = events(logs, "clock_skew_beyond_bound")     # one line, not one per iteration
    assert beyond["skew_s"] == pytest.approx(-600.0, abs=0.5) and "broker's time" in beyond["message"]
    assert daemon.orchestrator.clock.corrected
    assert events(logs, "symbol_excluded") == []
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_host_clock_five_seconds_fast_warns_once_and_the_broker_clock_still_cuts_the_bar(
        scenario: Callable[..., Scenario]) -> None:
    # Iterations at hh:mm:56 of the market: one lands at 15:59:56, when the host already reads 16:00:01.
    scn = scenario(ny(2025, 2, 11, 15, 0) + timedelta(seconds=56), loop_interval_seconds=60.0)
    _require_ma_entry(scn)
    host = SkewedClock(scn.clock, timedelta(seconds=5))
    with capture_logs() as logs:   # the start-up reads the broker's clock first
        daemon = scn.boot(host_clock=host)
        daemon.orchestrator.run(until=ny(2025, 2, 12, 10, 0))

    started = [it["started_at"] for it in scn.iterations()]
    assert ny(2025, 2, 11, 16, 0) + timedelta(seconds=1) in started, "precondition: an iteration at host 16:00:01"
    _assert_bought_at_the_open_on_the_close(scn)
    (warning,) = events(logs, "clock_skew_warning")
    assert warning["skew_s"] == pytest.approx(-5.0, abs=0.1)
    assert events(logs, "clock_skew_beyond_bound") == []
    assert not daemon.orchestrator.clock.corrected and daemon.orchestrator.clock.correction_seconds == 0.0
    assert_no_duplicate_orders(scn, daemon.store)


def test_host_clock_a_day_slow_excludes_nothing_and_exits_work(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 12, 9, 0), loop_interval_seconds=300.0)
    _require_ma_entry(scn)
    host = SkewedClock(scn.clock, timedelta(days=-1))
    with capture_logs() as logs:   # the start-up reads the broker's clock first
        daemon = scn.boot(host_clock=host)
        daemon.orchestrator.run(until=ny(2025, 2, 13, 10, 0))

    assert events(logs, "symbol_excluded") == [], "bars were taken for a future session"
    orders = {o.client_order_id: o for o in scn.broker_orders()}
    assert sorted(orders) == sorted([BUY, SELL])
    assert orders[BUY].created_at == ny(2025, 2, 12, 9, 30) and orders[BUY].status == "filled"
    assert orders[SELL].created_at == ny(2025, 2, 13, 9, 30) and orders[SELL].status == "filled"
    assert "MA" not in scn.broker_positions()
    assert [c.reason for c in daemon.store.closed_positions("MA")] == ["exit_stop_loss"]
    (beyond,) = events(logs, "clock_skew_beyond_bound")
    assert beyond["skew_s"] == pytest.approx(86_400.0, abs=0.5)
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_a_host_clock_step_is_noticed_without_waiting_for_the_next_boundary(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 10, 10, 0), loop_interval_seconds=300.0)
    host = SkewedClock(scn.clock, timedelta(minutes=-20))
    scn.clock.at(ny(2025, 2, 10, 11, 0), lambda: setattr(host, "offset", timedelta(0)))   # NTP steps it right

    with capture_logs() as logs:   # the start-up reads the broker's clock first
        daemon = scn.boot(host_clock=host)
        daemon.orchestrator.run(until=ny(2025, 2, 10, 12, 0))

    assert len(events(logs, "clock_skew_beyond_bound")) == 1
    (resolved,) = events(logs, "clock_skew_resolved")
    # The clock is read when the daemon starts (the open answer is valid until 16:00) and once more
    # at the first loop step after the step, because the host's wall clock left its monotonic clock.
    reads = [r.sim_time for r in scn.requests(path_prefix="/v2/clock")]
    assert len(reads) == 2 and reads[0] == ny(2025, 2, 10, 10, 0)
    assert ny(2025, 2, 10, 11, 0) <= reads[1] <= ny(2025, 2, 10, 11, 5)
    assert daemon.orchestrator.clock.correction_seconds == 0.0
    # Iterations are stamped with the broker's time throughout: every 5 minutes, no 20-minute jump.
    started = [it["started_at"] for it in scn.iterations()]
    assert all(timedelta(minutes=5) <= b - a < timedelta(minutes=6) for a, b in zip(started, started[1:], strict=False))
    assert resolved["skew_s"] == pytest.approx(0.0, abs=0.1)


# ================================================================================ unscheduled closure
CLOSED = date(2025, 2, 13)   # exchange_calendars says it is a session; the broker never opens


def _assert_exit_after_the_closure(scn: Scenario, daemon: Any, logs: list[dict[str, Any]]) -> None:
    assert scn.calendar.is_session(CLOSED), "precondition: exchange_calendars lists the day"
    assert [e for e in events(logs, "symbol_excluded") if "stale" in e["reason"]] == [], "mass stale after a closure"
    orders = {o.client_order_id: o for o in scn.broker_orders()}
    assert sorted(orders) == sorted([BUY, SELL])
    assert orders[SELL].created_at == ny(2025, 2, 14, 9, 30) and orders[SELL].status == "filled"
    assert "MA" not in scn.broker_positions()
    assert [c.reason for c in daemon.store.closed_positions("MA")] == ["exit_stop_loss"]
    (corrected,) = events(logs, "calendar_corrected_by_broker")
    assert corrected["closures"] == ["2025-02-13"]
    assert daemon.orchestrator.calendar.last_completed_session(ny(2025, 2, 14, 10, 0)) == MA_EXIT_DECISION
    assert not [it for it in scn.iterations() if it["started_at"].astimezone(NEW_YORK).date() == CLOSED]
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_an_unscheduled_closure_announced_the_day_before_makes_nothing_stale_and_exits_work(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 12, 9, 0), loop_interval_seconds=300.0)
    _require_ma_entry(scn)
    # Announced at noon, after the daemon read the broker's calendar with the day's first open answer.
    scn.clock.at(ny(2025, 2, 12, 12, 0), lambda: scn.sim.exchange.add_closure(CLOSED))
    daemon = scn.boot()

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 14, 10, 0))

    # Learned from the broker's clock at the close: its next open skipped the closed day.
    (disagreement,) = events(logs, "clock_disagreement")
    assert disagreement["calendar"].startswith("opens at 2025-02-13")
    calendar_reads = [r.sim_time for r in scn.requests(path_prefix="/v2/calendar")]
    assert calendar_reads == [ny(2025, 2, 12, 9, 30), ny(2025, 2, 12, 16, 0), ny(2025, 2, 14, 9, 30)]
    _assert_exit_after_the_closure(scn, daemon, logs)


def test_a_daemon_restarted_after_an_unscheduled_closure_learns_it_before_deciding(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 12, 9, 0), closures=(CLOSED,), loop_interval_seconds=300.0)
    _require_ma_entry(scn)
    first = scn.boot()
    first.orchestrator.run(until=ny(2025, 2, 12, 12, 0))
    scn.kill(first)
    scn.clock.advance((ny(2025, 2, 14, 9, 0) - scn.clock.now()).total_seconds())   # down over the closure

    second = scn.boot()
    with capture_logs() as logs:
        second.orchestrator.run(until=ny(2025, 2, 14, 10, 0))

    # The broker's clock agreed with the calendar this time (closed until 09:30 on the 14th): the
    # closure came from the broker's calendar, read with the first open answer of the day.
    assert events(logs, "clock_disagreement") == []
    _assert_exit_after_the_closure(scn, second, logs)


def test_a_broker_calendar_late_to_list_the_closure_is_overruled_by_the_broker_clock(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 2, 12, 9, 0), loop_interval_seconds=300.0)
    _require_ma_entry(scn)
    scn.clock.at(ny(2025, 2, 12, 12, 0), lambda: scn.sim.exchange.add_closure(CLOSED))
    # The broker's calendar still lists the closed day (published late); only its clock knows.
    listed = {"date": CLOSED.isoformat(), "open": "09:30", "close": "16:00", "session_open": "0400",
              "session_close": "2000", "settlement_date": "2025-02-18"}
    scn.faults.inject("transform", method="GET", path_prefix="/v2/calendar", count=None,
                      fn=lambda days: sorted([*days, listed], key=lambda day: day["date"]))
    daemon = scn.boot()

    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 2, 14, 10, 0))

    assert [e["source"] for e in events(logs, "calendar_corrected_by_broker")] == ["clock"]
    assert len(scn.requests(path_prefix="/v2/calendar")) == 3
    assert [e for e in events(logs, "symbol_excluded") if "stale" in e["reason"]] == []
    orders = {o.client_order_id: o for o in scn.broker_orders()}
    assert sorted(orders) == sorted([BUY, SELL])
    assert orders[SELL].created_at == ny(2025, 2, 14, 9, 30) and orders[SELL].status == "filled"
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)
