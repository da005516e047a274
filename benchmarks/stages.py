"""Old vs new step of the generator stages at a preset's shapes, side by side in one run.

    .venv/bin/python benchmarks/stages.py --preset mnist --device cpu --steps 20
    python3 benchmarks/stages.py --preset cifar10 --device cuda

Arms, interleaved (`--repeats` rounds) so load changes on a shared machine hit both.
On a CPU:
  generator training  float32 (old CPU path) vs bf16 autocast (new on CPUs with native bf16):
                      SYNTHEQUIV_CPU_BF16=0 vs 1
  sampling            NCHW (old) vs channels_last (new) weights, float32 on CPU
On CUDA (bf16 autocast and channels_last before and after), generator training:
  old                 eager network, multi-tensor (foreach) Adam
  fused               eager network, fused Adam (generator.ADAM_FUSED_ON_CUDA; off by default:
                      0.89× old on an H200)
  compiled            torch.compile'd network (the study's `compile: true`) + fused Adam
  (sampling is timed eager, SYNTHEQUIV_CUDA_GRAPHS=0, in every CUDA arm: a control,
  expected equal; the quick study's sampling stage shows the graphs' effect)
Prints each arm's median images/s and its ratio to old. Classifier cells: benchmarks/cells.py.
"""

from __future__ import annotations

import dataclasses
import os
import statistics

import torch
from throughput import generator_ips, preset_args, resolve_args

from synthequiv.generation import generator, sampling
from synthequiv.stepgraph import GRAPHS_ENV
from synthequiv.utils import BF16_ENV, cpu_has_native_bf16


def main() -> None:
    ap = preset_args("mnist", "timed generator steps per arm")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds per arm")
    args = ap.parse_args()
    device, cfg, shape = resolve_args(args)
    print(f"preset {args.preset}: images {shape[:3]}, device {device}, "
          f"{torch.get_num_threads()} threads, native bf16 on this CPU: {cpu_has_native_bf16()}")
    if device.type == "cuda":  # (ADAM_FUSED_ON_CUDA, compile), training only
        arms = {"old": (False, False), "fused": (True, False), "compiled": (True, True)}
        labels = {"old": "eager, foreach Adam", "fused": "eager, fused Adam",
                  "compiled": "compiled, fused Adam"}
    else:  # (SYNTHEQUIV_CPU_BF16, sampling memory format)
        arms = {"old": ("0", torch.contiguous_format), "new": ("1", torch.channels_last)}
        labels = {"old": "float32 / NCHW", "new": "bf16 autocast / channels_last"}
    train, sample = {a: [] for a in arms}, {a: [] for a in arms}
    for _ in range(args.repeats):
        for arm, (a, b) in arms.items():
            run_cfg = cfg
            if device.type == "cuda":
                generator.ADAM_FUSED_ON_CUDA = a
                run_cfg = dataclasses.replace(cfg, compile=b)
                os.environ[GRAPHS_ENV] = "0"
            else:
                os.environ[BF16_ENV] = a
                sampling.SAMPLE_MEMORY_FORMAT = b
            t, s = generator_ips(run_cfg, shape, device, args.steps, compile_sampling=False)
            print(f"  {arm:9s} ({labels[arm]}): training {t:8.1f} img/s, sampling {s:8.1f} "
                  "img/s", flush=True)
            train[arm].append(t)
            sample[arm].append(s)
    for what, d in (("generator training", train), ("sampling", sample)):
        o = statistics.median(d["old"])
        print(f"{what}: old ({labels['old']}) {o:.1f} img/s")
        for arm in list(arms)[1:]:
            n = statistics.median(d[arm])
            print(f"{what}: {arm} ({labels[arm]}) {n:.1f} img/s   {arm}/old {n / o:.2f}x")


if __name__ == "__main__":
    main()
