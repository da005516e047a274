"""Generators: G quick-study generators one by one vs in one group, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/generators.py --gens 3 --kimg 0.64   # CPU look
    python3 benchmarks/generators.py --device cuda --gens 9                         # on a GPU
    PYTHONPATH=src .venv/bin/python benchmarks/generators.py --batch 4 --kimg 0.16  # host cost

The generators are the quick study's (preset 8px on digits, `study.load_inputs` on the quick
config): replicate r's closed B(10), closed B(20) and open-pool generators, with replicate r's
seed, for r = 0, 1, … until there are --gens of them (9 = the quick study's, 3 replicates).
Arms, in one run (a short warm-up of both first, so imports and first calls are not timed):
  one by one   generator.train_generator per generator (today's study with generator_group=1)
  group        gengroup.train_generators on all of them at once, eager (SYNTHEQUIV_CUDA_GRAPHS=0)
  graphed      the same group replaying its forward+backward as a CUDA graph (stepgraph.py;
               the study's default on CUDA); on a CUDA device only
Prints seconds, ms per step, images/s (generators × steps × batch / s), the speed-up against
one by one and the largest relative weight difference ‖w_group − w_alone‖ / ‖w_alone‖ over generators (model and
EMA weights): float32-sized (~1e-5) in float32; where `utils.generator_autocast` turns bf16
on (CUDA) it is bf16-sized (~1e-2), and on CUDA the one-by-one arm runs channels_last, the
group NCHW; graphed vs group is printed apart (float32 both: ~1e-6 or less).
`--batch B` overrides the batch size: at B = 4 a step's compute is negligible, so the CPU's
time per step is the host's cost of a step (Python, dispatch), the floor of a GPU step that
runs eager (2-vCPU machine, float32, `--batch 4 --kimg 0.8`: a group step of 9 generators
73.0 ms, one generator's step alone 13.4 ms; an H200 took ~48 ms per group step at batch 64).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from synthequiv import config as C
from synthequiv.generation.generator import num_train_steps, train_generator
from synthequiv.generation.gengroup import train_generators
from synthequiv.stepgraph import GRAPHS_ENV
from synthequiv.utils import resolve_device


def quick_jobs(n_gens: int, kimg: float) -> tuple[list[tuple], int]:
    """([(images, labels, GeneratorConfig)] of the quick study's first n_gens generators,
    number of classes)."""
    from synthequiv.generation.synthetic import generator_jobs
    from synthequiv.orchestration.study import load_inputs, make_replicates, replicate_config

    reps = max(1, math.ceil(n_gens / 3))
    cfg = C.resolve("quick", None, [f"grid.replicates={reps}", f"generator.train_kimg={kimg}"])
    g = cfg.generator
    if g.warmup_kimg > kimg / 4:  # a short look keeps a warm-up shorter than the run
        cfg = dataclasses.replace(cfg, generator=dataclasses.replace(g, warmup_kimg=kimg / 4))
    ds, _ = load_inputs(cfg)
    jobs = [job for r, sp in enumerate(make_replicates(cfg, ds))
            for job in generator_jobs(replicate_config(cfg, r), sp, Path("unused"), f"-r{r}")]
    return [(j.x, j.y, j.generator) for j in jobs[:n_gens]], ds.num_classes


def run_arm(arm: str, jobs, k: int, root: Path, device) -> tuple[float, list[dict]]:
    dirs = [root / arm / f"g{i}" for i in range(len(jobs))]
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    if arm == "alone":
        for (x, y, cfg), d in zip(jobs, dirs):
            train_generator(x, y, k, cfg, d, device, progress=False)
    else:
        with mock.patch.dict(os.environ, {GRAPHS_ENV: "1" if arm == "graphed" else "0"}):
            train_generators([(x, y) for x, y, _ in jobs], k, [c for *_, c in jobs], dirs,
                             device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    return secs, [torch.load(d / "checkpoint.pt", map_location="cpu", weights_only=True)
                  for d in dirs]


def rel_diff(a: dict, b: dict) -> float:
    va = torch.cat([v.double().flatten() for v in a.values()])
    return ((va - torch.cat([b[k].double().flatten() for k in a])).norm() / va.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gens", type=int, default=9, help="generators (9 = the quick study's)")
    ap.add_argument("--kimg", type=float, default=25.6, help="training length per generator")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0 = the preset's 64)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    jobs, k = quick_jobs(args.gens, args.kimg)
    if args.batch:
        jobs = [(x, y, dataclasses.replace(c, batch_size=args.batch)) for x, y, c in jobs]
    arms = ("alone", "group", "graphed") if device.type == "cuda" else ("alone", "group")
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: 5 steps, so the graphed arm also captures once
        warm = [(x, y, dataclasses.replace(c, train_kimg=c.batch_size * 5 / 1000))
                for x, y, c in jobs[:2]]
        for arm in arms:
            run_arm(arm, warm, k, Path(tmp) / "warm", device)
        secs, states = {}, {}
        for arm in arms:
            secs[arm], states[arm] = run_arm(arm, jobs, k, Path(tmp), device)
    cfg = jobs[0][2]
    steps = num_train_steps(cfg)
    n_img = len(jobs) * steps * cfg.batch_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{len(jobs)} quick generators × {steps} steps × batch "
          f"{cfg.batch_size} (preset 8px, {cfg.train_kimg:g} kimg each), device {device} "
          f"({name}), {torch.get_num_threads()} CPU thread(s)")
    print(f"{'arm':10s} {'seconds':>8s} {'ms/step':>8s} {'img/s':>10s} {'speed-up':>9s}")
    for arm in arms:  # ms per step: of one generator alone, of the whole group otherwise
        per = steps * (len(jobs) if arm == "alone" else 1)
        print(f"{arm:10s} {secs[arm]:8.2f} {1000 * secs[arm] / per:8.1f} "
              f"{n_img / secs[arm]:10.0f} {secs['alone'] / secs[arm]:8.2f}×")
    for a_arm, b_arm in (("alone", "group"), ("group", "graphed"))[:len(arms) - 1]:
        diffs = {part: max(rel_diff(a[part], b[part])
                           for a, b in zip(states[a_arm], states[b_arm]))
                 for part in ("model", "ema")}
        print(f"max relative weight difference {b_arm} vs {a_arm}: model "
              f"{diffs['model']:.2e}, EMA {diffs['ema']:.2e}")


if __name__ == "__main__":
    main()
