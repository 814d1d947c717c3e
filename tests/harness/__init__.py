"""The one test harness every suite uses (tests/README.md says which suite is which).

- `config`: the repository's paths, a test's `AppConfig`, the environment of a child process.
- `clocks`: New York instants, `ScenarioClock` (sleeps recorded, alarms), `SkewedClock` (a host clock
  off the market's), `RemoteSimClock` (a child process's view of the parent's market clock).
- `market`: a simulated market (the project's Alpaca server on 127.0.0.1) and an `AlpacaGateway` on it,
  and readers of what the broker saw (orders, positions, the request log).
- `state`: read-only readers of a state directory's database (intents, iterations, fills).
- `daemon`: an in-process daemon (gateway, store, orchestrator) built as `trading-daemon run` builds it;
  `ops`: the same wrapped in `core.operations.Operations` (notifications, metrics, the status page).
- `scenario`: `Scenario`, a market plus daemon processes booted and re-booted on one state directory.
- `assertions`: no duplicate order, no lost intent, the book equals the broker.
- `logs`: the daemon's structlog events captured as JSON; `receivers`: loopback notification receivers.
- `fixtures`: the pytest fixtures (registered for every suite by tests/conftest.py).
- `daemon_child`: the daemon as a real child process (`python -m tests.harness.daemon_child`).

Nothing here mocks or patches alpaca-py: every broker is the simulated market, reached over HTTP.
"""
