"""The DataAgent's vectorised batch functions against the per-symbol rules they replace.

`_parse_batch`, `_overlap_moved` and `_combine_batch` work on the whole answer at once; each symbol's
outcome must be exactly what the per-symbol rule gives (issue 10: a split or dividend re-adjustment and
a corrected bad print move the cached history; an unchanged overlap, a formatting difference and a
symbol new in the batch do not). The references below are the per-symbol rules as they were written
before the vectorisation.
"""

from __future__ import annotations

import random
from datetime import date
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agents.data_agent import (
    COLUMNS,
    READJUSTED_RTOL,
    BarData,
    PanelMemo,
    SymbolBars,
    _cached_edges,
    _combine,
    _combine_batch,
    _overlap_moved,
    _parse_batch,
)
from core.domain.bar_panel import OHLCV_FIELDS, BarPanel
from core.domain.bar_validation import validate_ohlc, validate_order
from core.domain.market_calendar import session_of_bar

DAY_NS = 86_400 * 10**9
T0 = pd.Timestamp("2025-01-02T05:00:00Z").value   # midnight New York, a daily bar's stamp
SESSIONS = 30
CUTOFF = T0 + (SESSIONS - 1) * DAY_NS              # the last completed session's bar
NOW = CUTOFF + DAY_NS + 15 * 3600 * 10**9          # during the next session: its bar is in progress
COLD = T0 + 5 * DAY_NS                             # the window's first bar
LIMIT = 20


def stamp(i: int) -> str:
    return pd.Timestamp(T0 + i * DAY_NS, tz="UTC").strftime("%Y-%m-%dT%H:%M:%SZ")


def bar(i: int, price: float) -> dict[str, Any]:
    return {"t": stamp(i), "o": price, "h": price * 1.02, "l": price * 0.97, "c": price * 1.01,
            "v": 1000 + i, "n": 10 + i, "vw": price}


def history(first: int, last: int, base: float) -> list[dict[str, Any]]:
    return [bar(i, base + i) for i in range(first, last + 1)]


def as_symbol_bars(bars: list[dict[str, Any]]) -> SymbolBars:
    ts = np.array([pd.Timestamp(b["t"]).value for b in bars], dtype=np.int64)
    values = np.array([[b[k] for k in ("o", "h", "l", "c", "v", "n", "vw")] for b in bars], dtype=float)
    return SymbolBars(ts, values)


def scaled(bars: list[dict[str, Any]], factor: float) -> list[dict[str, Any]]:
    return [{**b, **{k: b[k] * factor for k in ("o", "h", "l", "c", "vw")}} for b in bars]


# ---------------------------------------------------------------- the per-symbol rules (references)
def reference_parse(bars: list[dict[str, Any]], cutoff_ns: int, now_ns: int) -> tuple[SymbolBars, float | None] | str:
    symbol_bars = as_symbol_bars(bars)
    ts, values = symbol_bars.ts, symbol_bars.values
    reason = (validate_order(ts) or validate_ohlc(values[:, 0], values[:, 1], values[:, 2], values[:, 3])
              or (None if np.all(np.isfinite(values[:, 4]) & (values[:, 4] >= 0))
                  else "invalid volume (NaN, inf or negative)"))
    if reason:
        return reason
    if ts[-1] > now_ns:
        return "bar for a future session (stamped after the current time)"
    completed = ts <= cutoff_ns
    partial = None if completed.all() else float(values[~completed][-1, 3])
    return SymbolBars(ts[completed], values[completed]), partial


def reference_moved(cached: SymbolBars, fresh: SymbolBars) -> bool:
    if cached.ts.size == 0 or fresh.ts.size == 0:
        return False
    last = cached.ts[-1]
    hit = np.flatnonzero(fresh.ts == last)
    if hit.size == 0:
        return bool(fresh.ts[-1] > last)
    now, before = fresh.values[int(hit[0]), :4].tolist(), cached.values[-1, :4].tolist()
    return any(abs(a - b) > READJUSTED_RTOL * abs(b) for a, b in zip(now, before, strict=True))


def assert_same_bars(got: SymbolBars | None, want: SymbolBars | None, symbol: str) -> None:
    assert (got is None) == (want is None), symbol
    if got is not None and want is not None:
        assert np.array_equal(got.ts, want.ts), symbol
        assert np.array_equal(got.values, want.values, equal_nan=True), symbol


def check_against_references(raw: dict[str, list[dict[str, Any]]], cache: dict[str, SymbolBars],
                             limit: int = LIMIT, cold_ns: int = COLD) -> dict[str, bool]:
    """Run the vectorised functions on `raw` and compare every symbol with the per-symbol rules;
    returns the vectorised `moved` per symbol of the batch."""
    batch = _parse_batch(raw, CUTOFF, now_ns=NOW)
    assert len(batch.symbols) == len(set(batch.symbols))
    assert set(batch.symbols) | set(batch.rejected) == set(raw)
    for symbol, bars in raw.items():
        want = reference_parse(bars, CUTOFF, NOW)
        if isinstance(want, str):
            assert batch.rejected.get(symbol) == want and symbol not in batch.symbols, symbol
            continue
        k = batch.symbols.index(symbol)
        assert_same_bars(batch.bars(k), want[0], symbol)
        partial = batch.partial[k]
        assert (want[1] is None and np.isnan(partial)) or partial == want[1], symbol
    cached = [cache.get(s) for s in batch.symbols]
    moved = _overlap_moved(batch, _cached_edges(cached))
    combined = _combine_batch(batch, cached, _cached_edges(cached), limit, cold_ns)
    for k, symbol in enumerate(batch.symbols):
        fresh, known = batch.bars(k), cache.get(symbol)
        assert moved[k] == (known is not None and reference_moved(known, fresh)), symbol
        want_bars = _combine(known, fresh, limit, cold_ns)
        assert_same_bars(combined[k], want_bars, symbol)
        if want_bars is known:
            assert combined[k] is known, f"{symbol}: the unchanged cached bars are handed out as they are"
    return dict(zip(batch.symbols, moved.tolist(), strict=True))


# ---------------------------------------------------------------- crafted cases
def crafted() -> tuple[dict[str, list[dict[str, Any]]], dict[str, SymbolBars]]:
    last = SESSIONS - 1        # the last completed session; last + 1 is in progress
    cache: dict[str, SymbolBars] = {}
    raw: dict[str, list[dict[str, Any]]] = {}
    for symbol, base in (("SPLIT", 900.0), ("DIV", 50.0), ("FMT", 1.2345), ("STEADY", 70.0), ("GROWS", 30.0),
                         ("GAP", 40.0), ("ONLYLIVE", 60.0), ("SHRINK", 80.0), ("MISSING", 20.0)):
        cache[symbol] = as_symbol_bars(history(last - (LIMIT if symbol == "SHRINK" else 9), last, base))
    # A 10-for-1 split: the broker re-bases the overlap bar (and every earlier one) as of now.
    raw["SPLIT"] = scaled(history(last, last + 1, 900.0), 0.1)
    # A cash dividend under Adjustment.ALL: the overlap bar x 0.997.
    raw["DIV"] = scaled(history(last, last, 50.0), 0.997) + history(last + 1, last + 1, 50.0)
    # The same prices formatted differently (1e-6 relative): not a re-adjustment.
    raw["FMT"] = scaled(history(last, last + 1, 1.2345), 1 + 1e-6)
    # An unchanged overlap and the in-progress bar: the cached bars stay as they are.
    raw["STEADY"] = history(last, last + 1, 70.0)
    # An unchanged overlap followed by a bar the cache lacks: appended.
    cache["GROWS"] = as_symbol_bars(history(last - 10, last - 1, 30.0))
    raw["GROWS"] = history(last - 1, last + 1, 30.0)
    # The overlap bar is gone although later bars came: history changed.
    cache["GAP"] = as_symbol_bars(history(last - 10, last - 1, 40.0))
    raw["GAP"] = history(last, last + 1, 40.0)
    # Only the in-progress bar came back: nothing to compare, the cache stands.
    raw["ONLYLIVE"] = history(last + 1, last + 1, 60.0)
    # More cached bars than the (smaller) window asks for now.
    raw["SHRINK"] = history(last, last, 80.0)
    # A bad print the cache holds (a tenth of the price), corrected by the feed: the overlap differs.
    cache["BADPRINT"] = as_symbol_bars(history(last - 9, last - 1, 45.0) + scaled(history(last, last, 45.0), 0.1))
    raw["BADPRINT"] = history(last, last + 1, 45.0)
    # New in the batch (nothing cached): the answer's whole history, cut to the window and the limit.
    raw["NEW"] = history(0, last + 1, 10.0)
    # Rejected: an impossible bar, and a bar from the future.
    raw["BADOHLC"] = history(last - 5, last, 15.0)
    raw["BADOHLC"][2] = {**raw["BADOHLC"][2], "h": 1.0}
    raw["FUTURE"] = history(last, last + 3, 25.0)
    # "MISSING" is cached but absent from the answer.
    return raw, cache


def test_vectorised_batch_equals_the_per_symbol_rules_on_crafted_cases() -> None:
    raw, cache = crafted()
    moved = check_against_references(raw, cache)
    assert sorted(s for s, m in moved.items() if m) == ["BADPRINT", "DIV", "GAP", "SPLIT"]
    assert "MISSING" not in moved and set(_parse_batch(raw, CUTOFF, now_ns=NOW).rejected) == {"BADOHLC", "FUTURE"}


def test_combined_bars_of_the_crafted_cases() -> None:
    raw, cache = crafted()
    batch = _parse_batch(raw, CUTOFF, now_ns=NOW)
    cached = [cache.get(s) for s in batch.symbols]
    combined: dict[str, SymbolBars] = {}
    for symbol, bars in zip(batch.symbols, _combine_batch(batch, cached, _cached_edges(cached), LIMIT, COLD),
                            strict=True):
        assert bars is not None
        combined[symbol] = bars
    assert combined["STEADY"] is cache["STEADY"] and combined["ONLYLIVE"] is cache["ONLYLIVE"]
    assert combined["GROWS"].ts.size == cache["GROWS"].ts.size + 1
    assert combined["GROWS"].ts[-1] == CUTOFF and combined["GROWS"].values[-1, 3] == raw["GROWS"][1]["c"]
    assert combined["SHRINK"].ts.size == LIMIT and combined["SHRINK"].ts[-1] == CUTOFF
    new = combined["NEW"]
    assert new.ts.size == LIMIT and new.ts[0] >= COLD and new.ts[-1] == CUTOFF
    assert np.all(np.diff(new.ts) > 0)
    partial = dict(zip(batch.symbols, batch.partial.tolist(), strict=True))
    assert partial["STEADY"] == raw["STEADY"][-1]["c"] and np.isnan(partial["SHRINK"])


def random_case(rng: random.Random) -> tuple[dict[str, list[dict[str, Any]]], dict[str, SymbolBars]]:
    raw: dict[str, list[dict[str, Any]]] = {}
    cache: dict[str, SymbolBars] = {}
    last = SESSIONS - 1
    for n in range(rng.randint(1, 40)):
        symbol, base = f"S{n}", rng.uniform(1, 500)
        first = rng.randint(0, last)
        answer_to = last + rng.choice((0, 1, 1, 1, 2))   # 2: a future bar
        if rng.random() < 0.7:   # cached up to some session
            cached_to = rng.randint(max(first, last - 3), last)
            cache[symbol] = as_symbol_bars(history(rng.randint(0, cached_to), cached_to, base))
            first = cached_to + rng.choice((0, 0, 0, -1, 1))
        if rng.random() < 0.1:
            continue   # missing from the answer
        bars = history(min(first, answer_to), answer_to, base)
        kind = rng.random()
        if kind < 0.15:
            bars = scaled(bars, rng.choice((0.1, 10.0, 0.997, 1 - 2e-4, 1 + 5e-5, 1 + 1e-6)))
        elif kind < 0.2 and bars:
            bars[0] = {**bars[0], "c": bars[0]["c"] * rng.choice((0.1, 1.0002, 1.00001))}
            bars[0]["h"] = max(bars[0]["h"], bars[0]["c"])
            bars[0]["l"] = min(bars[0]["l"], bars[0]["c"])
        elif kind < 0.25 and len(bars) > 1:
            bars[-1] = {**bars[-1], "l": -1.0}
        elif kind < 0.28 and len(bars) > 1:
            bars[0], bars[1] = bars[1], bars[0]
        raw[symbol] = bars
    return raw, cache


@pytest.mark.parametrize("seed", range(60))
def test_vectorised_batch_equals_the_per_symbol_rules_on_random_batches(seed: int) -> None:
    rng = random.Random(seed)
    raw, cache = random_case(rng)
    raw = {s: bars for s, bars in raw.items() if bars}
    check_against_references(raw, cache, limit=rng.randint(2, 30), cold_ns=T0 + rng.randint(0, 10) * DAY_NS)


def test_a_malformed_symbol_is_named_and_the_others_are_parsed() -> None:
    raw = {"GOOD": history(SESSIONS - 3, SESSIONS, 10.0), "NOCLOSE": history(SESSIONS - 3, SESSIONS, 20.0),
           "ALSO": history(SESSIONS - 2, SESSIONS - 1, 30.0)}
    del raw["NOCLOSE"][1]["c"]
    batch = _parse_batch(raw, CUTOFF, now_ns=NOW)
    assert batch.symbols == ["GOOD", "ALSO"] and batch.rejected == {"NOCLOSE": "bar field 'c' missing from the answer"}
    for k, symbol in enumerate(batch.symbols):
        want = reference_parse(raw[symbol], CUTOFF, NOW)
        assert not isinstance(want, str)
        assert_same_bars(batch.bars(k), want[0], symbol)


# ---------------------------------------------------------------- the panel
def reference_panel(bars: dict[str, SymbolBars]) -> BarPanel:
    """The panel as it was built per symbol before (one searchsorted per symbol)."""
    symbols = list(bars)
    all_ts = np.unique(np.concatenate([bars[s].ts for s in symbols]))
    block = np.full((all_ts.size, len(symbols), len(OHLCV_FIELDS)), np.nan)
    for col, symbol in enumerate(symbols):
        block[np.searchsorted(all_ts, bars[symbol].ts), col] = bars[symbol].values[:, :len(OHLCV_FIELDS)]
    sessions = [session_of_bar(pd.Timestamp(int(t), tz="UTC").to_pydatetime()) for t in all_ts]
    return BarPanel(sessions, symbols, *(block[:, :, k] for k in range(len(OHLCV_FIELDS))))


def test_the_panel_equals_the_per_symbol_build_and_is_reused_while_the_bars_are_unchanged() -> None:
    raw, cache = crafted()
    memo = PanelMemo()
    data = BarData(memo)
    data.bars.update((s, cache[s]) for s in ("SPLIT", "GROWS", "SHRINK", "GAP"))  # ragged, different sessions
    panel = data.panel()
    want = reference_panel(data.bars)
    assert panel.sessions == want.sessions and panel.symbols == want.symbols
    assert all(isinstance(d, date) for d in panel.sessions)
    for name in OHLCV_FIELDS:
        assert np.array_equal(getattr(panel, name), getattr(want, name), equal_nan=True), name
        with pytest.raises(ValueError, match="read-only"):
            getattr(panel, name)[0, 0] = 1.0
    # The next iteration's batch: the very same cached objects, the same order -> the same panel.
    again = BarData(memo)
    again.bars.update(data.bars)
    assert again.panel() is panel
    # Another order, or one symbol's bars replaced by equal but new arrays -> built afresh.
    reordered = BarData(memo)
    reordered.bars.update((s, data.bars[s]) for s in reversed(data.bars))
    assert reordered.panel() is not panel and reordered.panel().symbols == list(reversed(panel.symbols))
    replaced = BarData(memo)
    replaced.bars.update(data.bars)
    replaced.bars["GAP"] = SymbolBars(cache["GAP"].ts.copy(), cache["GAP"].values * 2)
    rebuilt = replaced.panel()
    assert rebuilt is not panel and rebuilt.close[-2, 3] == panel.close[-2, 3] * 2


def test_columns_are_the_ones_the_values_block_holds() -> None:
    assert COLUMNS[:len(OHLCV_FIELDS)] == list(OHLCV_FIELDS)
