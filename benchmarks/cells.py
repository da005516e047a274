"""Classifier cells: one by one (old step, new step) vs groups trained at once, side by side.

    .venv/bin/python benchmarks/cells.py                         # quick preset's 44 cells, CPU
    .venv/bin/python benchmarks/cells.py --cells 12 --steps 100  # a shorter look
    python3 benchmarks/cells.py --device cuda --groups 1,16,63   # on a GPU

The cells are one replicate of the `quick` preset's grid (base 5/10 per class; real
+2/+5/+15/+40; closed and open +40/+160; 2 seeds per cell, the baseline 6:
grid.base_seed_factor) on digits. The "synthetic" images of the generative arms are drawn
from the digits pool (no generator is trained here): throughput depends on pool sizes, not on
the pixels. Arms, interleaved in one run so load changes hit all of them:
  old step    the loop before this change (per-step host augmentation draws + transfer)
  sequential  train_classifier per cell (today's loop)
  group G     batched.train_classifiers on groups of G cells (on CUDA replaying each step's
              forward+backward as a CUDA graph, the study's default there: stepgraph.py)
  group G eager  (CUDA only) the same groups with SYNTHEQUIV_CUDA_GRAPHS=0
  procs P     train_classifier per cell through the study's local executor with workers=P,
              cpu_threads=1 (P spawned processes), start-up included; --procs 2 on a 2-core CPU
  threads T   `sequential` with T torch threads (--more-threads T): with --threads 1 --procs 2
              --more-threads 2 one run shows what the cores give (the study's CPU default is
              one process with torch's threads)
Prints seconds, cells/s, images/s and the ratio to `sequential`, and each arm's mean test
accuracy and mean |Δ accuracy| per cell against `sequential` beside the between-seed spread.
Then the scoring of the trained models on the test set, side by side (3 rounds, interleaved,
best of each): before (per model, scikit-learn's balanced accuracy and ROC AUC), one by one
(`classifier.evaluate` per model: metrics.py's vectorised metrics; the study's cells alone)
and together in groups of the largest --groups size (`batched.evaluate_many`: one vmapped
inference and one metrics call per group, as the study scores a group's cells).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import time
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

from synthequiv import config as C
from synthequiv.classification import classifier as clf
from synthequiv.classification.batched import evaluate_many, plan_groups, train_classifiers
from synthequiv.stats.config import cell_seeds
from synthequiv.stepgraph import GRAPHS_ENV
from synthequiv.utils import resolve_device, seed_everything


def quick_cells(cfg, n_cells: int):
    """[(data, seed)] for the quick grid on digits (each cell its seeds: the baseline
    base_seed_factor × as many), each one's cell (n_base, arm, n_add), and the test set."""
    from synthequiv.orchestration.study import load_inputs

    _, sp = load_inputs(cfg)
    g = torch.Generator().manual_seed(0)
    pool = sp.pool_indices()
    out, ids = [], []
    for n in cfg.splits.base_per_class:
        x, y = sp.base(n)
        amounts = [("real", 0)] + [("real", m) for m in cfg.grid.real_add_per_class]
        amounts += [(a, m) for a in ("closed", "open") for m in cfg.grid.syn_add_per_class]
        for arm, m in amounts:
            cell = (n, arm, m)
            for seed in cell_seeds(cfg.grid, m):
                ids.append(cell)
                if arm == "real":
                    rx, ry = (x, y) if m == 0 else (torch.cat([x, sp.reserve(m)[0]]),
                                                    torch.cat([y, sp.reserve(m)[1]]))
                    out.append(((rx, ry, None, None), seed))
                else:
                    idx = pool[torch.randint(len(pool), (m * 10,), generator=g)]
                    sx, sy = sp.dataset.images[idx], sp.dataset.labels[idx]
                    out.append(((x, y, sx, sy), seed))
    return out[:n_cells], ids[:n_cells], sp.test_images, sp.test_labels


def old_step_train(x, y, num_classes, cfg, seed, sx=None, sy=None, device="cpu"):
    """train_classifier as it was before this change: augmentation drawn on the host per step."""
    images, labels, n_real = clf._pool(x, y, sx, sy, num_classes)
    dev = resolve_device(str(device))
    g = seed_everything(seed)
    steps = clf.num_train_steps(cfg, len(images))
    schedule = clf.mixed_batch_indices(n_real, len(images) - n_real, cfg.batch_size,
                                       cfg.syn_fraction, g, steps, cfg.mixing).to(dev)
    model = clf.build_classifier(cfg.arch, images.shape[1], images.shape[-1], num_classes,
                                 cfg.width)
    p = cfg.crop_pad_px
    pool = F.pad(clf.normalize_images(images.to(dev)), (p, p, p, p), mode=cfg.pad_mode)
    labels, fmt = labels.to(dev), clf.memory_format(model, dev)
    model = model.to(dev, memory_format=fmt).train()
    opt, sched = clf.build_optimizer(model, cfg, steps)
    for step in range(steps):
        idx = schedule[step]
        xb = clf.augment_batch(pool, idx, p, cfg.hflip, g).contiguous(memory_format=fmt)
        with torch.autocast(dev.type, torch.bfloat16, enabled=dev.type == "cuda"):
            loss = F.cross_entropy(model(xb).float(), labels[idx],
                                   label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss.item()  # the old loop's per-step read (progress bars, divergence checks)
    return model.eval()


def sklearn_evaluate(model, images, labels, k: int, device) -> dict:
    """classifier.evaluate as it was before metrics.py: scikit-learn's metrics per model."""
    import warnings

    from sklearn.metrics import balanced_accuracy_score, roc_auc_score

    probs = clf.predict_proba(model, images, device).double()
    y, pred = labels.numpy(), probs.argmax(1).numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        balanced = float(balanced_accuracy_score(y, pred))
    p = (probs / probs.sum(1, keepdim=True)).numpy()
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": balanced,
            "auc": float(roc_auc_score(y, p, multi_class="ovr", average="macro",
                                       labels=list(range(k))))}


def _train_one(item, cfg, device, k: int):
    i, (d, s) = item
    return i, clf.train_classifier(*d[:2], k, cfg, s, *d[2:], device=device)


def run_procs(n: int, cells, cfg, device, k: int):
    """The cells one by one through the study's local executor (`executor.map_tasks`) with
    workers=n and cpu_threads=1: n spawned processes, start-up included."""
    from synthequiv.runtime.executor import map_tasks

    study = C.resolve("quick", None, [f"workers={n}", "cpu_threads=1", f"device={device.type}"])
    models = [None] * len(cells)
    for i, model in map_tasks(_train_one, list(enumerate(cells)),
                              {"cfg": cfg, "device": str(device), "k": k}, study.runtime):
        models[i] = model
    return models


def run_arm(arm: str, cells, cfg, device, k: int):
    if arm.startswith("procs"):
        return run_procs(int(arm.split()[1]), cells, cfg, device, k)
    if arm == "old step":
        return [old_step_train(*d[:2], k, cfg, s, *d[2:], device=device) for d, s in cells]
    if arm.startswith("threads"):
        before = torch.get_num_threads()
        torch.set_num_threads(int(arm.split()[1]))
        try:
            return run_arm("sequential", cells, cfg, device, k)
        finally:
            torch.set_num_threads(before)
    if arm == "sequential":
        return [clf.train_classifier(*d[:2], k, cfg, s, *d[2:], device=device) for d, s in cells]
    g = int(arm.split()[1])
    steps = [clf.num_train_steps(cfg, len(d[1]) + (0 if d[3] is None else len(d[3])))
             for d, _ in cells]
    models = [None] * len(cells)
    with mock.patch.dict(os.environ, {GRAPHS_ENV: "0" if arm.endswith("eager") else "auto"}):
        for idx in plan_groups(steps, g):
            out = train_classifiers([cells[i][0] for i in idx], [cells[i][1] for i in idx], k,
                                    cfg, device)
            for i, m in zip(idx, out):
                models[i] = m
    return models


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--cells", type=int, default=44, help="first N cells of the quick grid")
    ap.add_argument("--steps", type=int, default=0, help="steps per cell (0 = preset's 400)")
    ap.add_argument("--groups", default="8,21", help="group sizes to time, comma-separated")
    ap.add_argument("--no-old", action="store_true", help="skip the old-step arm")
    ap.add_argument("--procs", default="", help="process counts to time (1 thread each), e.g. 2")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--more-threads", default="", help="thread counts for `sequential`, e.g. 2")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = C.resolve("quick", None, args.overrides)
    ccfg = cfg.classifier
    if args.steps:
        ccfg = dataclasses.replace(ccfg, train_steps=args.steps)
    cells, cell_ids, tx, ty = quick_cells(cfg, args.cells)
    arms = ([] if args.no_old else ["old step"]) + ["sequential"]
    for g in filter(None, args.groups.split(",")):
        arms += [f"group {g} eager", f"group {g}"] if device.type == "cuda" else [f"group {g}"]
    arms += [f"procs {p}" for p in args.procs.split(",") if p]
    arms += [f"threads {t}" for t in args.more_threads.split(",") if t]
    run_arm("sequential", cells[:2], dataclasses.replace(ccfg, train_steps=3), device, 10)  # warm-up
    secs, accs, trained = {}, {}, {}
    for arm in arms:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        models = run_arm(arm, cells, ccfg, device, 10)
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs[arm] = time.perf_counter() - t0
        trained[arm] = models
        accs[arm] = np.array([clf.evaluate(m, tx, ty, 10, device)["accuracy"] for m in models])
    n_img = len(cells) * ccfg.train_steps * ccfg.batch_size
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"{len(cells)} quick cells × {ccfg.train_steps} steps × batch {ccfg.batch_size}, "
          f"device {device} ({name}), {torch.get_num_threads()} CPU thread(s)")
    by_cell: dict[tuple, list[float]] = {}
    for c, a in zip(cell_ids, accs["sequential"]):
        by_cell.setdefault(c, []).append(float(a))
    spreads = [np.std(v) for v in by_cell.values() if len(v) > 1]
    spread = float(np.mean(spreads)) if spreads else math.nan
    ref = secs["sequential"]
    print(f"{'arm':15s} {'seconds':>8s} {'cells/s':>8s} {'img/s':>10s} {'speed-up':>9s} "
          f"{'mean acc':>9s} {'mean |Δacc|':>12s}")
    for arm in arms:
        d = np.abs(accs[arm] - accs["sequential"]).mean()
        print(f"{arm:15s} {secs[arm]:8.2f} {len(cells) / secs[arm]:8.2f} "
              f"{n_img / secs[arm]:10.0f} {ref / secs[arm]:8.2f}× {accs[arm].mean():9.4f} "
              f"{d:12.4f}")
    print("between-seed spread of accuracy (mean per-cell std over its seeds): "
          f"{spread:.4f}" if not math.isnan(spread) else "")
    sizes = [int(g) for g in args.groups.split(",") if g]
    score_models(trained["sequential"], tx, ty, max(sizes) if sizes else 1, device)


def score_models(models, tx, ty, group: int, device) -> None:
    """Seconds to score the models on (tx, ty) one by one vs `group` at a time (best of 3
    interleaved rounds); the largest metric difference between the two."""
    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    arms = {"before": lambda: [sklearn_evaluate(m, tx, ty, 10, device) for m in models],
            "one by one": lambda: [clf.evaluate(m, tx, ty, 10, device) for m in models],
            f"groups of {group}": lambda: [r for i in range(0, len(models), group)
                                           for r in evaluate_many(models[i:i + group], tx, ty,
                                                                  10, device)]}
    best, out = dict.fromkeys(arms, math.inf), {}
    for _ in range(3):
        for name, fn in arms.items():
            sync()
            t0 = time.perf_counter()
            out[name] = fn()
            sync()
            best[name] = min(best[name], time.perf_counter() - t0)
    ref = out["before"]
    diff = max(abs(x[k] - y[k]) for res in out.values() for x, y in zip(ref, res) for k in x
               if not math.isnan(x[k]))
    one = best["before"]
    print(f"scoring {len(models)} models on {len(ty)} test images: " + ", ".join(
        f"{name} {s:.3f} s ({one / s:.2f}×)" for name, s in best.items())
        + f"; largest metric difference {diff:.1e}")


if __name__ == "__main__":
    main()
