"""Figures: requests per iteration while a stop-loss is refused (trading blocked), and after it fills.

The real daemon (orchestrator, agents, state store, alpaca-py SDK) against the simulated market: it
buys MA on 2025-02-12, the stop-loss fires on that day's close, trading is blocked from 09:00 to 09:47
on 2025-02-13, and the loop runs every 5 simulated minutes. Prints one line per iteration of 02-13.
Run: `.venv/bin/python scripts/bench_exit_retry.py`.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    import structlog

    from tests.harness.clocks import ny
    from tests.harness.scenario import Scenario

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    with tempfile.TemporaryDirectory() as tmp:
        scn = Scenario(Path(tmp), ny(2025, 2, 12, 9, 0), config_overrides={
            "symbol_tiers": {"MA": "TIER3"}, "stop_loss_pct": 0.04, "loop_interval_seconds": 300.0})
        try:
            daemon = scn.boot()
            daemon.orchestrator.run(until=ny(2025, 2, 12, 10, 0))
            scn.clock.at(ny(2025, 2, 13, 9, 0), lambda: scn.sim.exchange.set_trading_blocked(True))
            scn.clock.at(ny(2025, 2, 13, 9, 47), lambda: scn.sim.exchange.set_trading_blocked(False))
            daemon.orchestrator.run(until=ny(2025, 2, 13, 10, 30))
            print(f"{'iteration (New York)':<22} {'requests':<28} {'orders sent':>11} {'refused':>8}")
            for row in scn.iterations():
                if row["started_at"] >= ny(2025, 2, 13, 9, 30):
                    when = row["started_at"].astimezone(ny(2025, 1, 1).tzinfo).strftime("%Y-%m-%d %H:%M")
                    print(f"{when:<22} {json.dumps(json.loads(row['requests'])):<28} {row['submitted']:>11} "
                          f"{row['rejected']:>8}")
            exits = scn.db_rows("SELECT state, attempts, last_refusal, outcome FROM pending_exits")
            print(f"pending_exits: {exits}")
        finally:
            scn.close()


if __name__ == "__main__":
    main()
