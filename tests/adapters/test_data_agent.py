"""DataAgent against the simulated market through the real SDK: one batched request, pagination,
incremental refresh, and every validation rule excluding a symbol with a reason."""

from __future__ import annotations

import math
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from agents.data_agent import DataAgent
from core.domain.market_calendar import get_market_calendar, session_of_bar
from tests.harness.config import REPO_ROOT, venv_env

CAL = get_market_calendar()
BARS = "/v2/stocks/bars"


def _agent(config: Any, gateway: Any, sim: Any) -> DataAgent:
    return DataAgent(config, market=gateway, clock=sim.clock, calendar=CAL)


def _transform(sim: Any, fn: Callable[[dict[str, Any]], dict[str, Any]]) -> None:
    sim.server.faults.inject("transform", method="GET", path_prefix=BARS, count=1, fn=fn)


SEED_BATCH_TEST = '''python -c "
from agents.data_agent import DataAgent
from config.settings import get_config
agent = DataAgent(get_config())
symbols = ['SPY', 'QQQ', 'AAPL', 'GOOGL', 'MSFT'] * 6  # 30 symbols
data = agent.process(symbols, timeframe='1Day', limit=252)
print(f'Fetched {len(data)} symbols in 1 API call')
"'''


def test_seed_batch_fetching_command_makes_exactly_one_data_request(tmp_path: Path) -> None:
    """The seed's "Batch Fetching Test", verbatim, against the simulated market at the real time."""
    from core.domain.clock import SimClock
    from core.sim import start_sim_market

    market = start_sim_market(clock=SimClock(datetime.now(UTC)), seed=42)
    try:
        env = venv_env()
        env.update(ALPACA_API_KEY=market.api_key, ALPACA_SECRET_KEY=market.secret_key,
                   ALPACA_DATA_URL=market.url, ALPACA_TRADING_URL=market.url, STATE_DIR=str(tmp_path))
        done = subprocess.run(["bash", "-c", SEED_BATCH_TEST], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "Fetched 5 symbols in 1 API call" in done.stdout
        assert market.server.count(path_prefix=BARS) == 1
    finally:
        market.stop()


def test_one_request_for_deduplicated_symbols(sim: Any, config: Any, gateway: Any) -> None:
    data = _agent(config, gateway, sim).process(["SPY", "QQQ", "AAPL", "GOOGL", "MSFT"] * 6, limit=252)
    assert sorted(data) == ["AAPL", "GOOGL", "MSFT", "QQQ", "SPY"]
    assert sim.server.count(path_prefix=BARS) == 1 and data.requests == 1
    query = [r for r in sim.server.request_log if r.path == BARS][0].query
    assert "start" in query and int(query.get("limit", 10_000)) == 10_000  # window by start, never a small limit
    frame = data["SPY"]
    assert list(frame.columns)[:5] == ["open", "high", "low", "close", "volume"]
    assert len(frame) == 252 and frame.index.is_monotonic_increasing
    assert frame.index[-1].tz_convert("America/New_York").hour == 0   # midnight New York stamps
    assert data.as_of == CAL.last_completed_session(sim.clock.now())
    # The in-progress session's bar is a price, never a bar a signal could be computed on.
    assert session_of_bar(frame.index[-1].to_pydatetime()) == data.as_of
    assert data.current_prices["SPY"] != frame["close"].iloc[-1]
    assert "SPY" in data.current_prices  # the in-progress session's price


def test_pages_only_when_more_than_10000_bars(sim: Any, config: Any, gateway: Any) -> None:
    symbols = config.symbols  # 29 symbols x 500 bars = 14,500 bars -> 2 pages
    data = _agent(config, gateway, sim).process(symbols, limit=500)
    assert len(data) == 29 and all(len(frame) == 500 for frame in data.values())
    assert sim.server.count(path_prefix=BARS) == math.ceil(29 * 501 / 10_000)
    assert data.requests == sim.server.count(path_prefix=BARS)  # requests, pages included, not calls


def test_incremental_refresh_fetches_only_newer_bars_in_one_request(sim: Any, config: Any, gateway: Any) -> None:
    agent = _agent(config, gateway, sim)
    first = agent.process(config.symbols, limit=252)
    last_before = first["AAPL"].index[-1]
    sim.clock.advance(3600)  # later in the same session
    sim.server.clear_log()
    second = agent.process(config.symbols, limit=252)
    (request,) = [r for r in sim.server.request_log if r.path == BARS]
    # From the last cached bar on (it comes back once more, to be compared): nothing older.
    assert datetime.fromisoformat(request.query["start"].replace("Z", "+00:00")) == last_before
    assert second.readjusted == [] and second.requests == 1
    assert second["AAPL"].equals(first["AAPL"])


def test_the_first_fetch_of_a_new_session_refreshes_the_whole_window_in_one_request(
        sim: Any, config: Any, gateway: Any) -> None:
    """Once per session the cache is replaced by the whole window afresh (the same single request), so a
    feed's correction of any older bar reaches a running daemon; within the session it stays incremental."""
    agent = _agent(config, gateway, sim)
    first = agent.process(config.symbols, limit=252)
    sim.clock.advance(24 * 3600)  # Tuesday 11:00: Monday's session completed
    sim.server.clear_log()
    _transform(sim, _mutate("MSFT", lambda bars: bars.__setitem__(0, {**bars[0], "c": bars[0]["c"] * 1.5,
                                                                      "h": max(bars[0]["h"], bars[0]["c"] * 1.5)})))
    second = agent.process(config.symbols, limit=252)
    (request,) = [r for r in sim.server.request_log if r.path == BARS]
    assert datetime.fromisoformat(request.query["start"].replace("Z", "+00:00")) == first["AAPL"].index[1]
    assert second.requests == 1 and second.readjusted == []
    assert second["AAPL"].iloc[:-1].equals(first["AAPL"].iloc[1:]) and len(second["AAPL"]) == 252
    # The oldest bar of MSFT's window as the feed now has it, not as the cache held it.
    assert second["MSFT"]["close"].iloc[0] == pytest.approx(first["MSFT"]["close"].iloc[1] * 1.5)


@pytest.mark.parametrize(("factor", "refetched"), [(0.997, True), (1.0 / 0.997, True), (10.0, True),
                                                   (1.000001, False)])
def test_a_reshaped_overlap_bar_refetches_that_symbols_window_in_one_extra_request(
        sim: Any, config: Any, gateway: Any, factor: float, refetched: bool) -> None:
    """A dividend factor (0.997), a split (10) or a correction moves the cached history: the symbol is
    refetched over its whole window; a difference of float formatting (1e-6) is not a re-adjustment."""
    agent = _agent(config, gateway, sim)
    first = agent.process(["AAPL", "MSFT", "SPY"], limit=60)
    sim.clock.advance(3600)   # the same session: the incremental fetch and its overlap check
    sim.server.clear_log()

    def reshape(bars: list[dict[str, Any]]) -> None:
        for bar in bars[:-1]:  # every completed bar, as an adjustment does; the in-progress one stays
            for key in ("o", "h", "l", "c"):
                bar[key] = round(bar[key] * factor, 6)

    _transform(sim, _mutate("MSFT", reshape))
    second = agent.process(["AAPL", "MSFT", "SPY"], limit=60)
    requests = [r for r in sim.server.request_log if r.path == BARS]
    assert second.readjusted == (["MSFT"] if refetched else [])
    assert len(requests) == second.requests == (2 if refetched else 1)
    if refetched:
        assert requests[1].query["symbols"] == "MSFT"
        # Its whole window, from the first bar it keeps (not from the cached last one).
        assert datetime.fromisoformat(requests[1].query["start"].replace("Z", "+00:00")) == second["MSFT"].index[0]
        # The refetched window is the broker's history now, not the reshaped answer mixed into the cache.
        assert second["MSFT"]["close"].equals(first["MSFT"]["close"])
    assert second["AAPL"].equals(first["AAPL"]) and len(second["MSFT"]) == 60


def test_invalid_ticker_is_excluded_and_never_sent(sim: Any, config: Any, gateway: Any) -> None:
    data = _agent(config, gateway, sim).process(["AAPL", "../etc", "A B"], limit=60)
    assert set(data.excluded) == {"../etc", "A B"}
    sent = [r for r in sim.server.request_log if r.path == BARS][0].query["symbols"]
    assert sent == "AAPL"


def _mutate(symbol: str, fn: Callable[[list[dict[str, Any]]], None]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def transform(payload: dict[str, Any]) -> dict[str, Any]:
        if symbol in payload.get("bars", {}):
            fn(payload["bars"][symbol])
        return payload

    return transform


def _set(i: int, **values: Any) -> Callable[[list[dict[str, Any]]], None]:
    def apply(bars: list[dict[str, Any]]) -> None:
        bars[i].update(values)

    return apply


@pytest.mark.parametrize(
    ("mutation", "reason"),
    [
        (_set(-3, c=float("nan")), "non-finite close"),
        (_set(-3, o=0.0), "zero or negative open"),
        (_set(-3, l=-1.0), "zero or negative low"),
        (_set(-3, h=1.0), "inconsistent OHLC"),
        (lambda bars: bars.insert(5, dict(bars[5])), "duplicate bar timestamps"),
        (lambda bars: bars.__setitem__(slice(3, 5), [bars[4], bars[3]]), "out of order"),
        (lambda bars: bars.__delitem__(slice(-3, None)), "stale"),
        (lambda bars: [b.pop("n") for b in bars], "'n'"),
    ],
)
def test_bad_bars_exclude_one_symbol_with_reason(sim: Any, config: Any, gateway: Any,
                                                 mutation: Callable[[list[dict[str, Any]]], None], reason: str) -> None:
    _transform(sim, _mutate("MSFT", mutation))
    data = _agent(config, gateway, sim).process(["AAPL", "MSFT", "SPY"], limit=60)
    assert "MSFT" not in data and sorted(data) == ["AAPL", "SPY"]
    assert reason in data.excluded["MSFT"]


def test_missing_symbol_is_reported_not_silently_dropped(sim: Any, config: Any, gateway: Any) -> None:
    def drop(payload: dict[str, Any]) -> dict[str, Any]:
        payload["bars"].pop("MSFT", None)
        return payload

    _transform(sim, drop)
    data = _agent(config, gateway, sim).process(["AAPL", "MSFT"], limit=60)
    assert "missing from the batch answer" in data.excluded["MSFT"] and "AAPL" in data


def test_only_daily_timeframe(sim: Any, config: Any, gateway: Any) -> None:
    with pytest.raises(ValueError, match="1Day"):
        _agent(config, gateway, sim).process(["AAPL"], timeframe="5Min")


def test_a_cached_symbol_missing_from_the_answer_keeps_its_cached_bars(sim: Any, config: Any, gateway: Any) -> None:
    """Within a session a symbol the answer leaves out keeps the bars the cache holds (priced at its last
    close); without a cache it is reported missing (test above)."""
    agent = _agent(config, gateway, sim)
    first = agent.process(["AAPL", "MSFT"], limit=60)
    sim.clock.advance(3600)

    def drop(payload: dict[str, Any]) -> dict[str, Any]:
        payload["bars"].pop("MSFT", None)
        return payload

    _transform(sim, drop)
    second = agent.process(["AAPL", "MSFT"], limit=60)
    assert list(second) == ["AAPL", "MSFT"] and second.excluded == {} and second.readjusted == []
    assert second["MSFT"].equals(first["MSFT"])
    assert second.current_prices["MSFT"] == first["MSFT"]["close"].iloc[-1]
    assert second.current_prices["AAPL"] != second["AAPL"]["close"].iloc[-1], "AAPL: its in-progress bar's price"


def test_the_panel_is_built_once_per_session_and_again_when_the_bars_change(
        sim: Any, config: Any, gateway: Any) -> None:
    agent = _agent(config, gateway, sim)
    panel = agent.process(config.symbols, limit=60).panel()
    sim.clock.advance(600)   # the next iterations of the same session: the same cached bars
    assert agent.process(config.symbols, limit=60).panel() is panel
    assert agent.process(list(reversed(config.symbols)), limit=60).panel().symbols == list(reversed(panel.symbols))
    sim.clock.advance(24 * 3600)   # the next session: the whole window afresh, one more bar
    later = agent.process(config.symbols, limit=60).panel()
    assert later is not panel and later.sessions[:-1] == panel.sessions[1:]
    assert later.sessions[-1] > panel.sessions[-1]
