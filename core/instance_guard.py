"""Another daemon on this account: orders with this strategy's prefix but another instance id.

Two daemons with different state directories on one account each believe the positions are theirs:
each sees the other's fills as its own symbols' positions, sells them, sizes against them. Every
client_order_id carries the state directory's instance id (core/domain/order_ids.py), so:

- At start-up (one request: the account's 500 most recent orders, any status):
  - an OPEN order of this prefix from another instance refuses the start (ReconciliationError,
    exit 3): another daemon trades this account now;
  - a CLOSED one placed after this state directory was created starts the daemon with the halt
    `another_instance` (no entries, exits go on) and one warning naming the instance and what to do:
    one accidental run of a second daemon must not keep the real one from starting for good.
    `trading-daemon halts clear another_instance` acknowledges the instance(s) named (kept in the
    state, `kv.acknowledged_instances`): their orders up to that moment no longer halt anything;
  - older closed ones are what a replaced state directory leaves behind (a damaged database moved
    away, say): logged, not refused.
- While running, each time the daemon reads the broker's open orders anyway (before a decision), an
  open order from another instance halts new entries (halt kind `another_instance`, kept until it
  is cleared by hand); exits keep running.

Ids of the format before instance ids never count as another daemon's (nothing in them says whose
they are); the start-up reconciliation still refuses an open one its journal does not know.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, datetime
from typing import Protocol

import structlog

from core.domain.errors import ReconciliationError
from core.domain.models import BrokerOrder
from core.domain.order_ids import parse_client_order_id

log = structlog.get_logger("instance_guard")

HALT_KIND = "another_instance"


class HaltStore(Protocol):
    def add_halt(self, kind: str, reason: str, session: date) -> bool: ...

    def get_value(self, key: str) -> str | None: ...

    def set_value(self, key: str, value: str) -> None: ...


# The other instances named by the current `another_instance` halt, and those the owner acknowledged
# (`halts clear another_instance`) with the moment: their orders placed before it no longer count.
SEEN_KEY = "another_instance_ids"
ACKNOWLEDGED_KEY = "acknowledged_instances"

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

    def check_at_startup(self, recent_orders: list[BrokerOrder], store: HaltStore | None = None,
                         session: date | None = None) -> None:
        """Refuse to start (ReconciliationError) while another daemon has an open order on this account;
        halt entries (with `store`) for recent closed ones of an instance not yet acknowledged."""
        foreign = self.foreign(recent_orders)
        open_now = [o for o in foreign if not o.status.is_terminal]
        if open_now:
            raise ReconciliationError(
                "refusing to trade: another trading-daemon trades this account. "
                + self._describe(open_now, since_creation=False) + " " + HOW_TO_SHARE)
        acknowledged = acknowledged_instances(store) if store is not None else {}
        recent = [o for o in foreign if (o.submitted_at is None or o.submitted_at >= self.created_at)
                  and not _acknowledged(o, acknowledged)]
        if recent and store is not None and session is not None:
            instances = _instances(recent)
            reason = (f"{HALT_KIND}: " + self._describe(recent, since_creation=True)
                      + " If that daemon is stopped for good, acknowledge it with `trading-daemon halts clear "
                      f"{HALT_KIND} --reason TEXT`; if it still runs, stop it first.")
            _remember_seen(store, instances)
            store.add_halt(HALT_KIND, reason, session)
            log.warning("another_instance_traded", instances=instances, instance_id=self.instance_id,
                        reason=reason, effect="started with new entries halted; exits continue",
                        how_to_share=HOW_TO_SHARE)
            return
        if recent:
            raise ReconciliationError(
                "refusing to trade: another trading-daemon trades this account. "
                + self._describe(recent, since_creation=True) + " " + HOW_TO_SHARE)
        older = [o for o in foreign if o not in recent]
        if older:
            log.warning("orders_of_an_earlier_instance", count=len(older), instances=_instances(older),
                        instance_id=self.instance_id, reason="closed orders with this strategy's prefix from "
                        "another state directory, all older than this one or acknowledged: a replaced state "
                        "directory, or another daemon that has stopped; not refused")

    def halt_if_present(self, open_orders: Iterable[BrokerOrder], store: HaltStore, session: date) -> bool:
        """Halt entries when another instance's order is open; True if one is."""
        foreign = self.foreign(open_orders)
        if not foreign:
            return False
        reason = f"{HALT_KIND}: " + self._describe(foreign, since_creation=False)
        _remember_seen(store, _instances(foreign))
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


def acknowledged_instances(store: HaltStore) -> dict[str, datetime]:
    """Instance id -> when the owner acknowledged it (`halts clear another_instance`)."""
    try:
        raw = json.loads(store.get_value(ACKNOWLEDGED_KEY) or "{}")
        return {str(k): datetime.fromisoformat(str(v)) for k, v in dict(raw).items()}
    except (TypeError, ValueError):
        log.warning("acknowledged_instances_unreadable", key=ACKNOWLEDGED_KEY, effect="none counts as acknowledged")
        return {}


def acknowledge_seen(store: HaltStore, now: datetime) -> list[str]:
    """Acknowledge the instances the current `another_instance` halt names; returns them."""
    try:
        seen = [str(i) for i in json.loads(store.get_value(SEEN_KEY) or "[]")]
    except (TypeError, ValueError):
        seen = []
    if not seen:
        return []
    acknowledged = acknowledged_instances(store)
    acknowledged.update({instance: now for instance in seen})
    store.set_value(ACKNOWLEDGED_KEY, json.dumps({k: v.isoformat() for k, v in sorted(acknowledged.items())}))
    store.set_value(SEEN_KEY, "[]")
    return seen


def _remember_seen(store: HaltStore, instances: list[str]) -> None:
    try:
        known = [str(i) for i in json.loads(store.get_value(SEEN_KEY) or "[]")]
    except (TypeError, ValueError):
        known = []
    merged = sorted(set(known) | set(instances))
    if merged != sorted(known):
        store.set_value(SEEN_KEY, json.dumps(merged))


def _acknowledged(order: BrokerOrder, acknowledged: dict[str, datetime]) -> bool:
    parsed = parse_client_order_id(order.client_order_id)
    if parsed is None or parsed.instance not in acknowledged:
        return False
    return order.submitted_at is not None and order.submitted_at <= acknowledged[parsed.instance]
