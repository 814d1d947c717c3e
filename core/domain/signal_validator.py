"""SignalValidator: freshness, drift and duplicate checks between signals and risk. Pure.

A signal passes only if
1. its bar is the latest completed session by the exchange calendar at `now` (a signal from an
   older bar is stale: acting on it would size and trade from yesterday's news);
2. the current price is known and within `max_drift_pct` of the signal's price
   (|current / signal_price - 1| <= max_drift_pct), so sizing never uses a price that has moved away.
   Entries only: an exit (stop-loss after a gap down, say) must never be blocked by a price move;
3. no signal for the same symbol and side was already handled for that session (by an earlier
   iteration, recorded in the state store, or earlier in this batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from core.domain.market_calendar import MarketCalendar
from core.domain.models import Rejection, Side, Signal


class SignalValidator:
    def __init__(self, calendar: MarketCalendar, max_drift_pct: float = 0.05, *, check_freshness: bool = True,
                 check_drift: bool = True) -> None:
        if not (math.isfinite(max_drift_pct) and max_drift_pct > 0):
            raise ValueError(f"max_drift_pct {max_drift_pct!r} must be a positive number")
        self.calendar = calendar
        self.max_drift_pct = max_drift_pct
        self.check_freshness = check_freshness
        self.check_drift = check_drift

    def validate(self, signals: Iterable[Signal], now: datetime, current_prices: Mapping[str, float],
                 handled: Iterable[tuple[str, str]] = ()) -> tuple[list[Signal], list[Rejection]]:
        accepted: list[Signal] = []
        rejected: list[Rejection] = []
        seen = set(handled)
        expected = self.calendar.last_completed_session(now) if self.check_freshness else None
        for signal in signals:
            reason = self._check(signal, expected, current_prices, seen)
            if reason is None:
                accepted.append(signal)
                seen.add((signal.symbol, signal.side))   # a StrEnum: equal to, and hashed as, its value
            else:
                rejected.append(Rejection(signal.symbol, signal.side, "validator", reason,
                                          {"session": signal.session.isoformat(), "price": signal.price}))
        return accepted, rejected

    def _check(self, signal: Signal, expected: object, current_prices: Mapping[str, float],
               seen: set[tuple[str, str]]) -> str | None:
        if expected is not None and signal.session != expected:
            return f"stale signal: bar session {signal.session} is not the last completed session {expected}"
        if (signal.symbol, signal.side) in seen:
            return f"duplicate: a {signal.side.value} signal for {signal.symbol} was already handled for {signal.session}"
        if self.check_drift and signal.side is Side.BUY:
            current = current_prices.get(signal.symbol)
            if current is None or not math.isfinite(current) or current <= 0:
                return f"no valid current price for {signal.symbol} (got {current!r})"
            drift = abs(current / signal.price - 1.0)
            if drift > self.max_drift_pct:
                return (f"price drifted {drift:.2%} from the signal's {signal.price:.2f} to {current:.2f}, "
                        f"beyond the {self.max_drift_pct:.2%} limit")
        return None
