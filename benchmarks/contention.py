"""A study's CPU work alone and beside a competing CPU load, side by side in one run.

    .venv/bin/python benchmarks/contention.py                    # ≈ 3–5 min on 2 CPU cores
    .venv/bin/python benchmarks/contention.py --kimg 6.4 --repeats 3
    .venv/bin/python benchmarks/contention.py --arms study,torch-default,1-thread,passive

The workload is `--tasks` (default 2) quick-study generator trainings (the digits preset's
8-px diffusion generator, its default config, on its largest base set), cut to
`--kimg` thousand images each, in a fresh process per measurement so that each arm's thread
count and OpenMP wait policy apply from torch's start, as in a real `synthequiv study`. Each arm
is timed alone and beside `--busy` competing processes (default 2: a pure-Python loop each, one
thread; `--load matmul`: a one-thread torch matmul loop each), interleaved over `--repeats`
rounds so that the others' load on a shared machine hits both conditions alike. Printed: each
arm's median seconds alone and loaded (range over rounds), the ratio of the medians loaded /
alone — the slowdown a study suffers when other jobs take the cores — and each round's ratio.
Arms:

  study          what `synthequiv study` does by default: the tasks go to the study's executor,
                 one worker process per core with one torch thread each (workers 0,
                 cpu_threads 1), contention measured and logged
  passive        the study's default until 2026-12-06: one process, torch's threads (one per
                 core), passive waiting (--set workers=1 --set cpu_threads=0)
  adapt          that, with `--set cpu_adapt=true`: threads lowered to the free cores
  torch-default  torch's default: one thread per core, libgomp's spinning wait (the old study)
  1-thread       torch.set_num_threads(1) in one process, default wait policy

Also printed: the load average and the busiest other processes before the first round, since
on a shared machine "alone" means "beside whatever else runs".
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time

ARMS = ("study", "passive", "adapt", "torch-default", "1-thread")
STUDY_ARMS = ("study", "passive", "adapt")  # run as run_study sets them up
LOADS = {
    "python": "while True:\n    pass\n",
    "matmul": ("import torch\ntorch.set_num_threads(1)\na = torch.randn(256, 256)\n"
               "while True:\n    a = torch.tanh(a @ a)\n"),
}


# ----------------------------------------------------------------------------- child: one timing
def _arm_env(arm: str) -> dict[str, str]:
    """Environment for a measured process (set before torch loads: libgomp reads it then)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "MKL_NUM_THREADS")}
    if arm == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    return env


def _train_one(seed: int, x, y, num_classes: int, gcfg) -> tuple[float, float]:
    """One generator training (a study's generator task): (wall s, this process's CPU s)."""
    import dataclasses
    import tempfile

    from synthequiv.generation.generator import train_generator

    with tempfile.TemporaryDirectory() as tmp:
        w0, c0 = time.perf_counter(), time.process_time()
        train_generator(x, y, num_classes, dataclasses.replace(gcfg, seed=seed), tmp, "cpu",
                        progress=False)
        return time.perf_counter() - w0, time.process_time() - c0


def child(arm: str, kimg: float, tasks: int) -> None:
    """Train `tasks` quick-study generators as `arm` runs them and print {"train_s", "cpu_s",
    "threads", "workers"}: the study arm through the study's executor (its default workers and
    threads: one single-thread process per core), the others one after another in this process."""
    import dataclasses
    import importlib

    # the study arms import synthequiv first, as the CLI does (it sets the wait policy before
    # torch loads); the others load torch first, so that synthequiv leaves the policy alone
    first = ("synthequiv", "torch") if arm in STUDY_ARMS else ("torch", "synthequiv")
    for name in first:
        importlib.import_module(name)
    import torch

    from synthequiv import config as C
    from synthequiv.inputs.data import load_dataset
    from synthequiv.inputs.splits import make_splits
    from synthequiv.runtime import executor

    # the study arm: the defaults; the others: one process with torch's threads
    over = {"study": [], "adapt": ["workers=1", "cpu_threads=0", "cpu_adapt=true"]
            }.get(arm, ["workers=1", "cpu_threads=0"])
    cfg = C.resolve("quick", None, over)
    if arm in STUDY_ARMS:  # what run_study calls
        executor.set_cpu_threads(cfg.runtime)
    elif arm == "1-thread":
        torch.set_num_threads(1)
    gcfg = dataclasses.replace(cfg.generator, train_kimg=kimg, checkpoint_every_kimg=1e9)
    ds = load_dataset(cfg.data)
    x, y = make_splits(ds, cfg.splits).base(max(cfg.splits.base_per_class))
    shared = {"x": x, "y": y, "num_classes": ds.num_classes, "gcfg": gcfg}
    w0, c0 = time.perf_counter(), time.process_time()
    if arm in STUDY_ARMS:
        done = list(executor.map_tasks(_train_one, range(tasks), shared, cfg.runtime,
                                          "generator"))
        workers = executor._pool_size(cfg.runtime, tasks, "generator")
    else:
        done = [_train_one(seed, **shared) for seed in range(tasks)]
        workers = 1
    out = {"train_s": time.perf_counter() - w0,
           # the workers' CPU (the study arm's tasks run elsewhere) plus this process's own
           "cpu_s": (sum(c for _, c in done) if workers > 1 else 0.0)
           + time.process_time() - c0,
           "threads": torch.get_num_threads() if workers == 1 else cfg.cpu_threads,
           "workers": workers, "wait": os.environ.get("OMP_WAIT_POLICY", "default")}
    print(json.dumps(out))


# ----------------------------------------------------------------------------- driver
def measure(arm: str, kimg: float, tasks: int) -> dict:
    load = os.getloadavg()[0]
    cmd = [sys.executable, __file__, "--child", arm, "--kimg", str(kimg), "--tasks", str(tasks)]
    res = subprocess.run(cmd, env=_arm_env(arm), capture_output=True, text=True, check=False)
    if res.returncode != 0:
        sys.exit(f"error: the {arm} measurement failed:\n{res.stderr[-2000:]}")
    return {**json.loads(res.stdout.strip().splitlines()[-1]), "load": load}


def start_load(kind: str, n: int) -> list[subprocess.Popen]:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", LOADS[kind]], env=env) for _ in range(n)]
    time.sleep(1.0)  # running (the matmul load has imported torch) before the timing starts
    return procs


def stop_load(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        p.terminate()
    for p in procs:
        p.wait()


def _cell(xs: list[float]) -> str:
    m = statistics.median(xs)
    return f"{m:.1f}" if len(xs) == 1 else f"{m:.1f} ({min(xs):.1f}–{max(xs):.1f})"


def machine_note() -> str:
    """Load average and the busiest processes (top -bn1), to say what else ran."""
    la = " ".join(f"{x:.2f}" for x in os.getloadavg())
    try:
        top = subprocess.run(["top", "-bn1", "-o", "%CPU"], capture_output=True, text=True,
                             timeout=10).stdout.splitlines()
        rows = [r for r in top[7:] if r.split() and r.split()[8] != "0.0"][:6]
    except (OSError, subprocess.SubprocessError, IndexError):
        rows = []
    return f"load average {la}; {os.cpu_count()} CPUs\n" + "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kimg", type=float, default=3.2, help="generator training length")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds")
    ap.add_argument("--busy", type=int, default=2, help="competing busy processes")
    ap.add_argument("--load", choices=sorted(LOADS), default="python")
    ap.add_argument("--arms", default="study,torch-default", help=f"of {', '.join(ARMS)}")
    ap.add_argument("--tasks", type=int, default=2, help="generators each measurement trains")
    ap.add_argument("--child", choices=ARMS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.kimg, args.tasks)
        return
    # a killed benchmark takes its busy processes along (finally blocks run on SystemExit)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("error: terminated"))
    arms = args.arms.split(",")
    if bad := [a for a in arms if a not in ARMS]:
        sys.exit(f"error: unknown arm(s) {', '.join(bad)} (use {', '.join(ARMS)})")
    print(f"before: {machine_note()}\n", flush=True)
    times: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.repeats):
        for arm in arms:
            for cond in ("alone", "loaded"):
                procs = start_load(args.load, args.busy) if cond == "loaded" else []
                try:
                    m = measure(arm, args.kimg, args.tasks)
                finally:
                    stop_load(procs)
                times.setdefault((arm, cond), []).append(m)
                print(f"round {r + 1} {arm:13s} {cond:6s} {m['train_s']:7.1f} s "
                      f"(cpu {m['cpu_s']:.1f} s, {m['workers']} × {m['threads']} threads; load average before "
                      f"{m['load']:.1f})", flush=True)
    print(f"\n{args.tasks} quick generators, {args.kimg} kimg each; loaded = beside {args.busy} busy "
          f"{args.load} processes; median of {args.repeats}\n")
    print("| arm | processes × threads alone / loaded | alone s (range) | loaded s (range) | loaded / alone "
          "| each round |")
    print("|---|---|---|---|---|---|")
    for arm in arms:
        a, b = ([m["train_s"] for m in times[(arm, c)]] for c in ("alone", "loaded"))
        ta, tb = ("/".join(f"{m['workers']}×{m['threads']}" for m in times[(arm, c)])
                  for c in ("alone", "loaded"))
        rounds = ", ".join(f"{y / x:.2f}" for x, y in zip(a, b))
        print(f"| {arm} | {ta} / {tb} | {_cell(a)} | {_cell(b)} | "
              f"**{statistics.median(b) / statistics.median(a):.2f}×** | {rounds} |")
    print(f"\nafter: {machine_note()}")


if __name__ == "__main__":
    main()
