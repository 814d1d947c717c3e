"""Research commands, measured: `download` of the configured universe over 10 years against the
simulated market (requests, bars, wall time; then a rerun and a one-session update), and a 9-point x
4-window walk-forward sweep on a local Dask cluster (wall time, tasks per second), plus the time of
`trading-daemon --help`. Prints figures; asserts nothing.

    .venv/bin/python scripts/bench_research.py
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench_download(work: Path) -> None:
    from config.settings import get_config
    from core.backtest.download import download
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.clock import SimClock
    from core.domain.market_calendar import get_market_calendar
    from core.sim import start_sim_market

    calendar = get_market_calendar()
    config = get_config(env_file=None, state_dir=work / "state")
    clock = SimClock(datetime(2026, 11, 2, 21, 0, tzinfo=UTC))
    sim = start_sim_market(clock=clock, seed=42)
    try:
        gateway = AlpacaGateway(config, sim.clock, api_key=sim.api_key, secret_key=sim.secret_key,
                                trading_url=sim.url, data_url=sim.url)
        out = work / "bars"
        null = open("/dev/null", "w")  # noqa: SIM115 - progress lines are not the figures
        for label in ("first run", "rerun", "one session later"):
            if label == "one session later":
                clock.advance(86_400)
            last = calendar.last_completed_session(gateway.get_clock().timestamp)
            before = sim.server.count("/v2/stocks/bars")
            started = time.perf_counter()
            summary = download(gateway, config.symbols, out, last_completed=last, calendar=calendar,
                               progress_stream=null)
            wall = time.perf_counter() - started
            print(f"  download {label:<18} {summary.requests:>3} requests (sim log: "
                  f"{sim.server.count('/v2/stocks/bars') - before}), {summary.bars:>6} bars, {wall:6.2f} s")
    finally:
        sim.stop()


def bench_sweep(work: Path) -> None:
    env_file = work / "empty.env"        # the defaults, whatever .env the working directory holds
    env_file.write_text("")
    command = [sys.executable, "-m", "core.cli", "--env-file", str(env_file), "sweep", "--grid", "ENTRY_Z=1.5,2,2.5",
               "--grid", "ZSCORE_LOOKBACK=10,20,40", "--start", "2019-10-31", "--out", str(work / "sweep")]
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    workers = next((line for line in result.stdout.splitlines() if line.startswith("Dask:")), "Dask: ?")
    print(f"  sweep 9 points x 4 windows (29 symbols, train 3y, test 1y): {wall:.1f} s wall, "
          f"{36 / wall:.2f} tasks/s, exit {result.returncode}; {workers}")
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    print(f"  sweep rerun (all 36 tasks done, no cluster started): {time.perf_counter() - started:.1f} s")


def bench_help() -> None:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "core.cli", "--help"], cwd=ROOT, capture_output=True)
        times.append(time.perf_counter() - started)
    print(f"  trading-daemon --help: median {sorted(times)[2]:.2f} s over 5 runs")


def main() -> None:
    print("bench_research:")
    with tempfile.TemporaryDirectory() as tmp:
        bench_download(Path(tmp))
        bench_sweep(Path(tmp))
    bench_help()


if __name__ == "__main__":
    main()
