"""Old vs new step of the generator stages at a preset's shapes, side by side in one run.

    .venv/bin/python benchmarks/stages.py --preset mnist --device cpu --steps 20
    python3 benchmarks/stages.py --preset cifar10 --device cuda

Arms, interleaved (`--repeats` rounds) so load changes on a shared machine hit both:
  generator training  float32 (old CPU path) vs bf16 autocast (new on CPUs with native bf16;
                      the CUDA path was bf16 before and after): SYNTHEQUIV_CPU_BF16=0 vs 1
  sampling            NCHW (old) vs channels_last (new) weights, float32 on CPU
Prints each arm's median images/s and the new/old ratio. Classifier cells: benchmarks/cells.py.
"""

from __future__ import annotations

import os
import statistics

import torch
from throughput import generator_ips, preset_args, resolve_args

from synthequiv import sampling
from synthequiv.utils import BF16_ENV, cpu_has_native_bf16


def main() -> None:
    ap = preset_args("mnist", "timed generator steps per arm")
    ap.add_argument("--repeats", type=int, default=2, help="interleaved rounds per arm")
    args = ap.parse_args()
    device, cfg, shape = resolve_args(args)
    print(f"preset {args.preset}: images {shape[:3]}, device {device}, "
          f"{torch.get_num_threads()} threads, native bf16 on this CPU: {cpu_has_native_bf16()}")
    arms = {"old": ("0", torch.contiguous_format), "new": ("1", torch.channels_last)}
    train, sample = {a: [] for a in arms}, {a: [] for a in arms}
    for _ in range(args.repeats):
        for arm, (bf16, fmt) in arms.items():
            os.environ[BF16_ENV] = bf16
            sampling.SAMPLE_MEMORY_FORMAT = fmt
            t, s = generator_ips(cfg, shape, device, args.steps)
            train[arm].append(t)
            sample[arm].append(s)
    for what, d, old, new in (("generator training", train, "float32", "bf16 autocast"),
                              ("sampling", sample, "NCHW", "channels_last")):
        o, n = statistics.median(d["old"]), statistics.median(d["new"])
        print(f"{what:20s} old ({old}) {o:8.1f} img/s   new ({new}) {n:8.1f} img/s   "
              f"new/old {n / o:.2f}x")


if __name__ == "__main__":
    main()
