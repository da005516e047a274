"""Generators: the families side by side (--families), or G generators one by one vs grouped.

Families (issue 28: which generator should a study train?):

    nice -n 10 .venv/bin/python benchmarks/generators.py --families unet,edm,dit \
        --data quick,mnist --kimg 12.8 --per-class 50

trains each family on replicate 0's largest base set B(n) of each preset's data (quick: digits
8 px; mnist: mnist10k, 28 px), from the preset's generator settings with generator.family set,
at equal training length (--kimg) and, separately, at equal wall time (the unet's measured
training seconds: each family trains for that long at its own measured img/s). Each generator
samples --per-class images/class at the preset's sampling config (sampler auto: DPM-Solver++
for unet/dit, Heun for edm; NFE = steps, or 2·steps − 1 for Heun). Printed per family: training
img/s and GFLOP/kimg (family.cost_per_kimg), fidelity (a real-trained classifier's accuracy on
the synthetic labels: the study's extractor, trained on the pool B ∪ R), FD, precision, recall
and coverage in that classifier's standardised feature space against half the test split (as
the study's analyses), memorization (share of samples closer to a training image than 95 % of
test images are) and sampling ms/image. The real-vs-real row is the other test half.

Groups (the default mode):

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

import numpy as np
import torch

from synthequiv import config as C
from synthequiv.generation.generator import num_train_steps, train_generator
from synthequiv.generation.gengroup import train_generators
from synthequiv.stepgraph import GRAPHS_ENV
from synthequiv.utils import BF16_ENV, resolve_device


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
            for job in generator_jobs(replicate_config(cfg, r).synthetic, sp, Path("unused"),
                                      f"-r{r}")]
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


# ----------------------------------------------------------------------------- families


def family_inputs(preset: str, overrides: list[str]):
    """(study config, splits of replicate 0, B(n) images and labels, extractor) of a preset."""
    from synthequiv.classification.classifier import train_classifier
    from synthequiv.measures.analyses import standardized_extractor
    from synthequiv.orchestration.study import load_inputs

    cfg = C.resolve(preset, None, ["device=cpu", *overrides])
    ds, sp = load_inputs(cfg)
    x, y = sp.base(max(cfg.splits.base_per_class))
    pool = sp.pool_indices()
    model = train_classifier(ds.images[pool], ds.labels[pool], ds.num_classes, cfg.classifier,
                             seed=0)
    return cfg, sp, (x, y), standardized_extractor(model, sp.test_images, "cpu")


def measure_set(images, labels, train_x, sp, extractor) -> dict:
    """Fidelity, FD/precision/recall/coverage against test half A, memorization."""
    from synthequiv.classification.classifier import extract_features, predict_proba
    from synthequiv.measures.features import feature_metrics, split_halves
    from synthequiv.measures.memorization import memorization

    half_a, _ = split_halves(sp.test_labels)
    ref_f = extract_features(extractor, sp.test_images[half_a], "cpu").numpy()
    fake_f = extract_features(extractor, images, "cpu").numpy()
    pred = predict_proba(extractor, images, "cpu").argmax(1)
    mem = memorization(images, train_x, sp.test_images)
    return {"fidelity": float((pred == labels).float().mean()),
            **{k: feature_metrics(ref_f, fake_f)[k] for k in ("fd", "precision", "recall",
                                                              "coverage")},
            "memorized": mem["pixel"]["frac_below"]}


def real_row(sp, extractor) -> dict:
    """The same measures for test half B against half A: what real images score."""
    from synthequiv.measures.features import split_halves

    _, half_b = split_halves(sp.test_labels)
    return measure_set(sp.test_images[half_b], sp.test_labels[half_b], sp.test_images[:1],
                       sp, extractor) | {"memorized": float("nan")}


def train_and_sample(family, cfg, gcfg, data, num_classes, per_class, root: Path) -> dict:
    from synthequiv.generation.sampling import class_quota_labels

    x, y = data
    t0 = time.perf_counter()
    family.train(x, y, num_classes, gcfg, root, progress=False)
    train_s = time.perf_counter() - t0
    gen = family.load(root)
    labels = class_quota_labels(per_class, num_classes)
    t0 = time.perf_counter()
    images = family.sample(gen, labels, cfg.sampling, progress=False)
    sample_s = time.perf_counter() - t0
    s = family.samplers.resolve(cfg.sampling)
    nfe = 2 * s.steps - 1 if s.sampler == "heun" else s.steps
    return {"images": images, "labels": labels, "train_s": train_s, "kimg": gcfg.train_kimg,
            "img_s": gcfg.train_kimg * 1000 / train_s, "ms_per_image": 1000 * sample_s
            / len(labels), "nfe": nfe, "sampler": s.sampler}


def compare_families(names: list[str], presets: list[str], kimg: float, per_class: int,
                     overrides: list[str], wall: bool = True) -> None:
    from synthequiv.generation.families import get_family

    for preset in presets:
        cfg, sp, data, extractor = family_inputs(preset, overrides)
        k, shape = sp.dataset.num_classes, tuple(sp.dataset.shape)
        n = max(cfg.splits.base_per_class)
        rows = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in names:  # warm-up (imports, first calls): 3 steps each, not timed
                g = dataclasses.replace(cfg.generator, family=name, train_kimg=0.192,
                                        warmup_kimg=0.064)
                train_and_sample(get_family(name), cfg, g, data, k, 1, Path(tmp) / name)
            for budget in ("kimg", "wall") if wall else ("kimg",):
                for name in names:
                    family = get_family(name)
                    g = dataclasses.replace(cfg.generator, family=name, train_kimg=kimg)
                    if budget == "wall":  # the unet's training seconds at this family's speed
                        secs = rows[("kimg", names[0])]["train_s"]
                        g = dataclasses.replace(g, train_kimg=round(
                            secs * rows[("kimg", name)]["img_s"] / 1000, 2))
                    if g.warmup_kimg > g.train_kimg / 4:
                        g = dataclasses.replace(g, warmup_kimg=g.train_kimg / 4)
                    r = train_and_sample(family, cfg, g, data, k, per_class,
                                         Path(tmp) / f"{budget}-{name}")
                    r |= measure_set(r.pop("images"), r.pop("labels"), data[0], sp, extractor)
                    r["gflop_kimg"] = family.cost_per_kimg(g, k, shape)
                    rows[(budget, name)] = r
        print(f"\n{preset}: {shape[1]}×{shape[2]} px, B({n}) = {len(data[1])} images, preset "
              f"{cfg.generator.preset}, lr {cfg.generator.lr:g}, {per_class} samples/class, "
              "extractor = the study's")
        print(f"{'budget':6s} {'family':6s} {'kimg':>6s} {'train s':>8s} {'img/s':>6s} "
              f"{'GFLOP/kimg':>10s} {'fidelity':>8s} {'FD':>6s} {'prec':>5s} {'recall':>6s} "
              f"{'cover':>5s} {'memo':>5s} {'sampler':>9s} {'ms/img':>7s}")
        for (budget, name), r in rows.items():
            print(f"{budget:6s} {name:6s} {r['kimg']:6.1f} {r['train_s']:8.1f} {r['img_s']:6.0f} "
                  f"{r['gflop_kimg']:10.1f} {r['fidelity']:8.3f} {r['fd']:6.2f} "
                  f"{r['precision']:5.2f} {r['recall']:6.2f} {r['coverage']:5.2f} "
                  f"{r['memorized']:5.3f} {r['sampler'] + '×' + str(r['nfe']):>9s} "
                  f"{r['ms_per_image']:7.1f}")
        real = real_row(sp, extractor)
        print(f"{'real':6s} {'test':6s} {'':>6s} {'':>8s} {'':>6s} {'':>10s} "
              f"{real['fidelity']:8.3f} {real['fd']:6.2f} {real['precision']:5.2f} "
              f"{real['recall']:6.2f} {real['coverage']:5.2f}")


def compare_steps(steps: list[int], presets: list[str], per_class: int,
                  overrides: list[str], fp32: bool = False) -> None:
    """Replicate 0's generators of each preset (closed per base size, open pool), trained at
    the preset's settings, each sampled at every step count (same per-image seeds) and once
    more at the largest count with another sampling seed: that row's distance to the first is
    the sampling noise of the measures, against which a smaller step count is judged. fp32:
    once more at the largest count in float32 (SYNTHEQUIV_CPU_BF16=0 for that sampling only),
    against the bf16 autocast a CPU with native bf16 samples under (utils.cpu_bf16)."""
    from synthequiv.generation.families import get_family
    from synthequiv.generation.sampling import class_quota_labels
    from synthequiv.generation.synthetic import generator_jobs

    for preset in presets:
        cfg, sp, _, extractor = family_inputs(preset, overrides)
        k = sp.dataset.num_classes
        family = get_family(cfg.generator.family)
        labels = class_quota_labels(per_class, k)
        rows: dict[tuple[str, str], dict] = {}
        with tempfile.TemporaryDirectory() as tmp:
            for job in generator_jobs(cfg.synthetic, sp, Path(tmp), "-r0"):
                t0 = time.perf_counter()
                family.train(job.x, job.y, k, job.generator, Path(tmp) / job.name,
                             progress=False)
                train_s = time.perf_counter() - t0
                gen = family.load(Path(tmp) / job.name)
                runs = [(n, cfg.sampling.seed, "") for n in steps]
                runs.append((max(steps), cfg.sampling.seed + 1, " seed+1"))  # the noise floor
                if fp32:
                    runs.append((max(steps), cfg.sampling.seed, " fp32"))
                for n, seed, what in runs:
                    s = dataclasses.replace(cfg.sampling, steps=n, seed=seed)
                    t0 = time.perf_counter()
                    with mock.patch.dict(os.environ, {BF16_ENV: "0"} if what == " fp32" else {}):
                        images = family.sample(gen, labels, s, progress=False)
                    ms = 1000 * (time.perf_counter() - t0) / len(labels)
                    tag = f"{n}{what}"
                    rows[(job.name, tag)] = measure_set(images, labels, job.x, sp, extractor) | {
                        "ms_per_image": ms, "train_s": train_s}
        print(f"\n{preset}: replicate 0's generators ({cfg.generator.family}, preset "
              f"{cfg.generator.preset}, {cfg.generator.train_kimg:g} kimg), sampler "
              f"{family.samplers.resolve(cfg.sampling).sampler}, {per_class} samples/class; "
              "extractor = the study's")
        print(f"{'generator':<14} {'steps':>12} {'fidelity':>8} {'FD':>6} {'prec':>5} "
              f"{'recall':>6} {'cover':>5} {'memo':>5} {'ms/img':>7}")
        names = list(dict.fromkeys(name for name, _ in rows))
        tags = list(dict.fromkeys(tag for _, tag in rows))
        for name in [*names, "mean"]:
            for tag in tags:
                sel = [rows[(n, tag)] for n in names] if name == "mean" else [rows[(name, tag)]]
                r = {key: float(np.mean([x[key] for x in sel])) for key in sel[0]}
                print(f"{name:<14} {tag:>12} {r['fidelity']:8.3f} {r['fd']:6.2f} "
                      f"{r['precision']:5.2f} {r['recall']:6.2f} {r['coverage']:5.2f} "
                      f"{r['memorized']:5.3f} {r['ms_per_image']:7.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--families", default="", help="e.g. unet,edm,dit: compare families")
    ap.add_argument("--data", default="quick,mnist", help="presets whose data to use")
    ap.add_argument("--per-class", type=int, default=50, help="samples per class (families)")
    ap.add_argument("--no-wall", action="store_true", help="equal kimg only (families)")
    ap.add_argument("--set", action="append", default=[], dest="overrides",
                    help="KEY=VALUE on each preset (families), e.g. generator.lr=1e-3")
    ap.add_argument("--steps", default="", help="e.g. 8,12,25,50: sampler step counts")
    ap.add_argument("--fp32", action="store_true", help="--steps: also sample the largest "
                    "count in float32 (where the CPU samples in bf16)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gens", type=int, default=9, help="generators (9 = the quick study's)")
    ap.add_argument("--kimg", type=float, default=25.6, help="training length per generator")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    ap.add_argument("--batch", type=int, default=0, help="batch size (0 = the preset's 64)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.steps:
        np.seterr(all="ignore")
        compare_steps([int(n) for n in args.steps.split(",")], args.data.split(","),
                      args.per_class, args.overrides, args.fp32)
        return
    if args.families:
        np.seterr(all="ignore")
        compare_families(args.families.split(","), args.data.split(","), args.kimg,
                         args.per_class, args.overrides, not args.no_wall)
        return
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
