"""Generator benchmark: training speed per preset, sampler speed-up, fidelity vs NFE on digits.

    .venv/bin/python benchmarks/generator.py              # ≈ 3 min on 2 quiet CPU cores
    .venv/bin/python benchmarks/generator.py --quick      # ≈ 1.5 min, a quarter of training
    .venv/bin/python benchmarks/generator.py --reference  # + the plain diffusers recipe (+5 min)
    .venv/bin/python benchmarks/generator.py --study mnist --base 20   # a study preset's generator
    .venv/bin/python benchmarks/generator.py --study mnist --set generator.train_kimg=51.2

Prints, in one run: (1) training images/s of each preset backbone (a few optimizer steps on
random data); (2) sampling images/s of the default sampler (DPM-Solver++, 25 NFE) against
diffusers' plain 1000-step DDPM loop on the same network, as a ratio; (3) conditional fidelity
(an SVC trained on the real digits outside the base set agrees with the conditioning label) of
a generator trained with the default GeneratorConfig on digits 20/class, at NFE 10/25/50.
CPU time is printed beside wall time: on a shared machine wall time mostly measures the others
(and with 2 threads on 2 busy cores, OpenMP spin-waiting can make even CPU time 5–10x worse:
use --threads 1 there).

--study PRESET --base N instead measures the generator a study preset trains: its data source,
splits, generator and sampling configs, trained on B(N) only; the judge is a logistic regression
on the pixels of the preset's other training-pool images (its accuracy on the test split is
printed beside, as the ceiling of the fidelity figure).
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch

from synthequiv.generation.generator import (
    GENERATOR_PRESETS,
    BackbonePreset,
    GeneratorConfig,
    diffusion_loss,
    draw_step,
    load_generator,
    make_generator,
    train_generator,
)
from synthequiv.generation.sampling import SampleConfig, class_quota_labels, sample_images

# the reference recipe the 8-px default is measured against (see GeneratorConfig)
REFERENCE_PRESET = BackbonePreset(8, (32, 64), (False, True), layers_per_block=2)
REFERENCE_CONFIG = GeneratorConfig(preset="reference", train_kimg=128.0, batch_size=128,
                                   lr=1e-3, warmup_kimg=0.0, ema_halflife_kimg=88.0,
                                   prediction="epsilon", checkpoint_every_kimg=1e9)


class Clock:
    """Wall and process-CPU seconds of a block."""

    def __enter__(self):
        self.w0, self.c0 = time.perf_counter(), _cpu()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.w0, _cpu() - self.c0


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# ----------------------------------------------------------------------------- digits


def digits_sets():
    """Base set B(20) (seeded, 20 per class) and the other digits, uint8 [N, 1, 8, 8]."""
    from synthequiv.inputs.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig())  # the data stage's digits: uint8 [N, 1, 8, 8], int64 labels
    x, y = ds.images, ds.labels
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    base = torch.cat([perm[y[perm] == c][:20] for c in range(10)])
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[base] = False
    return (x[base], y[base]), (x[rest], y[rest])


def make_judge(x_rest: torch.Tensor, y_rest: torch.Tensor):
    from sklearn.svm import SVC

    svc = SVC().fit(x_rest.flatten(1).numpy() / 255.0, y_rest.numpy())
    return lambda images: svc.predict(images.flatten(1).numpy() / 255.0)


# ----------------------------------------------------------------------------- sections


def _train_steps(name: str, device: torch.device, bsz: int, steps: int) -> Clock:
    """`steps` optimizer steps of preset `name` on random RGB data, after one warm-up step."""
    from diffusers import DDPMScheduler

    r = GENERATOR_PRESETS[name].resolution
    gen = make_generator(name, 10, (3, r, r), "v_prediction").to(device).train()
    opt = torch.optim.Adam(gen.parameters(), lr=1e-4)
    sched = DDPMScheduler(**gen.scheduler_config())
    x = torch.rand(bsz, 3, r, r, device=device) * 2 - 1
    y = torch.randint(0, 10, (bsz,), device=device)
    clock = Clock()
    for i in range(-1, steps):  # step -1 warms up the allocator and kernel choice
        if i == 0:
            _sync(device)
            clock.__enter__()
        d = draw_step(gen, GeneratorConfig(batch_size=bsz), i, bsz, device)
        loss = diffusion_loss(gen, x, y, d, sched)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    clock.__exit__()
    clock.params = sum(p.numel() for p in gen.parameters())
    return clock


def bench_training(device: torch.device, quick: bool) -> None:
    print(f"\n== training speed per preset ({device}) ==")
    print(f"{'preset':>10} {'params':>8} {'batch':>6} {'img/s':>8} {'img/cpu-s':>10}")
    for name, preset in GENERATOR_PRESETS.items():
        r = preset.resolution
        bsz = 128 if device.type == "cuda" else max(2, 8192 // r**2)  # CPU: ~8k pixels/batch
        steps = 2 if quick or r >= 32 else 5
        c = _train_steps(name, device, bsz, steps)
        print(f"{name:>10} {c.params / 1e6:7.2f}M {bsz:>6} {steps * bsz / c.wall:8.1f} "
              f"{steps * bsz / c.cpu:10.1f}")


def bench_sampling(gen, device: torch.device, n: int, probe_steps: int = 50) -> None:
    """Default sampler vs diffusers' plain 1000-step DDPM loop on the same network and batch.

    The plain loop's cost per step is constant, so it is timed over its first `probe_steps`
    steps and scaled to 1000 (running all of them would dominate the benchmark).
    """
    from diffusers import DDPMScheduler

    labels = class_quota_labels(max(1, n // 10), 10)
    with Clock() as fast:
        sample_images(gen, labels, SampleConfig(), device, progress=False)
    sched = DDPMScheduler(**gen.scheduler_config())
    sched.set_timesteps(1000)
    x = torch.randn(len(labels), gen.image_shape[0], gen.resolution, gen.resolution,
                    device=device)
    y = labels.to(device)
    with Clock() as ref, torch.no_grad():
        for t in sched.timesteps[:probe_steps]:
            x = sched.step(gen.backbone(x, t, class_labels=y).sample, t, x).prev_sample
        _sync(device)
    scale = 1000 / probe_steps
    fast_ips, fast_cps = len(labels) / fast.wall, len(labels) / fast.cpu
    ref_ips, ref_cps = len(labels) / (ref.wall * scale), len(labels) / (ref.cpu * scale)
    print(f"\n== sampling speed ({len(labels)} digits, one batch) ==")
    print(f"default {SampleConfig().sampler}, {SampleConfig().steps} NFE: {fast_ips:8.1f} img/s "
          f"({fast_cps:.1f} img/cpu-s)")
    print(f"diffusers DDPM, 1000 NFE:  {ref_ips:8.1f} img/s ({ref_cps:.1f} img/cpu-s; "
          f"timed over {probe_steps} steps)")
    print(f"speed-up: {fast_ips / ref_ips:.1f}x wall, {fast_cps / ref_cps:.1f}x cpu")


def bench_fidelity(gen, judge, device: torch.device, per_class: int) -> None:
    labels = class_quota_labels(per_class, 10)
    print(f"\n== conditional fidelity vs NFE ({len(labels)} images, SVC judge) ==")
    print(f"{'sampler':>8} {'NFE':>5} {'fidelity':>9} {'wall s':>7} {'cpu s':>7}")
    for sampler in ("dpmpp", "ddim"):
        for steps in (10, 25, 50):
            with Clock() as c:
                images = sample_images(gen, labels, SampleConfig(sampler=sampler, steps=steps),
                                       device, progress=False)
            acc = float((judge(images) == labels.numpy()).mean())
            print(f"{sampler:>8} {steps:>5} {acc:9.3f} {c.wall:7.1f} {c.cpu:7.1f}")


def train_digits(cfg: GeneratorConfig, base, device, label: str):
    with tempfile.TemporaryDirectory() as tmp, Clock() as c:
        train_generator(*base, 10, cfg, Path(tmp), device, progress=False)
        gen = load_generator(Path(tmp), device)
    print(f"{label}: trained {cfg.train_kimg:g} kimg in {c.wall:.1f} s wall, {c.cpu:.1f} s cpu")
    return gen


def bench_study_generator(preset: str, overrides: list[str], base_n: int, per_class: int,
                          device) -> None:
    from sklearn.linear_model import LogisticRegression

    from synthequiv import config as C
    from synthequiv.inputs.data import load_dataset
    from synthequiv.orchestration.study import study_splits

    cfg = C.resolve(preset, None, overrides)
    ds = load_dataset(cfg.data)
    sp = study_splits(cfg, ds, 0)  # the study's replicate 0: its reserve, test set and pool
    rest = sp.pool_indices()[~torch.isin(sp.pool_indices(), sp.base_indices(base_n))]
    def flat(x: torch.Tensor):
        return x.flatten(1).numpy() / 255.0

    with Clock() as c:
        judge = LogisticRegression(max_iter=1000).fit(flat(ds.images[rest]),
                                                      ds.labels[rest].numpy())
    ceiling = judge.score(flat(sp.test_images), sp.test_labels.numpy())
    print(f"\n== {preset} preset generator: {ds.name}, B({base_n}) = "
          f"{base_n * ds.num_classes} images, preset {cfg.generator.preset}, "
          f"{cfg.generator.train_kimg:g} kimg ==")
    print(f"judge: logistic regression on {len(rest)} other pool images, "
          f"{ceiling:.3f} on the real test split ({c.wall:.1f} s)")
    with tempfile.TemporaryDirectory() as tmp:
        with Clock() as c:
            train_generator(*sp.base(base_n), ds.num_classes, cfg.generator, Path(tmp), device,
                            progress=False)
        print(f"trained in {c.wall:.1f} s wall, {c.cpu:.1f} s cpu")
        gen = load_generator(Path(tmp), device)
    labels = class_quota_labels(per_class, ds.num_classes)
    with Clock() as c:
        images = sample_images(gen, labels, cfg.sampling, device, progress=False)
    acc = float((judge.predict(flat(images)) == labels.numpy()).mean())
    print(f"{len(labels)} samples ({cfg.sampling.sampler}, {cfg.sampling.steps} steps) in "
          f"{c.wall:.1f} s: conditional fidelity {acc:.3f} (judge ceiling {ceiling:.3f})")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter training, fewer images")
    ap.add_argument("--reference", action="store_true",
                    help="also train the plain diffusers recipe (≈ 5 min more on 2 cores)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch CPU threads (0 = torch's default); 1 on a busy shared machine")
    ap.add_argument("--study", default="", help="measure this study preset's generator")
    ap.add_argument("--base", type=int, default=20, help="--study: base images per class")
    ap.add_argument("--set", action="append", default=[], help="--study: KEY=VALUE override")
    args = ap.parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}")
    if args.study:
        return bench_study_generator(args.study, args.set, args.base, 50, device)
    bench_training(device, args.quick)

    base, rest = digits_sets()
    judge = make_judge(*rest)
    cfg = GeneratorConfig()
    if args.quick:
        cfg = dataclasses.replace(cfg, train_kimg=cfg.train_kimg / 4)
    print("\n== digits generator, 20 images/class ==")
    gen = train_digits(cfg, base, device, "default config" + (" / 4 (quick)" * args.quick))
    bench_sampling(gen, device, 200 if args.quick else 500)
    bench_fidelity(gen, judge, device, 20 if args.quick else 50)
    if args.reference:
        GENERATOR_PRESETS["reference"] = REFERENCE_PRESET
        ref = train_digits(REFERENCE_CONFIG, base, device, "reference recipe")
        labels = class_quota_labels(50, 10)
        with Clock() as c:
            images = sample_images(ref, labels, SampleConfig(sampler="ddim"), device, False)
        acc = float((judge(images) == labels.numpy()).mean())
        print(f"reference, ddim 25 NFE: fidelity {acc:.3f}, {c.wall:.1f} s wall, "
              f"{c.cpu:.1f} s cpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


if __name__ == "__main__":
    sys.exit(main())
