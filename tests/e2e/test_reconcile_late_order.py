"""An order POST that reached the broker after its intent was abandoned is tracked at start-up,
so its fill lands in the book as the daemon's own instead of an unknown position."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

from core.domain.models import OrderSpec, Side
from core.domain.ports import IntentState
from tests.harness.config import make_config


def test_late_order_of_an_abandoned_intent_is_tracked(sim: Any, tmp_path: Path, daemons: Any) -> None:
    config = make_config(tmp_path, use_scanner=False)
    spec = OrderSpec("zmr-20250305-XLF-buy-latearrive", "XLF", Side.BUY, qty=3.0)
    sim.clock.set(sim.clock.now().replace(hour=21))  # after the close: the order stays open overnight
    daemon = daemons(sim, config)
    store, orch = daemon.store, daemon.orchestrator
    store.record_intent(spec, date(2025, 3, 5), "entry_oversold")
    store.mark_intent(spec.client_order_id, IntentState.ABANDONED, message="absent at the broker")
    daemon.gateway.submit_order(spec)  # the first attempt's POST arrives late
    orch.startup()
    assert store.get_intent(spec.client_order_id).state == IntentState.SUBMITTED  # type: ignore[union-attr]
    assert store.order_by_client_id(spec.client_order_id) is not None
    sim.clock.advance(18 * 3600)  # 11:00 New York next day: the order filled at the open
    orch.run_iteration()
    assert store.book()["XLF"].qty == 3.0 and store.book()["XLF"].origin == "daemon"
    assert sim.exchange.orders_for_client_id(spec.client_order_id) == 1
