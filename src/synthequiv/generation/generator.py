"""Generator stage: class-conditional diffusion on a small labelled image set.

  backbone   diffusers `UNet2DModel` with class embeddings, size presets in GENERATOR_PRESETS
  wrapper    `Generator`: maps dataset images to the preset's square resolution and back,
             owns the null class for classifier-free guidance and the noise schedule
  training   `train_generator`: DDPM objective (v- or ε-prediction, cosine schedule), Adam with
             linear warm-up, EMA with a half-life in k images, atomic resumable checkpoints
  loading    `load_generator`: the EMA weights in eval mode

Every random draw of training step k comes from a generator seeded by (seed, k), so a run
resumed from a checkpoint continues exactly as an uninterrupted one would. Under DDP
(distributed.py) every rank makes the same draws for the global batch and trains on its slice,
so W ranks take the step one process would (up to float summation order).

Length (~555 lines): the backbone presets, the diffusion wrapper, the training loop and the
checkpoint format are one unit (a checkpoint is only meaningful with the code that wrote it);
sampling and distributed training are in sampling.py and distributed.py.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from synthequiv.generation.ranks import Rank, check_split, current
from synthequiv.utils import (
    SynthequivError,
    atomic_torch_save,
    check_positive,
    compile_unavailable,
    generator_autocast,
    stable_hash,
    tensor_digest,
)

CHECKPOINT_NAME = "checkpoint.pt"
PREDICTIONS = ("epsilon", "v_prediction")

# ----------------------------------------------------------------------------- backbone presets


@dataclass(frozen=True)
class BackbonePreset:
    """A UNet2DModel size. Levels run from full resolution down, halving at each level."""

    resolution: int  # square side the backbone runs at (inputs are padded/resized to it)
    block_out_channels: tuple[int, ...]  # channels per level
    attention: tuple[bool, ...]  # self-attention blocks per level
    layers_per_block: int = 1  # ResNet blocks per level (down path; up path gets one more)
    mid_attention: bool = True  # attention in the bottleneck
    norm_num_groups: int = 8
    attention_head_dim: int = 32
    dropout: float = 0.0


GENERATOR_PRESETS: dict[str, BackbonePreset] = {
    # digits 8×8, 0.65M params: two levels (8, 4 px), one ResNet block each, attention only
    # in the 4-px bottleneck; sized on CPU for the ≤ 1 min target (benchmarks/generator.py)
    "8px": BackbonePreset(8, (32, 64), (False, False), layers_per_block=1),
    # 9–16 px, 4.4M: three levels (16, 8, 4 px), attention at 4 px
    "16px": BackbonePreset(16, (64, 128, 128), (False, False, True), layers_per_block=1),
    # 17–32 px (MNIST 28 padded, CIFAR 32), 36M: DDPM's CIFAR-10 net, attention at 16 px.
    # GPU-sized; train it with GPU settings (DDPM: lr 2e-4, EMA over hundreds of kimg)
    "32px": BackbonePreset(32, (128, 256, 256, 256), (False, True, False, False),
                           layers_per_block=2, norm_num_groups=32, attention_head_dim=64,
                           dropout=0.1),
    # 33–64 px (and larger, resized down), 53M: attention at 16 and 8 px
    "64px": BackbonePreset(64, (128, 256, 256, 384), (False, False, True, True),
                           layers_per_block=2, norm_num_groups=32, attention_head_dim=64,
                           dropout=0.1),
    # not chosen by auto, 1.1M: a 32-px net ~15x faster than "32px", for MNIST on a CPU;
    # MNIST B(20) fidelity 0.700 at 25.6 kimg, 0.844 at 51.2 (benchmarks/generator.py --study)
    "32px-small": BackbonePreset(32, (32, 64, 64), (False, False, False), layers_per_block=1),
}
AUTO_PRESETS = ("8px", "16px", "32px", "64px")  # what preset="auto" picks from, by image side


def resolve_preset(name: str, image_shape: tuple[int, int, int]) -> str:
    """'auto' → the smallest preset at least as large as the image; else check the name."""
    if name != "auto":
        if name not in GENERATOR_PRESETS:
            raise SynthequivError(
                f"unknown generator preset '{name}' (use auto or {', '.join(GENERATOR_PRESETS)})")
        return name
    side = max(image_shape[1:])
    fits = [k for k in AUTO_PRESETS if GENERATOR_PRESETS[k].resolution >= side]
    return fits[0] if fits else AUTO_PRESETS[-1]  # larger images are resized down


def build_backbone(preset: BackbonePreset, channels: int, num_classes: int) -> nn.Module:
    """UNet2DModel with num_classes + 1 class embeddings (the last one is the null class)."""
    from diffusers import UNet2DModel

    down = tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in preset.attention)
    up = tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(preset.attention))
    return UNet2DModel(
        sample_size=preset.resolution, in_channels=channels, out_channels=channels,
        block_out_channels=preset.block_out_channels, down_block_types=down, up_block_types=up,
        layers_per_block=preset.layers_per_block, add_attention=preset.mid_attention,
        norm_num_groups=preset.norm_num_groups, attention_head_dim=preset.attention_head_dim,
        dropout=preset.dropout, num_class_embeds=num_classes + 1,
    )


# ----------------------------------------------------------------------------- diffusion wrapper


class Generator(nn.Module):
    """Backbone + data mapping + null class + noise schedule; forward returns a tensor always.

    Model space: float [N, C, R, R] in [-1, 1] at the preset resolution R. Images smaller than
    R are zero-padded (black) around the centre, larger ones resized; `decode` undoes either.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, image_shape: tuple[int, int, int],
                 resolution: int, prediction: str = "v_prediction",
                 beta_schedule: str = "squaredcos_cap_v2", num_train_timesteps: int = 1000):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.image_shape = tuple(int(s) for s in image_shape)  # dataset (C, H, W)
        self.resolution = resolution
        self.prediction = prediction
        self.beta_schedule = beta_schedule
        self.num_train_timesteps = num_train_timesteps

    @property
    def null_class(self) -> int:
        return self.num_classes

    def scheduler_config(self) -> dict:
        """Keyword arguments shared by every diffusers scheduler built for this model."""
        return {"num_train_timesteps": self.num_train_timesteps,
                "beta_schedule": self.beta_schedule, "prediction_type": self.prediction}

    def _pads(self) -> tuple[int, int, int, int]:
        _, h, w = self.image_shape
        r = self.resolution
        return ((r - w) // 2, r - w - (r - w) // 2, (r - h) // 2, r - h - (r - h) // 2)

    def _fits(self) -> bool:
        return max(self.image_shape[1:]) <= self.resolution

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [N, C, H, W] → float [N, C, R, R] in [-1, 1]."""
        x = images.float() / 127.5 - 1.0
        if self._fits():
            return F.pad(x, self._pads(), value=-1.0)  # -1 is black, as MNIST's border
        return F.interpolate(x, size=(self.resolution,) * 2, mode="bilinear", antialias=True,
                             align_corners=False)

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        """float [N, C, R, R] → uint8 [N, C, H, W] at the dataset's shape."""
        _, h, w = self.image_shape
        if self._fits():
            left, _, top, _ = self._pads()
            x = x[:, :, top:top + h, left:left + w]
        else:
            x = F.interpolate(x.float(), size=(h, w), mode="bilinear", antialias=True,
                              align_corners=False)
        return ((x.float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Model output (ε or v, per `prediction`) [N, C, R, R]; labels may hold the null class."""
        return self.backbone(x_t, t, class_labels=labels).sample

    def guided(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor,
               cfg_scale: float) -> torch.Tensor:
        """Classifier-free guidance: uncond + s·(cond − uncond); s=1 and s=0 need one pass."""
        if cfg_scale == 1.0:
            return self(x_t, t, labels)
        null = torch.full_like(labels, self.null_class)
        if cfg_scale == 0.0:
            return self(x_t, t, null)
        out = self(torch.cat([x_t, x_t]), torch.cat([t, t]), torch.cat([labels, null]))
        cond, uncond = out.chunk(2)
        return uncond + cfg_scale * (cond - uncond)


def make_generator(preset: str | BackbonePreset, num_classes: int,
                   image_shape: tuple[int, int, int], prediction: str) -> Generator:
    """A freshly initialised Generator; `preset` is a GENERATOR_PRESETS key or a preset."""
    if isinstance(preset, str):
        preset = GENERATOR_PRESETS[preset]
    backbone = build_backbone(preset, image_shape[0], num_classes)
    return Generator(backbone, num_classes, image_shape, preset.resolution, prediction)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GeneratorConfig:
    """Defaults: the digits reference (8 px preset, 20 images/class) — 400 steps of 64 images,
    ≈ 0.98 conditional fidelity, ≈ 6× less compute than the plain diffusers recipe (ε, 1000
    steps of 128, lr 1e-3); measured in benchmarks/generator.py. GPU-sized presets (32/64 px)
    want longer runs and a smaller lr, set by the study presets (e.g. lr 2e-4, 100s of kimg)."""

    preset: str = "auto"  # key in GENERATOR_PRESETS, or auto = by image side (8/16/32/64 px)
    train_kimg: float = 25.6  # training length, thousands of images seen (400 steps × 64)
    batch_size: int = 64  # smaller batches, more steps: better fidelity per image seen here
    lr: float = 4e-3  # Adam peak learning rate (after warm-up)
    warmup_kimg: float = 3.2  # linear lr warm-up from 0 over the first 50 steps
    ema_halflife_kimg: float = 2.5  # EMA half-life (EDM style), thousands of images
    ema_rampup_ratio: float = 0.1  # early on, half-life ≤ ratio × images seen (0 = off)
    label_dropout: float = 0.1  # prob. of replacing the label by the null class (CFG)
    grad_clip: float = 1.0  # max global gradient norm (0 = off)
    # v_prediction: target v = √ᾱ·ε − √(1−ᾱ)·x0; with the cosine schedule and a short run it
    # reached 0.98 fidelity where ε-prediction reached 0.76 (same recipe, digits, measured)
    prediction: str = "v_prediction"
    xflip: bool = False  # random horizontal flips (never for digits/letters)
    checkpoint_every_kimg: float = 6.4  # also written at the end
    seed: int = 0


def check_config(cfg: GeneratorConfig) -> None:
    check_positive("generator.train_kimg", cfg.train_kimg)
    check_positive("generator.batch_size", cfg.batch_size)
    check_positive("generator.lr", cfg.lr)
    check_positive("generator.warmup_kimg", cfg.warmup_kimg, allow_zero=True)
    check_positive("generator.ema_halflife_kimg", cfg.ema_halflife_kimg, allow_zero=True)
    check_positive("generator.ema_rampup_ratio", cfg.ema_rampup_ratio, allow_zero=True)
    check_positive("generator.grad_clip", cfg.grad_clip, allow_zero=True)
    check_positive("generator.checkpoint_every_kimg", cfg.checkpoint_every_kimg)
    if not 0.0 <= cfg.label_dropout < 1.0:
        raise SynthequivError(f"generator.label_dropout must be in [0, 1), got {cfg.label_dropout}")
    if cfg.prediction not in PREDICTIONS:
        raise SynthequivError(
            f"generator.prediction must be one of {', '.join(PREDICTIONS)}, got '{cfg.prediction}'")


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
    t: torch.Tensor  # int64 [B], timesteps
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
    t = torch.randint(0, gen.num_train_timesteps, (bsz,), generator=g, device=device)
    shape = (bsz, gen.image_shape[0], gen.resolution, gen.resolution)
    eps = torch.randn(shape, generator=g, device=device)
    drop = torch.rand(bsz, generator=g, device=device) < cfg.label_dropout
    return StepDraws(idx, flip, t, eps, drop)


def diffusion_loss(gen: Generator, x0: torch.Tensor, labels: torch.Tensor, d: StepDraws,
                   scheduler, net: nn.Module | None = None) -> torch.Tensor:
    """DDPM objective: x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε, regress ε or v = √ᾱ_t·ε − √(1−ᾱ_t)·x0.

    x0: float [B, C, R, R] in [-1, 1]; labels: int64 [B]; the `d.drop` rows get the null class
    so the same network is also the unconditional model (CFG). `net` runs the model (a DDP
    wrapper of `gen`, or a compiled one); `gen` answers schedule questions.
    """
    y = torch.where(d.drop, torch.full_like(labels, gen.null_class), labels)
    x_t = scheduler.add_noise(x0, d.eps, d.t)
    target = d.eps if gen.prediction == "epsilon" else scheduler.get_velocity(x0, d.eps, d.t)
    return F.mse_loss((net or gen)(x_t, d.t, y).float(), target)


# ----------------------------------------------------------------------------- checkpoints


def run_meta(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              cfg: GeneratorConfig) -> dict:
    """Everything a checkpoint must match to be resumed (or reused) by this call."""
    shape = [int(s) for s in images.shape[1:]]
    preset = resolve_preset(cfg.preset, tuple(shape))
    return {"format": 1, "config": dataclasses.asdict(cfg), "num_classes": int(num_classes),
            "image_shape": shape, "preset": preset,
            "resolution": GENERATOR_PRESETS[preset].resolution,
            # the architecture itself, so a checkpoint loads even if the registry changes
            "backbone": dataclasses.asdict(GENERATOR_PRESETS[preset]),
            "data_digest": tensor_digest(images, labels)}


# what train_generator (resume) and load_generator read from a checkpoint
CHECKPOINT_KEYS = ("config", "num_classes", "image_shape", "preset", "backbone", "model", "ema",
                   "optimizer", "step", "finished")


def read_checkpoint(path: Path, device: torch.device | str = "cpu", mmap: bool = False) -> dict:
    """The checkpoint's entries, checked. `mmap` (CPU only) maps the file instead of reading
    it: a tensor's bytes are read when it is used, so a caller that copies out the EMA weights
    (sampling) or reads only the metadata (is it finished? which setup?) skips the model and
    Adam tensors — three quarters of a 32-px checkpoint. Its tensors are copy-on-write views
    of the file: for callers that copy them, not for live training state."""
    try:
        state = torch.load(path, map_location=device, weights_only=True,
                           mmap=mmap and torch.device(device).type == "cpu")
    except FileNotFoundError as exc:
        raise SynthequivError(f"no generator checkpoint at {path} (train one first)") from exc
    except Exception as exc:  # corrupt zip, foreign pickle, truncated file
        raise SynthequivError(f"cannot read generator checkpoint {path}: {exc}") from exc
    if not isinstance(state, dict) or state.get("format") != 1:
        raise SynthequivError(f"{path} is not a synthequiv generator checkpoint")
    missing = [k for k in CHECKPOINT_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["backbone"], dict):
        raise SynthequivError(f"generator checkpoint {path} is damaged (missing "
                              f"{', '.join(missing) or 'config/backbone mapping'}); delete it "
                              "to train again")
    return state


def existing_checkpoint(path: Path, meta: dict, device: torch.device | str = "cpu",
                        mmap: bool = False) -> dict | None:
    """The checkpoint at `path`, if any, checked against this run (`run_meta`): one made with
    another setup is an error, never silently resumed or reused. `mmap`: read_checkpoint's."""
    if not Path(path).exists():
        return None
    state = read_checkpoint(path, device, mmap)
    _check_compatible(path, state, meta)
    return state


def _check_compatible(path: Path, state: dict, meta: dict) -> None:
    diff = [k for k in meta if k != "config" and state.get(k) != meta[k]]
    diff += [f"config.{k}" for k, v in meta["config"].items() if state["config"].get(k) != v]
    if diff:
        raise SynthequivError(f"{path} was made with another generator setup (differs in "
                              f"{', '.join(diff)}); use a new directory or delete it")


def _save_checkpoint(path: Path, meta: dict, gen: Generator, ema: Generator, opt, step: int,
                     finished: bool, rank: Rank) -> None:
    """Every rank checks (they hold the same weights, so they fail together); rank 0 writes."""
    if not all(torch.isfinite(p).all() for p in ema.parameters()):
        raise SynthequivError("generator weights became NaN/inf; lower generator.lr")
    if rank.main:
        atomic_torch_save({**meta, "model": gen.state_dict(), "ema": ema.state_dict(),
                           "optimizer": opt.state_dict(), "step": step, "finished": finished},
                          path)
    rank.barrier()  # no rank reads or moves on before the file is whole


# ----------------------------------------------------------------------------- training


def init_generator(meta: dict, cfg: GeneratorConfig) -> Generator:
    """The freshly initialised network of the run `meta` describes (`run_meta`), its weights
    drawn from cfg.seed; the caller's RNG is untouched."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        return make_generator(meta["preset"], meta["num_classes"], tuple(meta["image_shape"]),
                              cfg.prediction)


def train_generator(images: torch.Tensor, labels: torch.Tensor, num_classes: int,
                    cfg: GeneratorConfig, out_dir: Path, device: torch.device | str = "cpu",
                    progress: bool = True, compile: bool = False) -> Path:
    """Train (or resume) a class-conditional generator; return out_dir/checkpoint.pt.

    images: uint8 [N, C, H, W]; labels: int64 [N] in [0, num_classes). A finished checkpoint
    with the same config, classes, shape and data is returned at once; a different one is an
    error. The checkpoint is rewritten atomically every checkpoint_every_kimg and at the end.
    Called on every rank of an initialised process group (distributed.py), it trains with DDP;
    `compile` runs the network through torch.compile (same numbers up to rounding).
    """
    check_config(cfg)
    check_data(images, labels, num_classes)
    rank, device = current(), torch.device(device)
    check_split(cfg.batch_size, rank.world)
    path = Path(out_dir) / CHECKPOINT_NAME
    meta = run_meta(images, labels, num_classes, cfg)
    state = existing_checkpoint(path, meta, device)
    if state is not None and state["finished"]:
        return path

    gen = init_generator(meta, cfg)
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


# Adam's fused CUDA kernel (one launch for every parameter) instead of the multi-tensor one: the
# same update up to rounding and the same state_dict, but off: on an H200 it measured 0.89× the
# default for the cifar10 net (benchmarks/stages.py, which toggles it)
ADAM_FUSED_ON_CUDA = False


def make_adam(params, lr: float, device: torch.device) -> torch.optim.Adam:
    fused = True if device.type == "cuda" and ADAM_FUSED_ON_CUDA else None
    return torch.optim.Adam(params, lr=lr, fused=fused)


LOSS_READ_STEPS = 25  # training steps between host reads of the (device-summed) loss


def _train_loop(gen: Generator, net: nn.Module, ema: Generator, opt: torch.optim.Optimizer,
                data: torch.Tensor, labels: torch.Tensor, cfg: GeneratorConfig, start: int,
                save, progress: bool, rank: Rank):
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(**gen.scheduler_config())
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
                loss = diffusion_loss(gen, x0, y, d, scheduler, net)
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
    from synthequiv.orchestration.progress import (
        kimg_bar,  # a bar on a terminal, log lines every N kimg otherwise
    )

    return kimg_bar(enabled)


def load_generator(out_dir: Path, device: torch.device | str = "cpu",
                   allow_unfinished: bool = False, compile: bool = False) -> Generator:
    """The EMA weights of out_dir/checkpoint.pt, in eval mode on `device`; `compile` runs the
    backbone through torch.compile (sampling calls it on one fixed shape: one compilation)."""
    path = Path(out_dir) / CHECKPOINT_NAME
    state = read_checkpoint(path, "cpu", mmap=True)  # only the EMA weights are read
    if not state["finished"] and not allow_unfinished:
        raise SynthequivError(f"generator in {out_dir} has not finished training "
                              f"(step {state['step']}); rerun training to resume it")
    backbone = {k: tuple(v) if isinstance(v, list) else v for k, v in state["backbone"].items()}
    try:
        gen = make_generator(BackbonePreset(**backbone), state["num_classes"],
                             tuple(state["image_shape"]), state["config"]["prediction"])
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
        from synthequiv.orchestration.runlog import info

        if why not in _COMPILE_WARNED:
            _COMPILE_WARNED.add(why)
            info(f"compile: off on {device} ({why}); the generator runs eager")
    return requested and why is None


_COMPILE_WARNED: set[str] = set()
