"""The backtest report's two charts, equity.png and exposure.png, drawn with matplotlib's Agg canvas.

Only this module imports matplotlib, and only when a chart is drawn: a command that draws none never
loads it. The figures are built with `matplotlib.figure.Figure` and saved through the Agg canvas
(no pyplot, no GUI backend), with fixed margins (one draw per figure, not a layout pass and a draw).

`ChartWorker` draws them in a child process: `trading-daemon backtest`, run as a program, forks it
right after reading its arguments (`prestart`), so the child imports matplotlib on the second core
while the parent loads its configuration, generates the bars and runs the loop; then it receives the
series (`ChartData`) and writes the files, and the parent waits for it and reports a failure like one
of its own. Once matplotlib is imported, the chart process forks a second one: each builds one chart
without its series (figure, axes, titles, labels, grid); when the series arrive, equity.png and
exposure.png are finished at the same time, on both cores, while the parent writes the rest of the
report. Anywhere else (a caller in the same process, no fork, other threads running) the charts are
drawn in the process itself, with the same result, byte for byte.
"""

from __future__ import annotations

import gc
import os
import pickle
import struct
import threading
from collections.abc import Callable
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


class _Chart:
    """A chart whose parts that do not depend on the series (figure, axes, titles, labels, grid) are built on
    creation, so a chart process has it ready before the backtest ends; `finish` adds the series and saves."""

    def __init__(self, width: float, height: float) -> None:
        self.figure, self.canvas = _figure(width, height)

    def finish(self, data: ChartData, path: Path) -> None:
        import numpy as np

        self._plot(data, np.array(data.sessions, dtype="datetime64[D]"))
        _save(self.canvas, path)

    def _plot(self, data: ChartData, x: np.ndarray) -> None:
        raise NotImplementedError


class _EquityChart(_Chart):
    """equity.png: equity (and the benchmark) over the drawdown from peak."""

    def __init__(self) -> None:
        super().__init__(10, 6.5)
        self.figure.subplots_adjust(left=0.09, right=0.98, top=0.95, bottom=0.08, hspace=0.25)
        self.top, self.bottom = self.figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
        self.top.set_ylabel("Equity ($)")
        self.top.grid(True, alpha=0.3)
        self.bottom.set_title("Drawdown from peak")
        self.bottom.set_ylabel("Drawdown (%)")
        self.bottom.set_xlabel("Session")
        self.bottom.grid(True, alpha=0.3)

    def _plot(self, data: ChartData, x: np.ndarray) -> None:
        top, bottom = self.top, self.bottom
        top.plot(x, data.equity, color=EQUITY_COLOR, linewidth=1.2, label="strategy")
        if data.benchmark is not None:
            top.plot(x, data.benchmark, color=BENCHMARK_COLOR, linewidth=1.0, label=data.benchmark_label)
            top.legend(loc="upper left", fontsize="small")
        top.axhline(data.initial_cash, color="grey", linewidth=0.8, linestyle="--")
        top.set_title(data.title)
        bottom.fill_between(x, data.drawdown_pct, 0.0, color=DRAWDOWN_COLOR, alpha=0.4, linewidth=0)
        bottom.plot(x, data.drawdown_pct, color=DRAWDOWN_COLOR, linewidth=0.8)


class _ExposureChart(_Chart):
    """exposure.png: each tier's market value as % of equity, stacked."""

    def __init__(self) -> None:
        super().__init__(10, 3.5)
        self.figure.subplots_adjust(left=0.07, right=0.98, top=0.9, bottom=0.15)
        self.ax = self.figure.subplots()
        self.ax.set_title("Exposure per tier: market value as % of equity at each close (daily)")
        self.ax.set_ylabel("% of equity")
        self.ax.set_xlabel("Session")
        self.ax.grid(True, alpha=0.3)

    def _plot(self, data: ChartData, x: np.ndarray) -> None:
        tiers = list(data.exposure_pct)
        # Daily values, unsmoothed: a trader reads the exposure actually held at each close.
        self.ax.stackplot(x, *(data.exposure_pct[t] for t in tiers), labels=tiers, alpha=0.8, step="post")
        self.ax.legend(loc="upper left", fontsize="small")


def _save(canvas: Any, path: Path) -> None:
    canvas.print_png(str(path), metadata={"Software": None}, pil_kwargs=PNG_OPTIONS)


def draw_equity(data: ChartData, path: Path) -> None:
    _EquityChart().finish(data, path)


def draw_exposure(data: ChartData, path: Path) -> None:
    _ExposureChart().finish(data, path)


def _preload() -> None:
    """Import what drawing needs (the slow part of a first chart), with the date axis, the PNG encoder and the
    default font, which a first chart would otherwise load after its series arrive. (Drawing the empty charts
    once as well saved no more, for ~0.15 s of CPU that a busy machine's parent process would miss.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.dates  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import PIL.PngImagePlugin  # noqa: F401
    from matplotlib.font_manager import FontProperties, findfont, get_font

    get_font(findfont(FontProperties()))


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
    """Draws the charts in forked children (or, where that is unsafe, in this process on `wait`).

    `send` hands the series over and returns at once; `wait` returns when both files are written, so the
    caller writes the rest of its report in between. `draw` is both."""

    def __init__(self, *, parallel: bool = False) -> None:
        self._pid: int | None = None
        self._to_child = self._from_child = -1
        self._job: tuple[ChartData, Path, Path] | None = None
        self._answer: bytes | None = b"ok"
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
        self.send(data, equity_path, exposure_path)
        self.wait()

    def send(self, data: ChartData, equity_path: Path, exposure_path: Path) -> None:
        """Start drawing (in the chart process; here, the job waits for `wait`)."""
        if self._pid is None:
            self._job = (data, equity_path, exposure_path)
            return
        try:
            _write_all(self._to_child, pickle.dumps((data, str(equity_path), str(exposure_path))))
            self._answer = None
        except OSError as exc:
            self._answer = f"the chart process went away ({exc})".encode()
            self.close()

    def wait(self) -> None:
        """Return once the charts `send` started are written; raises OSError naming the problem if not."""
        if self._job is not None:
            job, self._job = self._job, None
            draw_charts(*job)
            return
        if self._pid is not None:
            try:
                self._answer = _read_all(self._from_child)
            except OSError as exc:
                self._answer = f"the chart process went away ({exc})".encode()
            finally:
                self.close()
        if self._answer is None:
            raise OSError("the chart process ended without drawing the charts")
        if self._answer != b"ok":
            raise OSError(self._answer.decode("utf-8", "replace"))

    def close(self) -> None:
        """Stop the child (a run that ends before drawing); waits for it."""
        if self._pid is None:
            return
        _close(self._to_child, self._from_child)
        _reap(self._pid)
        self._pid = None

    def __enter__(self) -> ChartWorker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(*fds: int) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


# The chart process draws equity.png and forks a second one for exposure.png, so the two are drawn at the
# same time; each builds its empty chart while the parent still computes. (chart, index of its path in a job)
_Drawn = tuple[Callable[[], _Chart], int]
_FIRST: _Drawn = (_EquityChart, 0)
_SECOND: _Drawn = (_ExposureChart, 1)


def _child(job_read: int, result_write: int) -> None:
    code = 0
    try:
        gc.disable()   # a short-lived process with bounded work: collecting would only slow it (its imports)
        second: tuple[int, int, int] | None = None     # None: this process draws both charts
        failure: BaseException | None = None
        try:
            _preload()
        except BaseException as exc:  # noqa: BLE001 - reported once the job has come
            failure = exc
        else:
            try:
                second = _fork_drawer(_SECOND, (job_read, result_write))
            except OSError:
                pass               # no second process: this one draws both charts
        to_second = second[1] if second else -1
        answer = _serve([_FIRST] if second else [_FIRST, _SECOND], job_read, to_second, failure)
        if second:
            _close(to_second)
            other = _read_all(second[2])
            if answer == b"ok":
                answer = other if other is not None else b"the exposure chart process ended without drawing it"
        if answer is not None:     # None: the parent stopped before the charts, nothing to draw
            _write_all(result_write, answer)
        if second:
            _reap(second[0])       # after answering: the answer does not wait for its exit (~8 ms)
    except BaseException:  # noqa: BLE001 - the child must never return into the parent's code
        code = 1
    finally:
        os._exit(code)


def _fork_drawer(chart: _Drawn, inherited: tuple[int, ...]) -> tuple[int, int, int]:
    """A process that draws `chart` from the jobs it is forwarded: (its pid, job pipe, answer pipe)."""
    job_read, job_write = os.pipe()
    answer_read, answer_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            # Only its own pipes: the parent's must see the end of file when the first chart process goes.
            _close(*inherited, job_write, answer_read)
            answer = _serve([chart], job_read, -1)
            if answer is not None:
                _write_all(answer_write, answer)
        except BaseException:  # noqa: BLE001 - never return into the caller's code
            code = 1
        finally:
            os._exit(code)
    _close(job_read, answer_write)
    return pid, job_write, answer_read


def _serve(charts: list[_Drawn], job_read: int, forward: int,
           failure: BaseException | None = None) -> bytes | None:
    """Build `charts` empty, wait for the job, pass it on to `forward` (if >= 0), finish and save them:
    b"ok", one line saying what failed (`failure`, if given: what failed before), or None if no job came."""
    built: list[tuple[_Chart, int]] = []
    try:
        if failure is None:
            for make, index in charts:
                built.append((make(), index))
    except BaseException as exc:  # noqa: BLE001 - reported once the job has come
        failure = exc
    message = _read_all(job_read)
    if forward >= 0:
        try:
            if message is not None:
                _write_all(forward, message)
        except OSError:
            pass                  # the other process is gone: its missing answer says so
    if message is None:
        return None
    try:
        if failure is not None:
            raise failure
        data, *paths = pickle.loads(message)
        for chart, index in built:
            chart.finish(data, Path(paths[index]))
        return b"ok"
    except OSError as exc:
        return str(exc).encode()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as one line
        return f"{type(exc).__name__}: {exc}".encode()
