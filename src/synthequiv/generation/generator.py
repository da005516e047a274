"""Generator stage: class-conditional diffusion on a small labelled image set.

  config     `GeneratorConfig` (every family) and `config_view`, what keys a generator's files
  training   `train_generator`: Adam with linear warm-up, EMA with a half-life in k images,
             atomic resumable checkpoints (checkpoint.py). The loop is every family's: a
             family's `Builder` makes its network, whose wrapper draws the step's noise levels
             (`draw_t`) and computes the family's loss (`loss`)
  loading    `load_generator`: the EMA weights in eval mode

The unet family (UNet presets, the DDPM `Generator` wrapper, `UNET`) lives in unet.py and is
re-exported here; edm.py and dit.py are the other families, families.py their registry.

Every random draw of training step k comes from a generator seeded by (seed, k), so a run
resumed from a checkpoint continues exactly as an uninterrupted one would. Under DDP
(distributed.py) every rank makes the same draws for the global batch and trains on its slice,
so W ranks take the step one process would (up to float summation order).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from synthequiv.generation.checkpoint import (  # noqa: F401 (CHECKPOINT_NAME re-exported)
    CHECKPOINT_NAME,
    checkpoint_family,
    existing_checkpoint,
    read_checkpoint,
)
from synthequiv.generation.checkpoint import (  # a module-level name: tests patch it here
    save_checkpoint as _save_checkpoint,
)
from synthequiv.generation.config import (  # noqa: F401 (the stage's config, re-exported)
    FAMILY_FIELDS,
    EDMConfig,
    GeneratorConfig,
    check_config,
    config_from_dict,
    config_view,
)
from synthequiv.generation.ranks import Rank, check_split, current
from synthequiv.generation.unet import (  # noqa: F401 (the unet family's names, re-exported)
    AUTO_PRESETS,
    GENERATOR_PRESETS,
    PREDICTIONS,
    UNET,
    BackbonePreset,
    Generator,
    UNetBuilder,
    build_backbone,
    diffusion_loss,
    make_generator,
    resolve_preset,
)
from synthequiv.utils import (
    SynthequivError,
    check_positive,
    compile_unavailable,
    generator_autocast,
    stable_hash,
    tensor_digest,
)

# ----------------------------------------------------------------------------- training pieces


def check_data(images: torch.Tensor, labels: torch.Tensor, num_classes: int) -> None:
    """One-line errors for anything train_generator cannot use."""
    check_positive("num_classes", num_classes)
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        raise SynthequivError("generator images must be a uint8 tensor [N, C, H, W]")
    if images.shape[1] not in (1, 3) or min(images.shape[2:]) < 1:
        raise SynthequivError(f"generator images must have 1 or 3 channels, got shape "
                              f"{tuple(images.shape)}")
    if len(images) == 0:
        raise SynthequivError("cannot train a generator on an empty image set")
    if not isinstance(labels, torch.Tensor) or labels.shape != (len(images),) \
            or labels.dtype != torch.int64:
        raise SynthequivError(f"generator labels must be int64 [{len(images)}]")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise SynthequivError(f"labels must lie in [0, {num_classes}), got "
                              f"[{int(labels.min())}, {int(labels.max())}]")


def num_train_steps(cfg: GeneratorConfig) -> int:
    return max(1, math.ceil(cfg.train_kimg * 1000 / cfg.batch_size))


def lr_at(cfg: GeneratorConfig, step: int) -> float:
    """Linear warm-up over warmup_kimg, then constant (the EMA does the averaging)."""
    if cfg.warmup_kimg <= 0:
        return cfg.lr
    return cfg.lr * min(1.0, (step + 1) * cfg.batch_size / (cfg.warmup_kimg * 1000))


def ema_beta(cfg: GeneratorConfig, step: int) -> float:
    """Per-step EMA decay for a half-life in images, ramped up early on (EDM)."""
    half_nimg = cfg.ema_halflife_kimg * 1000
    if cfg.ema_rampup_ratio > 0:
        half_nimg = min(half_nimg, (step + 1) * cfg.batch_size * cfg.ema_rampup_ratio)
    return 0.5 ** (cfg.batch_size / max(half_nimg, 1e-8))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, beta: float) -> None:
    ema_p, model_p = list(ema.parameters()), list(model.parameters())
    torch._foreach_lerp_(ema_p, model_p, 1.0 - beta)  # ema ← β·ema + (1 − β)·model
    for b_ema, b in zip(ema.buffers(), model.buffers()):
        b_ema.copy_(b)


def step_rng(seed: int, step: int, device: torch.device) -> torch.Generator:
    """The source of every random draw of training step `step`: resumes replay exactly."""
    g = torch.Generator(device=device)
    g.manual_seed(int(stable_hash("generator-step", seed, step, length=15), 16))
    return g


@dataclass
class StepDraws:
    """Every random draw of one training step, for the global batch of B rows."""

    idx: torch.Tensor  # int64 [B], rows of the training data
    flip: torch.Tensor | None  # bool [B, 1, 1, 1], horizontal flips (xflip only)
    t: torch.Tensor  # [B], the model's noise level: int64 timesteps, float σ for EDM
    eps: torch.Tensor  # float [B, C, R, R], noise
    drop: torch.Tensor  # bool [B], labels replaced by the null class

    def part(self, rows: slice) -> StepDraws:
        """One DDP rank's share: ranks slice the same global draws, so W ranks see one batch."""
        values = (getattr(self, f.name) for f in dataclasses.fields(self))
        return StepDraws(*(None if v is None else v[rows] for v in values))


def draw_step(gen: Generator, cfg: GeneratorConfig, step: int, n_data: int,
              device: torch.device) -> StepDraws:
    g, bsz = step_rng(cfg.seed, step, device), cfg.batch_size
    idx = torch.randint(0, n_data, (bsz,), generator=g, device=device)
    flip = torch.rand(bsz, 1, 1, 1, generator=g, device=device) < 0.5 if cfg.xflip else None
    t = gen.draw_t(bsz, g, device)  # [B]: DDPM timesteps, or EDM noise levels σ
    shape = (bsz, gen.image_shape[0], gen.resolution, gen.resolution)
    eps = torch.randn(shape, generator=g, device=device)
    drop = torch.rand(bsz, generator=g, device=device) < cfg.label_dropout
    return StepDraws(idx, flip, t, eps, drop)


# ----------------------------------------------------------------------------- checkpoints


class Builder(Protocol):
    """What the shared training and loading code asks of a family: its size presets and its
    network. `build` returns a wrapper like `Generator` (encode/decode, null_class, forward,
    guided, draw_t, loss, time_dtype, backbone)."""

    name: str  # the family, as in generator.family

    def resolve_preset(self, name: str, image_shape: tuple[int, int, int]) -> str: ...

    def architecture(self, preset: str) -> dict: ...  # stored as the checkpoint's "backbone"

    def build(self, meta: dict) -> nn.Module: ...  # from run_meta or a checkpoint's entries



def run_meta(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
             cfg: GeneratorConfig, builder: Builder = UNET) -> dict:
    """Everything a checkpoint must match to be resumed (or reused) by this call."""
    if cfg.family != builder.name:
        raise SynthequivError(f"generator.family is {cfg.family}, but the {builder.name} "
                              "family was asked to train it")
    shape = [int(s) for s in images.shape[1:]]
    preset = builder.resolve_preset(cfg.preset, tuple(shape))
    arch = builder.architecture(preset)
    return {"format": 1, "config": config_view(cfg), "num_classes": int(num_classes),
            "image_shape": shape, "preset": preset, "resolution": arch["resolution"],
            # the architecture itself, so a checkpoint loads even if the registry changes
            "backbone": arch, "data_digest": tensor_digest(images, labels)}


# ----------------------------------------------------------------------------- training


def init_generator(meta: dict, cfg: GeneratorConfig, builder: Builder = UNET) -> nn.Module:
    """The freshly initialised network of the run `meta` describes (`run_meta`), its weights
    drawn from cfg.seed; the caller's RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return builder.build(meta)


def train_generator(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    cfg: GeneratorConfig, out_dir: Path, device: torch.device | str = "cpu",
                    progress: bool = True, compile: bool = False,
                    builder: Builder = UNET) -> Path:
    """Train (or resume) a class-conditional generator; return out_dir/checkpoint.pt.

    images: uint8 [N, C, H, W]; labels: int64 [N] in [0, num_classes). A finished checkpoint
    with the same config, classes, shape and data is returned at once; a different one is an
    error. The checkpoint is rewritten atomically every checkpoint_every_kimg and at the end.
    Called on every rank of an initialised process group (distributed.py), it trains with DDP;
    `compile` runs the network through torch.compile (same numbers up to rounding).
    `builder` makes the family's network (cfg.family must name it): UNET here, edm.py's and
    dit.py's for those families (families.py passes the right one).
    """
    check_config(cfg)
    check_data(images, labels, num_classes)
    rank, device = current(), torch.device(device)
    check_split(cfg.batch_size, rank.world)
    path = Path(out_dir) / CHECKPOINT_NAME
    meta = run_meta(images, labels, num_classes, cfg, builder)
    state = existing_checkpoint(path, meta, device)
    if state is not None and state["finished"]:
        return path

    gen = init_generator(meta, cfg, builder)
    ema = copy.deepcopy(gen)
    gen, ema = gen.to(device).train(), ema.to(device).eval().requires_grad_(False)
    if device.type == "cuda":  # decided once: NHWC convolutions for tensor cores
        gen, ema = (m.to(memory_format=torch.channels_last) for m in (gen, ema))
    opt = make_adam(gen.parameters(), cfg.lr, device)
    start = 0
    if state is not None:
        gen.load_state_dict(state["model"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
    net = gen
    if rank.world > 1:  # gradients averaged over ranks during backward
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(gen, device_ids=[device] if device.type == "cuda" else None)
    if use_compile(compile, device):
        net.compile()  # in place: state_dict keys stay those of the plain module

    def save(step: int, finished: bool) -> None:
        _save_checkpoint(path, meta, gen, ema, opt, step, finished, rank)

    data = gen.encode(images.to(device))  # float [N, C, R, R], normalised once
    _train_loop(gen, net, ema, opt, data, labels.to(device), cfg, start, save,
                progress and rank.main, rank)
    return path


# Adam's fused kernel (one pass over every parameter) instead of the default: the same update
# up to rounding and the same state_dict. On CUDA off: on an H200 it measured 0.89× the
# multi-tensor default for the cifar10 net (benchmarks/stages.py, which toggles it). On a CPU
# on: the default there is the per-tensor loop, and the quick study's 8 px generator trained at
# 957 vs 836 img/s on one core (1.14×; float32 master weights, bf16 autocast)
ADAM_FUSED_ON_CUDA = False
ADAM_FUSED_ON_CPU = True


def make_adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    fused = {"cuda": ADAM_FUSED_ON_CUDA, "cpu": ADAM_FUSED_ON_CPU}.get(device.type, False)
    return torch.optim.Adam(params, lr=lr, fused=True if fused else None)


LOSS_READ_STEPS = 25  # training steps between host reads of the (device-summed) loss


def _train_loop(gen: nn.Module, net: nn.Module, ema: nn.Module, opt: torch.optim.Optimizer,
                data: torch.Tensor, labels: torch.Tensor, cfg: GeneratorConfig, start: int,
                save, progress: bool, rank: Rank):
    device, total, bsz = data.device, num_train_steps(cfg), cfg.batch_size
    ckpt_every = max(1, round(cfg.checkpoint_every_kimg * 1000 / bsz))
    autocast = generator_autocast(device)  # bf16 on CUDA and on CPUs with native bf16
    with _progress_bar(progress) as bar:
        task = bar.add_task("generator", total=total * bsz / 1000, completed=start * bsz / 1000,
                            loss=float("nan"), ips=0.0)
        t0 = time.perf_counter()
        loss_sum, since = torch.zeros((), device=device), 0  # losses summed on the device
        for step in range(start, total):
            d = draw_step(gen, cfg, step, len(data), device).part(rank.slice(bsz))
            x0, y = data[d.idx], labels[d.idx]  # [B/W, C, R, R], [B/W]
            if d.flip is not None:
                x0 = torch.where(d.flip, x0.flip(3), x0)
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            with autocast:
                loss = gen.loss(x0, y, d, net)  # the family's objective
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(gen.parameters(), cfg.grad_clip)
            opt.step()
            ema_update(ema, gen, ema_beta(cfg, step))
            loss_sum += loss.detach()
            since += 1
            # the host reads the loss every LOSS_READ_STEPS steps, not every step (a read waits
            # for the GPU to drain, idling it while Python queues the next step), and before
            # every checkpoint, so a diverged state is never saved
            if since == LOSS_READ_STEPS or (step + 1) % ckpt_every == 0 or step + 1 == total:
                loss_value = float(rank.mean(loss_sum)) / since  # same value on every rank
                if not math.isfinite(loss_value):
                    raise SynthequivError(f"generator loss became {loss_value} at step {step}; "
                                          f"lower generator.lr (now {cfg.lr:g})")
                loss_sum.zero_()
                since = 0
                ips = (step + 1 - start) * bsz / (time.perf_counter() - t0)
                bar.update(task, completed=(step + 1) * bsz / 1000, loss=loss_value, ips=ips)
            if (step + 1) % ckpt_every == 0 and step + 1 < total:
                save(step + 1, finished=False)
    save(total, finished=True)


def _progress_bar(enabled: bool):
    from synthequiv.runtime.progress import (
        kimg_bar,  # a bar on a terminal, log lines every N kimg otherwise
    )

    return kimg_bar(enabled)


def load_generator(out_dir: Path, device: torch.device | str = "cpu",
                   allow_unfinished: bool = False, compile: bool = False,
                   builder: Builder = UNET) -> nn.Module:
    """The EMA weights of out_dir/checkpoint.pt, in eval mode on `device`; `compile` runs the
    backbone through torch.compile (sampling calls it on one fixed shape: one compilation).
    `builder`: the checkpoint's family's (families.load_generator picks it from the file)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    state = read_checkpoint(path, "cpu", mmap=True)  # only the EMA weights are read
    if not state["finished"] and not allow_unfinished:
        raise SynthequivError(f"generator in {out_dir} has not finished training "
                              f"(step {state['step']}); rerun training to resume it")
    family = checkpoint_family(state)
    if family != builder.name:
        raise SynthequivError(f"generator in {out_dir} was trained by the {family} family, "
                              f"not {builder.name} (load it with families.load_generator)")
    try:
        gen = builder.build(state)
        gen.load_state_dict(state["ema"])
    except (TypeError, KeyError, ValueError, RuntimeError) as exc:  # damaged or foreign entries
        raise SynthequivError(f"generator checkpoint {path} does not fit its own architecture "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0]}); delete it "
                              "to train again") from exc
    gen = gen.to(device).eval().requires_grad_(False)
    if use_compile(compile, device):
        gen.backbone.compile()
    return gen


def use_compile(requested: bool, device: torch.device | str) -> bool:
    """`compile` where torch.compile can run on `device`; where it cannot (no Triton, a GPU
    older than Volta, no C++ compiler on a CPU) one log line says so and the network runs
    eager (same numbers up to rounding), so a preset that compiles also runs there."""
    device = torch.device(device)
    why = compile_unavailable(device.type, device.index) if requested else None
    if why is not None:
        from synthequiv.runtime.runlog import info

        if why not in _COMPILE_WARNED:
            _COMPILE_WARNED.add(why)
            info(f"compile: off on {device} ({why}); the generator runs eager")
    return requested and why is None


_COMPILE_WARNED: set[str] = set()
