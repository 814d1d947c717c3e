"""The checks every end-to-end test ends with: no duplicate order, no lost intent, and the daemon's
book equal to the broker's positions (less the shares that are not the daemon's)."""

from __future__ import annotations

from collections import Counter
from datetime import date

from core.domain.order_ids import parse_client_order_id
from core.domain.ports import IntentState
from core.sim import SimMarket
from core.state.store import StateStore
from tests.harness.market import broker_orders, broker_positions
from tests.harness.state import StateDb

QTY_TOL = 1e-6


def assert_no_duplicate_orders(sim: SimMarket, *, prefix: str | None = None, state: StateDb | None = None,
                               store: StateStore | None = None) -> None:
    """Each client_order_id was created at most once at the broker.

    With `prefix` (the daemon's order-id prefix): one decision (strategy, session, symbol, side) led to at
    most one order, whichever instance sent it and in either id format. With `state`: every SUBMITTED
    intent has exactly its order at the broker, and no rejected, abandoned, skipped or dry-run one has
    any. With `store`: every order the store knows is the broker's, under the same broker id."""
    orders = broker_orders(sim, source=None)
    cids = [o.client_order_id for o in orders]
    assert len(cids) == len(set(cids)), f"duplicate client_order_id at the broker: {sorted(cids)}"
    used_twice = [cid for cid in cids if sim.exchange.orders_for_client_id(cid) != 1]
    assert used_twice == [], f"client_order_ids used for more than one broker order: {used_twice}"
    by_cid = {o.client_order_id: o for o in orders}
    if prefix is not None:
        parsed = [parse_client_order_id(cid) for cid in cids if cid.startswith(f"{prefix}-")]
        assert all(p is not None for p in parsed), f"an id of this strategy in no known format: {sorted(cids)}"
        decisions = [p.decision for p in parsed if p is not None]
        assert len(decisions) == len(set(decisions)), f"two orders for one decision: {sorted(decisions)}"
    if state is not None:
        for cid, intent in state.intents().items():
            count = sim.exchange.orders_for_client_id(cid)
            if intent["state"] == "submitted":
                assert count == 1, f"SUBMITTED intent {cid} has {count} orders at the broker"
                assert intent["broker_order_id"] == by_cid[cid].id
            elif intent["state"] in ("rejected", "abandoned", "skipped", "dry_run"):
                assert count == 0, f"{intent['state']} intent {cid} has an order at the broker"
    if store is not None:
        for stored in store.all_orders():
            assert stored.client_order_id in by_cid, f"{stored.client_order_id} is unknown to the broker"
            assert by_cid[stored.client_order_id].id == stored.id


def assert_no_lost_intents(sim: SimMarket, store: StateStore, prefix: str) -> None:
    """Every order of the strategy (`prefix`) at the broker has its intent, and not one the daemon gave
    up on; and no decision (symbol, side, signal session) reached the broker twice, whatever the ids."""
    decisions: Counter[tuple[str, str, date]] = Counter()
    for order in broker_orders(sim, source=None, prefix=prefix):
        intent = store.get_intent(order.client_order_id)
        assert intent is not None, f"broker order {order.client_order_id} has no intent in the state DB"
        assert intent.state in (IntentState.PENDING, IntentState.SUBMITTED), (order.client_order_id, intent.state)
        assert (intent.symbol, intent.side) == (order.symbol, order.side)
        decisions[(intent.symbol, intent.side, intent.signal_session)] += 1
    twice = [key for key, count in decisions.items() if count > 1]
    assert twice == [], f"decisions sent to the broker more than once: {twice}"


def assert_book_matches_broker(sim: SimMarket, store: StateStore, outside: dict[str, float] | None = None) -> None:
    """The broker holds exactly the daemon's own book plus `outside`: the shares that are not the
    daemon's (the user's), which the daemon must also know as not its own (its last observation)."""
    outside = outside or {}
    book = {symbol: pos.qty for symbol, pos in store.book().items()}
    broker = broker_positions(sim)
    assert set(book) <= set(broker), f"book {book} holds symbols the broker does not: {broker}"
    assert set(broker) == set(book) | {s for s, q in outside.items() if q > 1e-9}, f"book {book} vs broker {broker}"
    for symbol, qty in broker.items():
        own = book.get(symbol, 0.0)
        assert own <= qty + QTY_TOL, f"{symbol}: the daemon's own {own} exceeds the broker's {qty}"
        expected = outside.get(symbol, 0.0)
        assert abs(qty - own - expected) < QTY_TOL, f"{symbol}: broker {qty} = own {own} + outside {expected}?"
    seen = store.seen_positions()
    for symbol, qty in outside.items():
        assert symbol in seen and abs(seen[symbol].outside_qty - qty) < QTY_TOL, (
            f"{symbol}: the daemon does not know that {qty} shares are not its own ({seen.get(symbol)})")
