"""The 60-second soak (`scripts/soak.py --seconds 60`) that `make test` runs.

The real daemon stack against the simulated market on 127.0.0.1 with 10% of requests faulted, on
an accelerated clock. The full 30-minute run and its figures are in docs/reliability.md.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.harness.config import REPO_ROOT

SOAK = REPO_ROOT / "scripts" / "soak.py"
SECONDS = 60
# A loaded CI machine still runs far more than this in a minute (a quiet one: ~2,500).
MIN_ITERATIONS = 150


@pytest.fixture(scope="module")
def soak_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], dict]:
    out = tmp_path_factory.mktemp("soak") / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(SOAK), "--seconds", str(SECONDS), "--json", str(out)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=150,
    )
    figures = json.loads(out.read_text()) if out.exists() else {}
    return proc, figures


@pytest.mark.timeout(200)
def test_sixty_second_soak_passes(soak_run: tuple[subprocess.CompletedProcess[str], dict]) -> None:
    proc, figures = soak_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "result              PASS" in proc.stdout
    assert "Traceback" not in proc.stderr
    assert figures["unhandled"] is None


@pytest.mark.timeout(200)
def test_soak_figures(soak_run: tuple[subprocess.CompletedProcess[str], dict]) -> None:
    proc, figures = soak_run
    assert figures, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert figures["duplicates"] == 0
    assert 0 < figures["peak"] < 200
    assert all(n < 200 for n in figures["peak_per_minute"].values())
    assert figures["iterations"] > MIN_ITERATIONS
    assert figures["sessions"] >= 2
    assert figures["faults"] > 0
    # Several kinds of fault fired, and the loop went on after each faulted step.
    assert len(figures["faults_by_kind"]) >= 4, figures["faults_by_kind"]
    assert figures["survived"] > 0
    assert figures["server_errors"] == 0
    assert figures["refused"] == []  # nothing tried to leave loopback
    # A soak this short must not grow the process much (the 30-minute run: see docs/reliability.md).
    assert figures["rss_end_mb"] - figures["rss_start_mb"] < 50


@pytest.mark.timeout(200)
def test_soak_progress_lines(soak_run: tuple[subprocess.CompletedProcess[str], dict]) -> None:
    proc, _ = soak_run
    progress = [line for line in proc.stdout.splitlines() if line.startswith("[")]
    assert len(progress) >= 3, proc.stdout[-2000:]
    for label in ("iterations", "faults injected", "faults survived", "orders", "duplicates",
                  "peak requests/min", "server 429s", "RSS"):
        assert f"  {label}" in proc.stdout, label
