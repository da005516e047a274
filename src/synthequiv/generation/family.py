"""The generator interface: what the study asks of a generator family, and the diffusion one.

`GeneratorFamily` is the protocol (train, load, sample with per-image seeds, cost per kimg,
plus what it supports); registry.py holds the registry `FAMILIES`. Every family in this
package is a `DiffusionFamily`: a `generator.Builder` (its size presets and network, trained
by the shared loop in generator.py, checkpoints in checkpoint.py) and a `sampling.SamplerSet`
(its sampler names and pure sampler function). A family need not be one: a test registers a
toy family that implements the protocol from scratch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from synthequiv.generation import sampling
from synthequiv.generation.generator import (
    Builder,
    GeneratorConfig,
    config_view,
    load_generator,
    train_generator,
)
from synthequiv.generation.gengroup import group_key, train_generators
from synthequiv.generation.sampling import DDPM_SAMPLERS, SampleConfig, SamplerSet
from synthequiv.generation.unet import UNET


class GeneratorFamily(Protocol):
    """A class-conditional generator family. A generator lives in one directory
    (out_dir/checkpoint.pt, written by `train`, atomically; a rerun resumes or returns it)."""

    name: str  # as in generator.family
    samplers: SamplerSet  # sampling.sampler names it accepts; the first is what auto means
    grouped: bool  # several generators train as one batched computation (gengroup.py)
    ddp: bool  # one generator trains on several processes (distributed.py)

    def check(self, cfg: GeneratorConfig) -> None: ...  # one-line errors, before any work

    def resolution(self, cfg: GeneratorConfig, image_shape: tuple[int, int, int]) -> int: ...

    def train(self, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
              cfg: GeneratorConfig, out_dir: Path, device: torch.device | str = "cpu",
              progress: bool = True, compile: bool = False) -> Path: ...

    def load(self, out_dir: Path, device: torch.device | str = "cpu",
             allow_unfinished: bool = False, compile: bool = False) -> nn.Module: ...

    def sample(self, model: nn.Module, labels: torch.Tensor, cfg: SampleConfig,
               device: torch.device | str = "cpu", progress: bool = True, index_offset: int = 0,
               description: str = "sampling") -> torch.Tensor: ...  # uint8 [N, C, H, W]

    def cost_per_kimg(self, cfg: GeneratorConfig, num_classes: int,
                      image_shape: tuple[int, int, int]) -> float: ...  # training GFLOP/kimg

    # a family with grouped = True also has group_key(images, num_classes, cfg) -> tuple
    # (equal keys may train together) and train_group(jobs, num_classes, cfgs, out_dirs,
    # device, progress) -> [checkpoint paths]; one with ddp = True trains through
    # generator.train_generator with its `builder` (distributed.py), as DiffusionFamily below


class DiffusionFamily:
    """A GeneratorFamily from a Builder (network + presets) and a SamplerSet; `checks` are the
    family's own config checks (e.g. EDM's σ range)."""

    def __init__(self, builder: Builder, samplers: SamplerSet,
                 checks: Callable[[GeneratorConfig], None] | None = None,
                 grouped: bool = True, ddp: bool = True):
        self.builder, self.samplers, self._checks = builder, samplers, checks
        self.name, self.grouped, self.ddp = builder.name, grouped, ddp
        self._flops: dict[tuple, float] = {}

    def check(self, cfg: GeneratorConfig) -> None:
        self.builder.resolve_preset(cfg.preset, (1, 8, 8))  # a named preset must exist
        if self._checks is not None:
            self._checks(cfg)

    def preset(self, cfg: GeneratorConfig, image_shape: tuple[int, int, int]) -> str:
        return self.builder.resolve_preset(cfg.preset, tuple(image_shape))

    def resolution(self, cfg: GeneratorConfig, image_shape: tuple[int, int, int]) -> int:
        return int(self.builder.architecture(self.preset(cfg, image_shape))["resolution"])

    def train(self, images, labels, num_classes, cfg, out_dir, device="cpu", progress=True,
              compile=False) -> Path:
        return train_generator(images, labels, num_classes, cfg, out_dir, device, progress,
                               compile, builder=self.builder)

    def group_key(self, images: torch.Tensor, num_classes: int, cfg: GeneratorConfig) -> tuple:
        return group_key(images, num_classes, cfg, self.builder)

    def train_group(self, jobs, num_classes, cfgs, out_dirs, device="cpu",
                    progress=True) -> list[Path]:
        """gengroup.train_generators with this family's networks."""
        return train_generators(jobs, num_classes, cfgs, out_dirs, device, progress,
                                builder=self.builder)

    def load(self, out_dir, device="cpu", allow_unfinished=False, compile=False) -> nn.Module:
        return load_generator(out_dir, device, allow_unfinished, compile, builder=self.builder)

    def sample(self, model, labels, cfg, device="cpu", progress=True, index_offset=0,
               description="sampling") -> torch.Tensor:
        return sampling.sample_images(model, labels, cfg, device, progress,
                                      index_offset=index_offset, description=description,
                                      samplers=self.samplers)

    def network(self, cfg: GeneratorConfig, num_classes: int,
                image_shape: tuple[int, int, int]) -> nn.Module:
        """A freshly built (untrained, unseeded) network of this config, for measuring."""
        preset = self.preset(cfg, image_shape)
        arch = self.builder.architecture(preset)
        meta = {"config": config_view(cfg), "num_classes": num_classes, "image_shape": list(image_shape),
                "preset": preset, "resolution": arch["resolution"], "backbone": arch}
        return self.builder.build(meta)

    def cost_per_kimg(self, cfg: GeneratorConfig, num_classes: int,
                      image_shape: tuple[int, int, int]) -> float:
        """Training GFLOP per 1,000 images: one image's forward pass counted by torch's
        FlopCounterMode, ×3 for forward + backward (the usual estimate), ×1,000."""
        key = (self.preset(cfg, image_shape), cfg.prediction, num_classes, tuple(image_shape))
        if key not in self._flops:
            self._flops[key] = 3 * 1000 * forward_gflop(self.network(cfg, num_classes,
                                                                     image_shape))
        return self._flops[key]


def forward_gflop(model: nn.Module) -> float:
    """GFLOP of one image's forward pass (conditional; the count does not depend on t)."""
    from torch.utils.flop_counter import FlopCounterMode  # a torch submodule, used only here

    c, r = model.image_shape[0], model.resolution
    x = torch.zeros(1, c, r, r)
    t = torch.ones(1, dtype=model.time_dtype)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x, t, torch.zeros(1, dtype=torch.long))
    return counter.get_total_flops() / 1e9


# the default family: diffusers' UNet2DModel in the DDPM wrapper (unet.py) with the DDPM
# samplers; here, not in unet.py, because this module imports unet's builder through generator
UNET_FAMILY = DiffusionFamily(UNET, DDPM_SAMPLERS)
