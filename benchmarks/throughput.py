"""Throughput of the three heavy stages at a preset's shapes, and the projected cost of its grid.

    .venv/bin/python benchmarks/throughput.py                   # cifar10 shapes, cuda if present
    .venv/bin/python benchmarks/throughput.py --preset quick    # digits shapes
    .venv/bin/python benchmarks/throughput.py --device cpu --steps 3
    .venv/bin/python benchmarks/throughput.py --nproc 8        # + DDP generator training, 8 GPUs
    .venv/bin/python benchmarks/throughput.py --set classifier.arch=airbench --set \
        classifier.epochs=10                                    # another classifier recipe

Measures on random data of the preset's image shape (no download needed):
  generator training images/s (the preset's backbone, batch and AMP policy),
  sampling images/s at the preset's NFE,
  classifier training images/s (the preset's architecture and batch), one cell and
    `cell_group` cells trained at once (auto: by architecture on CUDA, 1 on CPU),
then projects the full grid: generators × train_kimg, sampling of every synthetic set, and
every classifier cell's optimizer steps at the batched cell throughput, in device-hours —
throughput × work, a lower bound — and again with each task's fixed cost added: per
generator its set-up, compilation (where the preset compiles) and checkpoint writes (a short
run minus its steps at the measured rate); per synthetic set the generator's loading (and
compilation) and the sampler's set-up (a small set minus its images at the measured rate);
per group of cells its set-up, warm-up steps and graph capture, and the scoring of its cells on
a test set of the preset's size. Fixed costs are measured on a second task in this process, as
a study meets them after its first (imports and one-time autotuning not counted).

--nproc N also times generator training on N DDP ranks (torchrun; one per GPU, gloo processes
on a CPU) beside one process, by differencing a 1-step and an (steps+1)-step run so process
start-up and rendezvous cancel out, and prints the scaling ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from synthequiv import config as C
from synthequiv.classification.batched import resolve_group, train_classifiers
from synthequiv.classification.classifier import num_train_steps, train_classifier
from synthequiv.generation.distributed import train_distributed
from synthequiv.generation.generator import load_generator, train_generator
from synthequiv.generation.sampling import sample_images
from synthequiv.stats.config import cell_seeds, first_replicates
from synthequiv.utils import resolve_device

SHAPES = {"cifar10": (3, 32, 32, 10), "bloodmnist": (3, 28, 28, 8), "quick": (1, 8, 8, 10),
          "mnist": (1, 28, 28, 10), "pneumonia": (1, 28, 28, 2)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _data(shape, n):
    c, h, w, k = shape
    g = torch.Generator().manual_seed(0)
    return (torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8),
            torch.arange(n) % k)


def _timed_training(train, gcfg, tmp: str, device):
    """run(n, name) → seconds of `train(run_cfg, out_dir)` for n steps of `gcfg` (no warm-up,
    no checkpoint but the last), in tmp/name."""
    def run(n: int, name: str) -> float:
        run_cfg = dataclasses.replace(gcfg, train_kimg=n * gcfg.batch_size / 1000,
                                      warmup_kimg=0.0, checkpoint_every_kimg=1e9)
        _sync(device)
        t0 = time.perf_counter()
        train(run_cfg, Path(tmp) / name)
        _sync(device)
        return time.perf_counter() - t0
    return run


def _differenced(run, steps: int, short: int = 1) -> tuple[float, float]:
    """(fixed seconds, seconds per step) from a (short + steps)-step run (in tmp/"long") and
    a short-step run: model set-up, process start-up, checkpoint writing and (with compile)
    compilation are in both, so they cancel from the rate and make up the fixed part."""
    t_long, t_short = run(short + steps, "long"), run(short, "short")
    per_step = (t_long - t_short) / steps
    return max(0.0, t_short - short * per_step), per_step


def _differenced_ips(run, steps: int, batch_size: int, short: int = 1) -> float:
    """Training images/s by `_differenced` (`batch_size`: images per step, all cells of a
    group counted)."""
    return batch_size / _differenced(run, steps, short)[1]


def generator_ips(cfg, shape, device, steps, compile_sampling: bool | None = None
                  ) -> tuple[float, float]:
    """(training, sampling) images/s of the preset's generator (`generator_costs` without
    the per-set fixed cost, which needs another load and set)."""
    c = generator_costs(cfg, shape, device, steps, compile_sampling, set_cost=False)
    return c["train_ips"], c["sample_ips"]


def generator_costs(cfg, shape, device, steps, compile_sampling: bool | None = None,
                    set_cost: bool = True) -> dict:
    """{"train_ips", "train_fixed_s", "sample_ips", "sample_fixed_s" (with set_cost)} of the
    preset's generator; cfg.compile compiles training and sampling (`compile_sampling` can
    override it for sampling). Training is timed by differencing (`_differenced`) after a
    first 1-step run that warms imports and autotuning; its fixed part is a 1-step run's
    set-up, compile and checkpoint write. Sampling: a set of the timed size after a warm-up
    load; its fixed part is a fresh `load_generator` plus a small set, minus the small set's
    images at the measured rate."""
    x, y = _data(shape, 512)
    compile_sampling = cfg.compile if compile_sampling is None else compile_sampling
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        run = _timed_training(lambda c, out: train_generator(x, y, shape[3], c, out, device,
                                                             False, compile=cfg.compile),
                              cfg.generator, tmp, device)
        run(1, "warm")  # imports, cudnn autotune, the first compilation
        fixed, per_step = _differenced(run, steps)
        out["train_ips"] = cfg.generator.batch_size / per_step
        out["train_fixed_s"] = fixed
        gen = load_generator(Path(tmp) / "long", device, compile=compile_sampling)
        labels = torch.arange(min(cfg.sampling.batch_size, 256)) % shape[3]
        # a compiled network is specialised to the batch shape: warm up on the timed one
        sample_images(gen, labels if compile_sampling else labels[:8], cfg.sampling, device,
                      False)
        _sync(device)
        t0 = time.perf_counter()
        sample_images(gen, labels, cfg.sampling, device, False)
        _sync(device)
        out["sample_ips"] = len(labels) / (time.perf_counter() - t0)
        if not set_cost:
            return out
        small = labels[:8]
        t0 = time.perf_counter()  # another set: its generator loaded (and compiled) afresh
        sample_images(load_generator(Path(tmp) / "short", device, compile=compile_sampling),
                      small, cfg.sampling, device, False)
        _sync(device)
        out["sample_fixed_s"] = max(0.0, time.perf_counter() - t0
                                    - len(small) / out["sample_ips"])
    return out


def ddp_generator_ips(cfg, shape, device, steps, nproc) -> float:
    """Training images/s on nproc ranks, by differencing (`_differenced_ips`)."""
    x, y = _data(shape, 512)
    with tempfile.TemporaryDirectory() as tmp:
        run = _timed_training(lambda c, out: train_distributed(x, y, shape[3], c, out, device,
                                                               nproc, progress=False),
                              cfg.generator, tmp, device)
        return _differenced_ips(run, steps, cfg.generator.batch_size)


def classifier_costs(cfg, shape, device, steps, group: int = 1, n_test: int = 0) -> dict:
    """{"ips", "fixed_s", "score_s"} of one cell (group 1) or `group` cells trained at once:
    images/s by differencing a short and a (short + steps)-step run like the generator's —
    model set-up, the warm-up steps and (CUDA) the step graph's capture are in both and make
    up the fixed part instead (timing one `steps`-step run counted them: at --steps 10 the 3
    warm-up steps and the capture were a large share of a graphed group's run) — and the
    seconds to score the group's cells on n_test test images, as the study does
    (`evaluate` for one, `evaluate_many` for a group)."""
    from synthequiv.classification.batched import evaluate_many
    from synthequiv.classification.classifier import evaluate
    from synthequiv.stepgraph import WARMUP_STEPS

    x, y = _data(shape, 2048)
    ccfg = dataclasses.replace(cfg.classifier, budget="steps")
    short = WARMUP_STEPS + 2  # past the capture: the short run replays too
    models = []

    def run(n: int, name: str = "") -> float:  # seconds of an n-step training
        c = dataclasses.replace(ccfg, train_steps=n)
        _sync(device)
        t0 = time.perf_counter()
        if group == 1:
            models[:] = [train_classifier(x, y, shape[3], c, 0, device=device)]
        else:
            models[:] = train_classifiers([(x, y, None, None)] * group, list(range(group)),
                                          shape[3], c, device)
        _sync(device)
        return time.perf_counter() - t0

    run(short)  # warm-up: cudnn autotune, allocator, first captures
    fixed, per_step = _differenced(run, steps, short)
    out = {"ips": group * ccfg.batch_size / per_step, "fixed_s": fixed, "score_s": 0.0}
    if n_test:
        tx, ty = _data(shape, n_test)
        for _ in range(2):  # the first call warms the scoring path
            t0 = time.perf_counter()
            if group == 1:
                evaluate(models[0], tx, ty, shape[3], device, ccfg.eval_batch_size)
            else:
                evaluate_many(models, tx, ty, shape[3], device, ccfg.eval_batch_size)
            _sync(device)
            out["score_s"] = time.perf_counter() - t0
    return out


# test-set sizes the study scores every cell on: official test splits, else the hold-out
# (splits.test_per_class: all = every image outside the base sets and reserve; `synthequiv
# plan` prints it: 1,297 for quick on digits, 8,500 for mnist on mnist10k)
TEST_IMAGES = {"cifar10": 10_000, "bloodmnist": 3_421, "pneumonia": 624, "quick": 1_297,
               "mnist": 8_500}


def test_images(preset: str, cfg, k: int) -> int:
    """The images each cell is scored on: the preset's measured test set, else a fixed
    hold-out's size, else (test_per_class: all on an unknown source) the cap."""
    t = cfg.splits.test_per_class
    if preset in TEST_IMAGES:
        return TEST_IMAGES[preset]
    return (t if isinstance(t, int) else cfg.splits.test_cap_per_class) * k


def grid_work(cfg, k: int) -> dict:
    """Images to push through each stage for the preset's whole grid (every replicate)."""
    g, s = cfg.grid, cfg.splits
    reps = first_replicates(cfg.grid)  # each replicate trains its own generators and cells (auto: the first pass)
    n_gen = (len(s.base_per_class) * ("closed" in g.arms) + ("open" in g.arms)) * reps
    n_syn_sets = n_gen
    cells_imgs = 0
    for n in s.base_per_class:
        amounts = [0] + list(g.real_add_per_class) * ("real" in g.arms)
        amounts += list(g.syn_add_per_class) * sum(a in g.arms for a in ("closed", "open"))
        for m in amounts:  # each over its seeds (the baseline's: grid.base_seed_factor ×)
            pool = (n + m) * k
            cells_imgs += (num_train_steps(cfg.classifier, pool) * cfg.classifier.batch_size
                           * len(cell_seeds(g, m)))
    cells_per_rep = sum(len(g.real_add_per_class) * ("real" in g.arms)
                        + len(g.syn_add_per_class) * sum(a in g.arms for a in ("closed", "open"))
                        for _ in s.base_per_class) * len(g.seeds) \
        + len(s.base_per_class) * len(cell_seeds(g, 0))
    return {"generator_imgs": n_gen * cfg.generator.train_kimg * 1000,
            "sample_imgs": n_syn_sets * max(g.syn_add_per_class or [0]) * k,
            "classifier_imgs": cells_imgs * reps, "n_generators": n_gen,
            "n_sets": n_syn_sets, "cells_per_replicate": cells_per_rep, "replicates": reps}


def preset_args(preset: str, steps_help: str) -> argparse.ArgumentParser:
    """--preset, --device, --steps and --set, shared by the stage benchmarks."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default=preset)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--steps", type=int, default=20, help=steps_help)
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="config override, e.g. classifier.arch=airbench or cell_group=16")
    return ap


def resolve_args(args) -> tuple[torch.device, C.StudyConfig, tuple]:
    """The device, the preset's config on it (+ overrides) and its image shape."""
    device = resolve_device(args.device)
    cfg = C.resolve(args.preset, None, [f"device={device.type}"] + args.overrides)
    return device, cfg, SHAPES[args.preset]


def main() -> None:
    ap = preset_args("cifar10", "timed optimizer steps per stage")
    ap.add_argument("--nproc", type=int, default=0, help="also time DDP generator training")
    args = ap.parse_args()
    device, cfg, shape = resolve_args(args)
    print(f"preset {args.preset}: images {shape[:3]}, {shape[3]} classes, device {device} "
          f"({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'})")
    gen = generator_costs(cfg, shape, device, args.steps)
    gen_ips, smp_ips = gen["train_ips"], gen["sample_ips"]
    group = resolve_group(cfg.cell_group, cfg.classifier.arch, shape[1], device)
    n_test = test_images(args.preset, cfg, shape[3])
    one = classifier_costs(cfg, shape, device, args.steps, 1, n_test)
    many = classifier_costs(cfg, shape, device, args.steps, group, n_test) if group > 1 else one
    one_ips, clf_ips = one["ips"], many["ips"]
    print(f"generator training   {gen_ips:10.1f} images/s (batch {cfg.generator.batch_size}); "
          f"fixed {gen['train_fixed_s']:.2f} s per generator")
    if args.nproc > 1:
        one_p, many_p = (ddp_generator_ips(cfg, shape, device, args.steps, n)
                         for n in (1, args.nproc))
        print(f"  by differencing: 1 process {one_p:.1f}, {args.nproc} DDP processes "
              f"{many_p:.1f} images/s → scaling {many_p / one_p:.2f}× (ideal {args.nproc}×)")
    print(f"sampling             {smp_ips:10.1f} images/s ({cfg.sampling.sampler}, "
          f"{cfg.sampling.steps} steps, cfg {cfg.sampling.cfg_scale}); fixed "
          f"{gen['sample_fixed_s']:.2f} s per set (loading, set-up, a padded block per step)")
    print(f"classifier training  {one_ips:10.1f} images/s one cell (batch "
          f"{cfg.classifier.batch_size}, arch {cfg.classifier.arch}); fixed "
          f"{one['fixed_s']:.3f} s + scoring {one['score_s']:.3f} s on {n_test} test images")
    print(f"  {group} cells at once {clf_ips:10.1f} images/s → {clf_ips / one_ips:.2f}× "
          f"(cell_group {cfg.cell_group}; the projection uses this); fixed "
          f"{many['fixed_s']:.3f} s + scoring {many['score_s']:.3f} s per group")
    w = grid_work(cfg, shape[3])
    n_groups = w["replicates"] * -(-w["cells_per_replicate"] // group)
    hours = {"generators": w["generator_imgs"] / gen_ips / 3600,
             "sampling": w["sample_imgs"] / smp_ips / 3600,
             "classifier grid": w["classifier_imgs"] / clf_ips / 3600}
    fixed = {"generators": w["n_generators"] * gen["train_fixed_s"] / 3600,
             "sampling": w["n_sets"] * gen["sample_fixed_s"] / 3600,
             "classifier grid": n_groups * (many["fixed_s"] + many["score_s"]) / 3600}
    print(f"projected {args.preset} grid on this device ({w['n_generators']} generators, "
          f"{w['n_sets']} sets, {n_groups} groups of ≤ {group} cells; {len(cfg.grid.seeds)} "
          f"seeds × {first_replicates(cfg.grid)} replicates): throughput × work (lower bound) + "
          "fixed costs")
    for k, h in hours.items():
        print(f"  {k:18s} {h:9.2f} h + {fixed[k]:6.2f} h = {h + fixed[k]:9.2f} h")
    total, with_fixed = sum(hours.values()), sum(hours.values()) + sum(fixed.values())
    target = (f" (issue 14's target ≤ 2 h on one GPU → {with_fixed / 2:.2f}× the target)"
              if args.preset == "cifar10" else "")
    print(f"  {'total':18s} {total:9.2f} h   with fixed costs {with_fixed:.2f} h{target}")

if __name__ == "__main__":
    main()
