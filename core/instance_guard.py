"""Another daemon on this account: orders with this strategy's prefix but another instance id.

Two daemons with different state directories on one account each believe the positions are theirs:
each sees the other's fills as its own symbols' positions, sells them, sizes against them. Every
client_order_id carries the state directory's instance id (core/order_ids.py), so:

- At start-up (one request: the account's 500 most recent orders, any status) an order of this
  prefix from another instance refuses the start (ReconciliationError, exit 3) when it is open, or
  was placed after this state directory was created: another daemon trades, or traded while this
  one existed. Older closed ones are what a replaced state directory leaves behind (a damaged
  database moved away, say): logged, not refused.
- While running, each time the daemon reads the broker's open orders anyway (before a decision), an
  open order from another instance halts new entries (halt kind `another_instance`, kept until it
  is cleared by hand); exits keep running.

Ids of the format before instance ids never count as another daemon's (nothing in them says whose
they are); the start-up reconciliation still refuses an open one its journal does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol

import structlog

from core.errors import ReconciliationError
from core.models import BrokerOrder
from core.order_ids import parse_client_order_id

log = structlog.get_logger("instance_guard")

HALT_KIND = "another_instance"


class HaltStore(Protocol):
    def add_halt(self, kind: str, reason: str, session: date) -> bool: ...

SHOWN = 5
HOW_TO_SHARE = (
    "To run two daemons on one account safely, give each its own ORDER_ID_PREFIX and a universe "
    "(SYMBOL_TIERS) that shares no symbol with the other's, and keep UNKNOWN_POSITION_POLICY=flag; "
    "see docs/deploy.md, section 'One account, several daemons'. If the other one is this same daemon "
    "with an earlier state directory, stop it for good or go back to that directory."
)


class InstanceGuard:
    def __init__(self, prefix: str, instance_id: str, created_at: datetime) -> None:
        self.prefix = prefix
        self.instance_id = instance_id
        self.created_at = created_at

    def foreign(self, orders: Iterable[BrokerOrder]) -> list[BrokerOrder]:
        """Orders of this strategy's prefix that another instance sent."""
        found = []
        for order in orders:
            parsed = parse_client_order_id(order.client_order_id)
            if parsed is not None and parsed.prefix == self.prefix and parsed.instance not in (None, self.instance_id):
                found.append(order)
        return found

    def own_ids(self, orders: Iterable[BrokerOrder]) -> frozenset[str]:
        """client_order_ids of `orders` that this daemon sent: its prefix and its instance id (or the
        format before instance ids, which nothing else with this prefix made)."""
        own = set()
        for order in orders:
            parsed = parse_client_order_id(order.client_order_id)
            if parsed is not None and parsed.prefix == self.prefix and parsed.instance in (None, self.instance_id):
                own.add(order.client_order_id)
        return frozenset(own)

    def check_at_startup(self, recent_orders: list[BrokerOrder]) -> None:
        """Refuse to start (ReconciliationError) if another daemon trades this account."""
        foreign = self.foreign(recent_orders)
        live = [o for o in foreign if not o.status.is_terminal or o.submitted_at is None
                or o.submitted_at >= self.created_at]
        if live:
            raise ReconciliationError(
                "refusing to trade: another trading-daemon trades this account. "
                + self._describe(live, since_creation=True) + " " + HOW_TO_SHARE)
        if foreign:
            log.warning("orders_of_an_earlier_instance", count=len(foreign), instances=_instances(foreign),
                        instance_id=self.instance_id, reason="closed orders with this strategy's prefix from "
                        "another state directory, all older than this one: a replaced state directory, or "
                        "another daemon that has stopped; not refused")

    def halt_if_present(self, open_orders: Iterable[BrokerOrder], store: HaltStore, session: date) -> bool:
        """Halt entries when another instance's order is open; True if one is."""
        foreign = self.foreign(open_orders)
        if not foreign:
            return False
        reason = f"{HALT_KIND}: " + self._describe(foreign, since_creation=False)
        if store.add_halt(HALT_KIND, reason, session):
            log.error("another_instance_detected", reason=reason, effect="new entries halted; exits continue",
                      how_to_share=HOW_TO_SHARE)
        return True

    def _describe(self, orders: list[BrokerOrder], *, since_creation: bool) -> str:
        examples = "; ".join(
            f"{o.client_order_id} ({o.side.value} {o.symbol}, {o.status.value}"
            + (f", {o.submitted_at.isoformat(timespec='seconds')}" if o.submitted_at else "") + ")"
            for o in orders[:SHOWN])
        more = f" and {len(orders) - SHOWN} more" if len(orders) > SHOWN else ""
        when = (f" open now or placed since this state directory was created ({self.created_at:%Y-%m-%d %H:%M} UTC)"
                if since_creation else " open now")
        return (f"The broker has {len(orders)} order(s) with this daemon's client_order_id prefix "
                f"'{self.prefix}-' but another instance id ({', '.join(_instances(orders))}; this state "
                f"directory's is {self.instance_id}),{when}: {examples}{more}.")


def _instances(orders: Iterable[BrokerOrder]) -> list[str]:
    found = {parsed.instance for o in orders if (parsed := parse_client_order_id(o.client_order_id)) and parsed.instance}
    return sorted(found)
