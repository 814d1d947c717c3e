"""Corporate actions of the simulated market: stock splits (forward and reverse) and cash dividends.

The registry (`CorporateActions`, one per SyntheticBars, `bars.actions`) is empty unless a test or
caller registers an action through `SimExchange.add_split` / `add_dividend`; every function here is
then a no-op, so the default market is exactly what it was.

Price model (docs/simulated-market.md):
- The synthetic model is the split-adjusted series. The raw tape of a session before a split's ex-date
  is the model x ratio (prices; volume / ratio), so post-split prices stay at the model's level.
  Raw prices are cents (4 decimals below $1), raw vwap 4 decimals.
- Bars asked for with `adjustment=split|all` at a time whose New York date is on or after a split's
  ex-date have every bar before the ex-date divided by the ratio (volume x ratio); asked for earlier,
  they are raw. `adjustment=dividend|all` multiplies the bars before a dividend's ex-date by
  1 - amount / (previous session's close, in the ex-date's share basis), once the ex-date has come.
  Adjusted prices have 4 decimals.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from fractions import Fraction
from typing import Protocol

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


class _Bar(Protocol):
    @property
    def close(self) -> float: ...


class SessionTape(Protocol):
    """What the actions read of the tape (core.sim.bars.SyntheticBars, which holds the registry):
    the session calendar's indexes and a session's daily bar."""

    def session_at(self, i: int) -> date: ...

    def first_session_on_or_after(self, day: date) -> int: ...

    def trading_index_before(self, i: int) -> int: ...

    def next_trading_index(self, i: int) -> int: ...

    def bar_by_index(self, symbol: str, i: int) -> _Bar: ...


ACTION_NAMESPACE = uuid.UUID("0c6a3c55-1f0e-4d3a-8f55-7a1c2b3d4e5f")


@dataclass(frozen=True)
class Split:
    """`ratio` new shares per old share: 10.0 for a 10-for-1 split, 0.1 for a 1-for-10 reverse split."""

    symbol: str
    ex_date: date
    ratio: float
    id: str
    seq: int

    @property
    def is_reverse(self) -> bool:
        return self.ratio < 1.0

    @property
    def rates(self) -> tuple[int, int]:
        """(new_rate, old_rate) in whole numbers, as Alpaca reports them (10:1, 1:10, 3:2)."""
        fraction = Fraction(self.ratio).limit_denominator(10_000)
        return fraction.numerator, fraction.denominator


@dataclass(frozen=True)
class CashDividend:
    """`amount` in cash per share, in the share basis of the ex-date."""

    symbol: str
    ex_date: date
    amount: float
    id: str
    seq: int


Action = Split | CashDividend


class CorporateActions:
    """Thread-safe registry; reads return immutable tuples sorted by ex-date."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._splits: dict[str, tuple[Split, ...]] = {}
        self._dividends: dict[str, tuple[CashDividend, ...]] = {}
        self._seq = 0
        self.has_splits = False
        self.has_any = False

    def add_split(self, symbol: str, ex_date: date, ratio: float) -> Split:
        with self._lock:
            if any(s.ex_date == ex_date for s in self._splits.get(symbol, ())):
                raise ValueError(f"{symbol} already has a split with ex-date {ex_date}")
            self._seq += 1
            split = Split(symbol, ex_date, float(ratio), _action_id("split", symbol, ex_date), self._seq)
            self._splits[symbol] = tuple(sorted((*self._splits.get(symbol, ()), split), key=_order))
            self.has_splits = self.has_any = True
            return split

    def add_dividend(self, symbol: str, ex_date: date, amount: float) -> CashDividend:
        with self._lock:
            if any(d.ex_date == ex_date for d in self._dividends.get(symbol, ())):
                raise ValueError(f"{symbol} already has a cash dividend with ex-date {ex_date}")
            self._seq += 1
            dividend = CashDividend(
                symbol, ex_date, float(amount), _action_id("cash_dividend", symbol, ex_date), self._seq
            )
            self._dividends[symbol] = tuple(sorted((*self._dividends.get(symbol, ()), dividend), key=_order))
            self.has_any = True
            return dividend

    def splits(self, symbol: str) -> tuple[Split, ...]:
        return self._splits.get(symbol, ())

    def dividends(self, symbol: str) -> tuple[CashDividend, ...]:
        return self._dividends.get(symbol, ())

    def all(self) -> list[Action]:
        """Every action, by ex-date then registration order."""
        with self._lock:
            actions: list[Action] = [a for group in self._splits.values() for a in group]
            actions += [a for group in self._dividends.values() for a in group]
        return sorted(actions, key=_order)


def _order(action: Action) -> tuple[date, int]:
    return action.ex_date, action.seq


def _action_id(kind: str, symbol: str, ex_date: date) -> str:
    return str(uuid.uuid5(ACTION_NAMESPACE, f"{kind}|{symbol}|{ex_date.isoformat()}"))


def round_price(values: FloatArray) -> FloatArray:
    """Trade prices: cents at $1 and above, 4 decimals below (sub-penny quotes of cheap stocks)."""
    return np.where(values >= 1.0, np.round(values, 2), np.round(values, 4))


def raw_factors(bars: SessionTape, splits: Sequence[Split], start: int, count: int) -> FloatArray | None:
    """Raw-tape price multipliers for sessions start..start+count-1 (None when all are 1): the
    product of the ratios of the splits whose ex-date comes after the session."""
    factor: FloatArray | None = None
    for split in splits:
        cut = min(max(bars.first_session_on_or_after(split.ex_date) - start, 0), count)
        if cut > 0:
            if factor is None:
                factor = np.ones(count)
            factor[:cut] *= split.ratio
    return factor


def adjustment_factors(
    bars: SessionTape,
    actions: CorporateActions,
    symbol: str,
    start: int,
    count: int,
    as_of: date,
    *,
    split: bool,
    dividend: bool,
) -> tuple[FloatArray, FloatArray] | None:
    """(price factor, volume factor) for sessions start..start+count-1 of the raw tape, as Alpaca
    adjusts on `as_of` (the request's New York date); None when nothing applies."""
    price: FloatArray | None = None
    volume: FloatArray | None = None
    if split:
        for s in actions.splits(symbol):
            if s.ex_date > as_of:
                continue
            cut = min(max(bars.first_session_on_or_after(s.ex_date) - start, 0), count)
            if cut > 0:
                price = np.ones(count) if price is None else price
                volume = np.ones(count) if volume is None else volume
                price[:cut] /= s.ratio
                volume[:cut] *= s.ratio
    if dividend:
        for d in actions.dividends(symbol):
            if d.ex_date > as_of:
                continue
            factor = dividend_factor(bars, actions, d)
            cut = min(max(bars.first_session_on_or_after(d.ex_date) - start, 0), count)
            if cut > 0 and factor is not None:
                price = np.ones(count) if price is None else price
                price[:cut] *= factor
    if price is None:
        return None
    return price, np.ones(count) if volume is None else volume


def dividend_factor(bars: SessionTape, actions: CorporateActions, dividend: CashDividend) -> float | None:
    """1 - amount / previous close (in the ex-date's share basis); None when there is no session
    before the ex-date or the dividend is not below that close."""
    close = previous_close(bars, actions, dividend.symbol, dividend.ex_date)
    if close is None or dividend.amount >= close:
        return None
    return 1.0 - dividend.amount / close


def previous_close(bars: SessionTape, actions: CorporateActions, symbol: str, ex_date: date) -> float | None:
    """The raw close of the last session before `ex_date`, re-based by the splits that take effect
    between that close and the ex-date (inclusive); None before the first session."""
    ex_index = bars.next_trading_index(bars.first_session_on_or_after(ex_date))
    before = bars.trading_index_before(ex_index)
    if before < 0:
        return None
    close = bars.bar_by_index(symbol, before).close
    for s in actions.splits(symbol):
        if before < bars.next_trading_index(bars.first_session_on_or_after(s.ex_date)) <= ex_index:
            close /= s.ratio
    return close


# ----------------------------------------------------------------------------- GET /v1/corporate-actions
# Alpaca's type names (alpaca.data.enums.CorporateActionsType) and the response group of each.
ACTION_TYPES = (
    "reverse_split", "forward_split", "unit_split", "cash_dividend", "stock_dividend", "spin_off", "cash_merger",
    "stock_merger", "stock_and_cash_merger", "redemption", "name_change", "worthless_removal", "rights_distribution",
)
_CUSIP_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def action_type(action: Action) -> str:
    if isinstance(action, CashDividend):
        return "cash_dividend"
    return "reverse_split" if action.is_reverse else "forward_split"


def group_name(kind: str) -> str:
    return f"{kind}s"


def cusip(key: str) -> str:
    """A stable, well-formed CUSIP (8 characters and the standard check digit) for a simulated name."""
    digest = uuid.uuid5(ACTION_NAMESPACE, key).int
    body = "".join(_CUSIP_ALPHABET[(digest >> (6 * k)) % 36] for k in range(8))
    total = 0
    for position, char in enumerate(body):
        value = _CUSIP_ALPHABET.index(char)
        value = value * 2 if position % 2 else value
        total += value // 10 + value % 10
    return body + str((10 - total % 10) % 10)


def action_json(bars: SessionTape, action: Action) -> dict[str, object]:
    """One action in the shape alpaca-py 0.44's CorporateActionsSet parses. process_date is the
    ex-date; a forward split is recorded two sessions and paid one session before it (as NVDA's
    2024 split was); a reverse split and a dividend are recorded and paid on the ex-date (the sim
    pays dividends at the ex-date's open)."""
    ex = action.ex_date.isoformat()
    if isinstance(action, CashDividend):
        return {
            "id": action.id, "symbol": action.symbol, "cusip": cusip(action.symbol), "rate": action.amount,
            "special": False, "foreign": False, "process_date": ex, "ex_date": ex, "record_date": ex,
            "payable_date": ex, "due_bill_on_date": None, "due_bill_off_date": None,
        }
    new_rate, old_rate = action.rates
    if action.is_reverse:
        return {
            "id": action.id, "symbol": action.symbol, "old_cusip": cusip(action.symbol),
            "new_cusip": cusip(f"{action.symbol}|{ex}"), "new_rate": new_rate, "old_rate": old_rate,
            "process_date": ex, "ex_date": ex, "record_date": ex, "payable_date": ex,
        }
    ex_index = bars.next_trading_index(bars.first_session_on_or_after(action.ex_date))
    payable = bars.trading_index_before(ex_index)
    record = bars.trading_index_before(payable) if payable >= 0 else -1
    return {
        "id": action.id, "symbol": action.symbol, "cusip": cusip(action.symbol), "new_rate": new_rate,
        "old_rate": old_rate, "process_date": ex, "ex_date": ex,
        "record_date": bars.session_at(record).isoformat() if record >= 0 else None,
        "payable_date": bars.session_at(payable).isoformat() if payable >= 0 else None,
        "due_bill_redemption_date": None,
    }
