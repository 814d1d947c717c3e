"""candidates.json validation: schema, universe, age; atomic write."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from config.universe import DEFAULT_SYMBOL_TIERS
from core.domain.errors import CandidatesError
from core.domain.market_calendar import get_market_calendar
from core.state.candidates import CandidatesFile, load_candidates, write_candidates

CAL = get_market_calendar()
NOW = datetime(2025, 3, 11, 15, 0, tzinfo=UTC)
UNIVERSE = set(DEFAULT_SYMBOL_TIERS)


def _good(**over: object) -> dict[str, object]:
    data: dict[str, object] = {"as_of": "2025-03-10", "generated_at": "2025-03-10T20:05:00+00:00",
                               "universe_size": 29, "symbols": ["AAPL", "SPY", "QQQ"],
                               "scores": {"AAPL": -2.1}, "excluded": {}}
    data.update(over)
    return data


def _write(tmp_path: Path, payload: object) -> Path:
    path = tmp_path / "candidates.json"
    path.write_text(payload if isinstance(payload, str) else json.dumps(payload))
    return path



def test_valid_and_one_session_old(tmp_path: Path) -> None:
    assert load_candidates(_write(tmp_path, _good()), UNIVERSE, CAL, NOW).symbols == ["AAPL", "SPY", "QQQ"]
    assert load_candidates(_write(tmp_path, _good(as_of="2025-03-07")), UNIVERSE, CAL, NOW).as_of == date(2025, 3, 7)


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        (_good(symbols="AAPL"), "symbols"),
        (_good(symbols=["AAPL", "AAPL"]), "duplicate"),
        (_good(symbols=["ZZZZ"]), "not in the configured universe"),
        (_good(symbols=["../etc"]), "not a valid US equity ticker"),
        (_good(as_of="2025-03-12"), "in the future"),
        (_good(as_of="2025-03-06"), "stale"),
        (_good(universe_size="many"), "universe_size"),
        ({"symbols": ["AAPL"]}, "as_of"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path: Path, payload: object, fragment: str) -> None:
    with pytest.raises(CandidatesError) as info:
        load_candidates(_write(tmp_path, payload), UNIVERSE, CAL, NOW)
    assert fragment in str(info.value)


def test_missing_and_huge(tmp_path: Path) -> None:
    with pytest.raises(CandidatesError, match="does not exist"):
        load_candidates(tmp_path / "nope.json", UNIVERSE, CAL, NOW)
    big = tmp_path / "candidates.json"
    big.write_text(" " * 1_000_001)
    with pytest.raises(CandidatesError, match="bytes"):
        load_candidates(big, UNIVERSE, CAL, NOW)


def test_atomic_write_is_private_and_round_trips(tmp_path: Path) -> None:
    data = CandidatesFile.model_validate(_good())
    path = tmp_path / "sub" / "candidates.json"
    write_candidates(path, data)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert load_candidates(path, UNIVERSE, CAL, NOW) == data
    assert [p.name for p in path.parent.iterdir()] == ["candidates.json"]
