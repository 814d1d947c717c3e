"""A 12,000-symbol universe through the real SDK: the bars request is split by URL length.

Alpaca's front proxy refuses a request line above ~8 KB with 414, and so does the simulated market
(`SimMarketServer.max_url_bytes`, 8,192 by default). One request for 12,000 symbols is ~84 KB of
query string; the gateway packs the symbols into as few URLs as fit under MAX_URL_BYTES.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import pytest

from agents.data_agent import DataAgent
from config.settings import get_config
from core.broker.url_batches import MAX_URL_BYTES, PAGE_TOKEN_RESERVE_BYTES, SEPARATOR_BYTES, pack_symbols
from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.sim import start_sim_market
from scripts.bench_data import synthetic_symbols
from tests.harness.market import gateway_for

BARS = "/v2/stocks/bars"
CAL = get_market_calendar()
UNIVERSE = 12_000


@pytest.fixture(scope="module")
def big() -> Any:
    # After the close, so every symbol has exactly the bars of completed sessions.
    market = start_sim_market(clock=SimClock(datetime(2025, 3, 10, 18, 0, tzinfo=NEW_YORK)), seed=42,
                              rate_limit_per_minute=10_000)
    try:
        yield market
    finally:
        market.stop()


@pytest.fixture(scope="module")
def symbols() -> list[str]:
    return synthetic_symbols(UNIVERSE)


def _target(record: Any) -> str:
    """The request target as the server saw it (path and query, re-encoded as requests encodes it)."""
    return f"{record.path}?{urlencode(record.query)}"


def test_a_12000_symbol_daily_fetch_is_split_under_the_url_limit(big: Any, symbols: list[str],
                                                                   tmp_path: Any) -> None:
    config = get_config(env_file=None, request_timeout_seconds=60, state_dir=tmp_path)
    gateway = gateway_for(big, config)
    big.server.clear_log()
    start = datetime(2025, 3, 7, tzinfo=NEW_YORK)  # two completed sessions: 03-07 and 03-10
    answer = gateway.get_daily_bars(symbols, start=start)

    log = [r for r in big.server.request_log if r.path == BARS]
    assert all(r.status == 200 for r in log), sorted({r.status for r in log})  # no 414, no error
    assert set(answer) == set(symbols) and all(len(bars) == 2 for bars in answer.values())
    assert answer.requests == len(log)
    sent = [r.query["symbols"].split(",") for r in log if "page_token" not in r.query]
    assert [s for batch in sent for s in batch] == symbols  # every symbol once, in order
    longest = max(len(_target(r)) for r in log)
    assert longest <= big.server.max_url_bytes - len("GET  HTTP/1.1")
    # The fewest requests for an in-order split: each URL (whole, with room for a page token) fits
    # under MAX_URL_BYTES, and each but the last could not have taken the next batch's first symbol.
    firsts = [r for r in log if "page_token" not in r.query]
    url_bytes = [len(big.url) + len(_target(r)) + PAGE_TOKEN_RESERVE_BYTES for r in firsts]
    assert all(size <= MAX_URL_BYTES for size in url_bytes)
    for size, nxt in zip(url_bytes, sent[1:], strict=False):
        assert size + SEPARATOR_BYTES + len(nxt[0]) > MAX_URL_BYTES
    assert len(sent) >= math.ceil(UNIVERSE * 8 / big.server.max_url_bytes)  # ~8 bytes a symbol: >= 12 URLs


def test_the_data_agent_counts_every_request_at_12000_symbols(big: Any, symbols: list[str], tmp_path: Any) -> None:
    tiers = ",".join(f"{s}:TIER3" for s in symbols)
    config = get_config(env_file=None, symbol_tiers=tiers, request_timeout_seconds=60, state_dir=tmp_path)
    agent = DataAgent(config, market=gateway_for(big, config), clock=big.clock, calendar=CAL)
    big.server.clear_log()
    data = agent.process(config.symbols, limit=2)
    assert len(data) == UNIVERSE and not data.excluded
    requests = big.server.count(path_prefix=BARS)
    assert data.requests == requests and requests > 1
    assert all(r.status == 200 for r in big.server.request_log)


def test_packing_is_greedy_in_order_and_never_over_the_limit() -> None:
    symbols = ["A", "BB", "CCC", "BRK.B", "DDDD"] * 3
    batches = pack_symbols(symbols, fixed_bytes=100, max_bytes=120)
    assert [s for batch in batches for s in batch] == symbols
    for batch in batches:
        assert 100 + sum(len(s) for s in batch) + 3 * (len(batch) - 1) <= 120
    # Greedy: no batch could have taken the next batch's first symbol.
    for batch, nxt in zip(batches, batches[1:], strict=False):
        assert 100 + sum(len(s) for s in batch) + 3 * len(batch) + len(nxt[0]) > 120
    with pytest.raises(ValueError, match="exceeds"):
        pack_symbols(["TOOLONG"], fixed_bytes=118, max_bytes=120)
