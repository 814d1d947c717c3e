"""Whose shares are they? The daemon's own quantity against the broker's, and what explains a change.

The daemon's book holds only what its own orders built (plus positions adopted on purpose under
`UNKNOWN_POSITION_POLICY=adopt`). The broker's position in a symbol may hold more: shares the user
bought by hand, or another program's. Per symbol:

    own      the daemon's own quantity (the book, from its own fills)
    broker   the broker's quantity (GET /v2/positions)
    outside  broker - own: shares that are not the daemon's; reported, never traded

The last broker quantity and avg_entry_price seen per symbol are kept in the state database
(`SeenPosition`, with the daemon's own quantity at that moment), so a change of the broker's
position that the daemon's own fills do not explain can be explained at the next iteration or the
next start-up:

- a split (or a reverse split): the broker's quantity changed by a factor r and its avg_entry_price
  by 1/r (the cost is kept). The daemon's own quantity is multiplied by r and every stored price an
  exit rule uses is divided by r. A reverse split may pay a fractional remainder in cash: the own
  quantity is then capped at what the broker holds.
- a split the broker's corporate-actions data LISTS (ex-date since the last observation, and the
  broker's avg_entry_price shows it applied) is authoritative even when the quantity does not follow
  the ratio exactly: the daemon's own quantity is re-based first (x r), and whatever is left of the
  difference is explained as above, as the user's trade (`Explanation.residual`). A user who sold or
  bought between the split and the daemon's next look no longer hides the split.
- the user bought: the outside quantity grows; the own quantity stays.
- the user sold: the user's own shares are taken first; only when the broker holds less than the
  daemon's own quantity does the own quantity fall, to what the broker holds (the daemon can never
  sell more than is held); at zero the position is closed in the book as "closed outside the daemon".

Pure: no I/O. The reconciler feeds it the book, the stored observation and the broker's position.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from fractions import Fraction

QTY_TOLERANCE = 1e-6
# A split changes avg_entry_price by at least this much (a 101-for-100 stock dividend is 1%): a
# user's sale leaves the average unchanged, so it can never look like a split.
MIN_SPLIT_CHANGE = 0.01
# How closely the broker's new quantity must follow the ratio read from avg_entry_price (which the
# broker rounds, e.g. to 6 decimals). A user's purchase keeps the cost only if it costs nothing, so
# "quantity x r, cost kept" within this tolerance is a split and nothing else.
SPLIT_QTY_RTOL = 1e-3
# Splits have small whole-number terms (10-for-1, 3-for-2, 1-for-20): the ratio read from prices is
# snapped to the nearest such fraction when it is that close.
MAX_SPLIT_TERM = 250


class Cause(StrEnum):
    UNCHANGED = "unchanged"
    SPLIT = "split"
    OUTSIDE_BOUGHT = "outside_bought"      # shares that are not the daemon's appeared or grew
    OUTSIDE_SOLD = "outside_sold"          # some of them were sold (the daemon's own untouched)
    OWN_REDUCED = "own_reduced"            # the broker holds less than the daemon's own quantity
    GONE = "gone"                          # the broker holds none: the daemon's position was closed outside it


@dataclass(frozen=True, slots=True)
class SeenPosition:
    """The broker's position in a symbol as last seen, with the daemon's own quantity at that moment."""

    symbol: str
    qty: float
    avg_entry_price: float
    own_qty: float
    seen_at: datetime

    @property
    def outside_qty(self) -> float:
        return max(0.0, self.qty - self.own_qty)


@dataclass(frozen=True, slots=True)
class Explanation:
    cause: Cause
    own_qty: float                 # the daemon's own quantity after the change
    outside_qty: float             # the broker's quantity that is not the daemon's
    previous_outside_qty: float
    ratio: float | None = None     # for a split: new shares per old share
    confirmed_by_prices: bool = False  # a split read from quantity AND avg_entry_price (else quantity only)
    # For a split: what explains the rest of the change once the split is applied (a user's trade), or
    # None when the split explains it all.
    residual: Cause | None = None

    @property
    def outside_changed(self) -> bool:
        return abs(self.outside_qty - self.previous_outside_qty) > QTY_TOLERANCE


@dataclass(frozen=True, slots=True)
class SplitEvent:
    """A forward or reverse split from the broker's corporate-actions data."""

    symbol: str
    ex_date: date
    ratio: float        # new shares per old share (new_rate / old_rate)
    kind: str           # "forward_split" | "reverse_split"
    new_rate: float
    old_rate: float

    def describe(self) -> str:
        return f"{self.kind} {self.new_rate:g}-for-{self.old_rate:g} (ex-date {self.ex_date})"


def snap_ratio(ratio: float) -> float:
    """The nearest ratio with small whole terms (10.0, 1.5, 0.05), if `ratio` is within rounding of it."""
    if not (math.isfinite(ratio) and ratio > 0):
        return ratio
    nice = Fraction(ratio).limit_denominator(MAX_SPLIT_TERM)
    if nice.numerator <= MAX_SPLIT_TERM and abs(float(nice) / ratio - 1.0) < SPLIT_QTY_RTOL:
        return float(nice)
    return ratio


def split_fits(before_qty: float, after_qty: float, ratio: float) -> bool:
    """Whether `after_qty` is what a split of `ratio` makes of `before_qty`.

    A reverse split may pay the fractional remainder in cash, so a whole
    floor(before_qty * ratio) <= after_qty < before_qty * ratio fits too.
    """
    expected = before_qty * ratio
    if expected <= 0:
        return False
    if abs(after_qty - expected) <= SPLIT_QTY_RTOL * expected:
        return True
    whole = abs(after_qty - round(after_qty)) < 1e-9
    return ratio < 1.0 and whole and math.floor(expected + QTY_TOLERANCE) - QTY_TOLERANCE <= after_qty < expected


def split_ratio(before_qty: float, before_avg: float, after_qty: float, after_avg: float) -> float | None:
    """The ratio r if (before_qty, before_avg) became (after_qty, after_avg) by a split, else None.

    A split multiplies the quantity by r and divides avg_entry_price by r (cost kept).
    """
    if min(before_qty, before_avg, after_qty, after_avg) <= 0:
        return None
    ratio = snap_ratio(before_avg / after_avg)
    if abs(ratio - 1.0) < MIN_SPLIT_CHANGE:
        return None
    return ratio if split_fits(before_qty, after_qty, ratio) else None


def baseline(own_now: float, seen: SeenPosition | None, book_avg: float | None) -> tuple[float, float, float]:
    """(broker qty expected now, its avg_entry_price last seen, outside qty last seen).

    The expectation is the last observation moved by the daemon's own fills since (the change of
    its own quantity). Without an observation (a symbol seen for the first time, or a database from
    before observations were kept) the book itself is the baseline: no outside shares.
    """
    if seen is None:
        return own_now, (book_avg or 0.0), 0.0
    return seen.qty + (own_now - seen.own_qty), seen.avg_entry_price, seen.outside_qty


def explain(own_now: float, seen: SeenPosition | None, broker_qty: float, broker_avg: float, *,
            book_avg: float | None = None, split: float | None = None) -> Explanation:
    """Explain the broker's quantity against the daemon's own and the last observation.

    `split`: a ratio the caller has confirmed (corporate actions) for a change the prices alone do
    not show, e.g. when the daemon's own fills landed in the same interval.
    """
    expected, last_avg, previous_outside = baseline(own_now, seen, book_avg)
    broker_qty = max(broker_qty, 0.0)
    if split is None and abs(broker_qty - expected) <= QTY_TOLERANCE:
        return Explanation(Cause.UNCHANGED, min(own_now, broker_qty), max(0.0, broker_qty - own_now),
                           previous_outside)
    own_fills_since = seen is not None and abs(own_now - seen.own_qty) > QTY_TOLERANCE
    ratio = split
    by_prices = False
    if ratio is None and not own_fills_since and own_now > QTY_TOLERANCE:
        ratio = split_ratio(expected, last_avg, broker_qty, broker_avg)
        by_prices = ratio is not None
    if ratio is not None and own_now > QTY_TOLERANCE:
        return _split_then_residual(own_now, expected, previous_outside, broker_qty, ratio, by_prices)
    own = min(own_now, broker_qty)
    outside = max(0.0, broker_qty - own)
    if own_now > QTY_TOLERANCE and own <= QTY_TOLERANCE:
        cause = Cause.GONE
    elif own < own_now - QTY_TOLERANCE:
        cause = Cause.OWN_REDUCED
    elif outside > previous_outside + QTY_TOLERANCE:
        cause = Cause.OUTSIDE_BOUGHT
    elif outside < previous_outside - QTY_TOLERANCE:
        cause = Cause.OUTSIDE_SOLD
    else:
        cause = Cause.UNCHANGED
    return Explanation(cause, own, outside, previous_outside)


def _split_then_residual(own_now: float, expected: float, previous_outside: float, broker_qty: float, ratio: float,
                         by_prices: bool) -> Explanation:
    """A split of `ratio` re-bases the daemon's own quantity and the last observation first; what the
    split does not explain (the user sold or bought in the meantime) is then explained as usual."""
    own_split = own_now * ratio
    outside_before = previous_outside * ratio
    own = min(own_split, broker_qty)
    outside = max(0.0, broker_qty - own)
    residual: Cause | None = None
    if not split_fits(expected, broker_qty, ratio):
        if own < own_split - QTY_TOLERANCE:
            residual = Cause.GONE if own <= QTY_TOLERANCE else Cause.OWN_REDUCED
        elif outside > outside_before + QTY_TOLERANCE:
            residual = Cause.OUTSIDE_BOUGHT
        elif outside < outside_before - QTY_TOLERANCE:
            residual = Cause.OUTSIDE_SOLD
    return Explanation(Cause.SPLIT, own, outside, previous_outside, ratio, by_prices, residual)


def split_applied(ratio: float, before_avg: float, after_avg: float) -> bool:
    """Whether the broker's avg_entry_price moved from `before_avg` to `after_avg` by the split rather than
    not at all: after_avg is nearer (as a ratio) to before_avg / ratio than to before_avg.

    A user's sale leaves the average as it was, and a user's purchase at the post-split price pulls it
    towards the post-split level, so a trade next to the split never hides it nor fakes it.
    """
    if min(before_avg, after_avg, ratio) <= 0 or not all(map(math.isfinite, (before_avg, after_avg, ratio))):
        return False
    moved = abs(math.log(before_avg / after_avg))
    return abs(math.log(before_avg / after_avg) - math.log(ratio)) < moved


def matching_split(events: list[SplitEvent], symbol: str, since: date, until: date, before_avg: float,
                   after_avg: float, *, seen_on: date | None = None) -> SplitEvent | None:
    """The listed split of `symbol` (ex-date in [since, until]) that the broker applied since the last
    observation: its avg_entry_price shows it (`split_applied`). Without a usable average, an ex-date
    after the day of the last observation (`seen_on`) is enough: the observation came before it."""
    for event in events:
        if event.symbol != symbol or not since <= event.ex_date <= until:
            continue
        prices_usable = min(before_avg, after_avg) > 0
        if split_applied(event.ratio, before_avg, after_avg) or (
                not prices_usable and seen_on is not None and event.ex_date > seen_on):
            return event
    return None


def unexplained_change(own_now: float, seen: SeenPosition | None, broker_qty: float, broker_avg: float,
                       cause: Cause) -> bool:
    """Whether a held symbol's broker position changed in a way the daemon's own fills do not explain:
    its quantity (any cause but UNCHANGED), or, with no own fill since the last look, its average price
    (a split whose new quantity a user's trade happened to bring back to the old one)."""
    if own_now <= QTY_TOLERANCE or broker_qty <= QTY_TOLERANCE:
        return False
    if cause is not Cause.UNCHANGED:
        return True
    if seen is None or abs(own_now - seen.own_qty) > QTY_TOLERANCE or min(seen.avg_entry_price, broker_avg) <= 0:
        return False
    return abs(broker_avg / seen.avg_entry_price - 1.0) >= MIN_SPLIT_CHANGE
