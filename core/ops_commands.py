"""The operator's commands: `status` (text, `--json`, `--serve`) and `notify-test`.

`status` reads the state database through a read-only connection and never calls the broker;
`--serve` serves the status page and /metrics from it on 127.0.0.1 (for a stopped daemon, or a
simulated run that has ended). `notify-test` sends one message to every NOTIFY_URLS entry.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import AppConfig

EXIT_OK, EXIT_FAILURE, EXIT_CONFIG = 0, 1, 2
SIM_DIR_NAME = "sim"


def add_status_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--json", action="store_true", help="print the status as JSON (docs/status.schema.json)")
    what.add_argument("--serve", action="store_true",
                      help="serve the read-only status page and /metrics on 127.0.0.1 (--port or HTTP_PORT) "
                           "until interrupted")
    parser.add_argument("--port", type=int, default=None, metavar="N", help="port for --serve (default: HTTP_PORT)")
    add_state_dir_arguments(parser)


def add_state_dir_arguments(parser: argparse.ArgumentParser, *, suppress: bool = False) -> None:
    """--sim / --state-dir: which state directory a command reads (`status`, `halts`). `suppress` for a
    subcommand's copy, so that its absence does not overwrite the value given to the parent command."""
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--sim", action="store_true", default=argparse.SUPPRESS if suppress else False,
                       help="the last simulated run (STATE_DIR/sim, what `make run` writes)")
    where.add_argument("--state-dir", type=Path, default=argparse.SUPPRESS if suppress else None, metavar="DIR",
                       help="read this state directory instead of STATE_DIR (e.g. a backup, or STATE_DIR/sim-dry-run)")


def state_target(args: argparse.Namespace, config: AppConfig) -> AppConfig:
    """The configuration with STATE_DIR as --sim / --state-dir chose it."""
    if args.sim:
        from core.sim_run import sim_config

        return sim_config(config)
    if args.state_dir is not None:
        return config.model_copy(update={"state_dir": args.state_dir})
    return config


def sim_state_hint(args: argparse.Namespace, config: AppConfig) -> Path | None:
    """The simulated run's state directory, to point to when STATE_DIR itself has no database (None when the
    user already chose a directory with --sim or --state-dir)."""
    return Path(config.state_dir) / SIM_DIR_NAME if not args.sim and args.state_dir is None else None


def run_status_command(args: argparse.Namespace, config: AppConfig) -> int:
    from core.status import no_database_message, render_status, render_status_json

    target = state_target(args, config)
    state_dir = Path(target.state_dir)
    from core.state.database import DB_NAME

    if args.port is not None and not args.serve:
        print(f"trading-daemon: --port {args.port} is for --serve: add --serve to serve the status page on that port",
              file=sys.stderr)
        return EXIT_CONFIG
    if not (state_dir / DB_NAME).is_file():
        # Text, --json and --serve alike: nothing to show is a failure a script or a unit can see (exit 1).
        print(f"trading-daemon: {no_database_message(state_dir, sim_state_hint(args, config))}", file=sys.stderr)
        return EXIT_FAILURE
    if args.serve:
        return _serve(target, args.port if args.port is not None else config.http_port)
    if args.json:
        print(render_status_json(target))
        return EXIT_OK
    title = f"Simulated run (state in {state_dir}; not an Alpaca account)" if args.sim else None
    print(render_status(target, title=title))
    return EXIT_OK


def _serve(config: AppConfig, port: int | None) -> int:
    from core.metrics import DaemonMetrics
    from core.ops_http import OpsHttpServer
    from core.runtime.version import version
    from core.status_data import collect_status
    from core.status_page import render_page

    if port is None:
        print("trading-daemon: status --serve needs a port: --port N, or HTTP_PORT in the environment or .env",
              file=sys.stderr)
        return EXIT_CONFIG
    if not 0 <= port <= 65535:
        print(f"trading-daemon: --port {port}: expected a port number 0..65535", file=sys.stderr)
        return EXIT_CONFIG
    from core.runtime.logging_setup import configure_logging

    configure_logging(config.log_level, secrets=config.secret_values())   # LOG_LEVEL holds here too

    def status() -> dict[str, Any]:
        return collect_status(config)

    metrics = DaemonMetrics(status, info={"version": version(), "mode": "database", "dry_run": "false"})
    try:
        server = OpsHttpServer(port, page=lambda: render_page(status()), metrics=metrics.render, status_json=status)
    except OSError as exc:
        print(f"trading-daemon: cannot serve on 127.0.0.1:{port}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    server.start()
    print(f"Serving the status of {Path(config.state_dir) / 'trading.db'} (read-only) on {server.url} "
          f"and {server.url}metrics; Ctrl-C stops.", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()
    return EXIT_OK


def run_notify_test(config: AppConfig) -> int:
    from core.notify import build_notifier, notify_test_message

    notifier = build_notifier(config, _mode(config))
    if notifier is None:
        print("trading-daemon: NOTIFY_URLS is empty: set one or more apprise URLs (e.g. json://127.0.0.1:8080/, "
              "ntfy://my-topic, tgram://BOT_TOKEN/CHAT_ID) to test notifications", file=sys.stderr)
        return EXIT_CONFIG
    results = notifier.send_now(notify_test_message(_mode(config)))
    for result in results:
        print(f"{'ok  ' if result.ok else 'FAIL'}  {result.url}" + ("" if result.ok else f"  ({result.detail})"))
    failed = sum(1 for r in results if not r.ok)
    print(f"{len(results) - failed} of {len(results)} notification URL(s) accepted the test message.")
    return EXIT_OK if failed == 0 else EXIT_FAILURE


def _mode(config: AppConfig) -> str:
    if not config.has_credentials:
        return "simulated"
    return "live" if config.is_live else "paper"
