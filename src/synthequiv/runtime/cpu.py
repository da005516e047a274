"""CPU threads and OpenMP wait policy on a machine shared with other jobs.

Torch's intra-op threads meet at a barrier after every parallel region. By default libgomp
(the OpenMP runtime of torch's CPU wheels) spins there; when another process holds one of the
cores, the spinning thread burns its time slice waiting for a descheduled partner, and a quick
study ran 13× slower beside two busy processes (benchmarks/contention.py measures it). Two
remedies, both measured there:

  passive waiting  OMP_WAIT_POLICY=PASSIVE: waiting threads sleep instead of spinning. libgomp
                   reads it once, when torch loads, so it is set as a default when synthequiv is
                   imported before torch (`prefer_passive_wait`); setting it later does nothing.
                   It changes no number (same arithmetic, same thread count).
  fewer threads    cpu_threads=0 (auto) gives torch one thread per core that other processes
                   leave free, measured from /proc/stat over a short sleep at the study's start
                   (`auto_threads`), at least 1. Thread count changes float summation order, so
                   two runs of one config on differently loaded machines can differ by
                   seed-noise-sized amounts; set cpu_threads > 0 to pin it.

Nothing here imports torch at module level (`prefer_passive_wait` must run before it loads).
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from synthequiv.utils import SynthequivError

WAIT_ENV = "OMP_WAIT_POLICY"
SAMPLE_S = 0.5  # how long the start-of-study sample of other processes' CPU use sleeps
# a core counts as free when others use less than half of it: 2 cores, one busy process → 1
FREE_CORE_MIN = 0.5


def prefer_passive_wait() -> None:
    """Make waiting OpenMP threads sleep (OMP_WAIT_POLICY=PASSIVE) unless the user chose a
    policy or torch is already loaded (libgomp has read its environment then)."""
    if "torch" not in sys.modules:
        os.environ.setdefault(WAIT_ENV, "PASSIVE")


def cpu_budget() -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota (containers,
    SLURM's cgroup plugin) and by SLURM_CPUS_PER_TASK (a SLURM task's allocation where no cgroup
    enforces it; the test suite sets it to 1 for each of its worker processes)."""
    cores = len(_affinity())
    quota = _cgroup_quota()
    caps = [cores, math.ceil(quota) if quota else cores, _slurm_cpus() or cores]
    return max(1, min(caps))


def _slurm_cpus() -> int | None:
    """SLURM_CPUS_PER_TASK as a positive integer; None when unset or malformed."""
    try:
        n = int(os.environ.get("SLURM_CPUS_PER_TASK", ""))
    except ValueError:
        return None
    return n if n > 0 else None


def _affinity() -> set[int]:
    if hasattr(os, "sched_getaffinity"):
        return set(os.sched_getaffinity(0))
    return set(range(os.cpu_count() or 1))


def _cgroup_quota() -> float | None:
    """CPU quota in cores (cgroup v2 cpu.max or v1 cfs_quota_us / cfs_period_us); None if
    unlimited or unreadable."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1 = Path("/sys/fs/cgroup/cpu")
        quota = int((v1 / "cpu.cfs_quota_us").read_text())
        return None if quota <= 0 else quota / int((v1 / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def _cpu_ticks(cores: set[int]) -> tuple[int, int] | None:
    """(busy, total) clock ticks summed over `cores` from /proc/stat; None off Linux."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = total = 0
    for line in lines:
        name, *fields = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores):
            continue
        t = [int(f) for f in fields[:8]]  # user nice system idle iowait irq softirq steal
        busy += t[0] + t[1] + t[2] + t[5] + t[6] + t[7]
        total += sum(t)
    return (busy, total) if total else None


@dataclass(frozen=True)
class Contention:
    """Other processes' CPU use on this process's cores, and the threads that leaves."""

    budget: int  # cores this process may use
    busy_elsewhere: float  # cores kept busy by other processes (0 when not measurable)
    threads: int  # torch threads chosen: the free cores, at least 1
    source: str  # how busy_elsewhere was measured

    @property
    def contended(self) -> bool:
        return self.busy_elsewhere >= FREE_CORE_MIN

    def describe(self) -> str:
        state = "contended" if self.contended else "not contended"
        return (f"CPU {state}: other processes kept {self.busy_elsewhere:.1f} of "
                f"{self.budget} cores busy ({self.source}); torch uses {self.threads} "
                f"thread{'s' * (self.threads != 1)}, waiting threads "
                f"{'sleep' if os.environ.get(WAIT_ENV, '').upper() == 'PASSIVE' else 'spin'}")


def measure_contention(sample_s: float = SAMPLE_S, max_threads: int = 0) -> Contention:
    """Sleep `sample_s` and count the cores other processes kept busy meanwhile (/proc/stat
    over this process's cores; the 1-minute load average where there is no /proc).
    max_threads > 0 caps the threads chosen (torch's count before: auto only lowers it)."""
    budget, cores = cpu_budget(), _affinity()
    budget = min(budget, max_threads) if max_threads > 0 else budget
    a, own0, t0 = _cpu_ticks(cores), time.process_time(), time.perf_counter()
    if a is None:
        busy = min(float(budget), max(0.0, os.getloadavg()[0])) if hasattr(os, "getloadavg") \
            else 0.0
        return Contention(budget, busy, auto_threads(budget, busy), "1-min load average")
    time.sleep(sample_s)
    b = _cpu_ticks(cores)
    wall = time.perf_counter() - t0
    share = (b[0] - a[0]) / max(1, b[1] - a[1])  # busy fraction of those cores
    busy = max(0.0, share * len(cores) - (time.process_time() - own0) / wall)
    busy = min(float(budget), busy)
    return Contention(budget, busy, auto_threads(budget, busy),
                      f"/proc/stat over {sample_s:g} s")


def auto_threads(budget: int, busy_elsewhere: float) -> int:
    """One thread per core that others leave free (a core is free when others use less than
    FREE_CORE_MIN of it), at least 1."""
    return max(1, min(budget, math.floor(budget - busy_elsewhere + FREE_CORE_MIN)))


class ThreadAdapter:
    """Re-decides the thread count between tasks from other processes' CPU use since the last
    check (no extra sleep: the interval is the task just run; this process's own CPU time is
    subtracted), for jobs that start or stop while a study runs; never above the first
    Contention's budget."""

    MIN_INTERVAL_S = 5.0  # shorter intervals are too noisy to act on

    def __init__(self, first: Contention):
        self.current = first
        self._cores = _affinity()
        self._mark()

    def _mark(self) -> None:
        self._ticks = _cpu_ticks(self._cores)
        self._own, self._t = time.process_time(), time.perf_counter()

    def check(self) -> Contention | None:
        """The new Contention when the thread count should change, else None."""
        wall = time.perf_counter() - self._t
        if self._ticks is None or wall < self.MIN_INTERVAL_S:
            return None
        a, own = self._ticks, time.process_time() - self._own
        self._mark()
        b = self._ticks
        if b is None:
            return None
        share = (b[0] - a[0]) / max(1, b[1] - a[1])
        busy = min(float(self.current.budget), max(0.0, share * len(self._cores) - own / wall))
        new = Contention(self.current.budget, busy, auto_threads(self.current.budget, busy),
                         f"/proc/stat over the last {wall:.0f} s")
        if new.threads == self.current.threads:
            return None
        self.current = new
        return new


# ----------------------------------------------------------------------------- figure workers

WORKERS_ENV = "SYNTHEQUIV_FIGURE_WORKERS"
AUTO_MIN_CORES = 6


def figure_workers() -> int:
    """Worker processes for figures (SYNTHEQUIV_FIGURE_WORKERS, checked: config.validate
    calls this before any work)."""
    raw = os.environ.get(WORKERS_ENV, "auto").strip().lower()
    if raw == "auto":
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (
            os.cpu_count() or 1)
        return 0 if cores < AUTO_MIN_CORES else min(4, cores // 4)
    if not raw.isdigit():
        raise SynthequivError(f"{WORKERS_ENV} must be auto or a whole number ≥ 0, got '{raw}'")
    return int(raw)
