"""Sampling stage: few-step samplers as pure functions, per-sample seeding, sample files.

Per-sample seeding (EDM's StackedRandomGenerator): the initial noise of image i, and any
per-step noise, comes from its own generator seeded by (seed, index_offset + i), drawn on the
CPU so it is also the same on every device. The network is evaluated on blocks of exactly
`net_block_rows(device, resolution)` rows (zero rows pad the last block), because
convolution/GEMM kernels pick their algorithm — and so their rounding — by tensor shape: with
one fixed shape, row i's result depends on row i alone, so image i is bit-identical whatever
the batch size or sharding (checked on CPU in tests/test_sampling.py).

Which sampler runs is the generator family's business: `sample_images` takes a `SamplerSet`
(the family's sampler names and its pure sampler function). DDPM_SAMPLERS, the diffusers
schedulers below, serve the unet and dit families; edm.py has EDM's Heun sampler.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from synthequiv.generation.config import (  # noqa: F401 (the stage's config, re-exported)
    SAMPLERS,
    SampleConfig,
    check_sample_config,
    check_sampler,
)
from synthequiv.utils import (
    SynthequivError,
    atomic_path,
    atomic_savez,
    check_positive,
    generator_autocast,
    load_npz,
    stable_hash,
    to_jsonable,
)

if TYPE_CHECKING:  # annotations only: the wrapper lives with its family (unet.py)
    from synthequiv.generation.unet import Generator

@dataclass(frozen=True)
class SamplerSet:
    """A family's samplers: their names (the first is what sampler=auto means) and the pure
    function that runs any of them, fn(gen, labels, rngs, cfg, net) → x_0 [n, C, R, R]."""

    names: tuple[str, ...]
    fn: Callable
    churn: bool = False  # whether sampling.churn means anything to these samplers

    def resolve(self, cfg: SampleConfig) -> SampleConfig:
        """cfg with sampler=auto replaced by the family's default; bad names refused."""
        check_sampler(cfg, self.names, self.churn)
        if cfg.sampler == "auto":
            return dataclasses.replace(cfg, sampler=self.names[0])
        return cfg


def key_view(cfg: SampleConfig, samplers: SamplerSet) -> dict:
    """What keys a sample set: the config with sampler=auto resolved (auto and its explicit
    name give the same images, hence the same key), and `churn` only when set, so a key made
    before these fields existed stays the same."""
    view = dataclasses.asdict(samplers.resolve(cfg))
    if not view["churn"]:
        del view["churn"]
    return view


# NHWC convolutions while sampling: 1.7x the images/s of NCHW for the 32-px nets on 2 CPU
# cores (benchmarks/stages.py), and the layout tensor cores want on CUDA
SAMPLE_MEMORY_FORMAT = torch.channels_last


def net_block_rows(device: torch.device, resolution: int) -> int:
    """Rows per network call: one fixed shape per device type and resolution (see the module
    docstring): 16k model pixels per call on CPU (256 rows at 8 px: 1.35x the images/s of
    64 rows, measured), 256k on CUDA (256 rows at 32 px)."""
    pixels = 2**18 if device.type == "cuda" else 2**14
    return max(1, pixels // resolution**2)


# ----------------------------------------------------------------------------- samplers


def make_scheduler(sampler: str, gen: Generator, steps: int):
    """A fresh diffusers scheduler with the generator's training noise schedule."""
    from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

    kw = gen.scheduler_config()
    if sampler == "dpmpp":
        sched = DPMSolverMultistepScheduler(**kw, algorithm_type="dpmsolver++", solver_order=2)
    elif sampler == "ddim":  # trailing spacing starts at t = T−1, which few steps need
        sched = DDIMScheduler(**kw, timestep_spacing="trailing")
    else:
        sched = DDPMScheduler(**kw)
        steps = gen.num_train_timesteps  # the reference: every training timestep
    sched.set_timesteps(steps)
    return sched


def sample_rng(seed: int, index: int) -> torch.Generator:
    """CPU generator of image `index` (absolute, i.e. including index_offset)."""
    return torch.Generator().manual_seed(int(stable_hash("sample", seed, index, length=15), 16))


class BlockNet:
    """gen.guided on fixed [block, C, R, R] inputs: padding rows make every call one shape
    (module docstring). On CUDA the network call replays as one CUDA graph after a few eager
    calls (stepgraph.py; a small net's forward is many tiny kernels, launched by the host);
    the inputs are copied into the graph's tensors, so the outputs are the eager ones. A compiled
    backbone runs without graphs (torch.compile has its own)."""

    def __init__(self, gen: Generator, cfg_scale: float, block: int, device: torch.device):
        from synthequiv.stepgraph import StepGraph

        self.gen, self.cfg_scale, self.block = gen, cfg_scale, block
        shape = (block, gen.image_shape[0], gen.resolution, gen.resolution)
        self.x = torch.zeros(shape, device=device)
        self.t = torch.zeros(block, dtype=gen.time_dtype, device=device)  # timestep or σ
        self.y = torch.zeros(block, dtype=torch.long, device=device)
        self.out = torch.zeros(shape, device=device)  # float32: bf16 outputs widen exactly
        compiled = getattr(gen.backbone, "_compiled_call_impl", None) is not None
        self.step = StepGraph(self._forward, device, "sampling", allowed=not compiled)

    def _forward(self) -> None:  # StepGraph's fn: tensors in, tensors out
        self.out.copy_(self.gen.guided(self.x, self.t, self.y, self.cfg_scale))

    @property
    def graphed(self) -> bool:
        return self.step.on

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Model output (float32) for x [n, C, R, R] at timestep (or σ) t, a 0-d tensor, and
        labels [n]."""
        result = self.out.new_empty((len(x), *self.out.shape[1:]))
        self.t.copy_(t.reshape(1))
        for i in range(0, len(x), self.block):
            xb, yb = x[i:i + self.block], labels[i:i + self.block]
            k = len(xb)
            self.x[:k].copy_(xb)
            self.y[:k].copy_(yb)
            if k < self.block:
                self.x[k:].zero_()
                self.y[k:].fill_(self.gen.null_class)
            self.step()
            result[i:i + k].copy_(self.out[:k])
        return result


@torch.no_grad()
def diffusion_sampler(gen: Generator, labels: torch.Tensor, rngs: list[torch.Generator],
                      cfg: SampleConfig, net: BlockNet) -> torch.Tensor:
    """x_T ~ N(0, I) per image from its own generator, then the scheduler's steps; `net`
    evaluates the network in fixed blocks.

    labels: int64 [n] on the model's device; returns x_0 float [n, C, R, R] in model space.
    """
    scheduler = make_scheduler(cfg.sampler, gen, cfg.steps)
    shape = (1, gen.image_shape[0], gen.resolution, gen.resolution)
    x = torch.cat([torch.randn(shape, generator=g) for g in rngs]).to(labels.device)
    x = x * scheduler.init_noise_sigma
    extra = {"generator": rngs} if cfg.sampler == "ddpm" else {}  # per-image step noise
    for t in scheduler.timesteps:
        out = net(scheduler.scale_model_input(x, t), t, labels)
        x = scheduler.step(out, t, x, **extra).prev_sample
    return x


DDPM_SAMPLERS = SamplerSet(SAMPLERS, diffusion_sampler)


def sample_images(generator: Generator, labels: torch.Tensor, cfg: SampleConfig,
                  device: torch.device | str = "cpu", progress: bool = True,
                  index_offset: int = 0, description: str = "sampling",
                  samplers: SamplerSet = DDPM_SAMPLERS) -> torch.Tensor:
    """uint8 [len(labels), C, H, W] at the dataset's shape; image i depends only on
    (generator, labels[i], cfg.sampler/steps/cfg_scale/churn/seed, index_offset + i).
    `description` names the work in the progress bar / log lines; `samplers` are the
    generator family's (families.py passes them; the default serves unet and dit)."""
    cfg = samplers.resolve(cfg)
    _check_labels(labels, generator.num_classes)
    check_positive("index_offset", index_offset, allow_zero=True)
    device = torch.device(device)
    gen = generator.to(device).eval().to(memory_format=SAMPLE_MEMORY_FORMAT)
    block = net_block_rows(device, gen.resolution)
    bsz = math.ceil(cfg.batch_size / block) * block
    out = torch.empty((len(labels), *gen.image_shape), dtype=torch.uint8)
    net = BlockNet(gen, cfg.cfg_scale, block, device)  # one graph serves every batch and step
    # training's autocast: bf16 on CUDA and on CPUs with native bf16 (1.24x the images/s of
    # float32 for the quick study's 8 px net on one core; every measure within the
    # sampling-seed spread, README "How many sampler steps?"). A graph must not replay weight
    # casts cached by autocast outside it: no cache when graphed
    autocast = generator_autocast(device, cache_enabled=not net.graphed)
    with _progress(progress) as bar, autocast:
        task = bar.add_task(description, total=len(labels))
        for s in range(0, len(labels), bsz):
            y = labels[s:s + bsz].to(device)
            rngs = [sample_rng(cfg.seed, index_offset + s + i) for i in range(len(y))]
            x0 = samplers.fn(gen, y, rngs, cfg, net)  # [b, C, R, R]
            out[s:s + len(y)] = gen.decode(x0).cpu()
            bar.update(task, advance=len(y))
    return out


def _progress(enabled: bool):
    from synthequiv.runtime.progress import (
        count_bar,  # a bar on a terminal, log lines otherwise
    )

    return count_bar(enabled)


def _check_labels(labels: torch.Tensor, num_classes: int) -> None:
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.dtype != torch.int64:
        raise SynthequivError("labels to sample must be an int64 tensor [N]")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SynthequivError(f"class index out of range [0, {num_classes}): "
                              f"[{int(labels.min())}, {int(labels.max())}]")


def class_quota_labels(per_class: int | Sequence[int], num_classes: int) -> torch.Tensor:
    """[0]*k + [1]*k + … (int64); a sequence gives one count per class (zeros allowed)."""
    check_positive("num_classes", num_classes)
    if isinstance(per_class, (int, np.integer)):
        check_positive("per_class", int(per_class))
        counts = [int(per_class)] * num_classes
    else:
        counts = [int(c) for c in per_class]
        if len(counts) != num_classes:
            raise SynthequivError(f"per_class has {len(counts)} counts for {num_classes} classes")
        for c in counts:
            check_positive("per_class count", c, allow_zero=True)
        check_positive("total per_class count", sum(counts))
    return torch.repeat_interleave(torch.arange(num_classes), torch.tensor(counts))


# ----------------------------------------------------------------------------- files


def save_samples(path: Path, images: torch.Tensor, labels: torch.Tensor, meta: dict) -> None:
    """Atomic .npz with images uint8 [N, C, H, W], labels int64 [N], meta_json (a str)."""
    if images.dtype != torch.uint8 or images.ndim != 4 or labels.shape != (len(images),):
        raise SynthequivError("samples must be uint8 images [N, C, H, W] with labels [N]")
    atomic_savez(path, images=images.cpu().numpy(), labels=labels.cpu().long().numpy(),
                 meta_json=np.array(json.dumps(to_jsonable(meta), sort_keys=True)))


def load_samples(path: Path, key: str | None = None) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """images uint8 [N, C, H, W], labels int64 [N], meta. With `key`, the file must have been
    written for that key (a file copied from another run or config is refused, not used)."""
    arrays = load_npz(path)
    if not {"images", "labels", "meta_json"} <= set(arrays):
        raise SynthequivError(f"{path} is not a samples file (needs images, labels, meta_json)")
    images, labels = arrays["images"], arrays["labels"]
    if images.dtype != np.uint8 or images.ndim != 4 or labels.dtype.kind not in "iu" \
            or labels.shape != (len(images),):
        raise SynthequivError(f"{path} is damaged: needs uint8 images [N, C, H, W] and integer "
                              f"labels [N]; delete it to sample again")
    try:
        meta = json.loads(str(arrays["meta_json"]))
    except ValueError as exc:
        raise SynthequivError(f"{path} is damaged (meta_json: {exc}); delete it") from exc
    if key is not None and (not isinstance(meta, dict) or meta.get("key") != key):
        stored = meta.get("key") if isinstance(meta, dict) else None
        raise SynthequivError(f"{path} holds samples for key {stored!r}, not {key!r} (copied "
                              "from another run?); delete it to sample again")
    return torch.from_numpy(images), torch.from_numpy(labels).long(), meta


GRID_CELL_PX = 96  # largest side of one example in a grid PNG


def save_grid_png(path: Path, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  per_row: int = 10) -> None:
    """One row per class (its first `per_row` images, blanks if fewer), upscaled to ≥ 32 px."""
    from PIL import Image
    from torchvision.utils import make_grid

    check_positive("per_row", per_row)
    _check_labels(labels, num_classes)
    c, h, w = images.shape[1:]
    # large images become ≤ 96-px thumbnails first: 100 cells of 4000² px would take GBs
    shrink = max(1.0, max(h, w) / GRID_CELL_PX)
    th, tw = max(1, round(h / shrink)), max(1, round(w / shrink))
    cells = torch.zeros((num_classes * per_row, c, th, tw), dtype=torch.uint8)
    for k in range(num_classes):
        idx = (labels == k).nonzero().flatten()[:per_row]
        for j, i in enumerate(idx.tolist()):
            x = images[i:i + 1]
            if shrink > 1:  # area averaging, one image at a time
                x = torch.nn.functional.interpolate(x.float(), size=(th, tw), mode="area")
                x = x.round().clamp(0, 255).to(torch.uint8)
            cells[k * per_row + j] = x[0]
    h, w = th, tw
    scale = max(1, math.ceil(32 / max(h, w)))  # nearest-neighbour upscaling for tiny images
    cells = cells.repeat_interleave(scale, 2).repeat_interleave(scale, 3)
    grid = make_grid(cells, nrow=per_row, padding=2, pad_value=128)  # [3, H', W'] uint8
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(grid.permute(1, 2, 0).numpy()).save(tmp, format="PNG")
