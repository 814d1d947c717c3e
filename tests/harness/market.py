"""A simulated market for a test, the adapter on it, and readers of what the broker saw.

The market is the project's Alpaca-compatible server on 127.0.0.1 (`core.sim`), spoken to by the
unchanged alpaca-py SDK through `AlpacaGateway`; its clock is a `SimClock` the test drives.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from config.settings import AppConfig
from core.broker.alpaca_gateway import AlpacaGateway
from core.domain.clock import Clock, SimClock
from core.sim import SimMarket, SimOrder, start_sim_market
from core.sim.server import RequestRecord

ORDERS_PATH = "/v2/orders"
BARS_PATH = "/v2/stocks/bars"


def gateway_for(sim: SimMarket, config: AppConfig, clock: Clock | None = None) -> AlpacaGateway:
    """The daemon's adapter on `sim`, on the market's clock unless a host `clock` is given."""
    return AlpacaGateway(config, clock or sim.clock, api_key=sim.api_key, secret_key=sim.secret_key,
                         trading_url=sim.url, data_url=sim.url)


@contextmanager
def running_market(at: datetime | SimClock, **options: Any) -> Iterator[SimMarket]:
    """A simulated market on a SimClock at `at` (or on the clock given), stopped when the block ends.
    `options` go to `start_sim_market` (seed, initial_cash, closures, rate_limit_per_minute, ...)."""
    clock = at if isinstance(at, SimClock) else SimClock(at)
    market = start_sim_market(clock=clock, **options)
    try:
        yield market
    finally:
        market.stop()


# ---------------------------------------------------------------------- what the broker saw
def broker_orders(sim: SimMarket, *, source: str | None = "api", prefix: str | None = None) -> list[SimOrder]:
    """The broker's orders: those sent through the API (not the user's by hand) unless `source` is None,
    and only those whose client_order_id starts with `prefix` if one is given."""
    return [o for o in sim.exchange.all_orders() if (source is None or o.source == source)
            and (prefix is None or o.client_order_id.startswith(prefix))]


def broker_positions(sim: SimMarket) -> dict[str, float]:
    return {symbol: pos.qty for symbol, pos in sim.exchange.positions().items()}


def requests(sim: SimMarket, *, method: str | None = None, path_prefix: str | None = None,
             since: int = 0) -> list[RequestRecord]:
    log = list(sim.server.request_log)[since:]
    return [r for r in log if (method is None or r.method == method)
            and (path_prefix is None or r.path.startswith(path_prefix))]


def order_posts(sim: SimMarket, since: int = 0) -> list[RequestRecord]:
    """Every order POST (`POST /v2/orders`, not a look-up by client_order_id) since a log mark."""
    return [r for r in requests(sim, method="POST", since=since) if r.path == ORDERS_PATH]


def count_order_posts(sim: SimMarket) -> int:
    """Order POSTs the server has counted (`/v2/orders`, less the `/v2/orders:...` look-ups)."""
    return sim.server.count(ORDERS_PATH, method="POST") - sim.server.count(f"{ORDERS_PATH}:", method="POST")


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait (wall time) for a server thread to finish something, e.g. a hung request."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the simulated server")
        time.sleep(0.01)
