"""ExecutionAgent against the simulated market through the real SDK: qty vs notional, fallbacks,
and no duplicate order after any unclear outcome."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from agents.execution_agent import ExecutionAgent, client_order_id
from core.domain.market_calendar import bar_timestamp
from core.domain.models import OrderTarget, Side, Signal, SignalReason
from core.domain.order_ids import dry_run_key
from core.domain.ports import IntentState
from core.state.memory_journal import MemoryJournal

SESSION = date(2025, 3, 7)          # the signal's bar: last completed session before 2025-03-10
TRADING = date(2025, 3, 10)


def _target(symbol: str, side: Side = Side.BUY, qty: float = 1.0, notional: float = 150.0, price: float = 150.0,
            fractional: bool = True) -> OrderTarget:
    reason = SignalReason.ENTRY_OVERSOLD if side is Side.BUY else SignalReason.EXIT_MEAN_REVERTED
    sig = Signal(symbol, side, price, bar_timestamp(SESSION), SESSION, -2.4, reason)
    return OrderTarget(symbol, side, qty, notional, price, fractional, "TIER3", sig)


def _agent(gateway: Any, journal: MemoryJournal | None = None, **kw: Any) -> ExecutionAgent:
    return ExecutionAgent(gateway, journal or MemoryJournal(), **kw)


def _count(sim: Any, cid: str) -> int:
    return sim.exchange.orders_for_client_id(cid)


def test_client_order_id_is_deterministic() -> None:
    a = client_order_id("zmr", SESSION, "AAPL", Side.BUY)
    assert a == client_order_id("zmr", SESSION, "AAPL", Side.BUY)
    assert a != client_order_id("zmr", SESSION, "AAPL", Side.SELL) and len(a) <= 128


def test_fractional_buy_goes_as_notional_day_order(sim: Any, gateway: Any) -> None:
    price = sim.bars.price_at("COST", sim.clock.now())
    report = _agent(gateway).execute([_target("COST", qty=150.0 / price, notional=150.0, price=price)], TRADING)
    (order,) = report.submitted
    assert order.notional == 150.0 and order.qty is None and report.fractional_orders == 1


def test_whole_shares_go_as_qty(sim: Any, gateway: Any) -> None:
    report = _agent(gateway).execute([_target("AAPL", qty=3.0, notional=570.0, price=190.0, fractional=False)], TRADING)
    assert report.submitted[0].qty == 3.0 and report.submitted[0].notional is None
    assert report.whole_share_orders == 1


def test_non_fractionable_falls_back_to_whole_shares_or_skips(sim: Any, gateway: Any) -> None:
    xle = sim.bars.price_at("XLE", sim.clock.now())
    report = _agent(gateway).execute([_target("XLE", qty=600.0 / xle, notional=600.0, price=xle)], TRADING)
    assert report.submitted[0].qty == float(int(600.0 / xle)) and report.submitted[0].notional is None
    avgo = sim.bars.price_at("AVGO", sim.clock.now())
    report = _agent(gateway).execute([_target("AVGO", qty=150.0 / avgo, notional=150.0, price=avgo)], TRADING)
    assert report.submitted == [] and "not fractionable" in report.rejected[0].reason
    assert sim.exchange.orders_for_client_id(client_order_id("zmr", SESSION, "AVGO", Side.BUY)) == 0


def test_account_without_fractional_trading_uses_whole_shares(sim: Any, gateway: Any) -> None:
    sim.exchange.set_fractional_trading(False)
    price = sim.bars.price_at("XLK", sim.clock.now())
    report = _agent(gateway).execute([_target("XLK", qty=600.0 / price, notional=600.0, price=price)], TRADING)
    assert report.submitted[0].qty == float(int(600.0 / price))


def test_asset_flags_are_cached_per_session(sim: Any, gateway: Any) -> None:
    agent = _agent(gateway)
    agent.asset_flags(["AAPL", "MSFT"], TRADING)
    before = sim.server.count(path_prefix="/v2/assets")
    agent.asset_flags(["AAPL", "MSFT"], TRADING)
    assert sim.server.count(path_prefix="/v2/assets") == before
    agent.asset_flags(["AAPL"], date(2025, 3, 11))
    assert sim.server.count(path_prefix="/v2/assets") == before + 1


def test_dry_run_sends_nothing(sim: Any, gateway: Any) -> None:
    journal = MemoryJournal()
    report = _agent(gateway, journal, dry_run=True).execute([_target("AAPL", qty=2.0, notional=380, price=190,
                                                                     fractional=False)], TRADING)
    assert report.dry_run[0].qty == 2.0 and report.submitted == []
    assert sim.server.count(path_prefix="/v2/orders", method="POST") == 0
    # Journalled under its own key: the real client_order_id stays free for a real run's decision.
    cid = report.dry_run[0].client_order_id
    assert journal.intents[dry_run_key(cid)].state == IntentState.DRY_RUN and cid not in journal.intents
    session = journal.intents[dry_run_key(cid)].signal_session
    assert journal.handled_signals(session) == set(), "a dry run never makes a real decision look handled"
    assert journal.handled_signals(session, dry_run=True) == {("AAPL", "buy")}


def test_fractional_sell_goes_by_qty_up_to_held(sim: Any, gateway: Any) -> None:
    sim.exchange.add_position("MSFT", 0.357142857, 420.0)
    report = _agent(gateway).execute([_target("MSFT", side=Side.SELL, qty=0.357142857, notional=150.0, price=420.0)],
                                     TRADING)
    assert report.submitted[0].qty == pytest.approx(0.357142857) and report.submitted[0].side is Side.SELL


def test_rejection_is_recorded_and_not_retried(sim: Any, gateway: Any) -> None:
    journal = MemoryJournal()
    agent = _agent(gateway, journal)
    report = agent.execute([_target("AAPL", qty=500.0, notional=95_000.0, price=190.0, fractional=False)], TRADING)
    assert report.submitted == [] and "insufficient buying power" in report.rejected[0].reason
    cid = client_order_id("zmr", SESSION, "AAPL", Side.BUY)
    assert journal.intents[cid].state == IntentState.REJECTED
    again = agent.execute([_target("AAPL", qty=500.0, notional=95_000.0, price=190.0, fractional=False)], TRADING)
    assert "already handled" in again.rejected[0].reason
    assert sim.server.count(path_prefix="/v2/orders", method="POST") == 1


def test_422_duplicate_is_reconciled(sim: Any, gateway: Any) -> None:
    target = _target("AAPL", qty=1.0, notional=190.0, price=190.0, fractional=False)
    first = _agent(gateway).execute([target], TRADING)
    fresh_journal_agent = _agent(gateway)  # a journal that lost the record: the broker still knows
    second = fresh_journal_agent.execute([target], TRADING)
    assert second.submitted[0].id == first.submitted[0].id
    assert _count(sim, first.submitted[0].client_order_id) == 1


@pytest.mark.parametrize("fault", ["accept_then_drop", "504_after_accept"])
def test_unclear_submit_leaves_exactly_one_order_200_times(sim: Any, gateway: Any, fault: str) -> None:
    """Issue 4's done-when: each scenario 200 times, 0 duplicates."""
    duplicates = 0
    for i in range(200):
        sim.server.faults.inject(fault, method="POST", path_prefix="/v2/orders", count=1)
        session = date.fromordinal(SESSION.toordinal() - i)
        sig = Signal("XLF", Side.BUY, 40.0, bar_timestamp(session), session, -2.2, SignalReason.ENTRY_OVERSOLD)
        target = OrderTarget("XLF", Side.BUY, 1.0, 40.0, 40.0, False, "TIER2", sig)
        report = _agent(gateway).execute([target], TRADING)
        cid = client_order_id("zmr", session, "XLF", Side.BUY)
        assert len(report.submitted) == 1, report
        duplicates += _count(sim, cid) - 1
    assert duplicates == 0


def test_timeout_then_absent_submits_exactly_once(sim: Any, gateway: Any) -> None:
    """A POST that never reached the broker (dropped before processing) is sent again with the same id."""
    sim.server.faults.inject("drop", method="POST", path_prefix="/v2/orders", count=1)
    report = _agent(gateway).execute([_target("AAPL", qty=1.0, notional=190, price=190, fractional=False)], TRADING)
    assert len(report.submitted) == 1
    assert _count(sim, report.submitted[0].client_order_id) == 1
    assert sim.server.count(path_prefix="/v2/orders", method="POST") == 2
