"""The edm family: Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
Generative Models", around today's UNet presets.

  preconditioning  D_θ(x; σ) = c_skip(σ)·x + c_out(σ)·F_θ(c_in(σ)·x; c_noise(σ))   (Table 1)
                     c_skip = σ_data² / (σ² + σ_data²)      c_out = σ·σ_data / √(σ² + σ_data²)
                     c_in   = 1 / √(σ² + σ_data²)           c_noise = ¼·ln σ
  training         ln σ ~ N(P_mean, P_std²); loss λ(σ)·‖D_θ(y + n; σ) − y‖², n ~ N(0, σ²I),
                   λ(σ) = (σ² + σ_data²) / (σ·σ_data)², so every σ starts with unit loss
  sampling         Algorithm 2: Heun's 2nd-order method on the probability-flow ODE over
                   σ_i = (σ_max^(1/ρ) + i/(N−1)·(σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ, σ_N = 0, with
                   optional churn (S_churn: noise added back at each step, γ_i ≤ √2 − 1);
                   `euler` takes the first-order step only (N evaluations, not 2N − 1)

F_θ is a GENERATOR_PRESETS UNet with num_classes + 1 class embeddings (the last is the null
class), and classifier-free guidance mixes D_θ's conditional and null-class outputs. Settings
(generator.edm: P_mean, P_std, σ_data, σ_min, σ_max, ρ) are in the model's units, images in
[-1, 1]. Per-image seeds as sampling.py: image i's initial noise and its churn noise come from
its own generator, so image i is the same whatever the batch. Training, EMA, checkpoints,
batched groups and DDP are the shared ones (generator.py, gengroup.py, distributed.py).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

from synthequiv.generation.config import EDM_SAMPLER_NAMES
from synthequiv.generation.family import DiffusionFamily
from synthequiv.generation.generator import EDMConfig, GeneratorConfig
from synthequiv.generation.sampling import SampleConfig, SamplerSet
from synthequiv.generation.unet import (
    BackbonePreset,
    PixelWrapper,
    UNetBuilder,
    as_tuples,
    build_backbone,
)
from synthequiv.utils import SynthequivError, check_positive

if TYPE_CHECKING:
    from synthequiv.generation.generator import StepDraws
    from synthequiv.generation.sampling import BlockNet

# EDM's stochastic-sampler constants (Table 5's defaults): churn acts on every σ, with unit noise
S_TMIN, S_TMAX, S_NOISE = 0.0, math.inf, 1.0


# ----------------------------------------------------------------------------- preconditioning


def precond(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) of Table 1 for σ (any shape, float)."""
    s2, d2 = sigma**2, sigma_data**2
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / (s2 + d2).sqrt()
    c_in = 1 / (s2 + d2).sqrt()
    c_noise = sigma.log() / 4
    return c_skip, c_out, c_in, c_noise


def loss_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """λ(σ) = (σ² + σ_data²) / (σ·σ_data)²: the inverse of c_out², unit loss at every σ."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


class EDMPrecond(PixelWrapper):
    """D_θ(x; σ) around a UNet backbone F_θ; forward(x [N, C, R, R], σ [N], labels [N])."""

    time_dtype = torch.float32  # forward's second argument is σ, not a timestep

    def __init__(self, backbone: nn.Module, num_classes: int, image_shape: tuple[int, int, int],
                 resolution: int, edm: EDMConfig):
        super().__init__(backbone, num_classes, image_shape, resolution)
        self.edm = edm

    def forward(self, x: torch.Tensor, sigma: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        sigma = sigma.float().reshape(-1, 1, 1, 1).expand(len(x), 1, 1, 1)  # [N, 1, 1, 1]
        c_skip, c_out, c_in, c_noise = precond(sigma, self.edm.sigma_data)
        f = self.backbone(c_in * x, c_noise.flatten(), class_labels=labels).sample
        return c_skip * x + c_out * f.float()  # float32 even under autocast

    def draw_t(self, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
        """Training noise levels σ [n]: ln σ ~ N(P_mean, P_std²)."""
        ln_sigma = torch.randn(n, generator=g, device=device) * self.edm.P_std + self.edm.P_mean
        return ln_sigma.exp()

    def loss(self, x0: torch.Tensor, labels: torch.Tensor, d: StepDraws,
             net: nn.Module | None = None) -> torch.Tensor:
        """λ(σ)·‖D(y + n; σ) − y‖², averaged; y = x0 [B, C, R, R], n = σ·ε, `d.drop` rows get
        the null class (CFG)."""
        y = torch.where(d.drop, torch.full_like(labels, self.null_class), labels)
        sigma = d.t.float().reshape(-1, 1, 1, 1)  # [B, 1, 1, 1]
        denoised = (net or self)(x0 + sigma * d.eps, d.t.float(), y)
        return (loss_weight(sigma, self.edm.sigma_data) * (denoised - x0) ** 2).mean()


# ----------------------------------------------------------------------------- sampler


def sigma_steps(n: int, sigma_min: float, sigma_max: float, rho: float) -> list[float]:
    """σ_0 = σ_max > … > σ_{n−1} = σ_min, then σ_n = 0 (eq. 5), as float64 Python floats."""
    if n == 1:
        return [sigma_max, 0.0]
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return [(a + i / (n - 1) * (b - a)) ** rho for i in range(n)] + [0.0]


@torch.no_grad()
def edm_sampler(gen: EDMPrecond, labels: torch.Tensor, rngs: list[torch.Generator],
                cfg: SampleConfig, net: BlockNet) -> torch.Tensor:
    """Algorithm 2 (heun) or its Euler step alone (euler), N = cfg.steps; x_0 ~ N(0, σ_0²I)
    per image from its own generator. Returns float [n, C, R, R] in model space."""
    e, n_steps = gen.edm, cfg.steps
    t = sigma_steps(n_steps, e.sigma_min, e.sigma_max, e.rho)
    shape = (1, gen.image_shape[0], gen.resolution, gen.resolution)

    def noise() -> torch.Tensor:  # one draw per image, from its own generator: [n, C, R, R]
        return torch.cat([torch.randn(shape, generator=g) for g in rngs]).to(labels.device)

    def denoise(x: torch.Tensor, sigma: float) -> torch.Tensor:  # D_θ(x; σ), guided
        return net(x, torch.tensor(sigma), labels)

    x = noise() * t[0]
    gamma_max = min(cfg.churn / n_steps, math.sqrt(2) - 1)
    for i in range(n_steps):
        t_cur, t_next = t[i], t[i + 1]
        gamma = gamma_max if S_TMIN <= t_cur <= S_TMAX else 0.0
        t_hat = t_cur + gamma * t_cur
        x_hat = x + math.sqrt(t_hat**2 - t_cur**2) * S_NOISE * noise() if gamma > 0 else x
        d = (x_hat - denoise(x_hat, t_hat)) / t_hat  # dx/dσ at t̂
        x = x_hat + (t_next - t_hat) * d  # Euler step
        if cfg.sampler == "heun" and t_next > 0:  # 2nd-order correction
            d_prime = (x - denoise(x, t_next)) / t_next
            x = x_hat + (t_next - t_hat) * (0.5 * d + 0.5 * d_prime)
    return x


EDM_SAMPLERS = SamplerSet(EDM_SAMPLER_NAMES, edm_sampler, churn=True)


# ----------------------------------------------------------------------------- family


class EDMBuilder(UNetBuilder):
    """EDMPrecond around a GENERATOR_PRESETS UNet (unet's presets, resolved as unet's)."""

    name = "edm"

    def build(self, meta: dict) -> EDMPrecond:
        preset = BackbonePreset(**as_tuples(meta["backbone"]))
        shape = tuple(meta["image_shape"])
        backbone = build_backbone(preset, shape[0], meta["num_classes"])
        return EDMPrecond(backbone, meta["num_classes"], shape, preset.resolution,
                          EDMConfig(**meta["config"]["edm"]))


def check_edm(cfg: GeneratorConfig) -> None:
    e = cfg.edm
    check_positive("generator.edm.P_std", e.P_std)
    check_positive("generator.edm.sigma_data", e.sigma_data)
    check_positive("generator.edm.sigma_min", e.sigma_min)
    check_positive("generator.edm.rho", e.rho)
    if not math.isfinite(e.P_mean):
        raise SynthequivError(f"generator.edm.P_mean must be finite, got {e.P_mean}")
    if not e.sigma_max > e.sigma_min:
        raise SynthequivError(f"generator.edm.sigma_max ({e.sigma_max}) must exceed "
                              f"sigma_min ({e.sigma_min})")


EDM = EDMBuilder()
FAMILY = DiffusionFamily(EDM, EDM_SAMPLERS, check_edm)
