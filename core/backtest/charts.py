"""The backtest report's two charts, equity.png and exposure.png, drawn with matplotlib's Agg canvas.

Only this module imports matplotlib, and only when a chart is drawn: a command that draws none never
loads it. The figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas
(no pyplot, no GUI backend), with fixed margins (one draw per figure, not a layout pass and a draw).

`ChartWorker` draws them in a child process: `trading-daemon backtest`, run as a program, forks it
right after reading its arguments (`prestart`), so the child imports matplotlib on the second core
while the parent loads its configuration, generates the bars and runs the loop; then it receives the
series (`ChartData`) and writes the files, and the parent waits for it and reports a failure like one
of its own. Anywhere else (a caller in the same process, no fork, other threads running) the charts are
drawn in the process itself, with the same result, byte for byte.
"""

from __future__ import annotations

import os
import pickle
import struct
import threading
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

EQUITY_COLOR = "#1f77b4"
BENCHMARK_COLOR = "#7f7f7f"
DRAWDOWN_COLOR = "#d62728"
DPI = 100
PNG_OPTIONS = {"compress_level": 3}   # zlib level: a third of the default's encoding time, a few % larger
_PRESTARTED: list[ChartWorker] = []


@dataclass(frozen=True)
class ChartData:
    """Everything the two charts show (picklable: it is what the chart process receives)."""

    sessions: list[date]
    equity: np.ndarray
    drawdown_pct: np.ndarray
    initial_cash: float
    benchmark: np.ndarray | None
    benchmark_label: str
    title: str
    exposure_pct: dict[str, np.ndarray]       # tier -> % of equity per session, in stacking order


def draw_charts(data: ChartData, equity_path: Path, exposure_path: Path) -> None:
    draw_equity(data, equity_path)
    draw_exposure(data, exposure_path)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI)
    return figure, FigureCanvasAgg(figure)


def draw_equity(data: ChartData, path: Path) -> None:
    figure, canvas = _figure(10, 6.5)
    figure.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.08, hspace=0.25)
    import numpy as np

    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    x = np.array(data.sessions, dtype="datetime64[D]")
    top.plot(x, data.equity, color=EQUITY_COLOR, linewidth=1.2, label="strategy")
    if data.benchmark is not None:
        top.plot(x, data.benchmark, color=BENCHMARK_COLOR, linewidth=1.0, label=data.benchmark_label)
        top.legend(loc="upper left", fontsize="small")
    top.axhline(data.initial_cash, color="grey", linewidth=0.8, linestyle="--")
    top.set_title(data.title)
    top.set_ylabel("Equity ($)")
    top.grid(True, alpha=0.3)
    bottom.fill_between(x, data.drawdown_pct, 0.0, color=DRAWDOWN_COLOR, alpha=0.4, linewidth=0)
    bottom.plot(x, data.drawdown_pct, color=DRAWDOWN_COLOR, linewidth=0.8)
    bottom.set_title("Drawdown from peak")
    bottom.set_ylabel("Drawdown (%)")
    bottom.set_xlabel("Session")
    bottom.grid(True, alpha=0.3)
    canvas.print_png(str(path), metadata={"Software": None}, pil_kwargs=PNG_OPTIONS)


def draw_exposure(data: ChartData, path: Path) -> None:
    figure, canvas = _figure(10, 3.5)
    figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.15)
    import numpy as np

    ax = figure.subplots()
    x = np.array(data.sessions, dtype="datetime64[D]")
    tiers = list(data.exposure_pct)
    # Daily values, unsmoothed: a trader reads the exposure actually held at each close.
    ax.stackplot(x, *(data.exposure_pct[t] for t in tiers), labels=tiers, alpha=0.8, step="post")
    ax.set_title("Exposure per tier: market value as % of equity at each close (daily)")
    ax.set_ylabel("% of equity")
    ax.set_xlabel("Session")
    ax.legend(loc="upper left", fontsize="small")
    ax.grid(True, alpha=0.3)
    canvas.print_png(str(path), metadata={"Software": None}, pil_kwargs=PNG_OPTIONS)


def _preload() -> None:
    """Import what drawing needs (the slow part of a first chart)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.figure  # noqa: F401


# ---------------------------------------------------------------------------------------------
# A child process that draws while the parent computes
# ---------------------------------------------------------------------------------------------
_LENGTH = struct.Struct("!Q")


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view):]


def _read_all(fd: int) -> bytes | None:
    """One length-prefixed message, or None at end of file (the other side went away)."""
    chunks: list[bytes] = []
    need = _LENGTH.size
    header = b""
    while len(header) < need:
        chunk = os.read(fd, need - len(header))
        if not chunk:
            return None
        header += chunk
    (remaining,) = _LENGTH.unpack(header)
    while remaining:
        chunk = os.read(fd, min(remaining, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def prestart() -> None:
    """Fork the chart process now (the command line, run as a program, for `backtest`)."""
    if not _PRESTARTED:
        _PRESTARTED.append(ChartWorker(parallel=True))


def chart_worker() -> ChartWorker:
    """The chart process forked by `prestart`, or one that draws in this process."""
    return _PRESTARTED.pop() if _PRESTARTED else ChartWorker(parallel=False)


class ChartWorker:
    """Draws the charts in a forked child (or, where that is unsafe, in this process on `draw`)."""

    def __init__(self, *, parallel: bool = False) -> None:
        self._pid: int | None = None
        self._to_child = self._from_child = -1
        if parallel and hasattr(os, "fork") and threading.active_count() == 1:
            self._start()

    @property
    def forked(self) -> bool:
        return self._pid is not None

    def _start(self) -> None:
        job_read, job_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: never returns
            os.close(job_write)
            os.close(result_read)
            _child(job_read, result_write)
        os.close(job_read)
        os.close(result_write)
        self._pid, self._to_child, self._from_child = pid, job_write, result_read

    def draw(self, data: ChartData, equity_path: Path, exposure_path: Path) -> None:
        """Write both charts; raises OSError naming the problem if they could not be written."""
        if self._pid is None:
            draw_charts(data, equity_path, exposure_path)
            return
        try:
            _write_all(self._to_child, pickle.dumps((data, str(equity_path), str(exposure_path))))
            answer = _read_all(self._from_child)
        except OSError as exc:
            answer = f"the chart process went away ({exc})".encode()
        finally:
            self.close()
        if answer is None:
            raise OSError("the chart process ended without drawing the charts")
        if answer != b"ok":
            raise OSError(answer.decode("utf-8", "replace"))

    def close(self) -> None:
        """Stop the child (a run that ends before drawing); waits for it."""
        if self._pid is None:
            return
        for fd in (self._to_child, self._from_child):
            try:
                os.close(fd)
            except OSError:
                pass
        try:
            os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass
        self._pid = None

    def __enter__(self) -> ChartWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _child(job_read: int, result_write: int) -> None:
    code = 0
    try:
        try:
            _preload()
            message = _read_all(job_read)
            if message is None:
                os._exit(0)  # the parent stopped before the charts: nothing to draw
            data, equity_path, exposure_path = pickle.loads(message)
            draw_charts(data, Path(equity_path), Path(exposure_path))
            answer = b"ok"
        except OSError as exc:
            answer = str(exc).encode()
        except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
            answer = f"{type(exc).__name__}: {exc}".encode()
        _write_all(result_write, answer)
    except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
        code = 1
    finally:
        os._exit(code)
