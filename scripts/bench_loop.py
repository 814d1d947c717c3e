"""Benchmark: requests per steady-state iteration, the loop's own CPU per iteration, and RSS growth.

The real orchestrator, agents, state store and alpaca-py SDK run against the simulated market on
127.0.0.1 with a simulated clock advancing one loop interval per iteration. CPU is the main
thread's (`time.thread_time`), so the simulated server's threads are not counted. RSS (MiB) is read from
/proc at iteration 100 (after warm-up) and at the end. Run: `.venv/bin/python scripts/bench_loop.py`.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from scripts.bench_data import synthetic_symbols  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def run(focus: int, iterations: int) -> dict[str, Any]:
    from config.settings import get_config
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.clock import SimClock
    from core.domain.market_calendar import NEW_YORK, get_market_calendar
    from core.orchestrator import Orchestrator
    from core.runtime.logging_setup import configure_logging
    from core.sim import start_sim_market
    from core.state.store import StateStore

    configure_logging("ERROR")
    calendar = get_market_calendar()
    clock = SimClock(datetime(2025, 3, 10, 9, 45, tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        tiers = None if focus == 29 else ",".join(f"{s}:TIER3" for s in synthetic_symbols(focus))
        overrides: dict[str, Any] = {"state_dir": Path(tmp), "use_scanner": False,
                                     "api_rate_limit_per_minute": 10_000, "request_timeout_seconds": 60}
        if tiers:
            overrides["symbol_tiers"] = tiers
        config = get_config(env_file=None, **overrides)
        gateway = AlpacaGateway(config, clock, api_key=market.api_key, secret_key=market.secret_key,
                                trading_url=market.url, data_url=market.url)
        with StateStore(Path(tmp), clock) as store:
            orch = Orchestrator(config, gateway, store, clock, calendar=calendar)
            orch.startup()
            cpu: list[float] = []
            requests: list[int] = []
            submitted: list[int] = []
            rss_warm = rss_end = 0.0
            for i in range(iterations):
                t0 = time.thread_time()
                result = orch.run_iteration()
                cpu.append(time.thread_time() - t0)
                requests.append(sum(result.requests.values()))
                # Not steady state: orders in flight, or risk consulted (a fresh signal or the 30-minute
                # re-check of a refused one), which adds the account and open-orders requests.
                submitted.append(result.submitted + len(store.open_orders()) + len(result.risk_rejections))
                clock.advance(config.loop_interval_seconds)
                market.server.clear_log()
                if i == min(99, iterations - 1):
                    rss_warm = rss_mb()
            rss_end = rss_mb()
        steady = [r for r, s in zip(requests, submitted, strict=True) if s == 0][5:] or requests
        market.stop()
    return {
        "focus": focus, "iterations": iterations,
        "steady_requests_max": max(steady), "steady_requests_median": statistics.median(steady),
        "all_requests_mean": statistics.fmean(requests),
        "cpu_ms_median": statistics.median(cpu) * 1000, "cpu_ms_p95": sorted(cpu)[int(0.95 * len(cpu))] * 1000,
        "rss_warm_mb": rss_warm, "rss_end_mb": rss_end,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KiB on Linux -> MiB
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--cpu-iterations", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"{'focus':>6} {'iters':>6} {'req/iter steady (max, median)':>30} {'req/iter all (mean)':>20} "
          f"{'loop CPU ms (median, p95)':>27}")
    rows = [run(29, args.cpu_iterations), run(500, args.cpu_iterations)]
    for row in rows:
        print(f"{row['focus']:>6} {row['iterations']:>6} {row['steady_requests_max']:>17} "
              f"{row['steady_requests_median']:>12g} {row['all_requests_mean']:>20.2f} "
              f"{row['cpu_ms_median']:>15.2f} {row['cpu_ms_p95']:>11.2f}")
    soak = run(29, args.iterations)
    growth = soak["rss_end_mb"] - soak["rss_warm_mb"]
    print(f"\nMemory over {soak['iterations']} simulated iterations (29 symbols): RSS {soak['rss_warm_mb']:.1f} MB "
          f"after warm-up -> {soak['rss_end_mb']:.1f} MB at the end (growth {growth:+.2f} MB); "
          f"peak RSS {soak['peak_rss_mb']:.1f} MB")
    print("Targets: <= 2 requests per steady-state iteration with no orders; RSS growth <= 1 MB.")
    ok = all(r["steady_requests_max"] <= 2 for r in rows) and growth <= 1.0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
