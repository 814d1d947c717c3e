"""Is a broker's refusal of an order transient (try again later) or permanent? Decided here only.

It matters for exits: a stop-loss the broker refused because trading was blocked for a few minutes,
or because the asset was halted, must go out once the cause lifts; a sale the broker will never
accept (a malformed request) must not be re-sent every iteration for ever.

Transient: the cause is a state of the account or the market that changes on its own or by a human:
- 429 and 5xx (nothing, or maybe something, was created; the intent stays pending and is looked up),
  and an answer that could not be read (a proxy's HTML page is not the broker's decision);
- trading blocked / account not authorised to trade / new orders suspended by the user;
- asset not tradable, not active, halted;
- shares held by another open order ("insufficient qty available"), a wash-trade guard against an
  open opposite order, the market being closed: all end when the other order or the hour ends.
Permanent: everything else (a malformed or unsupported request, an unknown 4xx). Unknown refusals
are permanent on purpose: re-sending a request the broker does not understand cannot help, and the
daemon says so in one error line naming the position, so a human acts.

The table lives in docs/failure-policy.md ("Exits the broker refuses").
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from core.domain.errors import AmbiguousBrokerError, BadBrokerResponseError, BrokerError, RateLimitedError


class RefusalKind(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Refusal:
    kind: RefusalKind
    cause: str          # short name of the matched rule, for logs and the state DB


# (fragment of the broker's message, lower case) -> cause. Alpaca's texts, plus the simulated market's.
TRANSIENT_MESSAGES: tuple[tuple[str, str], ...] = (
    ("trading blocked", "trading_blocked"),
    ("trading is blocked", "trading_blocked"),
    ("not authorized to trade", "trading_blocked"),
    ("account is blocked", "trading_blocked"),
    ("rejected by user request", "trading_suspended_by_user"),
    ("trade suspended", "trading_suspended_by_user"),
    ("not tradable", "asset_not_tradable"),
    ("is not active", "asset_not_tradable"),
    ("halt", "asset_halted"),
    ("insufficient qty", "shares_held_by_another_order"),
    ("held_for_orders", "shares_held_by_another_order"),
    ("wash trade", "opposite_order_open"),
    ("market is closed", "market_closed"),
)


def classify_refusal(exc: BrokerError) -> Refusal:
    """Transient or permanent, with the cause. Pure."""
    if isinstance(exc, RateLimitedError) or exc.status == 429:
        return Refusal(RefusalKind.TRANSIENT, "rate_limited")
    if isinstance(exc, AmbiguousBrokerError) or (exc.status is not None and exc.status >= 500):
        return Refusal(RefusalKind.TRANSIENT, "server_error")
    if isinstance(exc, BadBrokerResponseError):
        return Refusal(RefusalKind.TRANSIENT, "unreadable_answer")  # a proxy's page is not the broker's word
    text = str(exc).lower()
    for fragment, cause in TRANSIENT_MESSAGES:
        if fragment in text:
            return Refusal(RefusalKind.TRANSIENT, cause)
    return Refusal(RefusalKind.PERMANENT, f"http_{exc.status}" if exc.status else "refused")


NOT_TRADABLE_NOW = Refusal(RefusalKind.TRANSIENT, "asset_not_tradable")
"""The asset's fresh flags say it cannot be traded now (a halt): the sale waits, it is not given up."""
