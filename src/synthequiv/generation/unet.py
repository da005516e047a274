"""The unet family: diffusers `UNet2DModel` backbones in the DDPM `Generator` wrapper.

  presets    GENERATOR_PRESETS (8/16/32/64 px and 32px-small), `resolve_preset` by image side
  wrapper    `Generator`: dataset images ↔ the preset's square model space, the null class
             for classifier-free guidance, the DDPM noise schedule; `loss` is `diffusion_loss`
  builder    `UNET`: what generator.train_generator / load_generator need to make the network

The wrapper does not care what the backbone is: the dit family (dit.py) puts a DiT in it.
Training, checkpoints and sampling are shared (generator.py, checkpoint.py, sampling.py).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from synthequiv.generation.config import PREDICTIONS  # noqa: F401 (re-exported)
from synthequiv.utils import SynthequivError

if TYPE_CHECKING:  # annotations only: generator.py imports this module
    from synthequiv.generation.generator import StepDraws


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


class PixelWrapper(nn.Module):
    """What every family's diffusion wrapper shares: the backbone, the dataset ↔ model-space
    mapping, the null class and classifier-free guidance; forward returns a tensor always.

    Model space: float [N, C, R, R] in [-1, 1] at the preset resolution R. Images smaller than
    R are zero-padded (black) around the centre, larger ones resized; `decode` undoes either.
    A family's wrapper adds forward(x, t, labels), draw_t (training noise levels), loss and
    time_dtype (what `t` holds).
    """

    def __init__(self, backbone: nn.Module, num_classes: int, image_shape: tuple[int, int, int],
                 resolution: int):
        super().__init__()
        self.backbone = backbone
        self.num_classes = num_classes
        self.image_shape = tuple(int(s) for s in image_shape)  # dataset (C, H, W)
        self.resolution = resolution

    @property
    def null_class(self) -> int:
        return self.num_classes

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


class Generator(PixelWrapper):
    """The DDPM wrapper (unet and dit families): backbone + data mapping + null class + noise
    schedule; the backbone is called as backbone(x_t, t, class_labels=y).sample."""

    def __init__(self, backbone: nn.Module, num_classes: int, image_shape: tuple[int, int, int],
                 resolution: int, prediction: str = "v_prediction",
                 beta_schedule: str = "squaredcos_cap_v2", num_train_timesteps: int = 1000):
        super().__init__(backbone, num_classes, image_shape, resolution)
        self.prediction = prediction
        self.beta_schedule = beta_schedule
        self.num_train_timesteps = num_train_timesteps
        self._train_scheduler = None  # made on first use (diffusers import), not a module

    time_dtype = torch.long  # what forward's `t` holds: integer DDPM timesteps

    def draw_t(self, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        """Training timesteps int64 [n], uniform over the schedule (`draw_step` calls this)."""
        return torch.randint(0, self.num_train_timesteps, (n,), generator=g, device=device)

    def loss(self, x0: torch.Tensor, labels: torch.Tensor, d: StepDraws,
             net: nn.Module | None = None) -> torch.Tensor:
        """The training loss of one step (`diffusion_loss` under this model's schedule)."""
        if self._train_scheduler is None:
            from diffusers import DDPMScheduler  # heavy import, only when training

            self._train_scheduler = DDPMScheduler(**self.scheduler_config())
        return diffusion_loss(self, x0, labels, d, self._train_scheduler, net)

    def scheduler_config(self) -> dict:
        """Keyword arguments shared by every diffusers scheduler built for this model."""
        return {"num_train_timesteps": self.num_train_timesteps,
                "beta_schedule": self.beta_schedule, "prediction_type": self.prediction}

    def forward(self, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Model output (ε or v, per `prediction`) [N, C, R, R]; labels may hold the null class."""
        return self.backbone(x_t, t, class_labels=labels).sample


def make_generator(preset: str | BackbonePreset, num_classes: int,
                   image_shape: tuple[int, int, int], prediction: str) -> Generator:
    """A freshly initialised Generator; `preset` is a GENERATOR_PRESETS key or a preset."""
    if isinstance(preset, str):
        preset = GENERATOR_PRESETS[preset]
    backbone = build_backbone(preset, image_shape[0], num_classes)
    return Generator(backbone, num_classes, image_shape, preset.resolution, prediction)



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


# ----------------------------------------------------------------------------- builder


def as_tuples(d: dict) -> dict:
    """A stored architecture dict with its lists back as tuples (checkpoints hold lists)."""
    return {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}


class UNetBuilder:
    """The unet family's networks: a GENERATOR_PRESETS UNet in the DDPM `Generator`."""

    name = "unet"

    def resolve_preset(self, name: str, image_shape: tuple[int, int, int]) -> str:
        return resolve_preset(name, image_shape)

    def architecture(self, preset: str) -> dict:
        return dataclasses.asdict(GENERATOR_PRESETS[preset])

    def build(self, meta: dict) -> Generator:
        return make_generator(BackbonePreset(**as_tuples(meta["backbone"])), meta["num_classes"],
                              tuple(meta["image_shape"]), meta["config"]["prediction"])


UNET = UNetBuilder()

