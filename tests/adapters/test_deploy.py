"""Deployment pieces: systemd units, the timer's calendar, the crontab example, the sd_notify client
and the one-instance-per-state-directory lock.

The unit files are checked twice: by reading them (the values we rely on), and by systemd's own
`systemd-analyze verify`/`calendar` where that binary exists, because a directive systemd does not
understand is only a warning in the journal and silently disables the protection it was meant to add.
"""

from __future__ import annotations

import configparser
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import tomllib
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from core.domain.errors import StateError
from core.runtime.process_lock import LOCK_FILE_NAME, PID_FILE_NAME, StateDirLock
from core.runtime.systemd_notify import SystemdNotifier
from tests.harness.config import REPO_ROOT

ROOT = REPO_ROOT
UNITS = ROOT / "scripts" / "systemd"
CALENDAR = "Mon..Fri 16:05 America/New_York"
NEW_YORK = ZoneInfo("America/New_York")

HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ReadWritePaths": "/var/lib/trading-daemon",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "LockPersonality": "yes",
    "RestrictRealtime": "yes",
    "SystemCallArchitectures": "native",
    "UMask": "0077",
    "CapabilityBoundingSet": "",
    # A watchdog SIGABRT must not write the process memory, API keys included, into a core dump.
    "LimitCORE": "0",
}


def read_unit(name: str) -> configparser.ConfigParser:
    # strict=False: systemd allows a key to repeat; interpolation=None: '%' is systemd's specifier.
    parser = configparser.ConfigParser(strict=False, interpolation=None, empty_lines_in_values=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive in systemd
    parser.read(UNITS / name, encoding="utf-8")
    return parser


def timespan_seconds(value: str) -> float:
    """systemd time span ('600', '10min', '5m 30s') -> seconds; enough of the syntax for our units."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "hr": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value.strip()):
        total += float(number) * units[unit]
    return total


# ---------------------------------------------------------------------- (a) the unit files as text
def test_daemon_unit_has_the_required_settings() -> None:
    unit = read_unit("trading-daemon.service")
    svc = unit["Service"]
    assert svc["Type"] == "notify"
    assert svc["NotifyAccess"] == "main"
    assert svc["Restart"] == "on-failure"
    assert timespan_seconds(svc["RestartSec"]) > 0
    assert set(svc["RestartPreventExitStatus"].split()) == {"2", "3"}  # config error, refused to trade
    assert int(unit["Unit"]["StartLimitBurst"]) >= 1
    assert timespan_seconds(unit["Unit"]["StartLimitIntervalSec"]) > 0
    assert svc["EnvironmentFile"] == "/etc/trading-daemon/env"
    assert svc["WorkingDirectory"] == "/var/lib/trading-daemon"
    assert svc["User"] == "trading" and svc["Group"] == "trading"
    assert svc["KillSignal"] == "SIGTERM"
    assert timespan_seconds(svc["TimeoutStopSec"]) >= 60
    # Paper by default: live needs ALPACA_PAPER=false *and* --live, which the operator adds on purpose.
    assert svc["ExecStart"] == "/opt/trading-daemon/.venv/bin/trading-daemon run"
    assert "--live" not in svc["ExecStart"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    for key, value in HARDENING.items():
        assert svc.get(key) == value, f"trading-daemon.service: {key}={svc.get(key)!r}, expected {value!r}"


def test_watchdog_outlasts_the_longest_healthy_gap_between_pings() -> None:
    """A closed market pings, sleeps up to MAX_SLEEP_STEP_SECONDS, checks the clock, pings again."""
    from config.settings import AppConfig
    from core.orchestrator import MAX_SLEEP_STEP_SECONDS

    watchdog = timespan_seconds(read_unit("trading-daemon.service")["Service"]["WatchdogSec"])
    loop_interval = AppConfig.model_fields["loop_interval_seconds"].default
    clock_check_allowance = 120.0  # one market-clock request with timeouts and retries
    assert watchdog >= MAX_SLEEP_STEP_SECONDS + clock_check_allowance, (
        f"WatchdogSec={watchdog:g} would kill a healthy daemon sleeping {MAX_SLEEP_STEP_SECONDS:g} s "
        "while the market is closed"
    )
    assert watchdog >= 5 * loop_interval
    # ...and still catches a stuck loop the same trading hour.
    assert watchdog <= 900


def test_scanner_service_and_timer() -> None:
    svc = read_unit("scanner.service")["Service"]
    assert svc["Type"] == "oneshot"
    assert svc["ExecStart"] == "/opt/trading-daemon/.venv/bin/trading-daemon scan"
    assert svc["EnvironmentFile"] == "/etc/trading-daemon/env"
    assert svc["WorkingDirectory"] == "/var/lib/trading-daemon"
    assert svc["User"] == "trading" and svc["Group"] == "trading"
    for key, value in HARDENING.items():
        assert svc.get(key) == value, f"scanner.service: {key}={svc.get(key)!r}, expected {value!r}"

    timer = read_unit("scanner.timer")
    assert timer["Timer"]["OnCalendar"] == CALENDAR
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"].get("Unit", "scanner.service") == "scanner.service"
    assert timer["Install"]["WantedBy"] == "timers.target"
    assert "early-close" in (UNITS / "scanner.timer").read_text(encoding="utf-8").lower()


def test_units_run_the_console_script_that_pyproject_installs() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert "trading-daemon" in scripts
    for name in ("trading-daemon.service", "scanner.service"):
        exec_start = read_unit(name)["Service"]["ExecStart"]
        assert Path(exec_start.split()[0]).name == "trading-daemon"


def test_crontab_example() -> None:
    text = (UNITS / "crontab.example").read_text(encoding="utf-8")
    active = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "CRON_TZ=America/New_York" in active
    scan_lines = [line for line in active if line.startswith("5 16 * * 1-5 ")]
    assert len(scan_lines) == 1
    assert "cd /var/lib/trading-daemon && /opt/trading-daemon/.venv/bin/trading-daemon scan >>" in scan_lines[0]
    assert scan_lines[0].rstrip().endswith("2>&1")
    assert active.index("CRON_TZ=America/New_York") < active.index(scan_lines[0])
    # The daemon itself belongs under systemd or a supervisor, never an @reboot line.
    assert not any(line.startswith("@reboot") for line in active)
    assert not any(" run" in line and "trading-daemon" in line for line in active)


# ---------------------------------------------------------------------- (b) systemd-analyze verify
def _systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze is not installed here; the units are only checked as text")
    return path


def _verifiable_copies(dest: Path, extra_service_line: str | None = None) -> list[Path]:
    """Copies whose ExecStart points at an executable that exists on this machine.

    verify insists that the binary exists; the venv's own console script is the real thing when
    the package is installed, /bin/true otherwise. User=, Group= and EnvironmentFile= stay: this
    systemd does not require them to exist at verify time, and dropping them would test less.
    """
    venv_script = Path(sys.executable).parent / "trading-daemon"
    executable = str(venv_script) if os.access(venv_script, os.X_OK) else shutil.which("true") or "/bin/true"
    copies = []
    for name in ("trading-daemon.service", "scanner.service", "scanner.timer"):
        text = (UNITS / name).read_text(encoding="utf-8")
        text = re.sub(r"^ExecStart=/opt/trading-daemon/\.venv/bin/trading-daemon",
                      f"ExecStart={executable}", text, flags=re.MULTILINE)
        if extra_service_line and name == "trading-daemon.service":
            text = text.replace("[Service]\n", f"[Service]\n{extra_service_line}\n", 1)
        (dest / name).write_text(text, encoding="utf-8")
        copies.append(dest / name)
    return copies


def _verify(tool: str, copies: list[Path]) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", LC_ALL="C")
    return subprocess.run([tool, "verify", *map(str, copies)], capture_output=True, text=True,
                          timeout=60, env=env, check=False)


# Machine-specific, not about our directives: the service user and the env file exist only on the server.
_ABSENT_ON_THIS_MACHINE = ("/etc/trading-daemon/env", "user trading", "group trading", "'trading'", '"trading"')


def _complaints_about(copies: list[Path], stderr: str) -> list[str]:
    names = {path.name for path in copies}
    return [line for line in stderr.splitlines()
            if any(name in line for name in names) and not any(m in line for m in _ABSENT_ON_THIS_MACHINE)]


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    tool = _systemd_analyze()
    copies = _verifiable_copies(tmp_path)
    result = _verify(tool, copies)
    complaints = _complaints_about(copies, result.stderr)
    # An unknown or unparsable directive is a warning with exit code 0, so read stderr as well.
    assert complaints == [], "\n".join(complaints)
    if result.returncode != 0:
        # Nothing said about our files: the failure is this machine's (no systemd running, say).
        pytest.skip(f"systemd-analyze verify exited {result.returncode} for reasons outside our units: "
                    f"{result.stderr.strip()[:300]}")


def test_systemd_analyze_verify_would_catch_a_bad_directive(tmp_path: Path) -> None:
    """The check above is not vacuous: a misspelt hardening option is reported against our file."""
    tool = _systemd_analyze()
    copies = _verifiable_copies(tmp_path, extra_service_line="ProtectSystemm=strict")
    result = _verify(tool, copies)
    complaints = _complaints_about(copies, result.stderr)
    assert any("ProtectSystemm" in line for line in complaints), result.stderr


# ---------------------------------------------------------------------- (c) the timer's calendar
def test_timer_calendar_fires_at_1605_new_york_on_weekdays() -> None:
    tool = _systemd_analyze()
    result = subprocess.run([tool, "calendar", "--iterations=12", CALENDAR], capture_output=True, text=True,
                            timeout=60, env=dict(os.environ, TZ="UTC", LC_ALL="C"), check=False)
    assert result.returncode == 0, result.stderr
    assert "Normalized form: Mon..Fri *-*-* 16:05:00 America/New_York" in result.stdout
    elapses = re.findall(r"(?:Next elapse|Iter\. #\d+): \w{3} (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", result.stdout)
    assert len(elapses) == 12, result.stdout
    for text in elapses:
        local = datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).astimezone(NEW_YORK)
        assert local.weekday() < 5, f"{text} UTC is a {local:%A} in New York"
        assert (local.hour, local.minute, local.second) == (16, 5, 0), f"{text} UTC is {local:%H:%M} in New York"


# ---------------------------------------------------------------------- (d) sd_notify client
@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # AF_UNIX paths are limited to 107 bytes; pytest's tmp_path can be longer than that.
    path = Path(tempfile.mkdtemp(prefix="sdn-", dir="/tmp" if os.path.isdir("/tmp") else None))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _receiver(address: str) -> socket.socket:
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(address)
    server.settimeout(5)
    return server


def _exercise(notifier: SystemdNotifier, server: socket.socket) -> None:
    assert notifier.ready() is True
    assert server.recv(4096) == b"READY=1"
    assert notifier.watchdog() is True
    assert server.recv(4096) == b"WATCHDOG=1"
    assert notifier.status("iteration 7 complete: 3 signals, 1 order") is True
    assert server.recv(4096) == b"STATUS=iteration 7 complete: 3 signals, 1 order"
    assert notifier.stopping() is True
    assert server.recv(4096) == b"STOPPING=1"
    assert notifier.sent == Counter({"READY": 1, "WATCHDOG": 1, "STATUS": 1, "STOPPING": 1})


def test_notifier_sends_to_a_filesystem_socket(short_tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = str(short_tmp / "notify.sock")
    server = _receiver(path)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", path)
        notifier = SystemdNotifier()
        assert notifier.enabled
        _exercise(notifier, server)
        notifier.close()
    finally:
        server.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux-only")
def test_notifier_sends_to_an_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"trading-daemon-test-{uuid.uuid4().hex}"
    server = _receiver("\0" + name)
    try:
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = SystemdNotifier()
        _exercise(notifier, server)
    finally:
        server.close()


def test_notifier_keeps_a_status_on_one_line(short_tmp: Path) -> None:
    path = str(short_tmp / "notify.sock")
    server = _receiver(path)
    try:
        notifier = SystemdNotifier(path)
        assert notifier.status("waiting\nREADY=1")  # a newline must not smuggle in a second assignment
        assert server.recv(4096) == b"STATUS=waiting READY=1"
        assert notifier.sent == Counter({"STATUS": 1})
    finally:
        server.close()


def test_notifier_is_a_no_op_without_notify_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = SystemdNotifier()
    assert not notifier.enabled
    assert notifier.ready() is False
    assert notifier.watchdog() is False
    assert notifier.status("x") is False
    assert notifier.stopping() is False
    assert notifier.sent == Counter()
    assert notifier.attempted == Counter({"READY": 1, "WATCHDOG": 1, "STATUS": 1, "STOPPING": 1})


def test_notifier_never_raises_when_the_socket_is_gone(short_tmp: Path) -> None:
    notifier = SystemdNotifier(str(short_tmp / "nobody-listens.sock"))
    assert notifier.enabled
    assert notifier.watchdog() is False
    assert notifier.watchdog() is False
    assert notifier.sent == Counter()
    assert notifier.attempted["WATCHDOG"] == 2


def test_watchdog_interval_from_environment() -> None:
    pid = str(os.getpid())
    assert SystemdNotifier(environ={}).watchdog_interval() is None
    assert SystemdNotifier(environ={"WATCHDOG_USEC": "600000000", "WATCHDOG_PID": pid}).watchdog_interval() == 600.0
    assert SystemdNotifier(environ={"WATCHDOG_USEC": "300000000"}).watchdog_interval() == 300.0
    # Inherited by a child: the watchdog is someone else's.
    assert SystemdNotifier(environ={"WATCHDOG_USEC": "600000000", "WATCHDOG_PID": "1"}).watchdog_interval() is None
    assert SystemdNotifier(environ={"WATCHDOG_USEC": "soon"}).watchdog_interval() is None
    assert SystemdNotifier(environ={"WATCHDOG_USEC": "0"}).watchdog_interval() is None


# ---------------------------------------------------------------------- (e) one daemon per state dir
CHILD = """
import sys, time
from pathlib import Path
from core.domain.errors import StateError
from core.runtime.process_lock import StateDirLock
try:
    with StateDirLock(Path(sys.argv[1])):
        print("acquired", flush=True)
        if len(sys.argv) > 2:
            time.sleep(float(sys.argv[2]))
except StateError as exc:
    print(exc, file=sys.stderr)
    sys.exit(3)
"""


def _child(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-c", CHILD, *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)


def test_second_instance_is_refused_while_the_first_holds_the_lock(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    lock = StateDirLock(Path("var/"))
    with lock:
        assert lock.is_held
        other = _child(tmp_path, "var/")
        assert other.returncode == 3, other
        message = other.stderr.strip()
        assert "another trading-daemon is already running with STATE_DIR=var/" in message
        assert f"lock file {Path('var') / LOCK_FILE_NAME}" in message
        assert f"pid {os.getpid()}" in message
        # A second lock object in the same process is refused too (flock is per open file).
        with pytest.raises(StateError, match="already running"):
            StateDirLock(tmp_path / "var").acquire()
        assert (tmp_path / "var" / PID_FILE_NAME).read_text().strip() == str(os.getpid())
    assert not lock.is_held
    assert not (tmp_path / "var" / PID_FILE_NAME).exists()
    again = _child(tmp_path, "var/")
    assert again.returncode == 0, again
    assert again.stdout.strip() == "acquired"


def test_lock_and_pid_files_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    old_umask = os.umask(0o022)  # a permissive umask must not leak into the files' modes
    try:
        with StateDirLock(state):
            assert stat.S_IMODE((state / LOCK_FILE_NAME).stat().st_mode) == 0o600
            assert stat.S_IMODE((state / PID_FILE_NAME).stat().st_mode) == 0o600
            assert stat.S_IMODE(state.stat().st_mode) == 0o700
    finally:
        os.umask(old_umask)


def test_an_old_world_readable_lock_file_is_tightened(tmp_path: Path) -> None:
    (tmp_path / LOCK_FILE_NAME).touch()
    os.chmod(tmp_path / LOCK_FILE_NAME, 0o644)
    with StateDirLock(tmp_path):
        assert stat.S_IMODE((tmp_path / LOCK_FILE_NAME).stat().st_mode) == 0o600


def test_the_lock_dies_with_a_killed_holder(tmp_path: Path) -> None:
    """kill -9 (or the watchdog's SIGABRT) must not leave a lock that blocks the restart."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    holder = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), "60"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "acquired"
        with pytest.raises(StateError, match=f"pid {holder.pid}"):
            StateDirLock(tmp_path).acquire()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait(timeout=30)
        for stream in (holder.stdout, holder.stderr):
            if stream is not None:
                stream.close()
    # The pid file is stale now; the new holder overwrites it.
    with StateDirLock(tmp_path) as lock:
        assert lock.holder_pid() == os.getpid()


def test_lock_is_reentrant_for_its_own_object_and_release_is_idempotent(tmp_path: Path) -> None:
    lock = StateDirLock(tmp_path)
    assert lock.acquire() is lock
    assert lock.acquire() is lock
    lock.release()
    lock.release()
    assert not lock.is_held
