"""Where a group step's time goes: wall ms per step against the device's kernel ms per step.

    python3 benchmarks/gpu_trace.py --device cuda                 # on a GPU (~40 s)
    PYTHONPATH=src .venv/bin/python benchmarks/gpu_trace.py --steps 12 --cells 6   # CPU look

The quick study's two group loops, in steady state (after warm-up and the CUDA-graph capture):
  generators  the 9 quick generators as one group (gengroup.py, graphed on CUDA), batch 64 each
  cells       --cells quick cells as one group (batched.py, graphed on CUDA), batch 128 each
  sampling    one quick synthetic set (--sample-images, 1,600 like the study's) with the
              study's sampler at --steps steps: a step is one network call per block of rows
              (graphed on CUDA; 4,096-row blocks at 8 px there, so the set is 39 % real rows)
  sampling@R  the same with R-row blocks (default loops: sampling@1024, two calls per step, 78 %
              real rows): does a smaller block than the study's sample a quick set faster?
              (changing the study's block changes the GPU's pixels by rounding: measure first)
  cifar10-gen the cifar10 preset's 36M-parameter generator alone (generator.train_generator:
              bf16 autocast and channels_last on CUDA, eager: no torch.compile), at the preset's
              batch 256 (--c10-batch), on random 32-px images: 2.35 of the 3.67 projected
              H200 hours of the cifar10 grid are this loop (README, "The GPU targets")
Each loop runs --steps steps; a hook on a once-per-step call (the learning rate, a group's
step, sampling's network call) timestamps every step (host clock) and steps a torch.profiler schedule that records --active steps near the end.
Printed per loop and arm: wall ms per step (steps 5 to the profiled ones, unprofiled, the
device synchronised at both ends; the median gap of the profiled steps beside it),
device ms per step (the kernels' summed own time over the recorded steps, CUDA only), their
ratio — near 1 the loop is bound by the GPU's kernels, well below 1 by the host (Python,
launches, syncs) — the model arithmetic it achieves (training FLOPs per step, counted by
torch.utils.flop_counter on the CPU, ÷ wall time: set it against the card's peak) and the top
kernels. Arms (CUDA only), one after another in one process:
  default       the study's settings
  cudnn         torch.backends.cudnn.benchmark = True (cuDNN times its algorithms per shape;
                grouped float32 convolutions, which vmap makes, have slow defaults on some cards)
  tf32          + TF32 matmuls (torch.backends.cuda.matmul.allow_tf32; the attention and linear
                layers run float32 matmuls in a group)
On the CPU only `default` runs (host profile: device ms is 0, wall ms is the CPU's step).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).parent))
from cells import quick_cells  # noqa: E402
from generators import quick_jobs  # noqa: E402

from synthequiv import config as C  # noqa: E402
from synthequiv.classification import batched as B  # noqa: E402
from synthequiv.generation import generator as G
from synthequiv.generation import gengroup as GG  # noqa: E402
from synthequiv.generation.sampling import net_block_rows  # noqa: E402
from synthequiv.stepgraph import GRAPHS_ENV  # noqa: E402
from synthequiv.utils import resolve_device  # noqa: E402

FIRST = 5  # the first timed step: past the 3 eager warm-up steps and the capture


class Ticks:
    """One tick at the start of every training step: a timestamp, the profiler's schedule
    step. The ticks that open and close the timed window (steps FIRST to `last`, none of them
    profiled) wait for the device first, so the window's wall time is the device's too (with
    graphs the host may otherwise run steps ahead of the GPU)."""

    def __init__(self, prof, last: int, device):
        self.prof, self.times, self.last, self.device = prof, [], last, device

    def tick(self) -> None:
        if len(self.times) in (FIRST, self.last) and self.device.type == "cuda":
            torch.cuda.synchronize()
        self.times.append(time.perf_counter())
        self.prof.step()


def profiler(device, skip: int, active: int):
    acts = [torch.profiler.ProfilerActivity.CPU]
    if device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    return torch.profiler.profile(activities=acts, schedule=torch.profiler.schedule(
        wait=skip, warmup=2, active=active, repeat=1))


def _ticked(target, name: str, device, prof_args, run) -> tuple[list[float], object]:
    """run(tmp_dir) with `target.name` (called once per step: a loop's lr_at, a cell group's
    step, sampling's network call) ticking first: (the ticks' times, the profiler)."""
    real = getattr(target, name)
    with tempfile.TemporaryDirectory() as tmp, profiler(device, *prof_args) as prof:
        ticks = Ticks(prof, prof_args[0], device)

        def ticking(*args, **kwargs):
            ticks.tick()
            return real(*args, **kwargs)

        with mock.patch.object(target, name, ticking):
            run(Path(tmp))
    return ticks.times, prof


def run_generators(jobs, k, steps: int, device, prof_args) -> tuple[list[float], object]:
    cfgs = [dataclasses.replace(c, train_kimg=c.batch_size * steps / 1000, warmup_kimg=0.0,
                                checkpoint_every_kimg=1e9) for *_, c in jobs]
    return _ticked(GG, "lr_at", device, prof_args, lambda tmp: GG.train_generators(
        [(x, y) for x, y, _ in jobs], k, cfgs, [tmp / f"g{i}" for i in range(len(jobs))],
        device, progress=False))


def run_cifar10_generator(batch: int, steps: int, device, prof_args):
    gcfg = dataclasses.replace(C.resolve("cifar10", None, []).generator, batch_size=batch,
                               train_kimg=batch * steps / 1000, warmup_kimg=0.0,
                               checkpoint_every_kimg=1e9)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (max(batch, 512), 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (len(x),), generator=g)
    return _ticked(G, "lr_at", device, prof_args, lambda tmp: G.train_generator(
        x, y, 10, gcfg, tmp, device, progress=False, compile=False))


def quick_generator(jobs, device):
    """A quick-study generator (8 px, fresh weights: timing needs no training), eval mode."""
    x, y, cfg = jobs[0]
    return G.init_generator(G.run_meta(x, y, 10, cfg), cfg).to(device).eval()


def run_sampling(gen, n_images: int, steps: int, device, prof_args, block: int = 0):
    """One synthetic set of n_images, the study's sampler with `steps` steps (a tick per
    sampler step: one network call per block of rows; the quick set is one block on CUDA).
    block > 0 replaces the study's rows per call."""
    from synthequiv.generation import sampling as S

    labels = torch.arange(n_images) % gen.num_classes
    rows = mock.patch.object(S, "net_block_rows", lambda *a: block) if block else \
        contextlib.nullcontext()
    with rows:
        return _ticked(S.BlockNet, "__call__", device, prof_args, lambda tmp: S.sample_images(
            gen, labels, S.SampleConfig(steps=steps), device, progress=False))


def sampling_flops_per_row(gen) -> float:
    """Forward FLOPs of one row of a network call (FlopCounterMode on the CPU)."""
    from torch.utils.flop_counter import FlopCounterMode

    cpu = copy.deepcopy(gen).cpu()
    x = torch.zeros(2, *gen.image_shape[:1], gen.resolution, gen.resolution)
    with FlopCounterMode(display=False) as fc, torch.no_grad():
        cpu(x, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    return fc.get_total_flops() / 2


def train_flops_per_image(kind: str, cfg, shape: tuple[int, int, int]) -> float:
    """Forward + backward FLOPs of one training image of `shape` (C, H, W) (FlopCounterMode,
    batch 2, CPU): kind "generator" (cfg: GeneratorConfig, 10 classes) or "cell"
    (cfg: ClassifierConfig)."""
    from torch.utils.flop_counter import FlopCounterMode

    from synthequiv.classification.classifier import build_classifier

    with FlopCounterMode(display=False) as fc:
        if kind == "generator":
            x = torch.zeros((2, *shape), dtype=torch.uint8)
            gen = G.init_generator(G.run_meta(x, torch.zeros(2, dtype=torch.long), 10, cfg), cfg)
            from diffusers import DDPMScheduler

            d = G.draw_step(gen, dataclasses.replace(cfg, batch_size=2), 0, 2, torch.device("cpu"))
            loss = G.diffusion_loss(gen, gen.encode(x), torch.zeros(2, dtype=torch.long), d,
                                    DDPMScheduler(**gen.scheduler_config()))
        else:
            net = build_classifier(cfg.arch, shape[0], max(shape[1:]), 10, cfg.width)
            loss = net(torch.zeros(2, *shape)).logsumexp(1).mean()
        loss.backward()
    return fc.get_total_flops() / 2


def run_cells(cells, ccfg, steps: int, device, prof_args) -> tuple[list[float], object]:
    ccfg = dataclasses.replace(ccfg, train_steps=steps)
    # the group's step (eager, or the graph's replay) is called once per training step
    return _ticked(B.StepGraph, "__call__", device, prof_args, lambda tmp: B.train_classifiers(
        [d for d, _ in cells], [s for _, s in cells], 10, ccfg, device))


def summarize(name: str, arm: str, times: list[float], prof, skip: int, active: int,
              device, flops_per_step: float) -> None:
    if len(times) < skip + active + 3:
        raise SystemExit(f"{name}: only {len(times)} step ticks (expected ≥ {skip + active + 3})"
                         " — the loop no longer calls the hooked function once per step")
    # tick i opens training step i; profiler step s (after s ticks) is training step s - 1
    wall = 1000 * (times[skip] - times[FIRST]) / (skip - FIRST)  # unprofiled, device-synced
    rec = times[skip + 1: skip + active + 2]  # the profiled steps' boundaries
    gaps = [1000 * (b - a) for a, b in zip(rec, rec[1:])]
    events = prof.key_averages()
    dev_us = sum(e.self_device_time_total for e in events
                 if getattr(e, "device_type", None) == torch.autograd.DeviceType.CUDA)
    dev = dev_us / 1000 / active
    share = f"{dev / wall:.2f}" if device.type == "cuda" else "—"
    print(f"{name:11s} {arm:8s} wall {wall:8.2f} ms/step (steps {FIRST}-{skip}; profiled "
          f"steps: median {statistics.median(gaps):.2f}), device {dev:8.2f} ms/step, "
          f"device/wall {share}, {flops_per_step / wall / 1e9:.2f} TFLOP/s of model arithmetic")
    key = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[:8]
    for e in top:
        print(f"    {getattr(e, key) / 1000 / active:8.3f} ms/step  {e.count // active:5d}×  "
              f"{e.key[:90]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--steps", type=int, default=60, help="steps per loop and arm")
    ap.add_argument("--active", type=int, default=10, help="steps recorded by the profiler")
    ap.add_argument("--gens", type=int, default=9)
    ap.add_argument("--cells", type=int, default=36)
    ap.add_argument("--c10-batch", type=int, default=256, help="cifar10-gen batch size")
    ap.add_argument("--sample-images", type=int, default=1600, help="one quick set's size")
    ap.add_argument("--loops", default="generators,cells,sampling,sampling@1024,cifar10-gen")
    args = ap.parse_args()
    device = resolve_device(args.device)
    skip = max(FIRST + 5, args.steps - args.active - 6)  # timed steps FIRST..skip, then profiled
    prof_args = (skip, args.active)
    if args.steps < skip + args.active + 4:
        raise SystemExit(f"--steps {args.steps} too few for --active {args.active}")
    jobs, k = quick_jobs(args.gens, 1.0)
    cfg = C.resolve("quick", None, [])
    cells, _, _, _ = quick_cells(cfg, args.cells)
    arms = ("default", "cudnn", "tf32") if device.type == "cuda" else ("default",)
    shape = tuple(jobs[0][0].shape[1:])  # digits: 1 × 8 × 8
    flops = {"generators": len(jobs) * jobs[0][2].batch_size
             * train_flops_per_image("generator", jobs[0][2], shape),
             "cells": len(cells) * cfg.classifier.batch_size
             * train_flops_per_image("cell", cfg.classifier, shape),
             "cifar10-gen": args.c10_batch * train_flops_per_image(
                 "generator", C.resolve("cifar10", None, []).generator, (3, 32, 32))}
    gen = quick_generator(jobs, device)
    per_row, blocks = sampling_flops_per_row(gen), []
    for loop in args.loops.split(","):
        if loop.startswith("sampling"):
            block = int(loop.partition("@")[2] or net_block_rows(device, gen.resolution))
            rows = -(-args.sample_images // block) * block  # padding included
            flops[loop] = per_row * rows
            blocks.append(f"{loop}: {args.sample_images} images in {rows} rows of {block}-row "
                          f"blocks ({args.sample_images / rows:.0%} real)")
    print("GFLOP per step (training; sampling: the network calls of one sampler step, "
          "forward): " + ", ".join(f"{k} {v / 1e9:.1f}" for k, v in flops.items())
          + "; " + "; ".join(blocks))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"device {device} ({name}), torch {torch.__version__}; {len(jobs)} generators × "
          f"batch {jobs[0][2].batch_size}, {len(cells)} cells × batch "
          f"{cfg.classifier.batch_size}; {args.steps} steps per run, {args.active} recorded")
    with mock.patch.dict(os.environ, {GRAPHS_ENV: "auto"}):
        for arm in arms:
            torch.backends.cudnn.benchmark = arm in ("cudnn", "tf32")
            torch.backends.cuda.matmul.allow_tf32 = arm == "tf32"
            for loop in args.loops.split(","):
                if loop == "generators":
                    times, prof = run_generators(jobs, k, args.steps, device, prof_args)
                elif loop.startswith("sampling"):
                    times, prof = run_sampling(gen, args.sample_images, args.steps, device,
                                               prof_args, int(loop.partition("@")[2] or 0))
                elif loop == "cifar10-gen":
                    times, prof = run_cifar10_generator(args.c10_batch, args.steps, device,
                                                        prof_args)
                else:
                    times, prof = run_cells(cells, cfg.classifier, args.steps, device,
                                            prof_args)
                summarize(loop, arm, times, prof, skip, args.active, device, flops[loop])


if __name__ == "__main__":
    main()
