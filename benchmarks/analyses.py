"""The analyses stage: its small classifiers one by one vs in batched groups, side by side.

    PYTHONPATH=src .venv/bin/python benchmarks/analyses.py --device cpu     # CPU look
    python3 benchmarks/analyses.py --device cuda                             # on a GPU

Inputs are the quick study's shape (digits, base sizes 10 and 20, 160 synthetic images/class
per set): the synthetic sets are noisy copies of real images (no generator needed), one per
closed base size plus an open-set one, so the stage trains the quick study's 10 classifiers
(feature extractor, 4 domain classifiers with the real-vs-real baseline's, 3 CAS models and
the CAS references of B(10) and B(20)). On the 2-vCPU machine: one by one 8.17 s, groups of 64
12.61 s (0.65×; CPU cells are compute-bound), AUC within 0.018, CAS within 0.008.
Arms, in one run (a warm-up of each first, so imports and first calls are not timed):
  one by one   `cell_group=1`: every classifier trained alone (the CPU default)
  groups       `cell_group=G` (default 64, the CUDA default for smallcnn): compatible ones at once
               (on CUDA each group's steps replay as a CUDA graph, the default: stepgraph.py)
  groups eager (CUDA only) the same with SYNTHEQUIV_CUDA_GRAPHS=0
Prints each arm's seconds (median of --repeats), the speed-up, and the largest difference in
domain AUC and CAS accuracy between the arms (float rounding amplified by training).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from synthequiv import config as C
from synthequiv.generation.synthetic import SyntheticSet
from synthequiv.inputs.data import load_dataset
from synthequiv.measures.analyses import analyse_study
from synthequiv.orchestration.study import study_splits
from synthequiv.stepgraph import GRAPHS_ENV
from synthequiv.utils import resolve_device


def noisy(x, y, per_class: int, classes: int, seed: int):
    """per_class noisy copies of real images of every class (σ = 20 grey levels)."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([torch.nonzero(y == c).flatten()[torch.randint(
        0, int((y == c).sum()), (per_class,), generator=g)] for c in range(classes)])
    out = x[idx].float() + 20.0 * torch.randn(x[idx].shape, generator=g)
    return out.clamp(0, 255).round().to(torch.uint8), y[idx]


def inputs(extra: list[str]):
    cfg = C.resolve("quick", None, extra)
    ds = load_dataset(cfg.data)
    sp = study_splits(cfg, ds, 0)  # the study's replicate 0: its reserve, test set and pool
    m, k = max(cfg.grid.syn_add_per_class), ds.num_classes
    synth = {("closed", n): SyntheticSet(f"c{n}", "closed", *noisy(*sp.base(n), m, k, n),
                                         Path(f"c{n}.npz"), None)
             for n in cfg.splits.base_per_class}
    pool = sp.pool_indices()
    synth[("open", 0)] = SyntheticSet("open", "open", *noisy(ds.images[pool], ds.labels[pool],
                                                             m, k, 99), Path("o.npz"), None)
    return cfg, sp, synth


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--group", type=int, default=64, help="cell_group of the grouped arm")
    ap.add_argument("--repeats", type=int, default=1, help="timed rounds per arm")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="config override, e.g. analysis.domain_train_steps=50")
    args = ap.parse_args()
    device = resolve_device(args.device)
    arms = {"one by one": 1, "groups": args.group}
    if device.type == "cuda":
        arms["groups eager"] = args.group
    times: dict[str, list[float]] = {a: [] for a in arms}
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(1 + args.repeats):  # round 0 warms up
            for arm, group in arms.items():
                cfg, sp, synth = inputs([f"device={device.type}", f"cell_group={group}"]
                                        + args.overrides)
                out_dir = Path(tmp) / f"{arm}-{round_}"
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                with mock.patch.dict(os.environ, {GRAPHS_ENV: "0" if arm.endswith("eager")
                                                  else "auto"}):
                    results[arm] = analyse_study(cfg.analysis, cfg.classifier, out_dir, sp,
                                                 synth, device, progress=False, data=cfg.data,
                                                 splits=cfg.splits, cell_group=cfg.cell_group)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                if round_:
                    times[arm].append(time.perf_counter() - t0)
    one, grp = (statistics.median(times[a]) for a in ("one by one", "groups"))
    print(f"analyses of {len(results['groups']['sets'])} synthetic sets, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    print(f"one by one  {one:8.2f} s")
    print(f"groups      {grp:8.2f} s   (cell_group {args.group})   speed-up {one / grp:.2f}×")
    if "groups eager" in times:
        eager = statistics.median(times["groups eager"])
        print(f"groups eager {eager:7.2f} s   (no CUDA graphs)   graphs' speed-up "
              f"{eager / grp:.2f}×")
    a, b = results["one by one"]["sets"], results["groups"]["sets"]
    auc = max(abs(a[n]["domain"]["auc"] - b[n]["domain"]["auc"]) for n in a)
    cas = max(abs(a[n]["cas"]["accuracy"] - b[n]["cas"]["accuracy"]) for n in a)
    print(f"largest difference between the arms: domain AUC {auc:.3f}, CAS accuracy {cas:.3f}")


if __name__ == "__main__":
    main()
