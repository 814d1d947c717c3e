"""client_order_id: the deterministic name of one decision's order, and which daemon sent it.

    {prefix}-{instance}-{signal session YYYYMMDD}-{symbol}-{side}-{sha256(prefix|session|symbol|side)[:10]}
    e.g. zmr-i3f9a0c1b-20250310-AAPL-buy-3f1c9a0b2e                      (at most ~60 of Alpaca's 128 characters)

- `prefix` is the strategy's (ORDER_ID_PREFIX, default "zmr").
- `instance` identifies the state directory (`i` + 8 hex digits, made with the state database and
  kept in it), so two daemons with different state directories on one account can tell their orders
  apart (core/instance_guard.py).
- The rest is the decision key, unchanged: a retry, a second iteration or a restart can only name the
  same order again, and the digest is the one the previous format had.
- Attempt n > 1 of a decision (an exit re-sent after the broker refused it for a transient reason,
  core/exit_commitments.py) hashes `prefix|session|symbol|side|attempt n`: the same readable part, a
  different digest, because Alpaca never accepts one client_order_id twice.

The previous format, `{prefix}-{YYYYMMDD}-{symbol}-{side}-{digest}`, has no instance. A database
that sent such orders still finds them by client_order_id in its own journal; they are never taken
for another daemon's.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import date

from core.domain.models import Side

INSTANCE_PATTERN = r"i[0-9a-f]{8}"
_ID = re.compile(
    r"(?P<prefix>[A-Za-z][A-Za-z0-9]*)-(?:(?P<instance>" + INSTANCE_PATTERN + r")-)?(?P<session>\d{8})-"
    r"(?P<symbol>[A-Z]{1,5}(?:\.[A-Z]{1,2})?)-(?P<side>buy|sell)-(?P<digest>[0-9a-f]{10})"
)


@dataclass(frozen=True, slots=True)
class OrderId:
    prefix: str
    instance: str | None          # None: the format before instance ids
    session: date
    symbol: str
    side: str
    digest: str

    @property
    def decision(self) -> tuple[str, date, str, str]:
        """What the id names, whichever daemon sent it: (prefix, signal session, symbol, side)."""
        return (self.prefix, self.session, self.symbol, self.side)


# A dry run's decisions are journalled under their own key, never under the client_order_id a real run
# would send: a dry run on the production state directory must not make a real decision look handled.
DRY_RUN_KEY_PREFIX = "dry-run:"


def dry_run_key(client_order_id: str) -> str:
    return DRY_RUN_KEY_PREFIX + client_order_id


def new_instance_id() -> str:
    return "i" + secrets.token_hex(4)


def is_instance_id(value: str) -> bool:
    return re.fullmatch(INSTANCE_PATTERN, value) is not None


def format_client_order_id(prefix: str, session: date, symbol: str, side: Side, instance: str | None = None,
                           attempt: int = 1) -> str:
    day = session.isoformat()   # YYYY-MM-DD (a str.format of the date is several times slower)
    side_name = str.__str__(side)
    key = f"{prefix}|{day}|{symbol}|{side_name}"
    if attempt > 1:
        # A later attempt of the same decision (an exit re-sent after a transient refusal, see
        # core/exit_commitments.py): only the hash differs, so the readable part still names the decision.
        key += f"|attempt {attempt}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    middle = f"{instance}-" if instance is not None else ""
    return f"{prefix}-{middle}{day[0:4]}{day[5:7]}{day[8:10]}-{symbol}-{side_name}-{digest}"


def parse_client_order_id(client_order_id: str) -> OrderId | None:
    """The parts of an id in either format, or None for an id this project did not make."""
    match = _ID.fullmatch(client_order_id)
    if match is None:
        return None
    day = match["session"]
    try:
        session = date(int(day[:4]), int(day[4:6]), int(day[6:]))
    except ValueError:
        return None
    return OrderId(match["prefix"], match["instance"], session, match["symbol"], match["side"], match["digest"])
