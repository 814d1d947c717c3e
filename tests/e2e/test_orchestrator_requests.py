"""The seed's "1-2 calls per iteration": a steady-state iteration costs the batched bars request and
the positions request, even while risk keeps refusing a signal."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from core.domain.market_calendar import NEW_YORK
from tests.harness.config import make_config


def test_refused_signals_do_not_cost_requests_every_iteration(tmp_path: Path, markets: Any, daemons: Any) -> None:
    market = markets(datetime(2025, 6, 3, 9, 45, tzinfo=NEW_YORK))
    clock = market.clock
    # Every entry is refused: no position can reach a $5,000 minimum on a $10,000 account.
    config = make_config(tmp_path, use_scanner=False, min_order_notional=5000.0)
    orch = daemons(market, config).orchestrator
    orch.startup()
    results: list[Any] = []
    for _ in range(12):
        results.append(orch.run_iteration())
        clock.advance(config.loop_interval_seconds)
    assert any(r.risk_rejections for r in results), "the scenario needs a refused entry signal"
    first_refusal = next(i for i, r in enumerate(results) if r.risk_rejections)
    later = results[first_refusal + 1:]
    assert later and all(r.signals > 0 for r in later)       # the signal is still there...
    assert all(sum(r.requests.values()) == 2 for r in later)  # ...and costs nothing more
    assert all(r.requests == {"data": 1, "trading": 1} for r in later)
    assert market.server.count(path_prefix="/v2/orders", method="POST") == 0
