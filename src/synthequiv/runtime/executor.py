"""Run independent tasks locally (in-process or a process pool) or as Ray tasks.

`map_tasks(fn, items, shared, rt, kind)` yields fn(item, **shared) for every item, in
completion order. The driver consumes the results and is the only writer of the run
directory's results table, so a cell is never recorded twice. `WorkerPool` keeps local
workers across tasks of several kinds that become ready one after another (the study's first
work as one queue, orchestration/pipeline.py), starting the most urgent ready task first.

Every function here reads the study's RuntimeConfig (runtime/config.py), never the study.
Local runs use `rt.workers` processes with `rt.cpu_threads` torch threads each: on CPU,
small convolutions scale better across processes than across threads, and a task's numbers
do not depend on how many tasks share the machine (same seed → same row, any worker count).
On a machine with several GPUs, each worker process takes one GPU (round-robin).
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import pickle
import tempfile
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, as_completed, wait
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import torch

from synthequiv.runtime.config import RuntimeConfig
from synthequiv.runtime.cpu import Contention, ThreadAdapter, cpu_budget, measure_contention
from synthequiv.runtime.runlog import info, metric
from synthequiv.utils import SynthequivError, watch_parent

_SHARED: dict[str, Any] = {}


def _on_gpu(rt: RuntimeConfig) -> bool:
    return rt.device != "cpu" and torch.cuda.is_available()


def local_workers(rt: RuntimeConfig) -> int:
    if rt.workers > 0:
        return rt.workers
    if _on_gpu(rt):
        return torch.cuda.device_count()  # one process per GPU
    return cpu_budget()  # one per core this process may use


def worker_gpus(rt: RuntimeConfig, workers: int) -> list[int | None]:
    """The GPU each local worker process takes (round-robin), None on CPU or an explicit
    cuda:N device."""
    if not _on_gpu(rt) or rt.device not in ("auto", "cuda"):
        return [None] * workers
    return [i % torch.cuda.device_count() for i in range(workers)]


_ADAPTER: ThreadAdapter | None = None  # set by set_cpu_threads with cpu_threads=0 on a CPU


def set_cpu_threads(rt: RuntimeConfig) -> Contention | None:
    """Decide torch's CPU threads for this process: rt.cpu_threads (default 1, with one worker
    process per core), or with 0 torch's count (one per core), logged with the machine's
    contention; with rt.cpu_adapt that count is lowered to the cores other processes leave
    free (runtime/cpu.py) and map_tasks re-decides between in-process tasks, never above it.
    On a GPU nothing is measured."""
    global _ADAPTER
    _ADAPTER = None
    if rt.cpu_threads > 0:
        torch.set_num_threads(rt.cpu_threads)
        if _on_gpu(rt):
            return None
        # pinned: nothing is decided from it, only said, so a shorter sample than auto's
        c = dataclasses.replace(measure_contention(sample_s=0.2), threads=rt.cpu_threads)
        _log_contention(c, echo="always")
        return c
    ceiling = torch.get_num_threads()  # torch's default, or what the caller chose
    if _on_gpu(rt) or ceiling == 1:
        return None
    c = measure_contention(max_threads=ceiling)
    if not rt.cpu_adapt:  # the same threads whatever the load: same numbers
        c = dataclasses.replace(c, threads=ceiling)
        _log_contention(c, echo="always", hint=c.contended)
        return c
    torch.set_num_threads(c.threads)
    _ADAPTER = ThreadAdapter(c)
    _log_contention(c, echo="always")
    return c


def _log_contention(c: Contention, echo: str, hint: bool = False) -> None:
    info(c.describe() + ("; --set cpu_adapt=true lowers the threads to the free cores (faster "
                         "here; the numbers then depend on the load), --set cpu_threads=1 "
                         "pins one" if hint else ""), echo=echo)
    metric("cpu", contended=c.contended, busy_elsewhere=round(c.busy_elsewhere, 2),
           budget=c.budget, threads=c.threads, source=c.source)


def _adapt_threads() -> None:
    """Between in-process tasks: follow other jobs that started or stopped (auto threads)."""
    new = _ADAPTER.check() if _ADAPTER is not None else None
    if new is not None:
        torch.set_num_threads(new.threads)
        _log_contention(new, echo="plain")  # a terminal's bars are not torn by it


def _init_worker(shared: dict, cpu_threads: int, gpus) -> None:
    watch_parent()  # a study killed outright takes its workers along (they idled on before)
    _SHARED.clear()
    _SHARED.update(shared)
    if cpu_threads > 0:
        torch.set_num_threads(cpu_threads)
    gpu = gpus.get()  # each worker takes one entry of worker_gpus
    if gpu is not None:
        torch.cuda.set_device(gpu)  # the "cuda" device of this process's tasks


def _run_in_worker(fn: Callable, item: Any) -> Any:
    return fn(item, **_SHARED)


_KINDS: dict[str, dict] = {}  # a WorkerPool worker's shared inputs, by file (one per kind)


def _run_kind(path: str, fn: Callable, item: Any) -> Any:
    shared = _KINDS.get(path)
    if shared is None:  # this worker's first task of the kind: read its inputs once
        with open(path, "rb") as f:
            shared = _KINDS[path] = pickle.load(f)
    return fn(item, **shared)


def _pool_size(rt: RuntimeConfig, n_items: int, kind: str) -> int:
    """Local worker processes map_tasks starts for n_items tasks (1 = in this process)."""
    if kind == "generator" and rt.generator_nproc > 1:
        return 1  # each training already spans generator_nproc processes (torchrun)
    return min(local_workers(rt), n_items)


def runs_elsewhere(rt: RuntimeConfig, n_items: int, kind: str) -> bool:
    """True when map_tasks runs these tasks outside this process (Ray tasks or a local
    pool): their own progress goes to log.txt only, so the caller counts them on the console."""
    return rt.executor == "ray" or _pool_size(rt, n_items, kind) > 1


def map_tasks(fn: Callable, items: Iterable, shared: dict[str, Any], rt: RuntimeConfig,
              kind: str = "cell") -> Iterator[Any]:
    items = list(items)
    if not items:
        return
    if rt.executor == "ray":
        from synthequiv.runtime.ray_executor import ray_map

        yield from ray_map(fn, items, shared, rt, kind)
        return
    if rt.executor != "local":
        raise SynthequivError(f"unknown executor '{rt.executor}' (use local or ray)")
    workers = _pool_size(rt, len(items), kind)
    if workers == 1:
        for item in items:
            _adapt_threads()
            yield fn(item, **shared)
        return
    with _spawn_pool(rt, workers, shared) as pool:
        futures = [pool.submit(_run_in_worker, fn, item) for item in items]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _quiet(shared: dict) -> dict:
    """Workers draw no bars of their own: one bar, the driver's."""
    return {**shared, "progress": False} if "progress" in shared else shared


def _spawn_pool(rt: RuntimeConfig, workers: int, shared: dict) -> ProcessPoolExecutor:
    import multiprocessing as mp

    # spawn: no fork of a process that already holds torch threads / a CUDA context
    # threads per worker: as configured, else the free cores (auto) divided among the workers
    free = _ADAPTER.current.threads if _ADAPTER is not None else cpu_budget()
    threads = rt.cpu_threads or max(1, free // workers)
    ctx = mp.get_context("spawn")
    gpus = ctx.Queue()
    for gpu in worker_gpus(rt, workers):
        gpus.put(gpu)
    return ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker,
                               initargs=(_quiet(shared), threads, gpus))


class Task(NamedTuple):
    """One WorkerPool task: fn(item, **the shared inputs of `kind`); lower priority first."""

    priority: int
    kind: str
    fn: Callable
    item: Any


class WorkerPool:
    """Local worker processes for tasks of several kinds that become ready one after another
    (a generator's samples once it is trained, orchestration/pipeline.py): each kind's shared
    inputs reach a worker once (a pickle it reads on its first task of that kind), and `run`
    keeps one task per worker in flight, so a freed worker always starts the most urgent ready
    task instead of one queued long before. Same workers, threads and GPUs as `map_tasks`."""

    def __init__(self, rt: RuntimeConfig, workers: int):
        self.workers = workers
        self._dir = tempfile.TemporaryDirectory(prefix="synthequiv-pool-")
        self._paths: dict[str, str] = {}
        self._pool = _spawn_pool(rt, workers, {})

    def share(self, kind: str, shared: dict[str, Any]) -> None:
        """The inputs every task of `kind` gets (set before its first task)."""
        path = Path(self._dir.name) / f"{len(self._paths)}.pkl"
        with open(path, "wb") as f:
            pickle.dump(_quiet(shared), f, protocol=pickle.HIGHEST_PROTOCOL)
        self._paths[kind] = str(path)

    def run(self, tasks: Iterable[Task], on_done: Callable[[Task, Any], Iterable[Task]]
            ) -> None:
        """Every task, most urgent first among the ready ones; on_done(task, result), called
        in this process as each finishes, returns the tasks that became ready."""
        order = itertools.count()  # ties: first come, first served
        ready = [(t.priority, next(order), t) for t in tasks]
        heapq.heapify(ready)
        running: dict[Future, Task] = {}
        try:
            while ready or running:
                while ready and len(running) < self.workers:
                    task = heapq.heappop(ready)[2]
                    fut = self._pool.submit(_run_kind, self._paths[task.kind], task.fn,
                                            task.item)
                    running[fut] = task
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for fut in finished:
                    task = running.pop(fut)
                    for new in on_done(task, fut.result()):
                        heapq.heappush(ready, (new.priority, next(order), new))
        finally:
            for fut in running:
                fut.cancel()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._dir.cleanup()
