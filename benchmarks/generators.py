"""Generators: G quick-study generators one by one vs in one group, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/generators.py --gens 3 --kimg 0.64   # CPU look
    python3 benchmarks/generators.py --device cuda --gens 9                         # on a GPU

The generators are the quick study's (preset 8px on digits, `study.load_inputs` on the quick
config): replicate r's closed B(10), closed B(20) and open-pool generators, with replicate r's
seed, for r = 0, 1, … until there are --gens of them (9 = the quick study's, 3 replicates).
Arms, in one run (a short warm-up of both first, so imports and first calls are not timed):
  one by one   generator.train_generator per generator (today's study with generator_group=1)
  group        gengroup.train_generators on all of them at once
Prints seconds, images/s (generators × steps × batch / s), the speed-up of the group and the
largest relative weight difference ‖w_group − w_alone‖ / ‖w_alone‖ over generators (model and
EMA weights): float32-sized (~1e-5) in float32; where `utils.generator_autocast` turns bf16
on (CUDA) it is bf16-sized (~1e-2), and on CUDA the one-by-one arm runs channels_last, the
group NCHW.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
from pathlib import Path

import torch

from synthequiv import config as C
from synthequiv.generation.generator import num_train_steps, train_generator
from synthequiv.generation.gengroup import train_generators
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
        train_generators([(x, y) for x, y, _ in jobs], k, [c for *_, c in jobs], dirs, device,
                         progress=False)
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
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    jobs, k = quick_jobs(args.gens, args.kimg)
    with tempfile.TemporaryDirectory() as tmp:
        warm = [(x, y, dataclasses.replace(c, train_kimg=c.batch_size * 2 / 1000))
                for x, y, c in jobs[:2]]
        for arm in ("alone", "group"):
            run_arm(arm, warm, k, Path(tmp) / "warm", device)
        secs, states = {}, {}
        for arm in ("alone", "group"):
            secs[arm], states[arm] = run_arm(arm, jobs, k, Path(tmp), device)
    cfg = jobs[0][2]
    n_img = len(jobs) * num_train_steps(cfg) * cfg.batch_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{len(jobs)} quick generators × {num_train_steps(cfg)} steps × batch "
          f"{cfg.batch_size} (preset 8px, {args.kimg:g} kimg each), device {device} ({name}), "
          f"{torch.get_num_threads()} CPU thread(s)")
    print(f"{'arm':10s} {'seconds':>8s} {'img/s':>10s} {'speed-up':>9s}")
    for arm in ("alone", "group"):
        print(f"{arm:10s} {secs[arm]:8.2f} {n_img / secs[arm]:10.0f} "
              f"{secs['alone'] / secs[arm]:8.2f}×")
    diffs = {part: max(rel_diff(a[part], b[part])
                       for a, b in zip(states["alone"], states["group"]))
             for part in ("model", "ema")}
    print(f"max relative weight difference group vs alone: model {diffs['model']:.2e}, "
          f"EMA {diffs['ema']:.2e}")


if __name__ == "__main__":
    main()
