"""Issue 10, item 1: splits, reverse splits and dividends (end to end, through the real SDK).

On the ex-date the broker re-bases raw prices, adjusts earlier bars for `adjustment=split|all` as of
the request's date, and re-bases a held position (quantity x ratio, avg_entry_price / ratio). The
daemon must notice the re-adjusted history in its bar cache and refetch it (one extra request, that
iteration only), re-base its own book (quantity and every stored price an exit rule uses), confirm
the split with the corporate-actions data, and sell the re-based quantity at its exit. Before issue
10 a running daemon mixed cached pre-split bars with post-split ones: a name it did not hold showed a
fake crash (and was bought), and a held name was sold as a false "stop-loss".

The synthetic model is the split-adjusted series (core/sim): its z-scores are the ones a correctly
adjusted history gives, so each test checks its precondition on the model before the split is
registered.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

import numpy as np
import pytest
from structlog.testing import capture_logs

from agents.data_agent import DataAgent
from agents.execution_agent import client_order_id
from core.domain.indicators import rolling_zscore
from core.domain.models import Side
from tests.harness.clocks import ny
from tests.harness.logs import events
from tests.harness.market import BARS_PATH
from tests.harness.scenario import (
    SCENARIO_INSTANCE,
    Scenario,
    assert_book_matches_broker,
    assert_no_duplicate_orders,
)

CORPORATE_ACTIONS_PATH = "/v1/corporate-actions"
# Exits only by max holding (3 sessions), so the test controls when the held name is sold.
EXITS: dict[str, Any] = {"exit_z": 5.0, "max_holding_sessions": 3, "loop_interval_seconds": 900}


@pytest.fixture
def scenario_config() -> dict[str, Any]:
    return EXITS


def _model_z(scn: Scenario, symbols: list[str], sessions: list[date]) -> dict[tuple[str, date], float]:
    """The z-scores of the split-adjusted series (the model, before any split is registered)."""
    first = scn.calendar.sessions_back(sessions[0], 45)
    days = scn.calendar.sessions_between(first, sessions[-1])
    z = rolling_zscore(scn.sim.bars.matrix(symbols, days)["close"], scn.config.zscore_lookback)
    return {(s, d): float(z[days.index(d), j]) for j, s in enumerate(symbols) for d in sessions}


def _orders(scn: Scenario, symbol: str, side: str | None = None) -> list[Any]:
    return [o for o in scn.broker_orders() if o.symbol == symbol and (side is None or o.side == side)]


# ================================================================================ forward split
# NVDA closes 2.15 sd below its mean on 2025-06-04 (bought 06-05); NVDA and AVGO split 10-for-1 with
# the ex-date Monday 06-09. AVGO is never oversold on the adjusted series.
NVDA_DECISION = date(2025, 6, 4)
EX_DATE = date(2025, 6, 9)
SPLIT_UNIVERSE = {"NVDA": "TIER3", "AVGO": "TIER3", "SPY": "TIER1"}


def test_a_daemon_running_across_a_10_for_1_split_rebases_and_is_not_fooled(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 6, 5, 9, 0), symbol_tiers=SPLIT_UNIVERSE, entry_z=1.5)
    sessions = scn.calendar.sessions_between(NVDA_DECISION, date(2025, 6, 10))
    z = _model_z(scn, ["NVDA", "AVGO", "SPY"], sessions)
    assert z[("NVDA", NVDA_DECISION)] <= -1.5, "precondition: NVDA is an entry on 06-04"
    assert all(z[(s, d)] > -1.5 for s in ("AVGO", "SPY") for d in sessions), "precondition: nothing else is"
    assert all(z[("NVDA", d)] > -1.5 for d in sessions[1:]), "precondition: no second NVDA entry"
    for symbol in ("NVDA", "AVGO"):
        scn.sim.exchange.add_split(symbol, EX_DATE, 10.0)

    daemon = scn.boot()
    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 6, 6, 16, 30))   # Thursday and Friday: bars cached
    buy = scn.sim.exchange.order_by_client_id(client_order_id("zmr", NVDA_DECISION, "NVDA", Side.BUY, SCENARIO_INSTANCE))
    assert buy is not None and buy.status == "filled"
    own_before = daemon.store.book()["NVDA"].qty
    entry_before = daemon.store.book()["NVDA"].avg_entry_price
    assert own_before == pytest.approx(buy.filled_qty) and entry_before > 500  # the pre-split basis
    assert events(logs, "history_readjusted") == []

    # Across the ex-date, in the same process: the cache is caught re-adjusted, the book re-based.
    mark = scn.log_mark()
    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 6, 10, 12, 0))
    # The ex-date's first iteration is a new session's first: the whole window afresh, in its one request.
    assert events(logs, "history_readjusted") == []
    assert events(logs, "bar_cache_refreshed")[0]["session"] == str(scn.calendar.previous_session(EX_DATE))
    bars = scn.requests(path_prefix=BARS_PATH, since=mark)
    (first_ex,) = [r for r in bars if r.sim_time == scn.calendar.session_open(EX_DATE)]
    assert first_ex.query["start"][:10] < str(NVDA_DECISION), "the whole window, not from the last cached bar"
    assert len(bars) == len({r.sim_time for r in bars}), "one bars request per iteration"
    actions = scn.requests(path_prefix=CORPORATE_ACTIONS_PATH, since=mark)
    assert len(actions) == 1 and actions[0].sim_time == scn.calendar.session_open(EX_DATE)
    (rebased,) = events(logs, "position_rebased")
    assert rebased["symbol"] == "NVDA" and rebased["ratio"] == 10.0
    assert any("forward_split 10-for-1" in c for c in rebased["confirmed_by"]), rebased["confirmed_by"]
    assert any("broker position" in c for c in rebased["confirmed_by"])
    position = daemon.store.book()["NVDA"]
    assert position.qty == pytest.approx(own_before * 10) and position.avg_entry_price == pytest.approx(entry_before / 10)
    assert position.entry_session == date(2025, 6, 5)
    # No false stop-loss on NVDA, no fake-crash entry in AVGO.
    assert _orders(scn, "NVDA", "sell") == [] and _orders(scn, "AVGO") == []
    assert daemon.store.last_stop_loss_exit("NVDA") is None
    assert_book_matches_broker(scn, daemon.store)
    # The running daemon's history is exactly what a fresh start fetches now.
    fresh = DataAgent(scn.config, market=daemon.gateway, clock=scn.clock, calendar=scn.calendar)
    cold = fresh.process(scn.config.symbols, limit=max(2 * scn.config.zscore_lookback, 40))
    warm = daemon.orchestrator.data_agent.process(scn.config.symbols, limit=max(2 * scn.config.zscore_lookback, 40))
    for symbol in scn.config.symbols:
        assert np.allclose(warm.bars[symbol].values[:, :4], cold.bars[symbol].values[:, :4]), symbol
    scn.kill(daemon)

    # A restart after the split reconciles without refusing and changes nothing.
    with capture_logs() as logs:
        second = scn.boot()
    (reconciled,) = events(logs, "reconciled")
    assert reconciled["rebased"] == {} and reconciled["adjusted"] == [] and reconciled["outside_shares"] == {}
    assert second.store.book()["NVDA"].qty == pytest.approx(own_before * 10)

    # The max-holding exit (decided on 06-10's close) sells the re-based quantity, at post-split prices.
    second.orchestrator.run(until=ny(2025, 6, 11, 10, 0))
    (sell,) = _orders(scn, "NVDA", "sell")
    assert sell.qty == pytest.approx(own_before * 10) and sell.status == "filled"
    assert sell.client_order_id == client_order_id("zmr", date(2025, 6, 10), "NVDA", Side.SELL, SCENARIO_INSTANCE)
    (closed,) = second.store.closed_positions("NVDA")
    assert closed.qty == pytest.approx(own_before * 10) and closed.reason != "exit_stop_loss"
    assert closed.entry_price == pytest.approx(entry_before / 10)
    assert closed.exit_price is not None and closed.exit_price == pytest.approx(sell.filled_avg_price)
    assert _orders(scn, "AVGO") == []
    assert scn.broker_positions() == {} and second.store.book() == {}
    assert_book_matches_broker(scn, second.store)
    assert_no_duplicate_orders(scn, second.store)


# ================================================================================ reverse split
# WMT closes 1.73 sd below its mean on 2025-06-06 (bought Monday 06-09) and does a 1-for-10 reverse
# split with the ex-date Wednesday 06-11, while the daemon is down.
WMT_DECISION = date(2025, 6, 6)
REVERSE_EX_DATE = date(2025, 6, 11)


def test_a_reverse_split_while_the_daemon_is_down_is_rebased_at_start_up(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 6, 9, 9, 0), symbol_tiers={"WMT": "TIER3", "SPY": "TIER1"}, entry_z=1.5)
    sessions = scn.calendar.sessions_between(WMT_DECISION, date(2025, 6, 12))
    z = _model_z(scn, ["WMT", "SPY"], sessions)
    assert z[("WMT", WMT_DECISION)] <= -1.5 < z[("SPY", WMT_DECISION)]
    assert all(z[(s, d)] > -1.5 for s in ("WMT", "SPY") for d in sessions[1:])
    scn.sim.exchange.add_split("WMT", REVERSE_EX_DATE, 0.1)

    first = scn.boot()
    first.orchestrator.run(until=ny(2025, 6, 10, 16, 30))
    own_before = first.store.book()["WMT"].qty
    entry_before = first.store.book()["WMT"].avg_entry_price
    assert entry_before < 10  # the pre-split basis: a tenth of the model's price
    scn.kill(first)

    # Back after the ex-date's open: the broker holds a tenth, at ten times the average.
    scn.clock.advance((ny(2025, 6, 11, 10, 0) - scn.clock.now()).total_seconds())
    assert scn.broker_positions()["WMT"] == pytest.approx(own_before / 10)
    with capture_logs() as logs:
        second = scn.boot()
    (reconciled,) = events(logs, "reconciled")
    assert reconciled["rebased"] == {"WMT": 0.1} and reconciled["closed_externally"] == []
    assert reconciled["adjusted"] == [] and reconciled["outside_shares"] == {}
    (rebased,) = events(logs, "position_rebased")
    assert any("reverse_split 1-for-10" in c for c in rebased["confirmed_by"]), rebased["confirmed_by"]
    position = second.store.book()["WMT"]
    assert position.qty == pytest.approx(own_before / 10) and position.avg_entry_price == pytest.approx(entry_before * 10)
    assert_book_matches_broker(scn, second.store)

    # No false "mean reverted" or stop-loss exit at the ten-fold price; the max-holding exit (decided
    # on 06-12's close, three sessions after the entry) sells the re-based quantity.
    second.orchestrator.run(until=ny(2025, 6, 12, 16, 30))
    assert _orders(scn, "WMT", "sell") == []
    second.orchestrator.run(until=ny(2025, 6, 13, 10, 0))
    (sell,) = _orders(scn, "WMT", "sell")
    assert sell.qty == pytest.approx(own_before / 10, abs=1e-6) and sell.status == "filled"
    assert scn.broker_positions() == {} and second.store.book() == {}
    assert_book_matches_broker(scn, second.store)
    assert_no_duplicate_orders(scn, second.store)


# ================================================================================ dividend under ALL
# NVDA closes 1.6 sd below its mean on Friday 2025-09-05 on the raw tape (not the day before); a
# special dividend of 8% with that ex-date lowers every earlier bar under Adjustment.ALL, so on the
# adjusted history, which a fresh start fetches, 09-05 is no entry at all.
DIVIDEND_EX_DATE = date(2025, 9, 5)


def test_a_dividend_under_all_refetches_the_history_and_gives_no_false_signal(
        scenario: Callable[..., Scenario]) -> None:
    scn = scenario(ny(2025, 9, 4, 9, 0), symbol_tiers={"NVDA": "TIER3", "SPY": "TIER1"}, entry_z=1.5)
    before = scn.calendar.previous_session(DIVIDEND_EX_DATE)
    raw_z = _model_z(scn, ["NVDA", "SPY"], [scn.calendar.previous_session(before), before, DIVIDEND_EX_DATE])
    assert raw_z[("NVDA", DIVIDEND_EX_DATE)] <= -1.5 < raw_z[("SPY", DIVIDEND_EX_DATE)], "precondition"
    assert all(z > -1.5 for (symbol, day), z in raw_z.items() if day != DIVIDEND_EX_DATE), "precondition"
    close = float(scn.sim.bars.matrix(["NVDA"], [before])["close"][0, 0])
    scn.sim.exchange.add_dividend("NVDA", DIVIDEND_EX_DATE, round(0.08 * close, 2))

    daemon = scn.boot()
    daemon.orchestrator.run(until=ny(2025, 9, 4, 16, 30))    # the day before: bars cached
    mark = scn.log_mark()
    with capture_logs() as logs:
        daemon.orchestrator.run(until=ny(2025, 9, 8, 12, 0))  # the ex-date, then the decision on its close
    # The ex-date's first iteration is a new session's first: the whole window afresh, in its one request.
    assert events(logs, "history_readjusted") == []
    bars = scn.requests(path_prefix=BARS_PATH, since=mark)
    (first_ex,) = [r for r in bars if r.sim_time == scn.calendar.session_open(DIVIDEND_EX_DATE)]
    assert first_ex.query["start"][:10] < str(before), "the whole window, not from the last cached bar"
    assert len(bars) == len({r.sim_time for r in bars}), "one bars request per iteration"
    assert scn.requests(path_prefix=CORPORATE_ACTIONS_PATH, since=mark) == [], "nothing held: no split suspected"
    assert _orders(scn, "NVDA") == [], "bought on a history the broker no longer serves"
    # The decision on 09-05's close used the adjusted history, as a fresh start does.
    fresh = DataAgent(scn.config, market=daemon.gateway, clock=scn.clock, calendar=scn.calendar)
    cold = fresh.process(["NVDA"], limit=max(2 * scn.config.zscore_lookback, 40))
    warm = daemon.orchestrator.data_agent.process(["NVDA"], limit=max(2 * scn.config.zscore_lookback, 40))
    assert np.allclose(warm.bars["NVDA"].values[:, :4], cold.bars["NVDA"].values[:, :4])
    adjusted_z = rolling_zscore(cold.panel().close, scn.config.zscore_lookback)
    assert adjusted_z[-1, 0] > -1.5, "the adjusted history shows no entry on the ex-date's close"
    assert {it["status"] for it in scn.iterations()} == {"ok"}
    assert_no_duplicate_orders(scn, daemon.store)
