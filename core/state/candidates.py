"""candidates.json: the scanner's output and the orchestrator's focus list.

Schema (all required): as_of (session date), generated_at (ISO datetime), universe_size (int),
symbols (list of tickers, unique, each in the universe), scores ({symbol: z}), excluded
({symbol: reason}). The file is trusted only if it is at most 1 MB, parses, matches the schema,
names only universe symbols and is at most one session old (as_of is the last completed session
or the one before, never in the future). Anything else falls back to the whole universe with a
warning that names the problem.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection
from datetime import date, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from config.universe import is_valid_ticker
from core.domain.errors import CandidatesError
from core.domain.market_calendar import MarketCalendar
from core.runtime.atomic_file import write_atomic

MAX_FILE_BYTES = 1_000_000
MAX_SYMBOLS = 100


class CandidatesFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    as_of: date
    generated_at: datetime
    universe_size: int = Field(ge=0)
    symbols: list[str] = Field(max_length=MAX_SYMBOLS)
    scores: dict[str, float] = Field(default_factory=dict)
    excluded: dict[str, str] = Field(default_factory=dict)

    @field_validator("symbols")
    @classmethod
    def _tickers(cls, symbols: list[str]) -> list[str]:
        for symbol in symbols:
            if not is_valid_ticker(symbol):
                raise ValueError(f"{symbol!r} is not a valid US equity ticker")
        if len(set(symbols)) != len(symbols):
            dupes = sorted({s for s in symbols if symbols.count(s) > 1})
            raise ValueError(f"duplicate symbols {dupes}")
        return symbols

    @field_validator("scores")
    @classmethod
    def _finite_scores(cls, scores: dict[str, float]) -> dict[str, float]:
        for symbol, score in scores.items():
            if not math.isfinite(score):
                raise ValueError(f"score for {symbol!r} is not finite")
        return scores


def load_candidates(path: Path, universe: Collection[str], calendar: MarketCalendar, now: datetime) -> CandidatesFile:
    """The validated file, or CandidatesError with one message saying what is wrong."""
    if not path.exists():
        raise CandidatesError(f"{path} does not exist (the scanner has not run yet)")
    if not path.is_file():  # a directory, FIFO or device: reading it could fail, block or never end
        raise CandidatesError(f"{path} is not a regular file")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise CandidatesError(f"{path} is {size:,} bytes: expected at most {MAX_FILE_BYTES:,}")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CandidatesError(f"{path} is not valid JSON: {exc}") from None
    except RecursionError:
        raise CandidatesError(f"{path} is not valid JSON: nested too deeply") from None
    except OSError as exc:
        raise CandidatesError(f"{path} cannot be read: {exc.strerror or type(exc).__name__}") from None
    if not isinstance(raw, dict):
        raise CandidatesError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    try:
        data = CandidatesFile.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise CandidatesError(f"{path}: field {where}: {first['msg']}") from None
    unknown = [s for s in data.symbols if s not in universe]
    if unknown:
        raise CandidatesError(f"{path}: symbols {unknown} are not in the configured universe")
    last = calendar.last_completed_session(now)
    if data.as_of > last:
        raise CandidatesError(f"{path}: as_of {data.as_of} is in the future (last completed session {last})")
    oldest_ok = calendar.previous_session(last)
    if data.as_of < oldest_ok:
        raise CandidatesError(f"{path}: stale, as_of {data.as_of} is older than one session "
                              f"(last completed session {last})")
    return data


def write_candidates(path: Path, data: CandidatesFile) -> None:
    write_atomic(path, data.model_dump_json(indent=2) + "\n")
