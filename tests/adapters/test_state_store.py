"""The durable state store: journal idempotency, fill deltas, the book, halts, migrations, file
modes, WAL and crash safety (a real SIGKILL / os._exit between the intent write and anything else)."""

from __future__ import annotations

import inspect
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from core.domain.clock import SimClock
from core.domain.errors import StateError
from core.domain.models import BrokerOrder, OrderSpec, OrderStatus, PositionView, Side
from core.domain.ports import IntentState, OrderJournal
from core.state.migrations import LATEST_VERSION, MIGRATIONS, migrate, split_statements
from core.state.store import DB_NAME, StateStore, api_of
from tests.harness.config import REPO_ROOT

T0 = datetime(2025, 3, 10, 15, 0, tzinfo=UTC)
MON, TUE, WED = date(2025, 3, 10), date(2025, 3, 11), date(2025, 3, 12)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def store(state_dir: Path, clock: SimClock) -> Iterator[StateStore]:
    with StateStore(state_dir, clock) as opened:
        yield opened


def spec(cid: str = "mr-1", symbol: str = "AAPL", side: Side = Side.BUY, qty: float | None = 10.0,
         notional: float | None = None) -> OrderSpec:
    return OrderSpec(cid, symbol, side, qty=qty, notional=notional)


def order(filled: float, avg: float | None, status: OrderStatus = OrderStatus.PARTIALLY_FILLED, *,
          oid: str = "ord-1", cid: str = "mr-1", symbol: str = "AAPL", side: Side = Side.BUY,
          qty: float | None = 10.0) -> BrokerOrder:
    return BrokerOrder(oid, cid, symbol, side, status, qty, None, filled, avg, submitted_at=T0)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# ---------------------------------------------------------------------- order intents
def test_store_implements_the_order_journal_protocol() -> None:
    # Checked at run time: the port declares `record_order -> None`, while the store (like
    # MemoryJournal) returns the fill delta that the reconciler uses.
    for name in ("get_intent", "record_intent", "mark_intent", "record_order", "pending_intents"):
        expected = inspect.signature(getattr(OrderJournal, name)).parameters
        actual = inspect.signature(getattr(StateStore, name)).parameters
        assert list(actual) == list(expected), name
        assert [p.kind for p in actual.values()] == [p.kind for p in expected.values()], name


def test_record_intent_is_idempotent(store: StateStore, clock: SimClock) -> None:
    first = store.record_intent(spec(), MON, "entry_oversold")
    assert first.state == IntentState.PENDING
    assert (first.symbol, first.side, first.qty, first.notional) == ("AAPL", "buy", 10.0, None)
    assert first.signal_session == MON
    store.mark_intent("mr-1", IntentState.SUBMITTED, broker_order_id="ord-1", message="submitted")
    clock.advance(60)
    # A retry with different details must not overwrite what was decided and sent.
    again = store.record_intent(spec(qty=99.0), TUE, "other")
    assert again == store.get_intent("mr-1")
    assert (again.qty, again.signal_session, again.state, again.broker_order_id) == (10.0, MON, "submitted", "ord-1")
    assert len(store.intents_for_session(MON)) == 1 and store.intents_for_session(TUE) == []


def test_notional_intent_round_trips(store: StateStore) -> None:
    record = store.record_intent(spec("mr-n", qty=None, notional=123.45), MON, "entry_oversold")
    assert (record.qty, record.notional) == (None, 123.45)
    assert store.get_intent("missing") is None


def test_intent_state_transitions(store: StateStore) -> None:
    store.record_intent(spec("a"), MON, "entry_oversold")
    store.record_intent(spec("b", symbol="MSFT"), MON, "entry_oversold")
    store.record_intent(spec("c", symbol="SPY", side=Side.SELL), MON, "exit_stop_loss")
    assert [r.client_order_id for r in store.pending_intents()] == ["a", "b", "c"]

    store.mark_intent("a", IntentState.SUBMITTED, broker_order_id="ord-a", message="submitted")
    store.mark_intent("b", IntentState.REJECTED, message="insufficient buying power")
    assert [r.client_order_id for r in store.pending_intents()] == ["c"]
    a = store.get_intent("a")
    assert a is not None and (a.state, a.broker_order_id, a.message) == ("submitted", "ord-a", "submitted")

    # A later mark without a broker id keeps the one already known.
    store.mark_intent("a", IntentState.SUBMITTED, message="found at start-up")
    a = store.get_intent("a")
    assert a is not None and (a.broker_order_id, a.message) == ("ord-a", "found at start-up")

    with pytest.raises(StateError, match="resubmit"):
        store.mark_intent("a", IntentState.PENDING)
    with pytest.raises(StateError, match="no order intent"):
        store.mark_intent("zzz", IntentState.SUBMITTED)
    with pytest.raises(ValueError, match="unknown intent state"):
        store.mark_intent("c", "exploded")

    store.mark_intent("c", IntentState.ABANDONED, message="stale decision")
    assert store.pending_intents() == []
    # An abandoned intent was never acted on: the signal may be handled again.
    assert store.handled_signals(MON) == {("AAPL", "buy"), ("MSFT", "buy")}
    assert store.handled_signals(TUE) == set()


# ---------------------------------------------------------------------- orders and fills
def test_fill_deltas_come_from_cumulative_quantities(store: StateStore) -> None:
    assert store.record_order(order(0.0, None, OrderStatus.NEW)) == 0.0
    assert store.fills_for("AAPL") == []

    assert store.record_order(order(3.0, 100.0)) == pytest.approx(3.0)
    assert store.record_order(order(5.0, 101.2)) == pytest.approx(2.0)
    # The same answer again, and a stale older one, add nothing.
    assert store.record_order(order(5.0, 101.2)) == 0.0
    assert store.record_order(order(3.0, 100.0)) == 0.0

    fills = store.fills_for("AAPL")
    assert [f.qty for f in fills] == pytest.approx([3.0, 2.0])
    assert [f.cumulative_qty for f in fills] == pytest.approx([3.0, 5.0])
    # 5 @ 101.2 cumulative = 3 @ 100 + 2 @ 103
    assert fills[0].price == pytest.approx(100.0)
    assert fills[1].price == pytest.approx(103.0)

    stored = store.order_by_client_id("mr-1")
    assert stored is not None and (stored.filled_qty, stored.filled_avg_price) == (5.0, 101.2)
    assert [o.client_order_id for o in store.open_orders()] == ["mr-1"]

    # Canceled at the end of the day with 5 of 10 filled: terminal, no new fill.
    assert store.record_order(order(5.0, 101.2, OrderStatus.CANCELED)) == 0.0
    assert store.open_orders() == []
    # A late, out-of-order "partially_filled" answer does not reopen a terminal order.
    store.record_order(order(5.0, 101.2, OrderStatus.PARTIALLY_FILLED))
    assert store.open_orders() == []
    assert len(store.fills_for("AAPL")) == 2
    assert len(store.all_orders()) == 1


def test_record_order_round_trips_the_broker_order(store: StateStore) -> None:
    placed = BrokerOrder("ord-9", "mr-9", "QQQ", Side.SELL, OrderStatus.ACCEPTED, None, 250.0, 0.0, None,
                         submitted_at=T0, order_type="market")
    store.record_order(placed)
    assert store.order_by_client_id("mr-9") == placed
    assert store.open_orders() == [placed]
    assert store.order_by_client_id("nope") is None


def test_orders_submitted_in_a_new_york_day_across_the_dst_change(store: StateStore) -> None:
    """The daily summary's count: the New York calendar day, whose UTC bounds move with daylight saving time
    (2025-03-09 has 23 hours), with and without microseconds in the stored time."""
    from core.domain.market_calendar import NEW_YORK

    times = {"before": datetime(2025, 3, 9, 4, 59, 59, 999_000, tzinfo=UTC),   # 23:59:59.999 EST on the 8th
             "first": datetime(2025, 3, 9, 5, 0, tzinfo=UTC),                     # 00:00 EST on the 9th
             "last": datetime(2025, 3, 10, 3, 59, 59, 500_000, tzinfo=UTC),       # 23:59:59.5 EDT on the 9th
             "after": datetime(2025, 3, 10, 4, 0, tzinfo=UTC)}                    # 00:00 EDT on the 10th
    for n, (name, when) in enumerate(times.items()):
        store.record_order(BrokerOrder(f"ord-{n}", name, "SPY", Side.BUY, OrderStatus.FILLED, 1.0, None, 1.0,
                                       500.0, submitted_at=when))
    day = datetime(2025, 3, 9, tzinfo=NEW_YORK)
    found = store.orders_submitted_between(day, day + timedelta(days=1))
    assert [o.client_order_id for o in found] == ["first", "last"]


def test_a_full_fill_in_one_answer(store: StateStore) -> None:
    assert store.record_order(order(10.0, 50.0, OrderStatus.FILLED)) == pytest.approx(10.0)
    assert store.record_order(order(10.0, 50.0, OrderStatus.FILLED)) == 0.0
    assert [(f.qty, f.price) for f in store.fills_for("AAPL")] == [(10.0, 50.0)]


# ---------------------------------------------------------------------- the position book
def test_book_from_fills_average_price_and_entry_session(store: StateStore) -> None:
    position = store.apply_fill("AAPL", "buy", 3.0, 100.0, MON)
    assert position is not None and (position.qty, position.avg_entry_price, position.entry_session) == (3.0, 100.0, MON)
    position = store.apply_fill("AAPL", "buy", 2.0, 105.0, TUE)
    assert position is not None
    assert position.qty == pytest.approx(5.0)
    assert position.avg_entry_price == pytest.approx(102.0)
    assert position.entry_session == MON            # entry is the first buy of the flat position
    assert position.origin == "daemon"

    position = store.apply_fill("AAPL", Side.SELL, 2.0, 110.0, TUE)
    assert position is not None and position.qty == pytest.approx(3.0)
    assert position.avg_entry_price == pytest.approx(102.0)   # average cost: sells do not move it
    assert store.closed_positions() == []

    assert store.apply_fill("AAPL", "sell", 3.0, 120.0, WED) is None
    assert store.book() == {}
    (closed,) = store.closed_positions("AAPL")
    assert closed.qty == pytest.approx(5.0)
    assert closed.entry_price == pytest.approx(102.0)
    assert closed.exit_price == pytest.approx((2 * 110.0 + 3 * 120.0) / 5)
    assert (closed.entry_session, closed.exit_session, closed.origin) == (MON, WED, "daemon")

    # Buying again after the close is a new position with a new entry session.
    position = store.apply_fill("AAPL", "buy", 1.0, 90.0, WED)
    assert position is not None and (position.entry_session, position.avg_entry_price) == (WED, 90.0)


def test_closing_sell_carries_the_recorded_exit_reason(store: StateStore, clock: SimClock) -> None:
    assert store.last_stop_loss_exit("MSFT") is None
    store.apply_fill("MSFT", "buy", 4.0, 400.0, MON)
    clock.advance(60)
    store.record_exit("MSFT", TUE, "exit_stop_loss")
    store.apply_fill("MSFT", "sell", 4.0 - 5e-10, 380.0, TUE)   # float dust counts as flat
    assert "MSFT" not in store.book()
    assert store.closed_positions("MSFT")[0].reason == "exit_stop_loss"
    assert store.last_stop_loss_exit("MSFT") == TUE
    store.record_exit("MSFT", MON, "exit_stop_loss")
    store.record_exit("MSFT", WED, "exit_mean_reverted")
    assert store.last_stop_loss_exit("MSFT") == TUE

    # An exit remembered for the previous position does not explain the next one's close.
    clock.advance(60)
    store.apply_fill("MSFT", "buy", 1.0, 390.0, WED)
    clock.advance(60)
    store.apply_fill("MSFT", "sell", 1.0, 395.0, WED)
    assert store.closed_positions("MSFT")[1].reason == "sold by the daemon"


def test_sell_of_an_unknown_symbol_and_bad_fills(store: StateStore) -> None:
    assert store.apply_fill("NVDA", "sell", 1.0, 100.0, MON) is None
    assert store.book() == {} and store.closed_positions() == []
    with pytest.raises(ValueError):
        store.apply_fill("NVDA", "buy", 0.0, 100.0, MON)
    with pytest.raises(ValueError):
        store.apply_fill("NVDA", "short", 1.0, 100.0, MON)


def test_adoption_and_external_close(store: StateStore) -> None:
    store.set_position("TSLA", 2.5, 200.0, MON, "adopted")
    store.set_position("GME", 7.0, 20.0, None, "flagged")
    book = store.book()
    assert (book["TSLA"].qty, book["TSLA"].origin, book["TSLA"].entry_session) == (2.5, "adopted", MON)
    assert (book["GME"].origin, book["GME"].entry_session) == ("flagged", None)
    store.set_position("TSLA", 2.0, 200.0, MON, "adopted")     # taking the broker's quantity
    assert store.book()["TSLA"].qty == 2.0
    with pytest.raises(ValueError, match="origin"):
        store.set_position("X", 1.0, 1.0, MON, "stolen")
    with pytest.raises(ValueError, match="flat"):
        store.set_position("X", 0.0, 1.0, MON, "adopted")

    assert store.close_externally("TSLA", TUE) is True
    assert store.close_externally("TSLA", TUE) is False
    assert set(store.book()) == {"GME"}
    (closed,) = store.closed_positions()
    assert (closed.symbol, closed.qty, closed.exit_price, closed.reason) == ("TSLA", 2.0, None,
                                                                             "closed outside the daemon")
    assert (closed.entry_session, closed.exit_session, closed.origin) == (MON, TUE, "adopted")
    store.close_externally("GME", TUE, reason="sold by hand")
    assert store.closed_positions("GME")[0].reason == "sold by hand"


def test_split_rebase_scales_quantities_and_divides_every_stored_price(store: StateStore) -> None:
    store.apply_fill("NVDA", "buy", 10.0, 1200.0, MON)
    store.apply_fill("NVDA", "buy", 10.0, 1000.0, MON)       # average 1100, first entry price 1200
    store.apply_fill("NVDA", "sell", 5.0, 1300.0, TUE)       # 5 sold for 6500: the exit VWAP is 1300
    rebased = store.rebase_position("NVDA", 10.0, max_qty=1000.0)
    assert rebased is not None and rebased.qty == pytest.approx(150.0)
    assert rebased.avg_entry_price == pytest.approx(110.0) and rebased.entry_session == MON
    store.apply_fill("NVDA", "sell", 150.0, 140.0, WED)     # the rest, in post-split shares
    (closed,) = store.closed_positions("NVDA")
    assert closed.qty == pytest.approx(200.0) and closed.entry_price == pytest.approx(110.0)
    assert closed.exit_price == pytest.approx((6500.0 + 150 * 140.0) / 200.0)  # money unchanged by the split
    # A reverse split's cash in lieu: never more than the broker holds.
    store.apply_fill("XYZ", "buy", 25.0, 2.0, MON)
    assert store.rebase_position("XYZ", 0.1, max_qty=2.0).qty == 2.0  # type: ignore[union-attr]
    assert store.book()["XYZ"].avg_entry_price == pytest.approx(20.0)
    assert store.rebase_position("NONE", 2.0, max_qty=1.0) is None
    with pytest.raises(ValueError):
        store.rebase_position("XYZ", 0.0, max_qty=1.0)


def test_reduce_position_and_seen_positions(store: StateStore, clock: SimClock) -> None:
    store.apply_fill("AAPL", "buy", 10.0, 100.0, MON)
    store.reduce_position("AAPL", 7.0)
    assert store.book()["AAPL"].qty == 7.0 and store.book()["AAPL"].avg_entry_price == 100.0
    store.reduce_position("AAPL", 9.0)                      # never raises the daemon's own quantity
    assert store.book()["AAPL"].qty == 7.0
    with pytest.raises(ValueError, match="close_externally"):
        store.reduce_position("AAPL", 0.0)

    assert store.seen_positions() == {}
    store.record_seen_position("AAPL", 12.0, 101.5, 7.0)
    (seen,) = store.seen_positions().values()
    assert (seen.symbol, seen.qty, seen.avg_entry_price, seen.own_qty, seen.outside_qty) == ("AAPL", 12.0, 101.5,
                                                                                             7.0, 5.0)
    assert seen.seen_at == clock.now()
    store.record_seen_position("AAPL", 0.0, 0.0, 0.0)       # nothing held any more: forgotten
    assert store.seen_positions() == {}


def test_migration_4_moves_flagged_shares_out_of_the_daemons_book(state_dir: Path, clock: SimClock) -> None:
    state_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(state_dir / DB_NAME, isolation_level=None)
    migrate(conn, 3)
    _seed(conn, 3)
    # Version 3 wrote a position the daemon never traded (UNKNOWN_POSITION_POLICY=flag) into its book.
    conn.execute("INSERT INTO positions (symbol, qty, avg_entry_price, entry_session, entry_price, origin, "
                 "opened_at, updated_at) VALUES ('GME', 7, 20, '2025-03-06', 20, 'flagged', "
                 "'2025-03-06T15:00:00+00:00', '2025-03-07T15:00:00+00:00')")
    conn.close()
    with StateStore(state_dir, clock) as store:
        assert set(store.book()) == {"SPY"} and store.book()["SPY"].origin == "daemon"
        (seen,) = store.seen_positions().values()
        assert (seen.symbol, seen.qty, seen.avg_entry_price, seen.own_qty) == ("GME", 7.0, 20.0, 0.0)
        assert seen.outside_qty == 7.0


def test_position_snapshots(store: StateStore, clock: SimClock) -> None:
    assert store.latest_snapshot() == []
    store.record_position_snapshot({
        "AAPL": PositionView("AAPL", 3.0, 100.0, 330.0, 110.0),
        "SPY": PositionView("SPY", 1.0, 500.0, 510.0, 510.0),
    })
    latest = store.latest_snapshot()
    assert [row["symbol"] for row in latest] == ["AAPL", "SPY"]
    assert latest[0]["market_value"] == 330.0 and latest[0]["recorded_at"] == T0.isoformat()
    clock.advance(3600)
    # Everything sold: the newest snapshot is empty, not the previous one.
    store.record_position_snapshot({})
    assert store.latest_snapshot() == []


# ---------------------------------------------------------------------- halts
def test_daily_loss_halt_expires_with_the_session_drawdown_persists(store: StateStore, clock: SimClock) -> None:
    assert store.add_halt("daily_loss", "daily_loss: -3.1% vs last close", MON) is True
    assert store.add_halt("daily_loss", "daily_loss: -3.4% vs last close", MON) is False   # one active per kind
    assert store.add_halt("max_drawdown", "max_drawdown: 16% from peak", MON) is True
    halts = store.active_halts()
    assert [(h.kind, h.reason, h.session) for h in halts] == [
        ("daily_loss", "daily_loss: -3.1% vs last close", MON), ("max_drawdown", "max_drawdown: 16% from peak", MON)]
    assert halts[0].started_at == T0

    assert store.clear_expired_halts(MON) == []          # same session: still active
    assert len(store.active_halts()) == 2
    clock.advance(86_400)
    cleared = store.clear_expired_halts(TUE)
    assert [h.kind for h in cleared] == ["daily_loss"]
    assert [h.kind for h in store.active_halts()] == ["max_drawdown"]
    assert store.clear_expired_halts(date(2026, 1, 5)) == []
    assert [h.kind for h in store.active_halts()] == ["max_drawdown"]

    # A new daily-loss halt may start once the old one is cleared.
    assert store.add_halt("daily_loss", "daily_loss: again", TUE) is True
    assert store.clear_halt("max_drawdown") is True
    assert store.clear_halt("max_drawdown") is False
    assert [h.kind for h in store.active_halts()] == ["daily_loss"]


# ---------------------------------------------------------------------- iterations, kv, API usage
def test_iterations(store: StateStore, clock: SimClock) -> None:
    assert store.last_iteration() is None
    assert store.next_iteration_number() == 1
    store.record_iteration(n=1, started_at=clock.now(), duration_s=0.25, focus_symbols=["AAPL", "SPY"],
                           requests={"trading": 1, "data": 1}, signals=2, submitted=1, rejected=1, status="ok")
    clock.advance(60)
    store.record_iteration(n=2, started_at=clock.now(), duration_s=0.0, focus_symbols=[], requests={},
                           signals=0, submitted=0, rejected=0, status="error", message="broker timeout")
    assert store.next_iteration_number() == 3
    last = store.last_iteration()
    assert last is not None
    assert (last["n"], last["status"], last["message"], last["focus_symbols"]) == (2, "error", "broker timeout", [])
    assert last["started_at"] == (T0 + timedelta(seconds=60)).isoformat()
    assert store.iteration_requests() == [{"data": 1, "trading": 1}, {}]
    assert store.iteration_requests(limit=1) == [{}]


def test_kv(store: StateStore) -> None:
    assert store.get_value("peak_equity") is None
    assert store.get_value("peak_equity", "0") == "0"
    store.set_value("peak_equity", "10500.25")
    store.set_value("peak_equity", "10750.5")
    assert store.get_value("peak_equity", "0") == "10750.5"


def test_api_usage_accumulates(store: StateStore) -> None:
    assert store.api_usage() == {}
    store.add_api_usage({"GET /v2/stocks/bars": 1, "GET /v2/positions": 1, "GET /v2/account": 0})
    store.add_api_usage({"GET /v2/stocks/bars": 2, "POST /v2/orders": 1})
    store.add_api_usage({})
    assert store.api_usage() == {"GET /v2/positions": 1, "GET /v2/stocks/bars": 3, "POST /v2/orders": 1}
    assert store.api_usage_by_api() == {"data": 3, "trading": 2}
    assert api_of("GET /v1beta1/news") == "data" and api_of("GET /v2/clock") == "trading"
    assert api_of("GET /v1/corporate-actions") == "data"


# ---------------------------------------------------------------------- migrations
def test_fresh_database_reaches_the_latest_version(store: StateStore, state_dir: Path) -> None:
    assert store.schema_version == LATEST_VERSION
    # Strictly increasing, ending at the latest (parallel branches hold gaps until they are renumbered at merge).
    versions = [m.version for m in MIGRATIONS]
    assert versions == sorted(set(versions)) and versions[0] == 1 and versions[-1] == LATEST_VERSION
    with sqlite3.connect(state_dir / DB_NAME) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"order_intents", "orders", "fills", "positions", "closed_positions", "position_snapshots",
            "risk_halts", "iterations", "kv", "api_usage"} <= tables


def _seed(conn: sqlite3.Connection, version: int) -> None:
    """Rows an older release would have written, in the shape of that version's schema."""
    if version >= 1:
        conn.execute("INSERT INTO order_intents VALUES ('old-1', 'AAPL', 'buy', 2, NULL, 'market', 'day', "
                     "'2025-03-07', 'entry_oversold', 'pending', NULL, '', '2025-03-07T21:00:00+00:00', "
                     "'2025-03-07T21:00:00+00:00')")
    if version >= 2:
        conn.execute("INSERT INTO positions (symbol, qty, avg_entry_price, entry_session, entry_price, origin, "
                     "opened_at, updated_at) VALUES ('SPY', 1, 500, '2025-03-06', 500, 'daemon', "
                     "'2025-03-06T15:00:00+00:00', '2025-03-06T15:00:00+00:00')")


@pytest.mark.parametrize("old_version", [0, *(m.version for m in MIGRATIONS[:-1])])
def test_every_older_version_migrates_and_keeps_its_data(state_dir: Path, clock: SimClock, old_version: int) -> None:
    state_dir.mkdir(mode=0o700)
    conn = sqlite3.connect(state_dir / DB_NAME, isolation_level=None)
    assert migrate(conn, old_version) == old_version
    _seed(conn, old_version)
    conn.close()

    with StateStore(state_dir, clock) as store:
        assert store.schema_version == LATEST_VERSION
        if old_version >= 1:
            assert [r.client_order_id for r in store.pending_intents()] == ["old-1"]
        if old_version >= 2:
            assert store.book()["SPY"].entry_session == date(2025, 3, 6)
        # Every table works after the upgrade.
        store.record_intent(spec("new-1"), MON, "entry_oversold")
        store.apply_fill("QQQ", "buy", 1.0, 450.0, MON)
        store.add_halt("max_drawdown", "max_drawdown: test", MON)
        store.set_value("peak_equity", "1")


def test_newer_schema_version_is_refused_and_left_untouched(state_dir: Path, clock: SimClock) -> None:
    with StateStore(state_dir, clock) as store:
        store.record_intent(spec(), MON, "entry_oversold")
    with sqlite3.connect(state_dir / DB_NAME) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(StateError, match=rf"schema version {LATEST_VERSION + 1}.*newer release"):
        StateStore(state_dir, clock)
    with sqlite3.connect(state_dir / DB_NAME) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION + 1
        assert conn.execute("SELECT COUNT(*) FROM order_intents").fetchone()[0] == 1


def test_failed_migration_rolls_back_completely(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import core.state.migrations as migrations

    broken = (*MIGRATIONS, migrations.Migration(LATEST_VERSION + 1, "broken", """
        CREATE TABLE half_done (x INTEGER);
        INSERT INTO no_such_table VALUES (1);
    """))
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    state_dir.mkdir()
    conn = sqlite3.connect(state_dir / DB_NAME, isolation_level=None)
    with pytest.raises(StateError, match="migration .* failed.*left at version 0"):
        migrations.migrate(conn)
    assert migrations.schema_version(conn) == 0
    assert conn.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0] == 0
    conn.close()


def test_split_statements_respects_literals_and_triggers() -> None:
    script = """
        -- a comment; with a semicolon
        CREATE TABLE t (x TEXT DEFAULT 'a;b');
        CREATE TRIGGER tr AFTER INSERT ON t BEGIN UPDATE t SET x = 'c;d'; END;
    """
    statements = split_statements(script)
    assert len(statements) == 2 and statements[1].endswith("END;")
    with pytest.raises(ValueError):
        split_statements("CREATE TABLE t (x TEXT DEFAULT 'unterminated;")


def test_a_file_that_is_not_a_database_is_refused(state_dir: Path, clock: SimClock) -> None:
    state_dir.mkdir()
    (state_dir / DB_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="cannot be used"):
        StateStore(state_dir, clock)


# ---------------------------------------------------------------------- files, WAL, durability
def test_files_are_private_even_under_a_permissive_umask(state_dir: Path, clock: SimClock) -> None:
    previous = os.umask(0)
    try:
        store = StateStore(state_dir / "nested", clock)
    finally:
        os.umask(previous)
    try:
        store.record_intent(spec(), MON, "entry_oversold")
        assert mode(state_dir / "nested") == 0o700
        db = state_dir / "nested" / DB_NAME
        files = [p for p in (db, Path(f"{db}-wal"), Path(f"{db}-shm")) if p.exists()]
        assert db in files and Path(f"{db}-wal") in files      # WAL is in use while open
        for path in files:
            assert mode(path) == 0o600, path
    finally:
        store.close()


def test_an_existing_world_readable_database_is_made_private(state_dir: Path, clock: SimClock) -> None:
    StateStore(state_dir, clock).close()
    db = state_dir / DB_NAME
    os.chmod(db, 0o644)
    with StateStore(state_dir, clock):
        assert mode(db) == 0o600


def test_wal_and_full_sync_are_on(store: StateStore, state_dir: Path) -> None:
    conn = store.database.connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    with sqlite3.connect(state_dir / DB_NAME) as other:               # persistent in the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_state_persists_across_close_and_reopen(state_dir: Path, clock: SimClock) -> None:
    with StateStore(state_dir, clock) as store:
        store.record_intent(spec(), MON, "entry_oversold")
        store.mark_intent("mr-1", IntentState.SUBMITTED, broker_order_id="ord-1")
        store.record_order(order(3.0, 100.0))
        store.apply_fill("AAPL", "buy", 3.0, 100.0, MON)
        store.add_halt("max_drawdown", "max_drawdown: x", MON)
        store.set_value("peak_equity", "10000")
        store.add_api_usage({"GET /v2/positions": 4})
        store.record_iteration(n=7, started_at=clock.now(), duration_s=1.0, focus_symbols=["AAPL"], requests={},
                               signals=1, submitted=1, rejected=0, status="ok")
    with pytest.raises(StateError, match="closed"):
        store.book()
    with StateStore(state_dir, clock) as store:
        intent = store.get_intent("mr-1")
        assert intent is not None and intent.state == IntentState.SUBMITTED
        assert store.record_order(order(3.0, 100.0)) == 0.0          # still no double count after restart
        assert store.record_order(order(5.0, 101.2)) == pytest.approx(2.0)
        assert store.book()["AAPL"].qty == 3.0
        assert [h.kind for h in store.active_halts()] == ["max_drawdown"]
        assert store.get_value("peak_equity") == "10000"
        assert store.api_usage() == {"GET /v2/positions": 4}
        assert store.next_iteration_number() == 8


def test_a_second_store_reads_while_the_daemon_has_it_open(state_dir: Path, clock: SimClock) -> None:
    # `trading-daemon status` opens the database while the daemon runs: WAL lets both proceed.
    with StateStore(state_dir, clock) as daemon, StateStore(state_dir, clock) as status:
        daemon.record_intent(spec(), MON, "entry_oversold")
        assert [r.client_order_id for r in status.pending_intents()] == ["mr-1"]
        status.set_value("seen", "1")
        assert daemon.get_value("seen") == "1"


def test_no_secret_columns(store: StateStore) -> None:
    conn = store.database.connection()
    tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
    columns = {col[1].lower() for table in tables for col in conn.execute(f"PRAGMA table_info({table})")}
    assert not {c for c in columns if any(word in c for word in ("key", "secret", "token", "password"))} - {"key"}


_CHILD = textwrap.dedent("""
    import os, sys, time
    from datetime import UTC, date, datetime
    from pathlib import Path
    from core.domain.clock import SimClock
    from core.domain.models import OrderSpec, Side
    from core.state.store import StateStore

    store = StateStore(Path(sys.argv[1]), SimClock(datetime(2025, 3, 10, 15, tzinfo=UTC)))
    store.record_intent(OrderSpec("mr-crash", "AAPL", Side.BUY, qty=5.0), date(2025, 3, 7), "entry_oversold")
    if sys.argv[2] == "exit":
        os._exit(9)           # no close(), no atexit, no finalizers: like a crash right after the write
    print("written", flush=True)
    time.sleep(60)            # the parent SIGKILLs us here, before any submit could happen
""")


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_intent_survives_a_crash_right_after_it_is_written(state_dir: Path, clock: SimClock, how: str) -> None:
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(state_dir), how], cwd=REPO_ROOT,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    if how == "sigkill":
        assert child.stdout.readline().strip() == "written"
        child.send_signal(signal.SIGKILL)
    returncode = child.wait(timeout=30)
    child.stdout.close()
    assert returncode == (9 if how == "exit" else -signal.SIGKILL)

    with StateStore(state_dir, clock) as store:
        (pending,) = store.pending_intents()
        assert (pending.client_order_id, pending.state, pending.qty) == ("mr-crash", IntentState.PENDING, 5.0)
        assert pending.signal_session == date(2025, 3, 7)
        assert store.database.connection().execute("PRAGMA integrity_check").fetchone()[0] == "ok"
