"""How fast is this machine's host at the study's host work, and do torch's CPU threads slow it?

    python3 benchmarks/host_speed.py          # gpu_check.sh step s (~15 s)

On the H100 machine the quick study's analyses spent ~2 s per synthetic set and its report
4.0 s, where the 2-vCPU development machine takes 0.5 s and 1.3 s — nearly all of it drawing
figures (matplotlib, one core). This prints the machine's CPU facts (usable cores, the cgroup's
CPU quota, model, threads per core, torch's CPU threads) and times, side by side in one run
(median of --repeats, arms interleaved):
  python      a fixed pure-Python loop (the interpreter's speed)
  figure      one analyses figure, PNG + SVG (`figures.pca_maps` on 600 random points × 2)
each three ways: alone; right after a burst of multi-threaded torch CPU work at torch's
default thread count (its OpenMP threads may spin-wait afterwards and take cores the main
thread needs, where cores are shared or hyper-threaded); the same with 1 torch thread.
Then --figures analyses figures drawn in this process vs handed to the figure workers
(figure_pool.py; the study's count here, at least 2): seconds of this process and seconds
until all are on disk, and whether the PNGs are byte-identical.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def cpu_facts() -> str:
    quota = "none"
    for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
        if os.path.exists(path):
            quota = Path(path).read_text().strip()
            break
    model, tpc = platform.processor() or "?", "?"
    if os.path.exists("/proc/cpuinfo"):
        info = Path("/proc/cpuinfo").read_text()
        names = [ln.split(":", 1)[1].strip() for ln in info.splitlines()
                 if ln.startswith("model name")]
        model = names[0] if names else model
        sib = [ln for ln in info.splitlines() if ln.startswith("siblings")]
        cores = [ln for ln in info.splitlines() if ln.startswith("cpu cores")]
        if sib and cores:
            tpc = int(sib[0].split(":")[1]) // max(1, int(cores[0].split(":")[1]))
    return (f"usable cores {len(os.sched_getaffinity(0))}, os.cpu_count {os.cpu_count()}, "
            f"cgroup quota {quota!r}, model {model!r}, threads per core {tpc}, "
            f"torch threads {torch.get_num_threads()}")


def python_loop() -> None:
    s = 0
    for i in range(300_000):
        s += i % 7
    assert s > 0


def burst() -> None:  # multi-threaded CPU work, as torch CPU ops in the study do
    x = torch.randn(2_000_000)
    for _ in range(5):
        x = (x * 1.0001).sin()
    float(x.sum())


def pooled(n: int, figure, tmp: Path) -> None:
    """n figures in this process vs via the figure workers, side by side."""
    import os

    from synthequiv.reporting import figure_pool

    os.environ.setdefault(figure_pool.WORKERS_ENV, str(max(2, figure_pool.figure_workers())))
    workers = figure_pool.figure_workers()
    figure_pool.prestart()
    with figure_pool.collect():  # the workers' imports, not timed
        figure()
    rng = np.random.default_rng(1)
    data = [(rng.normal(size=(600, 64)), rng.random(600) < 0.5) for _ in range(n)]

    def draw(tag: str) -> None:
        from synthequiv.reporting.figures import pca_maps

        for i, (f, m) in enumerate(data):
            pca_maps([(f, m, "a"), (f, m, "b")], "closed", tmp / f"{tag}{i}.png")

    t0 = time.perf_counter()
    draw("here")
    here = time.perf_counter() - t0
    t0 = time.perf_counter()
    with figure_pool.collect():
        draw("pool")
        handed = time.perf_counter() - t0
    done = time.perf_counter() - t0
    same = all((tmp / f"here{i}.png").read_bytes() == (tmp / f"pool{i}.png").read_bytes()
               for i in range(n))
    print(f"{n} analyses figures: in this process {here:.2f} s; via {workers} figure workers "
          f"{handed:.2f} s of this process, {done:.2f} s until on disk "
          f"({here / done:.2f}×); PNGs identical: {same}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--figures", type=int, default=8, help="figures for the pool comparison")
    args = ap.parse_args()
    from synthequiv.reporting.figures import pca_maps

    rng = np.random.default_rng(0)
    feats, is_fake = rng.normal(size=(600, 64)), rng.random(600) < 0.5
    threads = torch.get_num_threads()
    print(cpu_facts())
    with tempfile.TemporaryDirectory() as tmp:
        def figure() -> None:
            pca_maps([(feats, is_fake, "a"), (feats, is_fake, "b")], "closed",
                     Path(tmp) / "f.png")

        figure()  # imports, font cache
        works = {"python": python_loop, "figure": figure}
        ways = {"alone": (threads, False), f"after burst ({threads} threads)": (threads, True),
                "after burst (1 thread)": (1, True)}
        times = {(w, k): [] for w in works for k in ways}
        for _ in range(args.repeats):
            for w, fn in works.items():
                for k, (n, with_burst) in ways.items():
                    torch.set_num_threads(n)
                    if with_burst:
                        burst()
                    t0 = time.perf_counter()
                    fn()
                    times[(w, k)].append(time.perf_counter() - t0)
        torch.set_num_threads(threads)
        pooled(args.figures, figure, Path(tmp))
    for w in works:
        base = statistics.median(times[(w, "alone")])
        print(f"{w:7s} " + ", ".join(
            f"{k} {1000 * statistics.median(times[(w, k)]):.1f} ms "
            f"({statistics.median(times[(w, k)]) / base:.2f}×)" for k in ways))


if __name__ == "__main__":
    main()
