"""Benchmark: data requests for a cold fetch, a new session's fetch and an in-session refresh, and the DataAgent's own CPU time.

Runs the real DataAgent and alpaca-py SDK against the simulated market on 127.0.0.1 at 29, 500 and
5,000 symbols, 252 daily bars each, and prints each request count beside the physical minimum
ceil(bars / 10,000) and the number of URLs the symbols need (core/broker/url_batches.py: above ~1,000
symbols one URL would be too long). With k URLs the least possible is max(pages, k), and each URL can
end in one part-filled page, so a count up to pages + k - 1 is the minimum for that split.
The first fetch of each new session asks for the whole window again (so a bad print the feed corrected
later reaches a running daemon; agents/data_agent.py), so its target is the cold fetch's; every later
fetch in the session is incremental: one request per URL.
"agent CPU ms" is the DataAgent's own CPU time (`BarData.cpu_seconds`: its thread's, the HTTP fetches
excluded; the simulated server's threads in the same process are not counted).
Run: `.venv/bin/python scripts/bench_data.py` (or `make bench`).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BARS_PATH = "/v2/stocks/bars"


def synthetic_symbols(count: int) -> list[str]:
    from config.universe import DEFAULT_SYMBOL_TIERS

    symbols = list(DEFAULT_SYMBOL_TIERS)[:count]
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    i = 0
    while len(symbols) < count:
        n, name = i, ""
        for _ in range(4):
            name = letters[n % 26] + name
            n //= 26
        candidate = "Z" + name
        if candidate not in symbols:
            symbols.append(candidate)
        i += 1
    return symbols


def run_case(count: int, bars: int, quiet: bool = True) -> dict[str, Any]:
    from agents.data_agent import DataAgent
    from config.settings import get_config
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.clock import SimClock
    from core.domain.market_calendar import NEW_YORK, get_market_calendar
    from core.runtime.logging_setup import configure_logging
    from core.sim import start_sim_market

    configure_logging("ERROR" if quiet else "INFO")
    calendar = get_market_calendar()
    # After the close: no in-progress bar, so exactly `bars` bars per symbol are due.
    clock = SimClock(datetime(2025, 3, 10, 18, 0, tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock, seed=42)
    try:
        tiers = ",".join(f"{s}:TIER3" for s in synthetic_symbols(count))
        config = get_config(env_file=None, symbol_tiers=tiers, api_rate_limit_per_minute=10_000,
                            request_timeout_seconds=120)
        gateway = AlpacaGateway(config, clock, api_key=market.api_key, secret_key=market.secret_key,
                                trading_url=market.url, data_url=market.url)
        agent = DataAgent(config, market=gateway, clock=clock, calendar=calendar)
        symbols = config.symbols
        wall = time.perf_counter()
        cold = agent.process(symbols, limit=bars)
        cold_wall = time.perf_counter() - wall
        cold_requests = market.server.count(path_prefix=BARS_PATH)
        urls = sum(1 for r in market.server.request_log if r.path == BARS_PATH and "page_token" not in r.query)
        assert cold.requests == cold_requests, "the DataAgent must count every request"
        clock.set(datetime(2025, 3, 11, 18, 0, tzinfo=NEW_YORK))  # one more completed session
        market.server.clear_log()
        agent.process(symbols, limit=bars)
        session_requests = market.server.count(path_prefix=BARS_PATH)
        clock.set(datetime(2025, 3, 11, 18, 5, tzinfo=NEW_YORK))  # the next iteration, same session
        market.server.clear_log()
        warm = agent.process(symbols, limit=bars)
        warm_requests = market.server.count(path_prefix=BARS_PATH)
        return {
            "symbols": count, "ok": len(cold), "excluded": len(cold.excluded), "urls": urls,
            "cold_requests": cold_requests, "cold_min": math.ceil(count * bars / 10_000),
            "session_requests": session_requests, "refresh_requests": warm_requests, "refresh_min": max(math.ceil(count / 10_000), urls),
            "cold_wall_s": cold_wall, "agent_cpu_ms": cold.cpu_seconds * 1000,
            "refresh_cpu_ms": warm.cpu_seconds * 1000,
        }
    finally:
        market.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="29,500,5000", help="comma-separated symbol counts")
    parser.add_argument("--bars", type=int, default=252)
    args = parser.parse_args(argv)
    print(f"Daily bars per symbol: {args.bars}. Minimum requests = ceil(bars due / 10,000); URLs = requests the "
          "URL length alone needs.")
    header = (f"{'symbols':>8} {'URLs':>5} {'cold req':>9} {'min':>5} {'new session req':>16} "
              f"{'refresh req':>12} {'min':>5} "
              f"{'cold wall s':>12} {'agent CPU ms (cold)':>20} {'agent CPU ms (refresh)':>23}")
    print(header)
    print("-" * len(header))
    failures = 0
    for size in (int(s) for s in args.sizes.split(",")):
        row = run_case(size, args.bars)
        cold_ok = row["cold_min"] <= row["cold_requests"] <= row["cold_min"] + row["urls"] - 1
        session_ok = row["cold_min"] <= row["session_requests"] <= row["cold_min"] + row["urls"] - 1
        ok = cold_ok and session_ok and row["refresh_requests"] == row["refresh_min"]
        failures += 0 if ok and row["ok"] == size else 1
        print(f"{row['symbols']:>8} {row['urls']:>5} {row['cold_requests']:>9} {row['cold_min']:>5} "
              f"{row['session_requests']:>16} {row['refresh_requests']:>12} {row['refresh_min']:>5} {row['cold_wall_s']:>12.2f} "
              f"{row['agent_cpu_ms']:>20.1f} {row['refresh_cpu_ms']:>23.1f}"
              + ("" if ok else "   <- above the minimum"), flush=True)
    print("\nTargets: cold and a new session's first fetch = minimum (plus at most one part-filled page per extra "
          "URL); refresh within the session = 1 request per URL; "
          "agent CPU for 500 symbols < 100 ms.")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
