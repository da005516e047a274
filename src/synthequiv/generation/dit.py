"""The dit family: a Diffusion Transformer (Peebles & Xie 2023) in pixel space, for small images.

  patchify     x [N, C, R, R] → tokens [N, T, p·p·C], T = (R/p)², then a linear embedding and
               fixed 2-D sin-cos positions; `unpatchify` is its inverse
  conditioning c = MLP(sinusoid(t)) + Embedding(y), y ∈ [0, K] with K the null class (CFG)
  blocks       adaLN-Zero: LayerNorm without affine, shift/scale/gate regressed from c by a
               zero-initialised linear layer, so every block starts as the identity
  output       adaLN shift/scale, a zero-initialised linear to p·p·C per token, unpatchify

The DiT sits in unet.py's DDPM `Generator` (v- or ε-prediction, cosine schedule, the DDPM
samplers), as DiT trains with a DDPM objective (it learns Σ as well, for ADM's sampler; the
few-step DPM-Solver++ used here needs no Σ, so the output has C channels). Size presets share
the unet family's names (8px … 64px, 32px-small), so a study preset's generator.preset works
for every family. Latent DiT (≥ 64 px through a VAE) is out of scope: no VAE ships offline.

Why a compact implementation and not diffusers' `DiTTransformer2DModel` (diffusers 0.42):
  - its `LabelEmbedding` drops labels itself in train mode (a random draw inside forward):
    label dropout here is a drawn part of the step (`generator.StepDraws.drop`), so a resumed
    run and a batched group (vmap: per-generator randomness) stay equal to a run alone;
  - its null class exists only with that dropout on; here the null class is always K;
  - its time embedding is fixed to the DDPM 1000-step range and its output to ADM's learned
    Σ layout (2·C channels unless told otherwise); here neither is needed.
The whole network is ~100 lines with the paper's symbols, vmappable (gengroup.py) and
checkpointed as a plain state_dict.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from synthequiv.generation.family import DiffusionFamily
from synthequiv.generation.sampling import DDPM_SAMPLERS
from synthequiv.generation.unet import AUTO_PRESETS, Generator, UNetBuilder, as_tuples
from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class DiTPreset:
    """A DiT size at one resolution (DiT's names: T = tiny (ours), S = small; /p = patch)."""

    resolution: int  # square side the model runs at (images are padded/resized to it)
    patch: int  # p: tokens are p×p patches, T = (resolution / p)²
    width: int  # hidden size d
    depth: int  # transformer blocks
    heads: int  # attention heads (width / heads per head)
    mlp_ratio: float = 4.0


DIT_PRESETS: dict[str, DiTPreset] = {
    # DiT-T/2 at 8 px: 16 tokens, d 96, 4 blocks (0.5M parameters: the unet 8px's size)
    "8px": DiTPreset(8, 2, 96, 4, 4),
    # DiT-T/2 at 16 px: 64 tokens, d 128, 6 blocks (1.3M)
    "16px": DiTPreset(16, 2, 128, 6, 4),
    # DiT-T/4 at 32 px: 64 tokens (MNIST on a CPU, as unet's 32px-small)
    "32px-small": DiTPreset(32, 4, 128, 6, 4),
    # DiT-S/2 at 32 px: 256 tokens, d 384, 12 blocks, 6 heads (33M): GPU-sized
    "32px": DiTPreset(32, 2, 384, 12, 6),
    # DiT-S/4 at 64 px: 256 tokens (pixel space; latent DiT is out of scope)
    "64px": DiTPreset(64, 4, 384, 12, 6),
}


# ----------------------------------------------------------------------------- patches


def patchify(x: torch.Tensor, p: int) -> torch.Tensor:
    """[N, C, H, W] → [N, (H/p)·(W/p), p·p·C], patches in row-major order."""
    n, c, h, w = x.shape
    x = x.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # [N, h, w, p, p, C]
    return x.reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(tokens: torch.Tensor, p: int, c: int, h: int, w: int) -> torch.Tensor:
    """[N, (H/p)·(W/p), p·p·C] → [N, C, H, W]: the inverse of `patchify`."""
    n = tokens.shape[0]
    x = tokens.reshape(n, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)  # [N, C, h, p, w, p]
    return x.reshape(n, c, h, w)


def sincos_2d(width: int, side: int) -> torch.Tensor:
    """Fixed 2-D sin-cos positions [side², width]: half the channels encode the row, half the
    column (DiT/MAE)."""
    quarter = width // 4
    omega = 1.0 / 10000 ** (torch.arange(quarter, dtype=torch.float64) / quarter)  # [d/4]
    pos = torch.arange(side, dtype=torch.float64)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # [side, side] each

    def enc(v: torch.Tensor) -> torch.Tensor:  # [side²] → [side², d/2]
        a = v.flatten()[:, None] * omega[None]
        return torch.cat([a.sin(), a.cos()], dim=1)

    out = torch.cat([enc(rows), enc(cols)], dim=1)  # [side², 4·(d/4)]
    return F.pad(out, (0, width - out.shape[1])).float()


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10000) -> torch.Tensor:
    """Sinusoidal features [N, dim] of timesteps t [N] (float or int)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device) / half)
    a = t.float()[:, None] * freqs[None]
    return torch.cat([a.cos(), a.sin()], dim=1)


# ----------------------------------------------------------------------------- network


class Out(NamedTuple):
    sample: torch.Tensor  # [N, C, R, R]: the backbone output the DDPM wrapper reads


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """adaLN: x [N, T, d] normalised, then scaled and shifted per sample ([N, d] each)."""
    return x * (1 + scale[:, None]) + shift[:, None]


class DiTBlock(nn.Module):
    def __init__(self, d: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv, self.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        hidden = int(d * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(hidden, d))
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))  # zeroed: adaLN-Zero

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [N, heads, T, d/heads]
        return self.proj(out.transpose(1, 2).reshape(n, t, d))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        shift1, scale1, gate1, shift2, scale2, gate2 = self.ada(c).chunk(6, dim=1)  # [N, d] each
        x = x + gate1[:, None] * self.attention(modulate(self.norm1(x), shift1, scale1))
        return x + gate2[:, None] * self.mlp(modulate(self.norm2(x), shift2, scale2))


class DiT(nn.Module):
    """forward(x [N, C, R, R], t [N], class_labels [N] in [0, K]) → Out(sample [N, C, R, R])."""

    def __init__(self, preset: DiTPreset, channels: int, num_classes: int):
        super().__init__()
        p, d, r = preset.patch, preset.width, preset.resolution
        self.p, self.c, self.r = p, channels, r
        self.embed = nn.Linear(p * p * channels, d)  # a patch's pixels → a token
        self.register_buffer("pos", sincos_2d(d, r // p)[None], persistent=False)  # [1, T, d]
        self.t_mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.y_embed = nn.Embedding(num_classes + 1, d)  # the last row is the null class
        self.blocks = nn.ModuleList(DiTBlock(d, preset.heads, preset.mlp_ratio)
                                    for _ in range(preset.depth))
        self.norm = nn.LayerNorm(d, elementwise_affine=False, eps=1e-6)
        self.ada = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))
        self.out = nn.Linear(d, p * p * channels)
        self._init()

    def _init(self) -> None:
        """DiT's initialisation: Xavier linears, N(0, 0.02) embeddings, adaLN and output zero."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.y_embed.weight, std=0.02)
        for m in (self.t_mlp[0], self.t_mlp[2]):
            nn.init.normal_(m.weight, std=0.02)
        for m in [b.ada[1] for b in self.blocks] + [self.ada[1], self.out]:
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor, class_labels: torch.Tensor) -> Out:
        t = t.reshape(-1).expand(len(x))  # a 0-d timestep serves the whole batch
        h = self.embed(patchify(x, self.p)) + self.pos  # [N, T, d]
        c = self.t_mlp(timestep_embedding(t).to(h.dtype)) + self.y_embed(class_labels)  # [N, d]
        for block in self.blocks:
            h = block(h, c)
        shift, scale = self.ada(c).chunk(2, dim=1)
        h = self.out(modulate(self.norm(h), shift, scale))  # [N, T, p·p·C]
        return Out(unpatchify(h, self.p, self.c, self.r, self.r))


# ----------------------------------------------------------------------------- family


def resolve_dit_preset(name: str, image_shape: tuple[int, int, int]) -> str:
    """'auto' → the smallest preset at least as large as the image (as unet's)."""
    if name != "auto":
        if name not in DIT_PRESETS:
            raise SynthequivError(f"unknown dit preset '{name}' (use auto or "
                                  f"{', '.join(DIT_PRESETS)})")
        return name
    side = max(image_shape[1:])
    fits = [k for k in AUTO_PRESETS if DIT_PRESETS[k].resolution >= side]
    return fits[0] if fits else AUTO_PRESETS[-1]


class DiTBuilder(UNetBuilder):
    """A DIT_PRESETS DiT in the DDPM `Generator` wrapper."""

    name = "dit"

    def resolve_preset(self, name: str, image_shape: tuple[int, int, int]) -> str:
        return resolve_dit_preset(name, image_shape)

    def architecture(self, preset: str) -> dict:
        return dataclasses.asdict(DIT_PRESETS[preset])

    def build(self, meta: dict) -> Generator:
        preset = DiTPreset(**as_tuples(meta["backbone"]))
        shape = tuple(meta["image_shape"])
        return Generator(DiT(preset, shape[0], meta["num_classes"]), meta["num_classes"], shape,
                         preset.resolution, meta["config"]["prediction"])


DIT = DiTBuilder()
FAMILY = DiffusionFamily(DIT, DDPM_SAMPLERS)
