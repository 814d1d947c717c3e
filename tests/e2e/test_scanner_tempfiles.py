"""The scanner's temporary files from killed runs are cleaned up, safely.

A scan killed between creating the atomic writer's temp file and renaming it leaves
`.candidates.json.XXXXXXXX.tmp` next to candidates.json. The next scan (through the real SDK against
the simulated market) removes exactly those: stale ones of the writer's own pattern for this file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from core.daily_scan import scan
from core.domain.clock import SimClock
from core.domain.market_calendar import NEW_YORK, get_market_calendar
from core.runtime.atomic_file import STALE_TEMP_SECONDS
from core.sim import start_sim_market
from core.state.candidates import load_candidates
from tests.harness.config import REPO_ROOT, make_config
from tests.harness.market import gateway_for

CAL = get_market_calendar()
KILLED_WRITER = """
import os, sys
from pathlib import Path
from core.runtime.atomic_file import open_temp_file
fd, name = open_temp_file(Path(sys.argv[1]))
os.write(fd, b'{"as_of": "2025-06-0')          # half a file, then the process dies
print(name, flush=True)
os.kill(os.getpid(), 9)
"""


def _killed_scan_leftover(target: Path) -> Path:
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    leftover = Path(proc.stdout.strip())
    assert leftover.is_file() and leftover.parent == target.parent
    return leftover


def _age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then), follow_symlinks=False)


def test_a_scan_removes_stale_temp_files_of_killed_runs_and_nothing_else(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    target = Path(config.candidates_path)
    stale = [_killed_scan_leftover(target) for _ in range(3)]
    for path in stale:
        _age(path, STALE_TEMP_SECONDS + 60)
    in_flight = _killed_scan_leftover(target)          # as if another scan were writing right now
    # Look-alikes that are not this writer's temp files for candidates.json, all old:
    keep = {
        "other": tmp_path / ".other.json.abcd1234.tmp",           # another file's temp file
        "bak": tmp_path / ".candidates.json.bak",
        "plain": tmp_path / "candidates.json.tmp",
        "long": tmp_path / ".candidates.json.abcd12345.tmp",      # 9 random characters: not mkstemp's
        "upper": tmp_path / ".candidates.json.ABCD1234.tmp",
    }
    for path in keep.values():
        path.write_text("x")
        _age(path, 10 * STALE_TEMP_SECONDS)
    outside = tmp_path / "elsewhere.json"
    outside.write_text("precious")
    link = tmp_path / ".candidates.json.link1234.tmp"             # the pattern, but a symlink
    link.symlink_to(outside)
    _age(link, 10 * STALE_TEMP_SECONDS)
    folder = tmp_path / ".candidates.json.dir12345.tmp"           # the pattern, but a directory
    folder.mkdir()
    _age(folder, 10 * STALE_TEMP_SECONDS)

    clock = SimClock(datetime(2025, 6, 3, 16, 5, tzinfo=NEW_YORK))
    market = start_sim_market(clock=clock)
    try:
        result = scan(config, gateway_for(market, config), clock, CAL)
    finally:
        market.stop()

    assert result is not None and load_candidates(target, set(config.symbols), CAL, clock.now()).symbols
    assert not any(path.exists() for path in stale), "stale temp files of killed scans must go"
    assert in_flight.exists(), "a recent temp file may belong to a live writer: kept"
    assert all(path.exists() for path in keep.values())
    assert link.is_symlink() and outside.read_text() == "precious" and folder.is_dir()
    left = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".candidates.json."))
    assert left == sorted([in_flight.name, keep["bak"].name, keep["long"].name, keep["upper"].name,
                           link.name, folder.name])
