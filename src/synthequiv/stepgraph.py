"""Replay the launch-heavy part of a small training step as one CUDA graph.

A group of small nets (gengroup's generators, batched's classifier cells) is bound on a GPU
by the host: one step of the 9 quick-study generators as one group took ~48 ms on an H200,
no less than the host's whole cost of such a step on a 2-vCPU machine at batch 4, where its
arithmetic is negligible (73 ms, `benchmarks/generators.py --batch 4 --kimg 0.8`), so the
device idles. A CUDA graph records the step's
kernels once and replays them with one launch per step.

`StepGraph(fn, device, what)` runs `fn()` — one step's forward, loss and backward (zeroing the
gradients itself, `zero_grad(set_to_none=True)` first) — every time it is called:
  - eagerly, where graphs are off (the CPU; `SYNTHEQUIV_CUDA_GRAPHS=0`);
  - on CUDA: WARMUP_STEPS eager calls on a side stream (lazy inits, allocator pools), then one
    capture (which records, does not run) and a replay per call from then on.
The contract fn keeps: it takes no arguments and reads only tensors made before the first
call (its static inputs, which the caller refills in place with `copy_` each step) and
writes its results into tensors too (the gradients, a loss accumulator); no host reads
(`.item()`, `.tolist()`) inside. The optimizer step, LR schedule and EMA stay outside, eager:
torch's multi-tensor optimizers are a few launches per step, and a step-dependent float lr
would be frozen into a graph.

Where capture fails (an op that syncs with the host, an old driver), one log line says so
and the same fn runs eagerly from then on, as do later loops of its kind in the process: the
numbers are those of the eager path.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch

from synthequiv.utils import SynthequivError

GRAPHS_ENV = "SYNTHEQUIV_CUDA_GRAPHS"  # auto (default: on for CUDA groups) | 1 | 0
WARMUP_STEPS = 3  # eager steps before the capture (PyTorch's docs warm up on a side stream)


def graphs_choice() -> str:
    """The value of SYNTHEQUIV_CUDA_GRAPHS, checked (config.validate calls it before work)."""
    choice = os.environ.get(GRAPHS_ENV, "auto").strip().lower()
    if choice not in ("auto", "0", "1"):
        raise SynthequivError(f"{GRAPHS_ENV} must be auto, 0 or 1, got '{choice}'")
    return choice


def use_graphs(device: torch.device | str) -> bool:
    """Graphs on CUDA unless SYNTHEQUIV_CUDA_GRAPHS=0; never elsewhere (no CPU graphs)."""
    return torch.device(device).type == "cuda" and graphs_choice() != "0"


class _CudaBackend:
    """What StepGraph needs of torch.cuda (tests swap in a stand-in to run the path on CPUs)."""

    @staticmethod
    def warmup(fn: Callable[[], None]) -> None:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            fn()
        torch.cuda.current_stream().wait_stream(side)

    @staticmethod
    def capture(fn: Callable[[], None]):
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            fn()
        return graph

    @staticmethod
    def recover() -> None:
        torch.cuda.synchronize()


BACKEND = _CudaBackend


class StepGraph:
    """Calls fn() per step: eagerly, or (CUDA) warm-up, capture once, replay. `what` names
    the loop kind ("generator groups", "classifier groups", "sampling"): after one failed
    capture of a kind, later loops of that kind in this process run eager without trying (and
    without another log line). `allowed=False` runs fn eagerly whatever the device."""

    def __init__(self, fn: Callable[[], None], device: torch.device | str, what: str,
                 allowed: bool = True):
        self.fn, self.what = fn, what
        self.on = allowed and use_graphs(device) and what not in FAILED
        self.warm = 0
        self.graph = None

    def __call__(self) -> None:
        if self.graph is not None:
            self.graph.replay()
        elif not self.on:
            self.fn()
        elif self.warm < WARMUP_STEPS:
            BACKEND.warmup(self.fn)
            self.warm += 1
        else:
            self._capture_and_run()

    def _capture_and_run(self) -> None:
        try:
            graph = BACKEND.capture(self.fn)  # records this step's kernels, runs none
        except Exception as exc:  # an op that cannot be captured: eager from here on
            from synthequiv.runtime.runlog import info

            with contextlib.suppress(Exception):
                BACKEND.recover()
            first = (str(exc).splitlines() or [""])[0][:160]
            info(f"CUDA graphs: off for {self.what} ({type(exc).__name__}: {first}); "
                 f"they run eager (same numbers)")
            FAILED.add(self.what)
            self.on = False
            self.fn()
            return
        self.graph = graph
        graph.replay()


FAILED: set[str] = set()  # loop kinds whose capture failed in this process
