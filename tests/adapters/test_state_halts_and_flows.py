"""The state store's halt audit (who cleared a halt, when, why) and its cash-flow ledger (migration 5)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from core.domain.clock import SimClock
from core.domain.models import CashFlow
from core.state.migrations import migrate
from core.state.store import DB_NAME, StateStore

T0 = datetime(2025, 6, 4, 14, 0, tzinfo=UTC)
MON, TUE = date(2025, 6, 2), date(2025, 6, 3)


@pytest.fixture
def clock() -> SimClock:
    return SimClock(T0)


@pytest.fixture
def store(tmp_path: Path, clock: SimClock) -> Iterator[StateStore]:
    with StateStore(tmp_path / "state", clock) as opened:
        yield opened


def _flow(ident: str, amount: float, on: date = TUE) -> CashFlow:
    return CashFlow(ident, "CSD" if amount > 0 else "CSW", amount, on)


def test_a_cleared_halt_keeps_who_when_and_why(store: StateStore, clock: SimClock) -> None:
    store.add_halt("max_drawdown", "max_drawdown: 16% from peak", MON)
    store.add_halt("daily_loss", "daily_loss: -4%", MON)
    clock.advance(3600)
    assert store.clear_halt("max_drawdown", by="alice", reason="reviewed") is True
    assert store.clear_halt("max_drawdown", by="bob") is False            # nothing active of that kind
    clock.advance(3600)
    assert [h.kind for h in store.clear_expired_halts(TUE)] == ["daily_loss"]
    halts = store.halts()
    assert [(h.kind, h.cleared_by, h.clear_reason) for h in halts] == [
        ("daily_loss", "daemon", "the session it was about has ended"),     # newest clear first
        ("max_drawdown", "alice", "reviewed"),
    ]
    assert halts[1].cleared_at == datetime(2025, 6, 4, 15, 0, tzinfo=UTC)
    store.add_halt("max_drawdown", "max_drawdown: again", TUE)            # a new row; the old one stays
    assert [(h.kind, h.cleared_at) for h in store.halts()][0] == ("max_drawdown", None)   # active first
    assert store.halts(recent=0)[0].reason == "max_drawdown: again" and len(store.halts(recent=0)) == 1
    assert {h.kind for h in store.halts()} == {"max_drawdown", "daily_loss"}


def test_cash_flows_are_recorded_once_with_the_peak_they_moved(store: StateStore) -> None:
    flows = [_flow("a", -5_000.0), _flow("b", 1_000.0, on=MON)]
    assert store.known_cash_flow_ids(["a", "b", "c"]) == set()
    assert store.apply_cash_flows(flows, equity=6_000.0, peak_before=10_000.0, peak_after=6_000.0,
                                  checked_on=TUE) == 2
    assert store.known_cash_flow_ids(["a", "b", "c"]) == {"a", "b"}
    assert store.get_value("peak_equity") == "6000.0" and store.get_value("cash_flows_checked_on") == "2025-06-03"
    # The same activity again moves nothing and is not stored twice.
    assert store.apply_cash_flows([flows[0]], equity=6_000.0, peak_before=6_000.0, peak_after=6_000.0,
                                  checked_on=TUE) == 0
    assert [f.id for f in store.cash_flows_since(TUE)] == ["a"]
    assert [f.id for f in store.cash_flows_since(MON)] == ["b", "a"]
    # No new flow: the check date moves, the peak does not.
    store.set_value("peak_equity", "7000.0")
    store.apply_cash_flows([], equity=7_000.0, peak_before=7_000.0, peak_after=1.0, checked_on=date(2025, 6, 4))
    assert store.get_value("peak_equity") == "7000.0" and store.get_value("cash_flows_checked_on") == "2025-06-04"


def test_a_version_3_database_keeps_its_halts_through_migration_5(tmp_path: Path, clock: SimClock) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    conn = sqlite3.connect(state / DB_NAME, isolation_level=None)
    migrate(conn, 3)
    conn.execute("INSERT INTO risk_halts (kind, reason, session, started_at, cleared_at) VALUES "
                 "('max_drawdown', 'max_drawdown: 20%', '2025-06-02', '2025-06-02T15:00:00+00:00', NULL)")
    conn.close()
    with StateStore(state, clock) as store:
        (halt,) = store.halts()
        assert halt.kind == "max_drawdown" and halt.cleared_by is None and halt.cleared_at is None
        assert store.clear_halt("max_drawdown", by="ops", reason="after the upgrade")
        assert store.halts()[0].cleared_by == "ops"
        assert store.cash_flows_since(MON) == []
