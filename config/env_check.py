"""Checks on where settings come from, before their values are parsed.

A misspelt setting is worse than a bad value: it is silently ignored, and the limit the user thinks
they set is not the one in force. So:

- every key of the `.env` file must be a setting; an unknown key is an error that names the nearest
  setting (or the new name of an old alpaca-trade-api variable, `APCA_API_KEY_ID` and friends);
- in the process environment, which other programs share, only a NEAR MISS is an error: a name
  within `MAX_NEAR_MISS_EDITS` edits of a setting's name (one edit for names shorter than
  `SHORT_NAME`; case-insensitive), such as `MAX_OPEN_POSTIONS`. `PATH`, `HOME`, another tool's `ALPACA_BASE_URL` and the like are never
  close enough. The old SDK's key variables are an error only while trading-daemon's own key
  variables are unset, i.e. when the user evidently expected them to be read;
- a `.env` that is not UTF-8 text (UTF-16 from a Windows editor, a stray Latin-1 byte) is one line
  saying so, never a traceback.

Everything here is pure except `read_env_file`, which reads the one file it is given.
"""

from __future__ import annotations

import difflib
import io
from collections.abc import Collection, Iterable, Mapping
from functools import lru_cache
from pathlib import Path

from dotenv import dotenv_values

MAX_NEAR_MISS_EDITS = 2
SHORT_NAME = 10  # settings shorter than this allow one edit only

# The deprecated alpaca-trade-api SDK read these; alpaca-py reads none, and trading-daemon reads
# its own names. See /work/shared/reference/alpaca-api-notes.md section 2.2.
OLD_SDK_NAMES: dict[str, str] = {
    "APCA_API_KEY_ID": "ALPACA_API_KEY",
    "APCA_API_SECRET_KEY": "ALPACA_SECRET_KEY",
    "APCA_API_BASE_URL": "ALPACA_TRADING_URL",
    "APCA_API_DATA_URL": "ALPACA_DATA_URL",
    "APCA_RETRY_MAX": "MAX_GET_RETRIES",
    "APCA_RETRY_WAIT": "RETRY_BACKOFF_SECONDS",
}
# The old SDK's key variables in the environment while trading-daemon's are unset: the daemon would
# silently run on the simulated market although the user gave keys.
_OLD_SDK_KEYS = ("APCA_API_KEY_ID", "APCA_API_SECRET_KEY")


class EnvFileError(ValueError):
    """The `.env` file cannot be read as text. The message is one line, meant for the user as is."""


def read_env_file(path: Path) -> dict[str, str | None]:
    """The file's keys (upper-cased) and raw values; EnvFileError if it is not readable UTF-8 text."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EnvFileError(f"{path} cannot be read ({exc.strerror or type(exc).__name__}): expected a "
                           "readable dotenv file") from None
    if data.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in data[:4096]:
        raise EnvFileError(f"{path} is UTF-16 text (as some Windows editors save it): expected UTF-8; save it "
                           "as UTF-8 (in the editor, or with `iconv -f UTF-16 -t UTF-8`)")
    data = data.removeprefix(b"\xef\xbb\xbf")  # a UTF-8 byte-order mark is harmless
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise EnvFileError(f"{path} line {line}: byte 0x{data[exc.start]:02x} is not valid UTF-8: expected a "
                           "UTF-8 text file; re-save it as UTF-8") from None
    values = dotenv_values(stream=io.StringIO(text))
    return {key.upper(): value for key, value in values.items()}


def unknown_file_keys(keys: Iterable[str], settings: Collection[str], source: str) -> list[str]:
    """One message per key of the `.env` file that is not a setting."""
    problems = []
    for key in keys:
        name = key.upper()
        if name in settings:
            continue
        problems.append(f"{name} in {source} is not a setting: {_suggestion(name, settings)}")
    return problems


def environment_near_misses(environ: Mapping[str, str], settings: Collection[str],
                            file_values: Mapping[str, str | None] | None = None) -> list[str]:
    """One message per environment variable that looks like a misspelt setting."""
    names = tuple(sorted(settings))
    given = {key.upper() for key, value in environ.items() if value and value.strip()}
    given |= {key.upper() for key, value in (file_values or {}).items() if value and value.strip()}
    problems = []
    for key in sorted(environ):
        name = key.upper()
        if name in settings:
            continue
        if name in _OLD_SDK_KEYS:
            wanted = OLD_SDK_NAMES[name]
            if environ[key] and wanted not in given:
                problems.append(
                    f"{name} is set in the environment, but it is the old alpaca-trade-api SDK's name: expected "
                    f"{wanted} (trading-daemon reads ALPACA_API_KEY and ALPACA_SECRET_KEY only); set those, "
                    f"or unset {name} to run on the simulated market")
            continue
        near = nearest_within(name, names, MAX_NEAR_MISS_EDITS)
        if near is not None:
            problems.append(f"{name} is set in the environment and looks like a misspelt setting: did you mean "
                            f"{near}? (expected a setting's exact name, see .env.example; or unset {name})")
    return problems


def _suggestion(name: str, settings: Collection[str]) -> str:
    if name in OLD_SDK_NAMES:
        return (f"it is the old alpaca-trade-api SDK's name; expected {OLD_SDK_NAMES[name]} "
                "(trading-daemon does not read APCA_* variables)")
    close = difflib.get_close_matches(name, sorted(settings), n=1, cutoff=0.6)
    if close:
        return f"did you mean {close[0]}? (expected a setting's exact name, see .env.example)"
    return "no setting has a similar name; expected one of the names in .env.example"


@lru_cache(maxsize=4096)
def nearest_within(name: str, settings: tuple[str, ...], max_edits: int) -> str | None:
    """The setting closest to `name` if at most `max_edits` edits away (cached: the environment's
    names repeat on every call, and this runs for every command)."""
    best: tuple[int, str] | None = None
    for setting in settings:
        bound = edits_allowed(setting, max_edits)
        if abs(len(setting) - len(name)) > bound:
            continue
        distance = edit_distance(name, setting, bound)
        if distance <= bound and (best is None or distance < best[0]):
            best = (distance, setting)
    return best[1] if best else None


def edits_allowed(setting: str, max_edits: int) -> int:
    """Fewer edits for short names: two edits turn HTTP_PORT into the web server's HTTP_HOST, which is
    no misspelling, while MAX_OPEN_POSTIONS is one."""
    return min(max_edits, 1 if len(setting) < SHORT_NAME else max_edits)


def edit_distance(a: str, b: str, bound: int) -> int:
    """Optimal string alignment distance (insert, delete, substitute, swap two neighbours), or
    `bound + 1` as soon as it is certain to exceed `bound`."""
    if abs(len(a) - len(b)) > bound:
        return bound + 1
    before: list[int] = []
    previous = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        current = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                current[j] = min(current[j], before[j - 2] + 1)
        if min(current) > bound:
            return bound + 1
        before, previous = previous, current
    return previous[-1]
