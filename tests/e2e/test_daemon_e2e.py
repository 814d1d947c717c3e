"""End-to-end tests of the daemon against the simulated market (issue 5, sections 5 and 6).

Everything runs for real: the orchestrator, the agents, the SQLite state store and the unchanged
alpaca-py SDK, talking HTTP to the simulated Alpaca server on 127.0.0.1. Nothing is mocked.

The checks every scenario shares:
- no duplicate orders: every client_order_id was used at most once at the broker;
- no lost intents: every broker order of this strategy ("zmr-") has an intent in the state DB;
- the daemon's book (StateStore.book()) equals the broker's positions once the dust has settled.

The kill -9 test runs the daemon in a real child process (tests/harness/daemon_child.py) that shares the
simulated clock with this process through the server's /_sim/ control endpoints.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from config.settings import AppConfig
from config.universe import BASELINE_SYMBOLS
from core.broker.factory import SIM_BANNER, SIM_BANNER_FORCED
from core.daily_scan import scan
from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.domain.ports import IntentState
from core.runtime.process_lock import StateDirLock
from core.runtime.systemd_notify import SystemdNotifier
from core.sim import SimMarket
from core.state.store import DAEMON_EXIT_REASON, EXTERNAL_CLOSE_REASON, StateStore
from tests.harness import assertions
from tests.harness.assertions import assert_no_duplicate_orders
from tests.harness.clocks import ny
from tests.harness.config import REPO_ROOT, clean_env, make_config
from tests.harness.daemon import Daemon
from tests.harness.logs import events
from tests.harness.market import broker_orders, count_order_posts
from tests.harness.state import StateDb

CAL = get_market_calendar()
PREFIX = "zmr-"
QTY_TOL = 1e-6
INTERVAL = 900.0  # loop interval in simulated seconds: 26 iterations per regular session


# ================================================================================ helpers
def e2e_config(tmp_path: Path, **overrides: Any) -> AppConfig:
    """A config that trades often: entries at |z| >= 1 over the whole universe, exits after 2 sessions."""
    settings: dict[str, Any] = {
        "loop_interval_seconds": INTERVAL, "entry_z": 1.0, "max_holding_sessions": 2, "use_scanner": False,
        "request_timeout_seconds": 5.0, "retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 1.0,
    }
    settings.update(overrides)
    return make_config(tmp_path, **settings)


def strategy_orders(sim: SimMarket) -> list[Any]:
    return broker_orders(sim, source=None, prefix=PREFIX)


def assert_no_lost_intents(sim: SimMarket, store: StateStore) -> None:
    assertions.assert_no_lost_intents(sim, store, PREFIX)


def assert_book_matches_broker(store: StateStore, sim: SimMarket) -> None:
    assertions.assert_book_matches_broker(sim, store)


def iteration_rows(store: StateStore) -> list[tuple[int, datetime, str]]:
    return [(int(row["n"]), row["started_at"], str(row["status"])) for row in StateDb(store.state_dir).iterations()]


def assert_iterations_within_sessions(store: StateStore) -> dict[date, list[datetime]]:
    """Every iteration started while the market was open; returns iteration times by session."""
    by_session: dict[date, list[datetime]] = {}
    for n, started, status in iteration_rows(store):
        day = started.astimezone(NEW_YORK).date()
        assert status == "ok", (n, status)
        assert CAL.is_session(day), f"iteration {n} at {started} on a non-session day"
        assert CAL.session_open(day) <= started < CAL.session_close(day), (
            f"iteration {n} at {started.astimezone(NEW_YORK)} outside {day}'s "
            f"{CAL.session_open(day).astimezone(NEW_YORK):%H:%M}-{CAL.session_close(day).astimezone(NEW_YORK):%H:%M}")
        by_session.setdefault(day, []).append(started)
    return by_session


def scanner_runs(buffer: io.StringIO) -> list[datetime]:
    return [datetime.fromisoformat(e["at"]) for e in events(buffer, "scheduled_task_start") if e["task"] == "scanner"]


# ================================================================================ 1. multi-session run
def test_multi_session_run_trades_and_keeps_the_book_equal_to_the_broker(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket],
        daemons: Callable[..., Daemon]) -> None:
    sim = markets(ny(2025, 6, 2, 9, 0))
    config = e2e_config(tmp_path, use_scanner=True, max_holding_sessions=1)
    daemon = daemons(sim, config, scanner=True)
    scan(config, daemon.gateway, sim.clock, CAL)  # as if the previous session's 16:05 scan had run
    daemon.orchestrator.startup()
    sessions = CAL.sessions_between(date(2025, 6, 2), date(2025, 6, 9))
    assert len(sessions) == 6

    ran = daemon.orchestrator.run(until=ny(2025, 6, 9, 16, 30))

    # Iterations: only while open, every 15 simulated minutes from the open (26 per session).
    by_session = assert_iterations_within_sessions(daemon.store)
    assert sorted(by_session) == sessions
    for day, times in by_session.items():
        assert len(times) == 26, day
        assert times[0] == CAL.session_open(day)
    assert ran == 26 * len(sessions) == daemon.store.next_iteration_number() - 1

    # One iteration_complete per iteration, with every field the issue asks for.
    completed = events(logbuf, "iteration_complete")
    assert [e["iteration"] for e in completed] == list(range(1, ran + 1))
    for event in completed:
        for name in ("iteration", "focus_symbols", "requests", "signals", "orders_submitted", "orders_rejected",
                     "duration_s"):
            assert name in event, name
        assert set(BASELINE_SYMBOLS) <= set(event["focus_symbols"])
        assert event["requests"].get("data", 0) >= 1 and event["requests"].get("trading", 0) >= 1
        assert event["duration_s"] >= 0
    focused: set[str] = set()
    for event in completed:
        focused |= set(event["focus_symbols"])
    assert events(logbuf, "candidates_fallback") == []

    # The scanner ran at 16:05 New York on each session and wrote today's candidates.
    runs = scanner_runs(logbuf)
    assert [r.astimezone(NEW_YORK).date() for r in runs] == sessions
    assert all((r.astimezone(NEW_YORK).hour, r.astimezone(NEW_YORK).minute) == (16, 5) for r in runs)
    candidates = json.loads(Path(config.candidates_path).read_text())
    assert candidates["as_of"] == "2025-06-09" and candidates["universe_size"] == len(config.symbols)

    # Orders were placed and filled, entries and exits, each exactly once.
    orders = strategy_orders(sim)
    assert len(orders) == len(sim.exchange.all_orders())
    buys = [o for o in orders if o.side == "buy" and o.status == "filled"]
    sells = [o for o in orders if o.side == "sell" and o.status == "filled"]
    assert len(buys) >= 3 and len(sells) >= 2, [(o.client_order_id, o.status) for o in orders]
    assert sum(e["orders_submitted"] for e in completed) == len(orders) == count_order_posts(sim)
    assert_no_duplicate_orders(sim)
    assert_no_lost_intents(sim, daemon.store)
    for order in orders:
        intent = daemon.store.get_intent(order.client_order_id)
        assert intent is not None and intent.state == IntentState.SUBMITTED
        stored = daemon.store.order_by_client_id(order.client_order_id)
        assert stored is not None and stored.status.value == order.status
        assert stored.filled_qty == pytest.approx(order.filled_qty, abs=QTY_TOL)
        assert order.symbol in focused

    # The book is the broker's, and every sold position is in closed_positions with its exit price.
    assert_book_matches_broker(daemon.store, sim)
    closed = daemon.store.closed_positions()
    assert len(closed) == len(sells)  # every exit sells a whole position
    assert all(c.reason in (DAEMON_EXIT_REASON, "exit_stop_loss") and c.exit_price for c in closed)
    assert daemon.store.open_orders() == [] and daemon.store.pending_intents() == []


# ================================================================================ 2. restart with open orders
def test_restart_with_open_orders_and_positions_resubmits_nothing_and_applies_fills_once(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket],
        daemons: Callable[..., Daemon]) -> None:
    sim = markets(ny(2025, 6, 2, 9, 0))
    config = e2e_config(tmp_path)
    first = daemons(sim, config)
    first.orchestrator.startup()
    first.orchestrator.run(until=ny(2025, 6, 2, 16, 30))
    held_day1 = {s: p.qty for s, p in first.store.book().items()}
    assert held_day1, "the first session should leave positions"
    # Every next order on any symbol fills only half and stays partially_filled until the close.
    for symbol in config.symbols:
        sim.exchange.set_partial_fill(symbol, 0.5)
    # Stop half a simulated second after the 9:30 iteration: its orders are accepted, not yet filled.
    first.orchestrator.run(until=ny(2025, 6, 3, 9, 30, second=0.5))
    open_at_stop = {o.client_order_id: o for o in first.store.open_orders()}
    assert open_at_stop, "the 9:30 iteration should leave open orders"
    assert {o.client_order_id for o in sim.exchange.open_orders()} == set(open_at_stop)
    assert all(o.filled_qty == 0 for o in open_at_stop.values())
    first.stop()

    # A new process on the same state directory and the same market.
    posts_before = count_order_posts(sim)
    second = daemons(sim, config)
    second.orchestrator.startup()
    assert count_order_posts(sim) == posts_before, "start-up must not send anything"
    report = events(logbuf, "reconciled")[-1]
    assert report["intents_resolved"] == [] and report["intents_resubmitted"] == []
    assert report["closed_externally"] == [] and report["adopted"] == [] and report["flagged"] == []
    assert {o.client_order_id for o in second.store.open_orders()} == set(open_at_stop)
    assert_book_matches_broker(second.store, sim)

    # The fills that arrive after the restart reach the book exactly once, through the close
    # (the day orders expire partially filled) and the next morning's refresh.
    second.orchestrator.run(until=ny(2025, 6, 4, 10, 0))
    for cid in open_at_stop:
        broker = sim.exchange.order_by_client_id(cid)
        assert broker is not None and broker.status == "expired" and broker.filled_qty > 0
        stored = second.store.order_by_client_id(cid)
        assert stored is not None and stored.status.value == "expired"
        assert stored.filled_qty == pytest.approx(broker.filled_qty, abs=QTY_TOL)
        fills = [f for f in second.store.fills_for(broker.symbol) if f.client_order_id == cid]
        assert len(fills) == 1, fills
        assert fills[0].qty == pytest.approx(broker.filled_qty, abs=QTY_TOL)
    assert_book_matches_broker(second.store, sim)
    assert_no_duplicate_orders(sim)
    assert_no_lost_intents(sim, second.store)
    second.stop()

    # And one more restart changes nothing.
    posts_before = count_order_posts(sim)
    with StateStore(Path(config.state_dir), sim.clock) as store:
        book_before = {s: p.qty for s, p in store.book().items()}
    third = daemons(sim, config)
    third.orchestrator.startup()
    assert count_order_posts(sim) == posts_before
    assert {s: p.qty for s, p in third.store.book().items()} == book_before
    assert_book_matches_broker(third.store, sim)


class _Crash(BaseException):
    """The process dying at one exact point (what kill -9 does at a random one)."""


def test_a_crash_between_recording_a_fill_and_booking_it_loses_nothing(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket], daemons: Callable[..., Daemon],
        monkeypatch: pytest.MonkeyPatch) -> None:
    sim = markets(ny(2025, 6, 2, 9, 0))
    config = e2e_config(tmp_path)
    first = daemons(sim, config)
    first.orchestrator.startup()
    first.orchestrator.run(until=ny(2025, 6, 2, 9, 30, second=0.5))
    accepted = first.store.open_orders()
    assert accepted and all(o.filled_qty == 0 for o in accepted)

    def die(*_args: Any, **_kwargs: Any) -> None:
        raise _Crash

    # The next refresh sees the fills; the process dies after the order's new fill is written and
    # before the position book is updated.
    monkeypatch.setattr(first.store, "apply_fill", die)
    assert isinstance(sim.clock, SimClock)
    sim.clock.advance(60)
    with pytest.raises(_Crash):
        first.orchestrator.run_iteration()
    first.stop()

    second = daemons(sim, config)
    second.orchestrator.startup()
    report = events(logbuf, "reconciled")[-1]
    assert report["flagged"] == [] and report["adopted"] == [], "the daemon's own fills came back as unknown"
    assert {o.symbol for o in accepted} <= set(second.store.book())
    assert all(p.origin == "daemon" for p in second.store.book().values())
    assert_book_matches_broker(second.store, sim)
    for order in accepted:
        assert len([f for f in second.store.fills_for(order.symbol) if f.client_order_id == order.client_order_id]) == 1


# ================================================================================ 3. closed while down
def test_position_closed_outside_the_daemon_while_down_is_recorded_and_never_sold_again(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket],
        daemons: Callable[..., Daemon]) -> None:
    sim = markets(ny(2025, 6, 2, 9, 0))
    config = e2e_config(tmp_path)
    first = daemons(sim, config)
    first.orchestrator.startup()
    first.orchestrator.run(until=ny(2025, 6, 2, 16, 30))
    bought_day1 = {s: p.qty for s, p in first.store.book().items()}
    assert len(bought_day1) >= 2
    first.stop()

    # Overnight, while the daemon is down, a person sells one position by hand.
    assert isinstance(sim.clock, SimClock)
    sim.clock.set(ny(2025, 6, 3, 8, 0))
    victim = sorted(bought_day1)[0]
    external = sim.exchange.close_position_externally(victim)
    assert not external["client_order_id"].startswith(PREFIX)

    second = daemons(sim, config)
    second.orchestrator.startup()
    report = events(logbuf, "reconciled")[-1]
    assert report["closed_externally"] == [victim]
    closed = second.store.closed_positions(victim)
    assert len(closed) == 1
    assert closed[0].reason == EXTERNAL_CLOSE_REASON and closed[0].exit_price is None
    assert closed[0].qty == pytest.approx(bought_day1[victim])
    assert victim not in second.store.book()
    assert [e["symbol"] for e in events(logbuf, "position_closed_externally")] == [victim]

    # Run past the day the max-holding exit would have sold it (the others are sold that morning).
    second.orchestrator.run(until=ny(2025, 6, 5, 16, 30))
    daemon_sells = {o.symbol for o in strategy_orders(sim) if o.side == "sell"}
    others = set(bought_day1) - {victim}
    assert others <= daemon_sells, "the other day-1 positions should have been exited by the daemon"
    victim_orders = [o for o in sim.exchange.all_orders() if o.symbol == victim]
    victim_sells = [o for o in victim_orders if o.side == "sell"]
    assert [o.client_order_id for o in victim_sells] == [external["client_order_id"]], "sold twice"
    sold = sum(o.filled_qty for o in victim_sells)
    bought = sum(o.filled_qty for o in victim_orders if o.side == "buy")
    assert sold <= bought + QTY_TOL
    for session in CAL.sessions_between(date(2025, 6, 2), date(2025, 6, 5)):
        intents = second.store.intents_for_session(session)
        assert not [i for i in intents if i.symbol == victim and i.side == "sell"]
        assert not [i for i in intents if i.state == IntentState.REJECTED], intents
    assert len(second.store.closed_positions(victim)) == 1
    assert_book_matches_broker(second.store, sim)
    assert_no_duplicate_orders(sim)
    assert_no_lost_intents(sim, second.store)


# ================================================================================ 4. kill -9 and restart
KILL_TARGET = 20       # SIGKILLs that must land
KILL_MAX_ROUNDS = 30   # child starts allowed to reach them (a start-up may end on its own, see below)


def _child_command(sim: SimMarket, state_dir: Path, log_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tests.harness.daemon_child", "--url", sim.url, "--api-key", sim.api_key,
            "--secret-key", sim.secret_key, "--state-dir", str(state_dir), "--log", str(log_path),
            "--set", "loop_interval_seconds=900", "--set", "entry_z=1.0", "--set", "max_holding_sessions=2",
            *extra]


def _read_event(proc: subprocess.Popen[str], name: str, timeout: float) -> dict[str, Any] | None:
    """The child's next stdout JSON event called `name`; None if it ended or the time ran out."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            return None
        line = proc.stdout.readline()
        if not line:
            return None
        if line.startswith("{") and json.loads(line).get("event") == name:
            return dict(json.loads(line))
    return None


def _wait_for_order_in_flight(sim: SimMarket, first_record: int, timeout: float) -> bool:
    """Until an order POST is being held by the server's 'hang' fault: the intent is written, no answer yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for record in sim.server.request_log[first_record:]:
            if record.method == "POST" and record.path == "/v2/orders" and record.fault == "hang" \
                    and record.status is None:
                return True
        time.sleep(0.005)
    return False


def _wait_for_request(sim: SimMarket, first_record: int, timeout: float) -> bool:
    """Until the child's first broker request (start-up reconciliation has begun)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(sim.server.request_log) > first_record:
            return True
        time.sleep(0.002)
    return False


def _wait_for_refused_order(sim: SimMarket, first_record: int, timeout: float) -> bool:
    """Until an order POST was answered 429: its intent is written and stays pending."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(r.method == "POST" and r.path == "/v2/orders" and r.status == 429
               for r in sim.server.request_log[first_record:]):
            return True
        time.sleep(0.005)
    return False


def test_kill_9_at_random_points_then_restart_never_duplicates_or_loses_an_order(
        tmp_path: Path, markets: Callable[..., SimMarket], daemons: Callable[..., Daemon]) -> None:
    rng = random.Random(5)
    sim = markets(ny(2025, 6, 2, 9, 0))
    clock = sim.clock
    assert isinstance(clock, SimClock)
    faults = sim.server.faults

    def usual_faults() -> None:
        # Order POSTs: some held 0.4 s before they are processed (a kill lands between the intent write
        # and the answer), some processed and then dropped (ambiguous), some refused with 429 (pending).
        faults.clear()
        faults.inject("hang", method="POST", path_prefix="/v2/orders", count=None, probability=0.4, seconds=0.4)
        faults.inject("accept_then_drop", method="POST", path_prefix="/v2/orders", count=None, probability=0.15)
        faults.inject("429", method="POST", path_prefix="/v2/orders", count=None, probability=0.15, reset_in=1)

    usual_faults()
    state_dir, log_path = tmp_path / "state", tmp_path / "daemon.log"
    command = _child_command(sim, state_dir, log_path)
    env = clean_env()
    stats: Counter[str] = Counter()
    started = time.monotonic()
    forced: str | None = None

    for _ in range(KILL_MAX_ROUNDS):
        if stats["killed"] >= KILL_TARGET:
            break
        # booting: in imports, lock or store opening; reconciling: right after start-up's first broker
        # request; running: anywhere in the loop; in_flight: while an order POST is held; refused: while
        # every order POST is refused with 429, so intents are left pending for the restart to resubmit
        # with the same client_order_id.
        mode = forced or rng.choices(["booting", "reconciling", "running", "in_flight", "refused"],
                                     weights=[1, 2, 2, 4, 2])[0]
        forced = None
        first_record = len(sim.server.request_log)
        if mode == "refused":
            faults.clear()
            faults.inject("429", method="POST", path_prefix="/v2/orders", count=None, reset_in=1)
        proc = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
        ready = False
        try:
            if mode == "booting":
                time.sleep(rng.uniform(0.1, 0.8))
            elif mode == "reconciling":
                if _wait_for_request(sim, first_record, timeout=30):
                    stats["reconciling"] += 1
                    time.sleep(rng.uniform(0.0, 0.01))
            else:
                reconciled = _read_event(proc, "reconciled", timeout=30)
                if reconciled is not None:
                    ready = True
                    # An intent may stay pending only while the broker gives no final answer for it (a
                    # resubmission refused with 429, say): the daemon starts and keeps looking it up. One
                    # for an older decision is abandoned, never left pending.
                    assert reconciled["stale_pending"] == 0, "start-up left a stale intent pending"
                    if mode == "running":
                        time.sleep(rng.uniform(0.0, 1.5))
                    elif mode == "in_flight" and _wait_for_order_in_flight(sim, first_record, timeout=6.0):
                        stats["in_flight"] += 1
                        time.sleep(rng.uniform(0.0, 0.3))
                    elif mode == "refused" and _wait_for_refused_order(sim, first_record, timeout=6.0):
                        stats["refused"] += 1
                        time.sleep(rng.uniform(0.0, 0.2))
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if mode == "refused":
            usual_faults()
            forced = "running"
            # Restart at once, in the same session, and the pending intents are resubmitted; or a day
            # later, when their decisions are stale, and they are abandoned (never sent).
            clock.advance(0 if stats["refused"] % 2 else 24 * 3600)
        if proc.returncode == -signal.SIGKILL:
            stats["killed"] += 1
            stats["killed_before_ready"] += not ready and '"reconciled"' not in out
        else:
            # Only a transient refusal may end a start-up early: a resubmission answered 429, say.
            # The next start retries, as systemd's Restart=on-failure would (exit 1, not 3).
            assert proc.returncode == 1 and "not trading yet" in err, (proc.returncode, err[-3000:])
            stats["transient_refusals"] += 1

        with StateStore(state_dir, clock) as store:
            stats["pending_at_kill"] += bool(store.pending_intents())
            assert_no_duplicate_orders(sim)
            assert_no_lost_intents(sim, store)
        # Down for a while: sometimes not at all, sometimes past a close (stale intents are abandoned).
        if forced is None:
            clock.advance(rng.choice([0, 0, 0, 120, 1800, 4 * 3600, 18 * 3600]))

    assert stats["killed"] >= KILL_TARGET, stats
    # The kills landed in every phase: during start-up, with an order in flight, while refused, in between.
    assert stats["killed_before_ready"] >= 2 and stats["reconciling"] >= 1, stats
    assert stats["in_flight"] >= 3 and stats["refused"] >= 2, stats
    assert stats["pending_at_kill"] >= 5, stats

    # A final clean restart, without faults: it runs past the next open and stops on its own.
    faults.clear()
    now_ny = clock.now().astimezone(NEW_YORK)
    until = CAL.session_open(CAL.next_session(now_ny.date())) + timedelta(minutes=50)
    final = subprocess.run([*command, "--until", until.isoformat()], cwd=REPO_ROOT, env=env, capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr[-3000:]
    done = [json.loads(line) for line in final.stdout.splitlines() if '"done"' in line]
    assert done and done[0]["pending"] == 0

    config = e2e_config(tmp_path, state_dir=state_dir)
    posts = count_order_posts(sim)
    check = daemons(sim, config)
    check.orchestrator.startup()  # strict: raises if the book and the broker differ in any way
    assert count_order_posts(sim) == posts
    assert check.store.pending_intents() == []
    assert_no_duplicate_orders(sim)
    assert_no_lost_intents(sim, check.store)
    orders = strategy_orders(sim)
    assert len(orders) >= 20, "the kill loop should have traded"
    for order in orders:
        intent = check.store.get_intent(order.client_order_id)
        assert intent is not None and intent.state == IntentState.SUBMITTED, order.client_order_id
        stored = check.store.order_by_client_id(order.client_order_id)
        assert stored is not None and stored.filled_qty == pytest.approx(order.filled_qty, abs=QTY_TOL)
    assert_book_matches_broker(check.store, sim)
    assert all(p.origin == "daemon" for p in check.store.book().values()), "a fill of the daemon's was lost"
    reconciled = [json.loads(line) for line in log_path.read_text().splitlines()
                  if line.startswith("{") and '"reconciled"' in line]
    work = Counter({kind: sum(len(r[f"intents_{kind}"]) for r in reconciled)
                    for kind in ("resolved", "resubmitted", "abandoned")})
    assert work["resolved"] >= 3 and work["resubmitted"] >= 1 and work["abandoned"] >= 1, work
    print(f"kill loop: {dict(stats)}, {len(orders)} strategy orders, start-up {dict(work)}, "
          f"{time.monotonic() - started:.1f}s")
    assert time.monotonic() - started < 150


# ================================================================================ 5. candidates.json
def _write_candidates(path: Path, as_of: date, symbols: list[str]) -> None:
    path.write_text(json.dumps({
        "as_of": as_of.isoformat(), "generated_at": datetime.now(UTC).isoformat(), "universe_size": 29,
        "symbols": symbols, "scores": {s: -1.5 for s in symbols}, "excluded": {},
    }))


def test_candidates_missing_corrupt_or_stale_fall_back_to_the_universe_and_held_symbols_stay_in_focus(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket],
        daemons: Callable[..., Daemon]) -> None:
    sim = markets(ny(2025, 6, 2, 9, 0))
    config = e2e_config(tmp_path, use_scanner=True)
    daemon = daemons(sim, config)
    daemon.orchestrator.startup()
    path, universe = Path(config.candidates_path), config.symbols
    last = CAL.last_completed_session(sim.clock.now())  # Friday 2025-05-30

    def assert_fallback(problem: str) -> None:
        logbuf.seek(0)
        logbuf.truncate()
        focus = daemon.orchestrator.load_focus_symbols()
        warnings = events(logbuf, "candidates_fallback")
        assert len(warnings) == 1 and warnings[0]["level"] == "warning"
        assert problem in warnings[0]["reason"], warnings[0]["reason"]
        assert str(path) in warnings[0]["reason"]
        assert sorted(focus) == sorted(universe)

    assert not path.exists()
    assert_fallback("does not exist")
    path.write_text('{"as_of": "2025-05-30", "symbols": ["AAPL", ')
    assert_fallback("not valid JSON")
    path.write_text(json.dumps({"as_of": last.isoformat(), "symbols": ["AAPL"]}))  # fields missing
    assert_fallback("field generated_at")
    _write_candidates(path, CAL.sessions_back(last, 2), ["AAPL", "MSFT"])
    assert_fallback("stale")
    _write_candidates(path, last, ["AAPL", "ZZZZ"])
    assert_fallback("not in the configured universe")

    # A valid file: its first 10 candidates, then the baseline, and nothing else (nothing held yet).
    candidates = [s for s in universe if s not in BASELINE_SYMBOLS][:12]
    _write_candidates(path, last, candidates)
    logbuf.seek(0)
    logbuf.truncate()
    assert daemon.orchestrator.load_focus_symbols() == candidates[:10] + list(BASELINE_SYMBOLS)
    assert events(logbuf, "candidates_fallback") == []

    # Trade the first session on those candidates, then drop everything held from the list.
    daemon.orchestrator.run(until=ny(2025, 6, 2, 16, 30))
    held = sorted(daemon.store.book())
    assert held and set(held) <= set(candidates[:10])
    others = [s for s in universe if s not in held and s not in BASELINE_SYMBOLS]
    _write_candidates(path, date(2025, 6, 2), others)
    focus = daemon.orchestrator.load_focus_symbols()
    assert focus[:12] == others[:10] + list(BASELINE_SYMBOLS)
    assert set(held) <= set(focus), "a held symbol left the focus: its exit would be orphaned"

    # Their exits (max holding) still happen, although no candidate list names them any more.
    logbuf.seek(0)
    logbuf.truncate()
    daemon.orchestrator.run(until=ny(2025, 6, 4, 16, 30))
    assert events(logbuf, "candidates_fallback") == []
    for event in events(logbuf, "iteration_complete"):
        assert set(BASELINE_SYMBOLS) <= set(event["focus_symbols"])
    sold = {o.symbol for o in strategy_orders(sim) if o.side == "sell" and o.status == "filled"}
    assert set(held) <= sold
    assert not set(held) & set(daemon.store.book())
    assert_book_matches_broker(daemon.store, sim)
    assert_no_duplicate_orders(sim)


# ================================================================================ 6. DST and early close
@pytest.mark.parametrize(("previous", "day", "open_utc_hour"), [
    (date(2025, 3, 7), date(2025, 3, 10), 13),    # Monday after the spring switch (EST -> EDT)
    (date(2025, 10, 31), date(2025, 11, 3), 14),  # Monday after the fall switch (EDT -> EST)
    (date(2025, 11, 26), date(2025, 11, 28), 14),  # day after Thanksgiving: close 13:00 New York
    (date(2025, 7, 2), date(2025, 7, 3), 13),     # day before Independence Day: close 13:00 New York
], ids=["spring-dst", "fall-dst", "early-close-nov", "early-close-jul"])
def test_dst_and_early_close_days_trade_only_between_the_real_open_and_close(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket], daemons: Callable[..., Daemon],
        previous: date, day: date, open_utc_hour: int) -> None:
    assert CAL.next_session(previous) == day
    early = CAL.is_early_close(day)
    sim = markets(ny(previous.year, previous.month, previous.day, 15, 0))
    config = e2e_config(tmp_path)
    daemon = daemons(sim, config, scanner=True)
    daemon.orchestrator.startup()
    daemon.orchestrator.run(until=ny(day.year, day.month, day.day, 9, 0))
    for symbol in config.symbols:  # the day's orders fill half and stay open until they expire
        sim.exchange.set_partial_fill(symbol, 0.5)
    following = CAL.next_session(day)
    # Until just after the next open's iteration, which refreshes the expired orders (its own new
    # orders are accepted but not filled yet, so the book can be compared with the broker).
    daemon.orchestrator.run(until=ny(following.year, following.month, following.day, 9, 30, second=0.5))

    by_session = assert_iterations_within_sessions(daemon.store)
    assert sorted(by_session) == [previous, day, following]
    open_, close = CAL.session_open(day), CAL.session_close(day)
    assert open_.hour == open_utc_hour  # UTC: the New York open moved with the clocks
    times = by_session[day]
    assert times[0] == open_ and times[-1] < close <= times[-1] + timedelta(seconds=INTERVAL)
    expected = 14 if early else 26  # 9:30-13:00 or 9:30-16:00 in 15-minute steps
    assert len(times) == expected
    if early:
        assert close.astimezone(NEW_YORK).strftime("%H:%M") == "13:00"
    prev_open = CAL.session_open(previous)
    assert by_session[previous][0] == ny(previous.year, previous.month, previous.day, 15, 0)
    assert events(logbuf, "clock_disagreement") == []

    # The day's orders are day orders: partially filled, then expired at that day's real close.
    day_orders = [o for o in strategy_orders(sim) if o.created_at.astimezone(NEW_YORK).date() == day]
    assert day_orders, "the target day should have orders"
    for order in day_orders:
        assert order.status == "expired" and order.expired_at == close, (order.client_order_id, order.expired_at)
        stored = daemon.store.order_by_client_id(order.client_order_id)
        assert stored is not None and stored.status.value == "expired"
        assert stored.filled_qty == pytest.approx(order.filled_qty, abs=QTY_TOL) and order.filled_qty > 0
    assert_book_matches_broker(daemon.store, sim)
    assert_no_duplicate_orders(sim)

    # The scanner still ran at 16:05 New York on both days, after an early close too; in UTC that is a
    # different hour on each side of a DST switch.
    runs = {r.astimezone(NEW_YORK).date(): r for r in scanner_runs(logbuf)}
    assert sorted(runs) == [previous, day]
    for when in runs.values():
        assert when.astimezone(NEW_YORK).strftime("%H:%M:%S") == "16:05:00"
    dst_switch = prev_open.astimezone(NEW_YORK).utcoffset() != open_.astimezone(NEW_YORK).utcoffset()
    assert (runs[previous].astimezone(UTC).hour != runs[day].astimezone(UTC).hour) == dst_switch
    assert json.loads(Path(config.candidates_path).read_text())["as_of"] == day.isoformat()


# ================================================================================ 7. CLI behaviours
def _cli(tmp_path: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = clean_env(**{"STATE_DIR": str(tmp_path / "state"), **env})
    return subprocess.run([sys.executable, "-m", "core.cli", *args], cwd=tmp_path, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_cli_run_once_dry_run_without_credentials_announces_the_simulated_market_first(tmp_path: Path) -> None:
    result = _cli(tmp_path, "run", "--once", "--dry-run")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == SIM_BANNER
    assert "Effective settings (keys masked):" in result.stdout
    settings = {line.split()[0]: " ".join(line.split()[1:]) for line in lines if line.startswith("  ")}
    assert settings["ALPACA_API_KEY"] == "not set" and settings["ALPACA_SECRET_KEY"] == "not set"
    assert "Iteration 1:" in result.stdout and "0 orders submitted" in result.stdout
    assert "Traceback" not in result.stderr


def test_cli_run_sim_masks_configured_keys(tmp_path: Path) -> None:
    key, secret = "PKSHOULDNEVERAPPEAR1", "SECRETSHOULDNEVERAPPEAR2"
    result = _cli(tmp_path, "run", "--sim", "--once", "--dry-run", ALPACA_API_KEY=key, ALPACA_SECRET_KEY=secret)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[0] == SIM_BANNER_FORCED  # keys are set: --sim is why it simulates
    assert "set (masked)" in result.stdout
    log = (tmp_path / "state" / "sim-dry-run" / "daemon.log").read_text()  # a dry run leaves state/sim alone
    for text in (result.stdout, result.stderr, log):
        assert key not in text and secret not in text


def test_cli_live_trading_needs_both_opt_ins(tmp_path: Path) -> None:
    keys = {"ALPACA_API_KEY": "PKTEST", "ALPACA_SECRET_KEY": "SKTEST", "ALPACA_TRADING_URL": "http://127.0.0.1:9",
            "ALPACA_DATA_URL": "http://127.0.0.1:9"}
    live_no_flag = _cli(tmp_path, "run", "--once", ALPACA_PAPER="false", **keys)
    assert live_no_flag.returncode == 3
    assert "refusing" in live_no_flag.stderr and "--live" in live_no_flag.stderr
    flag_on_paper = _cli(tmp_path, "run", "--once", "--live", ALPACA_PAPER="true", **keys)
    assert flag_on_paper.returncode == 3
    assert "refusing --live" in flag_on_paper.stderr and "ALPACA_PAPER" in flag_on_paper.stderr
    for result in (live_no_flag, flag_on_paper):
        assert "Traceback" not in result.stderr and result.stderr.count("trading-daemon:") == 1
    assert not (tmp_path / "state").exists(), "a refusal must come before anything else"


def test_cli_bad_configuration_exits_2_with_one_message_and_no_traceback(tmp_path: Path) -> None:
    result = _cli(tmp_path, "run", "--once", "--dry-run", TIER1_ALLOCATION="lots")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("trading-daemon:") == 1 and "TIER1_ALLOCATION='lots'" in result.stderr
    assert result.stdout == ""
    (tmp_path / ".env").write_text("LOOP_INTERVAL_SECONDS=0\n")  # the default --env-file, in the cwd
    from_file = _cli(tmp_path, "status")
    assert from_file.returncode == 2 and "LOOP_INTERVAL_SECONDS" in from_file.stderr
    assert "Traceback" not in from_file.stderr


def test_cli_status_on_an_empty_state_dir_explains_there_is_no_database(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    result = _cli(tmp_path, "status")
    assert result.returncode == 1 and result.stdout == ""
    assert "No state database" in result.stderr and str(tmp_path / "state") in result.stderr
    assert not (tmp_path / "state" / "trading.db").exists(), "status must not create the database"


@pytest.mark.parametrize("moment", [ny(2025, 6, 2, 20, 0), ny(2025, 6, 7, 11, 0)], ids=["evening", "saturday"])
def test_run_once_outside_market_hours_decides_and_logs_but_submits_nothing(
        tmp_path: Path, logbuf: io.StringIO, markets: Callable[..., SimMarket], daemons: Callable[..., Daemon],
        moment: datetime) -> None:
    sim = markets(moment)
    daemon = daemons(sim, e2e_config(tmp_path, entry_z=0.5))
    daemon.orchestrator.startup()
    assert daemon.orchestrator.run(once=True) == 1
    result = daemon.orchestrator.last_result
    assert result is not None and result.market_open is False
    assert result.signals > 0 and result.submitted == 0
    closed = events(logbuf, "market_closed_no_submit")
    assert len(closed) == 1 and closed[0]["targets"], "entry signals should have been decided and logged"
    assert count_order_posts(sim) == 0 and sim.exchange.all_orders() == []
    signal_session = CAL.last_completed_session(moment)
    assert daemon.store.intents_for_session(signal_session) == []
    assert daemon.store.last_iteration()["status"] == "ok"  # type: ignore[index]
    assert len(events(logbuf, "iteration_complete")) == 1


def _start_daemon(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    env = clean_env(STATE_DIR=str(tmp_path / "state"), LOOP_INTERVAL_SECONDS="300")
    return subprocess.Popen([sys.executable, "-m", "core.cli", "run", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_output(proc: subprocess.Popen[str], marker: str, timeout: float) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(deadline - time.monotonic(), 0.0))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert marker in seen, f"no {marker!r} in the daemon's output: {seen!r}"
    return seen


def test_sigterm_exits_0_promptly_and_a_second_daemon_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    first = _start_daemon(tmp_path, "--sim", "--sessions", "50")
    try:
        _wait_for_output(first, "iters", timeout=30)  # the progress table's header: the loop runs
        time.sleep(1.0)
        assert first.poll() is None

        second = _cli(tmp_path, "run", "--sim", "--once", "--dry-run")
        assert second.returncode == 3, second.stdout + second.stderr
        assert "another trading-daemon is already running" in second.stderr and "Traceback" not in second.stderr
        keys = {"ALPACA_API_KEY": "PKTEST", "ALPACA_SECRET_KEY": "SKTEST",
                "ALPACA_TRADING_URL": "http://127.0.0.1:9", "ALPACA_DATA_URL": "http://127.0.0.1:9"}
        paper = _cli(tmp_path, "run", "--once", **keys)
        assert paper.returncode == 3 and "another trading-daemon is already running" in paper.stderr
        assert first.poll() is None, "the running daemon must be untouched"
        assert (tmp_path / "state" / "sim" / "trading.db").exists()

        sent = time.monotonic()
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=20)
        elapsed = time.monotonic() - sent
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err[-3000:]
    assert elapsed < 5.0, f"SIGTERM took {elapsed:.1f}s"
    assert "Summary" in out and "Traceback" not in err

    # The state database is whole and settled, and the lock is free again.
    sim_state = tmp_path / "state" / "sim"
    with StateStore(sim_state, SimClock(datetime(2025, 6, 2, tzinfo=UTC))) as store:
        assert store.pending_intents() == []
        last = store.last_iteration()
        assert last is not None and last["status"] == "ok"
        for order in store.all_orders():
            intent = store.get_intent(order.client_order_id)
            assert intent is not None and intent.state == IntentState.SUBMITTED
    with contextlib.closing(sqlite3.connect(sim_state / "trading.db")) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    StateDirLock(tmp_path / "state").acquire().release()
    status = _cli(tmp_path, "status", STATE_DIR=str(sim_state))
    assert status.returncode == 0 and "Last iteration: #" in status.stdout


def test_systemd_notify_ready_at_start_and_watchdog_only_after_real_iterations(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, markets: Callable[..., SimMarket],
        daemons: Callable[..., Daemon]) -> None:
    sock_path = tmp_path / "notify.sock"
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(str(sock_path))
    receiver.settimeout(0.05)
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_path))
    sim = markets(ny(2025, 6, 2, 9, 30))
    daemon = daemons(sim, e2e_config(tmp_path), notifier=SystemdNotifier())
    daemon.orchestrator.startup()
    # The first iteration's bars request is held for 1 s: the loop is stuck, so it must not ping.
    sim.server.faults.inject("hang", method="GET", path_prefix="/v2/stocks/bars", count=1, seconds=1.0)
    received: list[tuple[float, str]] = []

    def receive_until_quiet(stop: Callable[[], bool]) -> None:
        while True:
            try:
                received.append((time.time(), receiver.recv(4096).decode()))
            except TimeoutError:
                if stop():
                    return

    loop = threading.Thread(target=daemon.orchestrator.run, kwargs={"max_iterations": 3}, daemon=True)
    try:
        loop.start()
        receive_until_quiet(lambda: not loop.is_alive())
        receive_until_quiet(lambda: True)  # whatever is still queued in the socket
        loop.join(timeout=10)
    finally:
        receiver.close()
    kinds = [message.split("=", 1)[0] for _, message in received]
    assert received[0][1] == "READY=1"
    assert kinds.count("WATCHDOG") == 3 == daemon.orchestrator.iterations_run
    assert received[-1][1] == "STOPPING=1"
    hang = next(r for r in sim.server.request_log if r.fault == "hang")
    first_watchdog = next(t for t, message in received if message == "WATCHDOG=1")
    assert received[0][0] <= hang.wall_time, "READY=1 comes at start, before the first iteration"
    assert first_watchdog >= hang.wall_time + 0.9, "WATCHDOG=1 was sent while the iteration was stuck"
