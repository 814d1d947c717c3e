"""The status page in a real browser: Debian's Chromium, headless, driven by Selenium (issue 12, item 3).

The daemon runs on the simulated market with HTTP_PORT set (wired by `Operations`, as `trading-daemon
run` wires it) and keeps running while Chromium loads its page. The test checks that the positions
table lists exactly the daemon's book, that the equity chart renders with one point per recorded
equity, and saves a screenshot to `<tmp_path>/status-page.png`. The same page served by
`status --serve` for the stopped daemon is loaded and saved too (`status-page-stopped.png`).

Without Chromium and ChromeDriver the test skips with the command that installs them, unless
TRADING_DAEMON_REQUIRE_BROWSER=1 (set by .ci/run), where it fails: CI can never skip it silently.
Chromium is started offline: no first-run, sync, component updates or background networking, and a
fresh profile directory.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.config import REPO_ROOT
from tests.harness.ops import ops_daemon

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REQUIRE = os.environ.get("TRADING_DAEMON_REQUIRE_BROWSER") == "1"
INSTALL_HINT = "apt-get install -y chromium chromium-driver (.ci/run installs them)"
BIN = Path(sys.executable).parent


def _browser_or_skip() -> None:
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if not missing:
        return
    message = f"headless Chromium test needs {', '.join(missing)}: {INSTALL_HINT}"
    if REQUIRE:
        pytest.fail(f"TRADING_DAEMON_REQUIRE_BROWSER=1 but {message}")
    pytest.skip(message)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-extensions", "--window-size=1280,2400",
                 f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(tmp_path / "chromium-profile", ignore_errors=True)


def _check_page(driver: Any, url: str, book: dict[str, Any], equity_points: int, shot: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(url)
    assert driver.title == "trading-daemon status"
    rows = driver.find_elements(By.CSS_SELECTOR, "#positions tbody tr")
    symbols = [row.find_element(By.CSS_SELECTOR, "td").text for row in rows]
    assert symbols == sorted(book), (symbols, sorted(book))
    for row in rows:
        cells = [cell.text for cell in row.find_elements(By.CSS_SELECTOR, "td")]
        assert float(cells[1]) == pytest.approx(book[cells[0]].qty, rel=1e-5)
        assert re.fullmatch(r"[+-][\d,]+\.\d\d", cells[5]), cells      # unrealised P&L rendered
    chart = driver.find_element(By.ID, "equity-chart")
    assert chart.is_displayed() and chart.size["width"] >= 400 and chart.size["height"] >= 150
    line = driver.find_element(By.CSS_SELECTOR, "#equity-chart polyline.equity-line")
    assert len(line.get_attribute("points").split()) == equity_points >= 2
    # The browser laid the curve out: a real, non-empty box inside the chart.
    box = driver.execute_script("return document.querySelector('#equity-chart polyline').getBBox().width")
    assert box > 100
    assert driver.find_element(By.ID, "exposure").is_displayed()
    driver.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot: {shot}")


def test_status_page_renders_in_headless_chromium(tmp_path: Path, browser: Any) -> None:
    with ops_daemon(tmp_path, http_port=0, scanner=True) as daemon:
        daemon.run_sessions(3)
        book = daemon.store.book()
        assert book, "the scenario needs positions to show"
        points = len(daemon.ops.status()["equity_curve"])
        _check_page(browser, daemon.ops.http.url, book, points, tmp_path / "status-page.png")

    # The same page for the stopped daemon, served from its database by `status --serve`.
    proc = subprocess.Popen([str(BIN / "trading-daemon"), "status", "--serve", "--port", "0", "--state-dir",
                             str(tmp_path / "state")], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={k: v for k, v in os.environ.items() if k != "HTTP_PORT"})
    try:
        assert proc.stdout is not None
        url = re.search(r"(http://127\.0\.0\.1:\d+/)", proc.stdout.readline()).group(1)  # type: ignore[union-attr]
        _check_page(browser, url, book, points, tmp_path / "status-page-stopped.png")
        from selenium.webdriver.common.by import By

        assert "not running" in browser.find_element(By.CLASS_NAME, "meta").text
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_without_chromium_it_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    import tests.e2e.test_status_page_browser as this

    monkeypatch.setattr(this, "CHROMIUM", "/nonexistent/chromium")
    monkeypatch.setattr(this, "REQUIRE", False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium chromium-driver"):
        this._browser_or_skip()
    monkeypatch.setattr(this, "REQUIRE", True)
    with pytest.raises(pytest.fail.Exception, match="TRADING_DAEMON_REQUIRE_BROWSER=1"):
        this._browser_or_skip()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "export TRADING_DAEMON_REQUIRE_BROWSER=1" in ci and "apt-get install -y -qq chromium chromium-driver" in ci
    assert ci.index("TRADING_DAEMON_REQUIRE_BROWSER=1") < ci.index("make test")
