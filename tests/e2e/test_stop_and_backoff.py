"""Stopping and backing off, end to end through the real SDK against the simulated market.

- After a stop is requested (what SIGTERM does) no new order leaves the daemon, even while a slow
  submit is in flight, and a start-up resubmission is not sent either.
- After a long 429 storm the loop resumes within a minute of the broker recovering: its back-off is
  capped at 60 s, and a rate-limit failure waits for the reset the broker gave instead of growing.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import Any

import pytest

from core.domain.loop_backoff import MAX_BACKOFF_SECONDS
from core.domain.models import OrderSpec, Side
from core.domain.ports import IntentState
from core.runtime.stop_signals import install_stop_handlers
from tests.harness.clocks import ny
from tests.harness.market import ORDERS_PATH
from tests.harness.scenario import Scenario, assert_no_duplicate_orders

# 2025-01-22 10:00 New York: on the decision session 2025-01-21 these five names close at least one
# standard deviation below their 20-day mean, so one iteration decides five entries.
FIVE_DAY = ny(2025, 1, 22)
FIVE_DECISION = date(2025, 1, 21)
FIVE = ["AAPL", "AMZN", "LLY", "XLF", "XLK"]
FIVE_CONFIG: dict[str, Any] = {
    "symbol_tiers": {"AAPL": "TIER3", "AMZN": "TIER3", "LLY": "TIER3", "XLF": "TIER2", "XLK": "TIER2"},
    "entry_z": 1.0, "request_timeout_seconds": 5.0,
}


def _require_entries(scn: Scenario) -> None:
    z = scn.zscores(FIVE, FIVE_DECISION)
    assert all(z[s] <= -scn.config.entry_z for s in FIVE), f"precondition: five entries expected, z={z}"


# ================================================================================ stop
@pytest.mark.parametrize("how", ["request_stop", "a real SIGTERM"])
def test_no_order_is_sent_after_a_stop_requested_during_a_slow_submit(scenario: Callable[..., Scenario],
                                                                      how: str) -> None:
    scn = scenario(FIVE_DAY, **FIVE_CONFIG)
    _require_entries(scn)
    daemon = scn.boot()
    # Every order POST is slow (0.4 s of wall time at the server before it is processed).
    scn.faults.inject("hang", method="POST", path_prefix=ORDERS_PATH, count=None, seconds=0.4)
    mark = scn.log_mark()
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    if how == "a real SIGTERM":   # the CLI's handlers, and the signal delivered to this process mid-POST
        install_stop_handlers(daemon.orchestrator.request_stop)

    def stop_during_the_first_submit() -> None:
        scn.wait_for(lambda: len(scn.order_posts(mark)) >= 1, timeout=30)
        if how == "a real SIGTERM":
            os.kill(os.getpid(), signal.SIGTERM)
        else:
            daemon.orchestrator.request_stop("SIGTERM")

    stopper = threading.Thread(target=stop_during_the_first_submit)
    stopper.start()
    try:
        result = daemon.orchestrator.run_iteration()
    finally:
        stopper.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)

    posts = scn.order_posts(mark)
    assert len(posts) == 1, f"{len(posts)} order POSTs; only the one in flight when the stop came may go out"
    assert result.execution is not None and result.submitted == 1
    sent = [o.symbol for o in scn.broker_orders()]
    assert len(sent) == 1 and sorted(result.execution.not_sent + sent) == sorted(FIVE)
    intents = scn.intents()
    assert [i["state"] for i in intents.values()] == ["submitted"], intents  # nothing journalled unsent
    assert len(scn.broker_orders()) == 1

    # The next start decides the other four afresh and sends each exactly once.
    scn.faults.clear()
    scn.kill(daemon)
    again = scn.boot()
    again.orchestrator.run_iteration()
    assert sorted(o.symbol for o in scn.broker_orders()) == sorted(FIVE)
    assert_no_duplicate_orders(scn, again.store)


def test_a_stop_during_start_up_sends_no_resubmission(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(FIVE_DAY, **FIVE_CONFIG)
    first = scn.boot()
    # A crash right after the intent was journalled: PENDING, never sent, for the current decision.
    spec = OrderSpec(first.orchestrator.execution.client_order_id_for(FIVE_DECISION, "AAPL", Side.BUY),
                     "AAPL", Side.BUY, qty=1.0)
    first.store.record_intent(spec, FIVE_DECISION, "entry_oversold")
    scn.kill(first)

    mark = scn.log_mark()
    stopped = scn.boot(startup=False)
    stopped.orchestrator.request_stop("SIGTERM")
    stopped.orchestrator.startup()                       # returns quietly: no exception, no order
    assert stopped.orchestrator.run() == 0
    assert scn.order_posts(mark) == []
    assert scn.intents()[spec.client_order_id]["state"] == IntentState.PENDING
    scn.kill(stopped)

    resumed = scn.boot()                                 # a normal start resubmits it exactly once
    assert len(scn.order_posts(mark)) == 1
    assert scn.intents()[spec.client_order_id]["state"] == IntentState.SUBMITTED
    assert_no_duplicate_orders(scn, resumed.store)


# ================================================================================ back-off
def test_the_loop_resumes_within_a_minute_after_a_long_429_storm(scenario: Callable[..., Scenario]) -> None:
    """Every bars request is refused with 429 for 40 minutes of simulated time, reset 30 s ahead each
    time. The loop waits for each reset (never longer than 60 s), and its first complete iteration
    comes within a minute of the storm's end."""
    scn = scenario(ny(2025, 3, 11, 10, 0), use_scanner=False, max_get_retries=1)
    daemon = scn.boot()
    storm_start = scn.clock.now()
    storm_end = storm_start + timedelta(minutes=40)
    scn.faults.inject("429", method="GET", path_prefix="/v2/stocks/bars", count=None, reset_in=30)
    scn.clock.at(storm_end, scn.faults.clear)
    sleeps_before = len(scn.clock.sleeps)

    daemon.orchestrator.run(until=storm_end + timedelta(minutes=5))

    iterations = scn.iterations()
    failed = [it for it in iterations if it["status"] == "error"]
    completed = [it for it in iterations if it["status"] == "ok"]
    assert len(failed) >= 20, "the storm must have lasted many loop iterations"
    assert all("HTTP 429" in it["message"] for it in failed)
    first_ok = completed[0]["started_at"]
    assert storm_start < first_ok <= storm_end + timedelta(seconds=60), (storm_end, first_ok)
    loop_sleeps = [s for _, s in scn.clock.sleeps[sleeps_before:]]
    assert max(loop_sleeps) <= MAX_BACKOFF_SECONDS == 60.0
    # Waiting for the reset, not growing: the back-offs during the storm stay at about the reset time.
    backoffs = [s for when, s in scn.clock.sleeps[sleeps_before:] if when < storm_end and s > 5]
    assert backoffs and all(25 <= s <= 35 for s in backoffs), sorted(set(round(s) for s in backoffs))


def test_the_back_off_rule() -> None:
    from datetime import UTC, datetime

    from core.domain.errors import DataError, RateLimitedError
    from core.domain.loop_backoff import loop_backoff_seconds, rate_limit_reset

    now = datetime(2025, 3, 11, 15, 0, tzinfo=UTC)
    try:
        try:
            raise RateLimitedError("GET /v2/stocks/bars: HTTP 429", reset_at=now.timestamp() + 17)
        except RateLimitedError as inner:
            raise DataError("batch bars fetch failed") from inner
    except DataError as outer:
        wrapped = outer
    assert rate_limit_reset(wrapped) == now.timestamp() + 17
    assert loop_backoff_seconds(9, 60.0, wrapped, now) == 17          # the reset, not 60 x 2^8
    far = RateLimitedError("429", reset_at=now.timestamp() + 3600)     # a reset an hour away: capped
    assert loop_backoff_seconds(1, 60.0, far, now) == MAX_BACKOFF_SECONDS
    past = RateLimitedError("429", reset_at=now.timestamp() - 5)       # already past: a short pause
    assert loop_backoff_seconds(1, 60.0, past, now) == 1.0
    assert [loop_backoff_seconds(n, 5.0, DataError("503"), now) for n in (1, 2, 3, 4, 5, 30)] == \
        [5.0, 10.0, 20.0, 40.0, 60.0, 60.0]
