"""Write figures in worker processes while the stage that draws them goes on.

A figure is host work on one core: matplotlib lays it out in the study's process (cheap) and
then renders it twice, PNG and SVG (most of its time: ~0.17 of 0.23 s for an analyses figure
on the 2-vCPU machine, where two figures are ~0.46 of a synthetic set's ~0.5 s of analyses).
On the H100 machine the quick study's analyses took ~2 s per set and its report 4.0 s for
eight figures (1.3 s here), while 15 of its 16 cores idled. Inside `collect()`,
`figures._save` pickles the laid-out figure and hands the two renders to a pool of spawned
processes; the stage goes on, and `collect()` returns once every figure is on disk
(re-raising the first failure). Outside it, or with no pool, figures are written at once, as
before. Files are the same either way (PNG bytes compared in tests/test_report.py): the
figure is the same object, rendered by the same code.

Workers: SYNTHEQUIV_FIGURE_WORKERS = auto (default) | N (0: none). auto is 0 below
AUTO_MIN_CORES usable cores (on 2 cores a render competes with torch's threads; nothing to
gain) and min(4, cores // 4) above. `synthequiv study` starts them (`prestart()`) at its
beginning (each imports matplotlib and torch, ~1–2 s), so that happens during the GPU
stages; without a started pool figures are written in the process. A worker that dies (a
broken pool) makes the remaining figures render in this process, and no pool is tried again.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import pickle
from concurrent import futures
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from synthequiv.runtime.cpu import AUTO_MIN_CORES, WORKERS_ENV, figure_workers  # noqa: F401
from synthequiv.utils import atomic_path, watch_parent

_POOL: ProcessPoolExecutor | None = None
_BROKEN = False
_COLLECTING: list[list] = []  # a stack of open collect() blocks: [(future, blob, path), ...]


def _start() -> ProcessPoolExecutor | None:
    global _POOL
    if _POOL is None and not _BROKEN:
        n = figure_workers()
        if n > 0 and not mp.current_process().daemon:  # a daemonic worker has no children
            # watch_parent: a study killed outright takes its workers along
            _POOL = ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"),
                                        initializer=watch_parent)
    return _POOL


def _warm() -> None:
    import matplotlib  # in a worker, before its first figure: matplotlib and its font cache

    matplotlib.use("Agg")
    import matplotlib.pyplot  # noqa: F401


def prestart() -> None:
    """Start the workers now (their imports then overlap the work that follows). Only a
    started pool takes figures: a command that draws a few figures and stops (`synthequiv
    report`) would spend longer starting workers than drawing.

    A Ctrl-C at the terminal reaches the whole process group: the workers are started with
    SIGINT ignored (`_sigint_ignored`: Python then never turns it into a traceback), so the
    study stops with its own one line and they leave when their pipe closes."""
    pool = _start()
    if pool is not None:
        with _sigint_ignored():
            for _ in range(pool._max_workers):
                pool.submit(_warm)  # spawns a worker per call, synchronously
        from synthequiv.runtime.runlog import info

        info(f"figures: drawn by {pool._max_workers} worker processes "
             f"({WORKERS_ENV}=0 draws them in this one)")


@contextlib.contextmanager
def _sigint_ignored():
    """SIGINT ignored in this process for the block (main thread only): a process started
    meanwhile inherits that."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


DPI = 150  # of every PNG figure


def write_figure(fig, path: Path) -> Path:
    """The figure's PNG at `path` and its SVG twin, each written atomically; fig is closed."""
    import matplotlib.pyplot as plt  # lazy: only where a figure is written

    path = Path(path)
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=DPI, bbox_inches="tight", format="png")
        with atomic_path(path.with_suffix(".svg"), suffix=".svg") as tmp:
            fig.savefig(tmp, bbox_inches="tight", format="svg")
    finally:
        plt.close(fig)
    return path


def _render(blob: bytes, path: str) -> str:
    """In a worker: the pickled figure's PNG and SVG (write_figure)."""
    return str(write_figure(pickle.loads(blob), Path(path)))


def submit(fig, path: Path) -> bool:
    """Hand fig's renders to a worker if a collect() block is open and a pool was started;
    False (nothing done) otherwise, or for a figure that cannot be pickled: the caller writes
    it itself."""
    pool = _POOL if _COLLECTING else None
    if pool is None:
        return False
    try:
        blob = pickle.dumps(fig)
    except (pickle.PicklingError, TypeError, AttributeError):  # e.g. a lambda formatter
        return False
    try:
        fut = pool.submit(_render, blob, str(path))
    except (BrokenProcessPool, RuntimeError):  # broken, or shut down at exit
        _give_up()
        return False
    _COLLECTING[-1].append((fut, blob, path))
    return True


def _give_up() -> None:
    """No pool from here on: queued figures are cancelled, and the workers leave after the
    figure in hand (they are not killed: a killed worker leaves the executor's own thread
    failing on cancelled futures, with a traceback)."""
    global _POOL, _BROKEN
    _BROKEN = True
    if _POOL is not None:
        _POOL.shutdown(wait=False, cancel_futures=True)
    _POOL = None


def _finish(jobs: list) -> None:
    """Wait for jobs; a broken pool's figures are rendered here; the first error raised."""
    first: Exception | None = None
    for fut, blob, path in jobs:
        try:
            fut.result()
        except BrokenProcessPool:
            _give_up()
            _render(blob, str(path))
        except Exception as exc:  # noqa: BLE001  (re-raised below, after the others)
            first = first or exc
    if first is not None:
        raise first


def _abandon(jobs: list, interrupted: bool) -> None:
    """After an error in a collect() block: queued figures are cancelled and those already
    with a worker finish before the error goes on (no file appears after the block). A
    Ctrl-C goes on at once: the pool is given up, its workers finish the figure in hand."""
    for fut, _, _ in jobs:
        fut.cancel()
    if interrupted:
        _give_up()
    else:
        futures.wait([fut for fut, _, _ in jobs])


@contextlib.contextmanager
def collect():
    """Figures drawn inside are written by the pool (if started); the block's end waits for
    them. On an error inside (or a failed figure), no file is written after the block ends;
    a Ctrl-C is not held up by the figures (`_abandon`)."""
    jobs: list[tuple[Future, bytes, Path]] = []
    _COLLECTING.append(jobs)
    try:
        try:
            yield
        finally:
            _COLLECTING.pop()
        _finish(jobs)
    except BaseException as exc:
        _abandon(jobs, interrupted=not isinstance(exc, Exception))
        raise
