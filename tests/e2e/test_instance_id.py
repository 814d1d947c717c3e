"""Two daemons, one account: every client_order_id names its state directory's instance.

End to end through the real SDK against the simulated market: a second daemon (another state
directory) on an account where the first one trades refuses to start (exit 3); one that was running
already halts its entries when the other's order shows up among the open orders; a state directory
that replaced an earlier one starts despite the earlier one's closed orders; two daemons with their
own ORDER_ID_PREFIX and disjoint universes share an account. Old ids (`zmr-YYYYMMDD-...`) in an
existing database are still the daemon's own.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
import structlog

from agents.execution_agent import ExecutionAgent, client_order_id
from core.domain.clock import SimClock
from core.domain.errors import ReconciliationError
from core.domain.models import OrderSpec, Side
from core.domain.order_ids import format_client_order_id, is_instance_id, parse_client_order_id
from core.domain.ports import IntentState
from core.instance_guard import HALT_KIND
from core.state.store import StateStore
from tests.harness.clocks import ny
from tests.harness.config import make_config
from tests.harness.market import gateway_for
from tests.harness.scenario import FAST_CONFIG, Scenario, assert_no_duplicate_orders

# 2025-03-11 10:00 New York: JNJ is an entry (decision session 2025-03-10) at ENTRY_Z=1.2.
JNJ_DAY = ny(2025, 3, 11)
JNJ_DECISION = date(2025, 3, 10)
JNJ_CONFIG: dict[str, Any] = {"symbol_tiers": {"JNJ": "TIER3", "SPY": "TIER1"}, "entry_z": 1.2}


def _second_config(scn: Scenario, name: str, **overrides: Any) -> Any:
    """Another daemon's configuration: same account (the scenario's market), its own state directory."""
    settings = {**FAST_CONFIG, **scn.config_overrides, **overrides}
    return make_config(scn.tmp_path, state_dir=scn.tmp_path / name, **settings)


# ================================================================================ ids and the store
def test_each_state_directory_gets_its_own_instance_id_and_keeps_it(tmp_path: Path) -> None:
    clock = SimClock(JNJ_DAY)
    with StateStore(tmp_path / "a", clock) as a, StateStore(tmp_path / "b", clock) as b:
        first_a, first_b = a.instance_id, b.instance_id
        created = a.instance_created_at
    assert is_instance_id(first_a) and is_instance_id(first_b) and first_a != first_b
    assert created == JNJ_DAY
    clock.advance(86_400)
    with StateStore(tmp_path / "a", clock) as again:
        assert again.instance_id == first_a and again.instance_created_at == created


def test_an_existing_database_without_an_instance_gets_one_and_keeps_its_data(tmp_path: Path) -> None:
    clock = SimClock(JNJ_DAY)
    with StateStore(tmp_path, clock) as store:
        store.set_value("peak_equity", "12345.0")
    conn = sqlite3.connect(tmp_path / "trading.db")  # as an older release left it: no instance rows
    with conn:
        conn.execute("DELETE FROM kv WHERE key IN ('instance_id', 'instance_created_at')")
    conn.close()
    with StateStore(tmp_path, clock) as store:
        assert is_instance_id(store.instance_id) and store.get_value("peak_equity") == "12345.0"


def test_the_id_carries_the_instance_and_keeps_the_decision_key() -> None:
    legacy = client_order_id("zmr", JNJ_DECISION, "BRK.B", Side.SELL)
    new = client_order_id("zmr", JNJ_DECISION, "BRK.B", Side.SELL, "i0123abcd")
    assert new == "zmr-i0123abcd-" + legacy.removeprefix("zmr-") and len(new) <= 128
    assert new == format_client_order_id("zmr", JNJ_DECISION, "BRK.B", Side.SELL, "i0123abcd")
    parsed_new, parsed_old = parse_client_order_id(new), parse_client_order_id(legacy)
    assert parsed_new is not None and parsed_old is not None
    assert parsed_new.instance == "i0123abcd" and parsed_old.instance is None
    assert parsed_new.decision == parsed_old.decision == ("zmr", JNJ_DECISION, "BRK.B", "sell")
    longest = client_order_id("abcdefghij", JNJ_DECISION, "ABCDE.FG", Side.SELL, "iffffffff")
    assert len(longest) <= 128 and parse_client_order_id(longest) is not None
    for other in ("my-own-order", "zmr-20251340-AAPL-buy-0123456789", "zmr-i123-20250310-AAPL-buy-0123456789"):
        assert parse_client_order_id(other) is None


# ================================================================================ two daemons, one account
def test_a_second_daemon_after_anothers_recent_orders_starts_with_entries_halted(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    second_config = _second_config(scn, "second-state")
    StateStore(second_config.state_dir, scn.clock).close()  # the second daemon's directory exists (it ran before)
    first = scn.boot()
    first.orchestrator.run_iteration()
    (order,) = scn.broker_orders()
    assert order.client_order_id.startswith(f"zmr-{first.store.instance_id}-20250310-JNJ-buy-")

    scn.clock.advance(3600)
    first.orchestrator.run_iteration()
    assert scn.broker_orders()[0].status == "filled"  # closed, but placed after the second daemon's directory was created
    # Closed orders only: the second starts, with new entries halted until the owner acknowledges the other.
    second = scn.boot(config=second_config)
    (halt,) = second.store.active_halts()
    assert halt.kind == HALT_KIND
    assert order.client_order_id in halt.reason and first.store.instance_id in halt.reason
    assert "halts clear another_instance" in halt.reason
    mark = scn.log_mark()
    second.orchestrator.run_iteration()
    assert scn.order_posts(mark) == [] and len(scn.broker_orders()) == 1


def test_an_open_order_of_another_instance_refuses_the_start_through_the_command_line(
        scenario: Callable[..., Scenario], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from core import cli

    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    first = scn.boot()
    first.orchestrator.run_iteration()
    assert [o.status for o in scn.broker_orders()] in (["new"], ["accepted"])  # still open: no time passed
    env = {"ALPACA_API_KEY": scn.sim.api_key, "ALPACA_SECRET_KEY": scn.sim.secret_key,
           "ALPACA_TRADING_URL": scn.sim.url, "ALPACA_DATA_URL": scn.sim.url, "STATE_DIR": str(tmp_path / "other"),
           "SYMBOL_TIERS": "JNJ:TIER3,SPY:TIER1", "USE_SCANNER": "false"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "empty.env").write_text("")
    try:
        code = cli.main(["--env-file", str(tmp_path / "empty.env"), "run", "--once", "--dry-run"])
    finally:
        structlog.reset_defaults()  # the command configured logging onto pytest's captured stderr
    err = capsys.readouterr().err
    assert code == cli.EXIT_REFUSED, err
    assert "another trading-daemon trades this account" in err and "Traceback" not in err
    assert len(scn.broker_orders()) == 1


def test_a_running_daemon_halts_entries_when_another_ones_order_appears(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    second = scn.boot(config=_second_config(scn, "second-state"))   # started first, on a quiet account
    first = scn.boot()                                              # then another daemon starts too
    first.orchestrator.run_iteration()                              # ... and buys JNJ
    mark = scn.log_mark()
    result = second.orchestrator.run_iteration()                    # sees that open order

    assert result.signals == 1 and scn.order_posts(mark) == [], "the second daemon must not enter"
    halts = second.store.active_halts()
    assert [h.kind for h in halts] == [HALT_KIND]
    assert first.store.instance_id in halts[0].reason and "zmr-" in halts[0].reason
    assert any("entries halted" in r.reason for r in result.risk_rejections)
    assert len(scn.broker_orders()) == 1
    # The halt stays (a human clears it); a restart while the other's order is open refuses outright.
    assert [h.kind for h in second.store.active_halts()] == [HALT_KIND]
    scn.kill(second)
    with pytest.raises(ReconciliationError):
        scn.boot(config=_second_config(scn, "second-state"))
    scn.clock.advance(3600)   # once it is closed, the restart starts, still halted
    restarted = scn.boot(config=_second_config(scn, "second-state"))
    assert [h.kind for h in restarted.store.active_halts()] == [HALT_KIND]
    assert_no_duplicate_orders(scn, first.store)


def test_a_replaced_state_directory_starts_despite_the_earlier_ones_closed_orders(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    first = scn.boot()
    first.orchestrator.run_iteration()
    scn.clock.advance(3600)
    first.orchestrator.run_iteration()                  # the fill is in the book; the order is closed
    assert [o.status for o in scn.broker_orders()] == ["filled"]
    scn.kill(first)
    scn.clock.advance(86_400)                           # the next day the state directory is moved away
    fresh = scn.boot(config=_second_config(scn, "fresh-state"))   # a new one: starts, JNJ is unknown to it
    assert fresh.store.instance_id != first.store.instance_id
    # Not its own (issue 10's ownership model): outside the book, reported as shares that are not the daemon's.
    assert "JNJ" not in fresh.store.book()
    assert fresh.store.seen_positions()["JNJ"].outside_qty == pytest.approx(scn.broker_positions()["JNJ"])
    assert fresh.store.active_halts() == []


def test_two_daemons_with_their_own_prefix_and_universe_share_an_account(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    first = scn.boot()
    # The second trades other symbols under its own prefix (2025-01-22's entries are another day: here it
    # only has to start, decide and never touch JNJ).
    second = scn.boot(config=_second_config(scn, "second-state", order_id_prefix="zmb",
                                            symbol_tiers={"XLF": "TIER2", "QQQ": "TIER1"}))
    first.orchestrator.run_iteration()
    second.orchestrator.run_iteration()
    scn.clock.advance(3600)
    for daemon in (first, second):
        daemon.orchestrator.run_iteration()
    assert second.store.active_halts() == [] and first.store.active_halts() == []
    assert all(o.client_order_id.startswith(f"zmr-{first.store.instance_id}-") for o in scn.broker_orders())
    # The other daemon's position: not in this one's book, reported as not its own, never traded.
    assert "JNJ" not in second.store.book()
    assert second.store.seen_positions()["JNJ"].outside_qty == pytest.approx(scn.broker_positions()["JNJ"])
    scn.kill(second)
    scn.boot(config=_second_config(scn, "second-state", order_id_prefix="zmb",
                                   symbol_tiers={"XLF": "TIER2", "QQQ": "TIER1"}))  # restarts fine


def test_a_database_with_old_ids_still_owns_its_orders(scenario: Callable[..., Scenario]) -> None:
    scn = scenario(JNJ_DAY, **JNJ_CONFIG)
    # What the previous release did: an intent and an order under the old id format, still open.
    with StateStore(scn.config.state_dir, scn.clock) as store:
        old_agent = ExecutionAgent(gateway_for(scn.sim, scn.config), store)  # no instance: the old format
        legacy = old_agent.client_order_id_for(JNJ_DECISION, "JNJ", Side.BUY)
        assert parse_client_order_id(legacy).instance is None  # type: ignore[union-attr]
        spec = OrderSpec(legacy, "JNJ", Side.BUY, qty=2.0)
        store.record_intent(spec, JNJ_DECISION, "entry_oversold")
        order = old_agent.broker.submit_order(spec)
        store.record_order(order)
        store.mark_intent(legacy, IntentState.SUBMITTED, broker_order_id=order.id)
    daemon = scn.boot()                                 # the new release on the same state directory
    assert daemon.store.active_halts() == []
    scn.clock.advance(3600)
    daemon.orchestrator.run_iteration()                  # the old order's fill is the daemon's own
    assert daemon.store.book()["JNJ"].origin == "daemon" and daemon.store.book()["JNJ"].qty == 2.0
    assert [o.client_order_id for o in scn.broker_orders()] == [legacy]  # the decision is not taken twice
    assert_no_duplicate_orders(scn, daemon.store)
    # A new decision gets the new format, with this directory's instance.
    assert daemon.orchestrator.execution.client_order_id_for(JNJ_DECISION + timedelta(days=1), "JNJ", Side.SELL) \
        .startswith(f"zmr-{daemon.store.instance_id}-20250311-JNJ-sell-")
