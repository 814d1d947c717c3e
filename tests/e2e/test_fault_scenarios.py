"""End-to-end fault scenarios (issue 7, section 1): the failures known to hurt real trading bots.

Each test runs the real daemon in-process (Orchestrator + StateStore on a temporary directory +
the real agents + the real alpaca-py SDK) against the simulated Alpaca market on 127.0.0.1, on a
simulated clock. Faults are injected by the simulated server; nothing mocks the SDK. Every scenario
ends by checking (a) the broker's orders and positions, (b) the state database and (c) that no
client_order_id was ever turned into two orders.

The trading days and universes are chosen so that the seeded synthetic bars give the signals a
scenario needs; each test asserts that precondition first (`_require_signals`), so a change in the
synthetic data fails loudly instead of silently testing nothing.
"""

from __future__ import annotations

import math
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from agents.execution_agent import client_order_id
from core.domain.errors import DataError
from core.domain.loop_backoff import MAX_BACKOFF_SECONDS
from core.domain.market_calendar import NEW_YORK
from core.domain.models import OrderSpec, Side
from core.runtime.systemd_notify import SystemdNotifier
from tests.harness.clocks import ny
from tests.harness.market import BARS_PATH, ORDERS_PATH
from tests.harness.scenario import (
    SCENARIO_INSTANCE,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

# 2025-03-11, 10:00 New York: the decision session is 2025-03-10, where JNJ closes ~1.5 sd below
# its 20-day mean (an entry at ENTRY_Z=1.2) and SPY does not.
JNJ_DAY = ny(2025, 3, 11)
JNJ_DECISION = date(2025, 3, 10)
JNJ_CONFIG: dict[str, Any] = {"symbol_tiers": {"JNJ": "TIER3", "SPY": "TIER1"}, "entry_z": 1.2}
JNJ_BUY = client_order_id("zmr", JNJ_DECISION, "JNJ", Side.BUY, SCENARIO_INSTANCE)


def _require_signals(scn: Scenario, session: date, entries: Sequence[str], quiet: Sequence[str] = ()) -> None:
    """Precondition: `entries` are oversold at `session` under the scenario's ENTRY_Z, `quiet` are not."""
    entry_z = scn.config.entry_z
    z = scn.zscores(list(entries) + list(quiet), session)
    for symbol in entries:
        assert z[symbol] <= -entry_z, f"precondition: {symbol} z={z[symbol]:.2f} on {session} is not an entry"
    for symbol in quiet:
        assert z[symbol] > -entry_z, f"precondition: {symbol} z={z[symbol]:.2f} on {session} would be an entry"


def _sleep_then(seconds: float) -> Callable[[Any], Any]:
    def slow(payload: Any) -> Any:
        time.sleep(seconds)  # wall time: the client's 0.5 s timeout fires while the order already exists
        return payload

    return slow


# ================================================================================ 1
SUBMIT_FAULTS: dict[str, tuple[str, dict[str, Any]]] = {
    # The POST hangs before the exchange sees it and is processed only after the client gave up:
    # the lookup says "absent", the resend creates the order, the late original gets a 422.
    "hang_then_late_arrival": ("hang", {"seconds": 1.5}),
    # The exchange creates the order, then the answer never arrives in time (client timeout).
    "accepted_then_timeout": ("transform", {"fn": _sleep_then(1.0)}),
    "504_after_accept": ("504_after_accept", {}),
    "accept_then_drop": ("accept_then_drop", {}),
}


@pytest.mark.parametrize("case", list(SUBMIT_FAULTS))
def test_01_submit_times_out_or_504_after_the_broker_accepted(scenario: Callable[..., Scenario], case: str) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    daemon = scn.boot()
    kind, params = SUBMIT_FAULTS[case]
    scn.faults.inject(kind, method="POST", path_prefix=ORDERS_PATH, count=1, **params)
    mark = scn.log_mark()

    result = daemon.orchestrator.run_iteration()

    posts = scn.order_posts(mark)
    if case == "hang_then_late_arrival":
        # Wait (wall time) until the hung original has been processed by the exchange too.
        scn.wait_for(lambda: all(r.status is not None for r in scn.order_posts(mark)))
        posts = scn.order_posts(mark)
        if len(posts) == 2:  # the usual race: absent at the lookup, resent, the straggler got a 422
            assert sorted(r.status or 0 for r in posts) == [200, 422]
            hows = {"submitted", "duplicate_reconciled"}
        else:  # a slow machine: the straggler landed before the lookup, which found it
            hows = {"found_after_ambiguous"}
    elif case == "accepted_then_timeout":
        assert len(posts) in (1, 2)  # a second POST, if any, can only have met the 422 wall
        assert sorted(r.status or 0 for r in posts)[1:] in ([], [422])
        hows = {"found_after_ambiguous", "duplicate_reconciled"}
    else:
        assert len(posts) == 1, "an unclear submit must be looked up, not re-sent"
        hows = {"found_after_ambiguous"}
    lookups = scn.requests(method="GET", path_prefix="/v2/orders:by_client_order_id", since=mark)
    assert lookups, "the ambiguous outcome was not resolved by client_order_id"
    assert result.submitted == 1

    # (a) broker: exactly one order; (b) journal: SUBMITTED with the broker's id
    orders = scn.broker_orders()
    assert [o.client_order_id for o in orders] == [JNJ_BUY]
    intent = scn.intents()[JNJ_BUY]
    assert intent["state"] == "submitted" and intent["message"] in hows
    assert intent["broker_order_id"] == orders[0].id

    # the fill reaches the book once, however many times the order is looked at afterwards
    scn.settle(daemon)
    scn.settle(daemon)
    assert scn.sim.exchange.order_by_client_id(JNJ_BUY).status == "filled"  # type: ignore[union-attr]
    fills = [f for f in scn.fills() if f["client_order_id"] == JNJ_BUY]
    assert len(fills) == 1 and fills[0]["delta_qty"] == pytest.approx(orders[0].notional / fills[0]["price"], rel=1e-6)
    assert_book_matches_broker(scn, daemon.store)
    assert [it["status"] for it in scn.iterations()] == ["ok", "ok", "ok"]
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 2
class _Killed(BaseException):
    """The process died (SIGKILL, OOM, power): nothing after this point runs."""


class _DiesInSubmit:
    """The daemon's own gateway, except that the process dies inside the order submit:
    before the POST leaves (`sent=False`) or after the broker accepted it (`sent=True`)."""

    def __init__(self, gateway: Any, *, sent: bool) -> None:
        self._gateway = gateway
        self._sent = sent

    def __getattr__(self, name: str) -> Any:
        return getattr(self._gateway, name)

    def submit_order(self, spec: OrderSpec) -> Any:
        if self._sent:
            self._gateway.submit_order(spec)
        raise _Killed(spec.client_order_id)


@pytest.mark.parametrize("case", ["order_reached_broker", "order_never_sent", "stale_after_overnight"])
def test_02_killed_between_intent_and_submit_answer(scenario: Callable[..., Scenario], case: str) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    first = scn.boot(wrap_gateway=lambda gw: _DiesInSubmit(gw, sent=case == "order_reached_broker"))
    with pytest.raises(_Killed):
        first.orchestrator.run_iteration()
    scn.kill(first)
    # The intent was made durable before the POST: the crash left it PENDING.
    assert scn.intents()[JNJ_BUY]["state"] == "pending"
    assert scn.sim.exchange.orders_for_client_id(JNJ_BUY) == (1 if case == "order_reached_broker" else 0)

    if case == "stale_after_overnight":
        scn.advance_to(ny(2025, 3, 12, 10, 0))  # down overnight: the decision of 03-10 is stale now
    else:
        scn.clock.advance(30)
    mark = scn.log_mark()
    second = scn.boot()  # start-up reconciliation runs here

    posts = scn.order_posts(mark)
    intent = scn.intents()[JNJ_BUY]
    if case == "order_reached_broker":
        assert posts == [], "the order exists at the broker: nothing may be resubmitted"
        assert intent["state"] == "submitted" and intent["message"] == "found at start-up"
    elif case == "order_never_sent":
        assert len(posts) == 1, "a surely-absent intent of the current decision is submitted exactly once"
        assert intent["state"] == "submitted"
    else:
        assert posts == [], "a stale decision is never sent"
        assert intent["state"] == "abandoned"
        assert scn.sim.exchange.orders_for_client_id(JNJ_BUY) == 0

    # Later iterations never send the same decision again.
    scn.settle(second)
    scn.settle(second)
    jnj_orders = [o for o in scn.broker_orders() if o.symbol == "JNJ"]
    if case == "stale_after_overnight":
        # Only a fresh decision (session 03-11, a new id) may trade; the abandoned one never does.
        assert all(o.client_order_id != JNJ_BUY for o in jnj_orders)
    else:
        assert [o.client_order_id for o in jnj_orders] == [JNJ_BUY]
        assert jnj_orders[0].status == "filled"
        assert scn.intents()[JNJ_BUY]["state"] == "submitted"
    assert_book_matches_broker(scn, second.store)
    assert_no_duplicate_orders(scn, second.store)


# ================================================================================ 3
# AAPL is oversold at the close of 2025-01-22 (traded 01-23); HD is at the close of 01-23 (traded 01-24).
PAIR_CONFIG: dict[str, Any] = {"symbol_tiers": {"AAPL": "TIER3", "HD": "TIER3"}, "entry_z": 1.5}
PAIR_DAY1, PAIR_DAY2 = ny(2025, 1, 23), ny(2025, 1, 24)
PAIR_DECISION1, PAIR_DECISION2 = date(2025, 1, 22), date(2025, 1, 23)


def test_03_restart_with_open_positions_and_open_orders(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(PAIR_DAY1, **PAIR_CONFIG)
    _require_signals(scn, PAIR_DECISION1, ["AAPL"], ["HD"])
    _require_signals(scn, PAIR_DECISION2, ["HD"])
    first = scn.boot()
    first.orchestrator.run_iteration()
    scn.settle(first)
    assert set(scn.broker_positions()) == {"AAPL"}
    scn.advance_to(PAIR_DAY2)
    first.orchestrator.run_iteration()  # HD entry: accepted, not yet filled
    hd_buy = client_order_id("zmr", PAIR_DECISION2, "HD", Side.BUY, SCENARIO_INSTANCE)
    assert scn.sim.exchange.order_by_client_id(hd_buy).is_open  # type: ignore[union-attr]
    scn.kill(first)

    mark = scn.log_mark()
    second = scn.boot()  # reconciles: book AAPL == broker AAPL, HD order known and still open
    assert scn.order_posts(mark) == []
    assert [o.client_order_id for o in second.store.open_orders()] == [hd_buy]
    assert_book_matches_broker(scn, second.store)

    second.orchestrator.run_iteration()  # same minute: nothing new to do, nothing re-sent
    assert scn.order_posts(mark) == []
    scn.settle(second)  # HD fills after the restart ...
    scn.settle(second)  # ... and is applied exactly once
    assert scn.order_posts(mark) == []

    assert {o.client_order_id: o.status for o in scn.broker_orders()} == {
        client_order_id("zmr", PAIR_DECISION1, "AAPL", Side.BUY, SCENARIO_INSTANCE): "filled", hd_buy: "filled"}
    assert set(scn.broker_positions()) == {"AAPL", "HD"}
    hd_fills = [f for f in scn.fills() if f["symbol"] == "HD"]
    assert len(hd_fills) == 1
    assert hd_fills[0]["cumulative_qty"] == pytest.approx(scn.broker_positions()["HD"])
    assert second.store.open_orders() == []
    assert {i["state"] for i in scn.intents().values()} == {"submitted"}
    assert_book_matches_broker(scn, second.store)
    assert_no_duplicate_orders(scn, second.store)


# ================================================================================ 4
def test_04_position_closed_by_hand_while_the_daemon_was_down(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    first = scn.boot()
    first.orchestrator.run_iteration()
    scn.settle(first)
    held = scn.broker_positions()["JNJ"]
    assert first.store.book()["JNJ"].qty == pytest.approx(held)
    scn.kill(first)

    scn.clock.advance(3600)
    scn.sim.exchange.close_position_externally("JNJ")  # someone sold it in the broker's web app
    mark = scn.log_mark()
    with capture_logs() as logs:
        second = scn.boot()
        second.orchestrator.run_iteration()
        scn.settle(second)

    assert scn.order_posts(mark) == [], "the daemon must not sell (or re-buy) what is already gone"
    assert any(e["event"] == "position_closed_externally" and e["symbol"] == "JNJ" for e in logs)
    assert scn.broker_positions() == {}
    assert second.store.book() == {}
    closed = second.store.closed_positions("JNJ")
    assert len(closed) == 1 and closed[0].reason == "closed outside the daemon" and closed[0].exit_price is None
    assert closed[0].qty == pytest.approx(held)
    daemon_orders = scn.broker_orders()
    assert [(o.client_order_id, o.side, o.status) for o in daemon_orders] == [(JNJ_BUY, "buy", "filled")]
    manual = scn.broker_orders(source="external")
    assert [(o.side, o.status) for o in manual] == [("sell", "filled")]
    assert_no_duplicate_orders(scn, second.store)


# ================================================================================ 5
def test_05_partial_fill_then_expired_at_the_close(scenario: Callable[..., Scenario]) -> None:
    # Equal weight over two slots: each entry is ~half the equity, and TIER3 may hold 75% of it.
    # A full AAPL fill plus the HD entry would exceed the tier (100% > 75%); the partial fill does not.
    scn = scenario(PAIR_DAY1, **PAIR_CONFIG, enable_tiered_allocation=False, max_open_positions=2,
                   tier1_allocation=0.25, tier2_allocation=0.0, tier3_allocation=0.75,
                   loop_interval_seconds=900)
    _require_signals(scn, PAIR_DECISION1, ["AAPL"], ["HD"])
    _require_signals(scn, PAIR_DECISION2, ["HD"])
    aapl_buy = client_order_id("zmr", PAIR_DECISION1, "AAPL", Side.BUY, SCENARIO_INSTANCE)
    hd_buy = client_order_id("zmr", PAIR_DECISION2, "HD", Side.BUY, SCENARIO_INSTANCE)
    scn.sim.exchange.set_partial_fill("AAPL", 0.4)
    daemon = scn.boot()

    daemon.orchestrator.run_iteration()
    intended = scn.sim.exchange.order_by_client_id(aapl_buy).notional  # type: ignore[union-attr]
    assert intended is not None
    scn.settle(daemon)
    scn.settle(daemon, minutes=30)  # still partially filled: the same cumulative qty adds nothing
    order = scn.sim.exchange.order_by_client_id(aapl_buy)
    assert order is not None and order.status == "partially_filled"
    filled = order.filled_qty
    assert 0 < filled * order.filled_avg_price < 0.5 * intended  # type: ignore[operator]
    assert daemon.store.book()["AAPL"].qty == pytest.approx(filled)

    # The loop sleeps through the close (the day order expires at 16:00) into the next session.
    daemon.orchestrator.run(until=PAIR_DAY2.replace(hour=9, minute=50))

    order = scn.sim.exchange.order_by_client_id(aapl_buy)
    close = scn.calendar.session_close(PAIR_DECISION2)  # the close of 01-23, the day of the entry
    assert order is not None and order.status == "expired" and order.expired_at == close
    assert order.filled_qty == filled
    stored = daemon.store.order_by_client_id(aapl_buy)
    assert stored is not None and stored.status.value == "expired" and stored.filled_qty == pytest.approx(filled)
    # the position is exactly the filled quantity, at the broker and in the book
    assert scn.broker_positions()["AAPL"] == pytest.approx(filled)
    assert daemon.store.book()["AAPL"].qty == pytest.approx(filled)
    # fill deltas come from the broker's cumulative quantity: one row, however often it was read
    aapl_fills = [f for f in scn.fills() if f["symbol"] == "AAPL"]
    assert len(aapl_fills) == 1
    assert aapl_fills[0]["delta_qty"] == pytest.approx(filled)
    assert aapl_fills[0]["cumulative_qty"] == pytest.approx(filled)

    # The next risk pass sized its caps from the actual AAPL position, not the intended entry:
    # HD (~half the equity) was approved because 40% of AAPL + HD fits in TIER3's 75%.
    hd = scn.sim.exchange.order_by_client_id(hd_buy)
    assert hd is not None and hd.notional is not None and hd.status == "filled"
    equity = scn.sim.exchange.account().equity
    budget = 0.75 * equity
    assert intended + hd.notional > budget, "precondition: a full AAPL fill would have left no room for HD"
    assert filled * order.filled_avg_price + hd.notional <= budget  # type: ignore[operator]
    assert {i["client_order_id"]: i["state"] for i in scn.intents().values()} == {
        aapl_buy: "submitted", hd_buy: "submitted"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 6
# 2025-03-04: AMZN, JNJ and META all closed far below their means on 03-03.
BARS_DAY = ny(2025, 3, 4)
BARS_DECISION = date(2025, 3, 3)


def test_06_stale_or_missing_bars_exclude_only_that_symbol(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(BARS_DAY, symbol_tiers={"AMZN": "TIER3", "JNJ": "TIER3", "META": "TIER3"}, entry_z=1.5)
    _require_signals(scn, BARS_DECISION, ["AMZN", "JNJ", "META"])

    def degrade(payload: dict[str, Any]) -> dict[str, Any]:
        bars = payload["bars"]
        bars.pop("AMZN", None)                       # missing from the answer
        if "JNJ" in bars:
            bars["JNJ"] = bars["JNJ"][:-3]           # the last bar is 02-27: stale for 03-04
        return payload

    scn.faults.inject("transform", method="GET", path_prefix=BARS_PATH, count=None, fn=degrade)
    daemon = scn.boot()
    with capture_logs() as logs:
        result = daemon.orchestrator.run_iteration()

    assert set(result.excluded) == {"AMZN", "JNJ"}
    assert "missing from the batch answer" in result.excluded["AMZN"]
    assert "stale" in result.excluded["JNJ"]
    logged = {e["symbol"]: e["reason"] for e in logs if e["event"] == "symbol_excluded"}
    assert logged == result.excluded
    assert result.focus == ["AMZN", "JNJ", "META"]  # the universe did not shrink; two members were excluded
    assert [o.symbol for o in scn.broker_orders()] == ["META"]
    assert {i["symbol"] for i in scn.intents().values()} == {"META"}
    assert scn.iterations()[-1]["status"] == "ok"

    # Good data again: the excluded symbols are evaluated afresh (nothing sticky), META is not re-sent.
    scn.faults.clear()
    result = scn.settle(daemon)
    assert result.excluded == {}
    assert sorted(o.symbol for o in scn.broker_orders()) == ["AMZN", "JNJ", "META"]
    scn.settle(daemon)
    assert set(scn.broker_positions()) == {"AMZN", "JNJ", "META"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 7
CALENDAR_CASES: dict[str, dict[str, Any]] = {
    # Monday after the spring DST change: the open is 13:30 UTC (it was 14:30 UTC the week before).
    "dst_start_2025_03_10": {"day": date(2025, 3, 10), "decision": date(2025, 3, 7), "entries": ["JPM"],
                             "symbols": {"JPM": "TIER3", "SPY": "TIER1"}, "entry_z": 1.0,
                             "until": ny(2025, 3, 10, 16, 30), "first_utc": (13, 30)},
    # Monday after the autumn DST change: the open is 14:30 UTC (it was 13:30 UTC the week before).
    "dst_end_2025_11_03": {"day": date(2025, 11, 3), "decision": date(2025, 10, 31), "entries": ["XOM"],
                           "symbols": {"XOM": "TIER3", "SPY": "TIER1"}, "entry_z": 1.5,
                           "until": ny(2025, 11, 3, 16, 30), "first_utc": (14, 30)},
    # Independence Day: no session; the next open is Monday 07-07 09:30, deciding on 07-03's bars.
    "holiday_2025_07_04": {"day": date(2025, 7, 4), "decision": date(2025, 7, 3), "entries": ["META"],
                           "symbols": {"META": "TIER3", "SPY": "TIER1"}, "entry_z": 2.0,
                           "until": ny(2025, 7, 7, 10, 0), "first_utc": (13, 30)},
    # The day after Thanksgiving closes at 13:00; LLY's entry fills only partly and expires then.
    "early_close_2025_11_28": {"day": date(2025, 11, 28), "decision": date(2025, 11, 26), "entries": ["LLY", "MA"],
                               "symbols": {"LLY": "TIER3", "MA": "TIER3"}, "entry_z": 1.45,
                               "until": ny(2025, 12, 1, 9, 50), "first_utc": (14, 30), "partial": "LLY"},
}


@pytest.mark.parametrize("case", list(CALENDAR_CASES))
def test_07_dst_days_holiday_and_early_close(scenario: Callable[..., Scenario], case: str) -> None:
    spec = CALENDAR_CASES[case]
    day: date = spec["day"]
    start = ny(day.year, day.month, day.day, 9, 0)
    scn = scenario(start, symbol_tiers=spec["symbols"], entry_z=spec["entry_z"], loop_interval_seconds=900)
    _require_signals(scn, spec["decision"], spec["entries"])
    if "partial" in spec:
        scn.sim.exchange.set_partial_fill(spec["partial"], 0.4)
    cal = scn.calendar
    daemon = scn.boot()

    daemon.orchestrator.run(until=spec["until"])

    iterations = scn.iterations()
    posts = scn.order_posts()
    assert iterations and posts
    # The loop worked only while the broker's clock said open, and sent orders only then.
    for moment in [it["started_at"] for it in iterations] + [r.sim_time for r in posts]:
        assert cal.is_open(moment), f"activity at {moment.astimezone(NEW_YORK)} while the market was closed"
    assert {it["status"] for it in iterations} == {"ok"}
    # While closed it slept towards the next open in bounded steps, never in a busy loop.
    closed_sleeps = [s for at, s in scn.clock.sleeps if not cal.is_open(at)]
    assert closed_sleeps and max(closed_sleeps) <= 300.0 and min(closed_sleeps) >= 1.0
    first = iterations[0]["started_at"].astimezone(UTC)
    trading_day = day if cal.is_session(day) else cal.next_session(day)
    assert first == cal.session_open(trading_day)
    assert (first.hour, first.minute) == spec["first_utc"]
    assert all(r.sim_time == first for r in posts), "the entries go at the open, once"

    orders = {o.symbol: o for o in scn.broker_orders()}
    assert sorted(orders) == sorted(spec["entries"])
    for symbol, order in orders.items():
        assert order.client_order_id == client_order_id("zmr", spec["decision"], symbol, Side.BUY, SCENARIO_INSTANCE)
        assert order.time_in_force == "day"

    if case.startswith("holiday"):
        assert not cal.is_session(day)
        assert all(it["started_at"].astimezone(NEW_YORK).date() != day for it in iterations)
        on_holiday = [f"{r.method} {r.path}" for r in scn.requests() if r.sim_time.astimezone(NEW_YORK).date() == day]
        # start-up (recent orders for another instance's, then the reconciliation's positions and open
        # orders), then ONE clock read cached until the next open: no bars, no orders
        assert sorted(on_holiday) == ["GET /v2/clock", "GET /v2/orders", "GET /v2/orders", "GET /v2/positions"]
    if case.startswith("early_close"):
        close = cal.session_close(day)
        assert close.astimezone(NEW_YORK).hour == 13
        on_day = [it["started_at"] for it in iterations if it["started_at"].astimezone(NEW_YORK).date() == day]
        assert on_day and max(on_day) < close, "no iteration after the 13:00 close"
        assert all(r.sim_time < close for r in posts), "no order after 13:00 ET"
        partial = orders[spec["partial"]]
        assert partial.status == "expired" and partial.expired_at == close, "day orders expire at 13:00"
        stored = daemon.store.order_by_client_id(partial.client_order_id)
        assert stored is not None and stored.status.value == "expired"
        assert scn.broker_positions()[partial.symbol] == pytest.approx(partial.filled_qty)
        assert orders["MA"].status == "filled"
    else:
        assert {o.status for o in orders.values()} == {"filled"}
    assert {i["state"] for i in scn.intents().values()} == {"submitted"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 8
def test_08_429_burst_backoff_follows_rate_limit_reset_and_is_bounded(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    daemon = scn.boot()
    max_wait = 65.0  # core.broker.rate_limiter.MAX_BLOCK_SECONDS

    # A burst of three 429s on the batch fetch, each saying "retry in 7 s".
    scn.faults.inject("429", method="GET", path_prefix=BARS_PATH, count=3, reset_in=7)
    mark, t0 = scn.log_mark(), scn.clock.now()
    result = daemon.orchestrator.run_iteration()
    bars = scn.requests(path_prefix=BARS_PATH, since=mark)
    assert [r.status for r in bars] == [429, 429, 429, 200]
    for refused, retry in zip(bars, bars[1:], strict=False):
        reset = math.ceil(refused.sim_time.timestamp() + 7)   # the X-RateLimit-Reset it was sent
        waited = retry.sim_time.timestamp()
        assert reset <= waited <= reset + 0.5, "the retry must go right at X-RateLimit-Reset, not before or long after"
    elapsed = (scn.clock.now() - t0).total_seconds()
    assert 21.0 <= elapsed <= 3 * 8.0
    assert result.excluded == {} and result.submitted == 1  # the whole universe, after the wait

    # A reset an hour away is not believed: the wait is capped, then the fetch goes again.
    scn.clock.advance(60)
    scn.faults.inject("429", method="GET", path_prefix=BARS_PATH, count=1, reset_in=3600)
    mark, t0 = scn.log_mark(), scn.clock.now()
    daemon.orchestrator.run_iteration()
    bars = scn.requests(path_prefix=BARS_PATH, since=mark)
    assert [r.status for r in bars] == [429, 200]
    assert (bars[1].sim_time - bars[0].sim_time).total_seconds() <= max_wait + 0.5
    assert (scn.clock.now() - t0).total_seconds() <= max_wait + 5

    assert scn.sim.server.rate_limited_count == 0, "the daemon itself never caused a 429"
    assert {it["status"] for it in scn.iterations()} == {"ok"}
    assert [o.client_order_id for o in scn.broker_orders()] == [JNJ_BUY]
    assert scn.intents()[JNJ_BUY]["state"] == "submitted"
    scn.settle(daemon)
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def _filler_symbols(n: int) -> list[str]:
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    return [f"Z{a}{b}" for a in letters for b in letters][:n]


def test_08_incomplete_batch_is_a_failed_iteration_not_a_smaller_universe(
        scenario: Callable[..., Scenario]) -> None:
    # 1 + 259 symbols x ~41 bars > 10,000: the batch answer needs two pages. JNJ is on page one.
    universe = {"JNJ": "TIER3", **{s: "TIER3" for s in _filler_symbols(259)}}
    scn = scenario(JNJ_DAY, symbol_tiers=universe, entry_z=1.2, max_open_positions=1, max_get_retries=2)
    _require_signals(scn, JNJ_DECISION, ["JNJ"])
    budget = 1 + scn.config.max_get_retries
    daemon = scn.boot()

    def then_rate_limit(payload: dict[str, Any]) -> dict[str, Any]:
        assert payload.get("next_page_token"), "precondition: the answer spans more than one page"
        # Page one goes through; from page two on, the API answers 429 until the retry budget is spent.
        scn.faults.inject("429", method="GET", path_prefix=BARS_PATH, count=budget, reset_in=2)
        return payload

    scn.faults.inject("transform", method="GET", path_prefix=BARS_PATH, count=1, fn=then_rate_limit)
    mark = scn.log_mark()
    with capture_logs() as logs:
        daemon.orchestrator.run(max_iterations=1, until=JNJ_DAY + timedelta(minutes=30))

    # Iteration 1: page one arrived, page two never did -> a failed iteration, nothing decided.
    failed, recovered = scn.iterations()
    assert failed["status"] == "error" and "batch bars fetch" in failed["message"]
    bars = scn.requests(path_prefix=BARS_PATH, since=mark)
    assert [r.status for r in bars] == [200] + [429] * budget + [200, 200]
    posts = scn.order_posts(mark)
    assert posts and all(r.sim_time > bars[budget].sim_time for r in posts), \
        "nothing may be decided from page one alone"
    assert any(e["event"] == "iteration_failed" and e["kind"] == DataError.__name__ for e in logs)
    # Iteration 2 (after the loop's backoff): the full batch, the whole universe, no exclusions.
    assert recovered["status"] == "ok"
    done = [e for e in logs if e["event"] == "iteration_complete"]
    assert len(done) == 1 and done[0]["excluded"] == 0 and len(done[0]["focus_symbols"]) == len(universe)
    # The loop waited for the broker's rate-limit reset (2 s ahead), not a loop interval or longer.
    assert 0 < (recovered["started_at"] - failed["started_at"]).total_seconds() < scn.config.loop_interval_seconds
    orders = scn.broker_orders()
    assert len(orders) == 1 and orders[0].client_order_id.startswith(f"zmr-{SCENARIO_INSTANCE}-20250310-")
    assert [i["state"] for i in scn.intents().values()] == ["submitted"]
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 9
# 2025-05-08: COST (~$870, fractionable) and AVGO (~$1,325, not fractionable) both closed far below
# their means on 05-07. Two TIER3 slots: each position may be at most $600, under one share of either.
EXPENSIVE_DAY = ny(2025, 5, 8)
EXPENSIVE_DECISION = date(2025, 5, 7)


def test_09_expensive_stock_below_one_share_fractionable_and_not(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(EXPENSIVE_DAY, symbol_tiers={"COST": "TIER3", "AVGO": "TIER3"}, entry_z=1.5)
    _require_signals(scn, EXPENSIVE_DECISION, ["COST", "AVGO"])
    flags = {s: scn.sim.exchange.set_asset(s).fractionable for s in ("COST", "AVGO")}
    assert flags == {"COST": True, "AVGO": False}
    daemon = scn.boot()
    with capture_logs() as logs:
        result = daemon.orchestrator.run_iteration()

    prices = {s: scn.sim.bars.price_at(s, scn.clock.now()) for s in ("COST", "AVGO")}
    assert result.signals == 2 and result.submitted == 1 and result.rejected == 1
    # AVGO: whole shares only, and $600 buys none at ~$1,300: a reasoned skip, never a silent one.
    skipped = [e for e in logs if e["event"] == "risk_rejected" and e["symbol"] == "AVGO"]
    assert len(skipped) == 1 and "zero-share trap" in skipped[0]["reason"]
    assert "AVGO" not in {o.symbol for o in scn.broker_orders()}
    # COST: fractional, so the $600 goes as a notional market DAY order.
    (cost,) = scn.broker_orders()
    assert cost.symbol == "COST" and cost.qty is None and cost.type == "market" and cost.time_in_force == "day"
    assert cost.notional is not None and 10.0 <= cost.notional <= 600.0 < prices["COST"]
    intents = scn.intents()
    assert list(intents) == [client_order_id("zmr", EXPENSIVE_DECISION, "COST", Side.BUY, SCENARIO_INSTANCE)]
    intent = intents[cost.client_order_id]
    assert intent["state"] == "submitted" and intent["notional"] == cost.notional and intent["qty"] is None

    scn.settle(daemon)
    held = scn.broker_positions()
    assert list(held) == ["COST"] and 0 < held["COST"] < 1
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 10
def _reserve_cash(scn: Scenario, amount: float, cid: str) -> None:
    """Someone else on the account (the web app, another bot) places a buy limit far below the market:
    it stays open all day and holds back `amount` of buying power."""
    scn.sim.exchange.submit_order({"symbol": "SPY", "side": "buy", "type": "limit", "time_in_force": "day",
                                   "qty": str(int(amount // 100)), "limit_price": "100", "client_order_id": cid})


@pytest.mark.parametrize("case", ["risk_sees_reserved_cash", "broker_rejects_403"])
def test_10_insufficient_buying_power_because_open_buys_reserve_cash(
        scenario: Callable[..., Scenario], case: str) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    daemon = scn.boot()
    if case == "risk_sees_reserved_cash":
        _reserve_cash(scn, 9_500, "manual-reserve")
    else:
        # Account and open orders are read with cash to spare; the reservation (another client) lands
        # just after, while the asset flags are read: risk passes and the broker refuses the order.
        def reserve_meanwhile(payload: Any) -> Any:
            _reserve_cash(scn, 9_500, "manual-reserve")
            return payload

        scn.faults.inject("transform", method="GET", path_prefix="/v2/assets/JNJ", count=1, fn=reserve_meanwhile)
    account = scn.sim.exchange.account
    mark = scn.log_mark()
    with capture_logs() as logs:
        result = daemon.orchestrator.run_iteration()
        for _ in range(2):
            scn.settle(daemon)
    assert account().cash == 10_000 and account().buying_power == pytest.approx(500.0)
    assert result.submitted == 0 and result.rejected == 1
    assert [o.client_order_id for o in scn.broker_orders()] == ["manual-reserve"]

    if case == "risk_sees_reserved_cash":
        rejected = [e for e in logs if e["event"] == "risk_rejected" and e["symbol"] == "JNJ"]
        assert rejected and all("insufficient buying power" in e["reason"] for e in rejected)
        # Refused before the journal: no intent, no POST, nothing at the broker.
        assert scn.order_posts(mark) == [] and scn.intents() == {}
    else:
        posts = scn.order_posts(mark)
        assert len(posts) == 1 and posts[0].status == 403, "a definitive rejection is never retried"
        intent = scn.intents()[JNJ_BUY]
        assert intent["state"] == "rejected" and "insufficient buying power" in intent["message"]
        assert "40310000" in intent["message"]
        assert any(e["event"] == "order_rejected" and e["client_order_id"] == JNJ_BUY for e in logs)
        # Not even when the cash comes back: the decision was answered, REJECTED is final.
        scn.sim.exchange.cancel_order(scn.sim.exchange.order_by_client_id("manual-reserve").id)  # type: ignore[union-attr]
        scn.settle(daemon)
        assert len(scn.order_posts(mark)) == 1 and scn.sim.exchange.orders_for_client_id(JNJ_BUY) == 0
        assert scn.intents()[JNJ_BUY]["state"] == "rejected"
    assert {it["status"] for it in scn.iterations()} == {"ok"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


# ================================================================================ 11
class _RecordingNotifier(SystemdNotifier):
    """The real sd_notify client on a real datagram socket, noting the simulated time of each message."""

    def __init__(self, socket_path: str, clock: Any) -> None:
        super().__init__(socket_path)
        self.clock = clock
        self.log: list[tuple[datetime, str]] = []

    def notify(self, message: str) -> bool:
        self.log.append((self.clock.now(), message))
        return super().notify(message)


class _ServiceManager:
    """A stand-in for systemd's end of $NOTIFY_SOCKET: a real AF_UNIX datagram socket, read by a thread."""

    def __init__(self, *, reading: bool = True) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp"))  # AF_UNIX paths must stay short
        self.path = str(self.dir / "notify")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.05)
        self.datagrams: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True) if reading else None
        if self._thread is not None:
            self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> list[str]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self.sock.close()
        shutil.rmtree(self.dir, ignore_errors=True)
        return self.datagrams


def test_11_network_down_for_ten_simulated_minutes(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG, loop_interval_seconds=30)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    manager = _ServiceManager()
    notifier = _RecordingNotifier(manager.path, scn.clock)
    try:
        daemon = scn.boot(notifier=notifier)
        t0 = scn.clock.now()
        back = t0 + timedelta(minutes=10)
        assert daemon.orchestrator.market_clock.is_open(t0)  # cached: the outage hits the iteration itself
        scn.faults.inject("drop", count=None)             # every request, every path: the network is gone
        scn.clock.at(back, scn.faults.clear)               # ... for 10 simulated minutes
        mark = scn.log_mark()
        wall0 = time.perf_counter()
        daemon.orchestrator.run(until=t0 + timedelta(minutes=30))
        wall = time.perf_counter() - wall0
        time.sleep(0.1)  # let the reader drain the last datagrams
    finally:
        notifier.close()
        datagrams = manager.close()

    # No busy loop: about one attempt a minute, each a bounded burst of retries, spaced by a backoff that
    # grows from the loop interval to its 60 s cap (so the loop is back within a minute of the network).
    dropped = [r for r in scn.requests(since=mark) if r.fault == "drop"]
    per_attempt = 1 + scn.config.max_get_retries
    attempts: list[list[datetime]] = []
    for r in dropped:
        if attempts and (r.sim_time - attempts[-1][-1]).total_seconds() < 5:
            attempts[-1].append(r.sim_time)
        else:
            attempts.append([r.sim_time])
    assert 8 <= len(attempts) <= 12 and all(len(a) <= per_attempt for a in attempts)
    assert len(dropped) <= 12 * per_attempt
    gaps = [(b[0] - a[-1]).total_seconds() for a, b in zip(attempts, attempts[1:], strict=False)]
    assert all(later >= earlier for earlier, later in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[0] >= scn.config.loop_interval_seconds and max(gaps) <= MAX_BACKOFF_SECONDS + 1, gaps
    assert all(r.sim_time < back for r in dropped)
    assert wall < 10

    # The first attempt failed inside the iteration (recorded); later ones already at the clock read.
    iterations = scn.iterations()
    failed = [it for it in iterations if it["status"] == "error"]
    assert len(failed) == 1 and "batch bars fetch" in failed[0]["message"] and failed[0]["started_at"] < back
    iterations = [it for it in iterations if it["status"] == "ok"]
    # No watchdog ping while stalled; pings again once iterations succeed.
    first_ok = iterations[0]["started_at"]
    assert back <= first_ok <= back + timedelta(seconds=MAX_BACKOFF_SECONDS + 1)
    pings = [at for at, message in notifier.log if message == "WATCHDOG=1"]
    assert not [at for at in pings if t0 <= at < first_ok], "the watchdog was fed while nothing worked"
    assert len([at for at in pings if at >= first_ok]) == len(iterations)
    assert notifier.sent["WATCHDOG"] == len(pings) == datagrams.count("WATCHDOG=1")
    assert datagrams[0] == "READY=1" and datagrams[-1] == "STOPPING=1"
    assert sum(notifier.attempted.values()) == sum(notifier.sent.values()) == len(datagrams)

    # Recovery: the entry that was due all along goes out once the network is back, exactly once.
    assert len(iterations) >= 10
    (order,) = scn.broker_orders()
    assert order.client_order_id == JNJ_BUY and order.created_at >= back and order.status == "filled"
    assert scn.intents()[JNJ_BUY]["state"] == "submitted"
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)


def test_11_a_lagging_service_manager_never_blocks_the_loop() -> None:
    """Found by scenario 11: with systemd's queue full, a blocking sd_notify send hung the loop."""
    manager = _ServiceManager(reading=False)
    notifier = SystemdNotifier(manager.path)
    try:
        wall0 = time.perf_counter()
        results = [notifier.watchdog() for _ in range(200)]  # far beyond the socket's queue
        assert time.perf_counter() - wall0 < 2.0
        assert results[0] is True and results[-1] is False
        assert notifier.attempted["WATCHDOG"] == 200 and 0 < notifier.sent["WATCHDOG"] < 200
    finally:
        notifier.close()
        manager.close()


# ================================================================================ 12
def test_12_server_hangs_client_times_out_loop_continues(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG, request_timeout_seconds=0.5, max_get_retries=1)
    _require_signals(scn, JNJ_DECISION, ["JNJ"], ["SPY"])
    daemon = scn.boot()
    hang_s = 3.0
    budget = 1 + scn.config.max_get_retries
    scn.faults.inject("hang", method="GET", path_prefix=BARS_PATH, count=budget, seconds=hang_s)
    mark = scn.log_mark()
    wall0 = time.perf_counter()
    daemon.orchestrator.run(max_iterations=1, until=JNJ_DAY + timedelta(minutes=30))
    wall = time.perf_counter() - wall0

    # Each hung request cost the client its 0.5 s timeout, not the server's 3 s hang.
    assert wall < hang_s
    hung = [r for r in scn.requests(path_prefix=BARS_PATH, since=mark) if r.fault == "hang"]
    assert len(hung) == budget
    failed, ok = scn.iterations()
    assert failed["status"] == "error" and "no answer within 0.5s" in failed["message"]
    assert ok["status"] == "ok"
    assert (ok["started_at"] - failed["started_at"]).total_seconds() >= scn.config.loop_interval_seconds
    (order,) = scn.broker_orders()
    assert order.client_order_id == JNJ_BUY
    assert scn.intents()[JNJ_BUY]["state"] == "submitted"
    scn.settle(daemon)
    assert scn.broker_positions().keys() == {"JNJ"}
    assert_book_matches_broker(scn, daemon.store)
    assert_no_duplicate_orders(scn, daemon.store)
