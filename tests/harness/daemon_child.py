"""The real daemon stack in a child process, on a simulated market that lives in the parent (the
kill -9 end-to-end test). Run it as

    python -m tests.harness.daemon_child --url URL --api-key K --secret-key S --state-dir DIR [...]

It builds what `trading-daemon run` builds (AppConfig from overrides, AlpacaGateway over the real
alpaca-py SDK, StateDirLock, StateStore, Orchestrator.startup() then run()), except that its clock
is `tests.harness.clocks.RemoteSimClock`: the parent's market clock, read and advanced over the
server's `/_sim/` control endpoints, so both processes agree on simulated time.

Machine-readable progress goes to stdout as JSON lines: {"event": "reconciled", ...} once start-up
reconciliation is done, {"event": "done", ...} after a clean end. Exit codes follow the CLI's:
0 ok, 3 refused (reconciliation or the state-directory lock), 1 any other failure.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from tests.harness.clocks import RemoteSimClock


def build_config(url: str, api_key: str, secret_key: str, state_dir: Path, **overrides: Any) -> Any:
    """The daemon's configuration for a simulated market at `url` (no .env, no environment keys)."""
    from config.settings import get_config

    settings: dict[str, Any] = {
        "alpaca_api_key": api_key, "alpaca_secret_key": secret_key, "alpaca_paper": True,
        "alpaca_trading_url": url, "alpaca_data_url": url, "state_dir": state_dir,
        "candidates_path": state_dir / "candidates.json", "use_scanner": False,
        "request_timeout_seconds": 5.0, "retry_backoff_seconds": 0.05, "retry_backoff_max_seconds": 1.0,
    }
    settings.update(overrides)
    return get_config(env_file=None, **settings)


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, default=str), flush=True)


def main(url: str, api_key: str, secret_key: str, state_dir: Path, *, max_iterations: int | None = None,
         until: datetime | None = None, log_path: Path | None = None, **overrides: Any) -> int:
    from core.broker.alpaca_gateway import AlpacaGateway
    from core.domain.errors import ReconciliationError, StateError, TradingDaemonError
    from core.orchestrator import Orchestrator
    from core.runtime.logging_setup import configure_logging
    from core.runtime.process_lock import StateDirLock
    from core.state.store import StateStore

    state_dir = Path(state_dir)
    config = build_config(url, api_key, secret_key, state_dir, **overrides)
    log_file = open(log_path, "a", encoding="utf-8") if log_path is not None else sys.stderr  # noqa: SIM115
    configure_logging(config.log_level, json_output=True, secrets=config.secret_values(), stream=log_file)
    clock = RemoteSimClock(url, api_key, secret_key)
    gateway = AlpacaGateway(config, clock)
    try:
        with StateDirLock(state_dir), StateStore(state_dir, clock) as store:
            orchestrator = Orchestrator(config, gateway, store, clock)

            def stop(signum: int, _frame: Any) -> None:
                orchestrator.request_stop(signal.Signals(signum).name)

            signal.signal(signal.SIGTERM, stop)
            signal.signal(signal.SIGINT, stop)
            orchestrator.startup()
            decision = orchestrator.calendar.last_completed_session(clock.now())
            pending = store.pending_intents()
            _emit("reconciled", pending=len(pending), now=clock.now().isoformat(),
                  stale_pending=len([i for i in pending if i.signal_session != decision]))
            iterations = orchestrator.run(max_iterations=max_iterations, until=until)
            _emit("done", iterations=iterations, pending=len(store.pending_intents()),
                  book={s: p.qty for s, p in store.book().items()}, now=clock.now().isoformat())
    except (ReconciliationError, StateError) as exc:
        print(f"daemon_child: refused: {exc}", file=sys.stderr, flush=True)
        return 3
    except TradingDaemonError as exc:
        print(f"daemon_child: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        clock.close()
        if log_path is not None:
            log_file.close()
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.harness.daemon_child", description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--secret-key", required=True)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--log", type=Path, default=None, help="JSON event log file (default: stderr)")
    parser.add_argument("--max-iterations", type=int, default=None)
    parser.add_argument("--until", type=datetime.fromisoformat, default=None, help="stop at this simulated time")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE",
                        help="a configuration override, e.g. --set loop_interval_seconds=300")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    overrides = dict(item.split("=", 1) for item in args.set)
    return main(args.url, args.api_key, args.secret_key, args.state_dir, max_iterations=args.max_iterations,
                until=args.until, log_path=args.log, **overrides)


if __name__ == "__main__":
    sys.exit(cli())
