"""The generation stage's configs and their checks: the generator (every family's fields),
sampling and the open-set arm; SyntheticConfig, the view of one replicate the stage's
functions take instead of the study. Light (no torch), so the study's config parses and its
values are checked without loading the networks; the family-specific checks (families.py)
come after.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from synthequiv.inputs.sources import DataConfig
from synthequiv.utils import SynthequivError, check_positive

PREDICTIONS = ("epsilon", "v_prediction")  # the DDPM families' targets (unet.py, dit.py)

# ----------------------------------------------------------------------------- generator


@dataclass(frozen=True)
class EDMConfig:
    """The edm family's settings (Karras et al. 2022, Table 1), in the model's data units
    (images in [-1, 1]); read only when generator.family is edm (edm.py)."""

    P_mean: float = -1.2  # training noise levels: ln σ ~ N(P_mean, P_std²)
    P_std: float = 1.2
    sigma_data: float = 0.5  # the data's std the preconditioning assumes
    sigma_min: float = 0.002  # sampling starts at σ_max and ends at σ_min (then 0), with the
    sigma_max: float = 80.0  # ρ-warped spacing that puts more steps at low noise
    rho: float = 7.0


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
    # which generator family trains (families.py): unet = the DDPM UNet above, edm = EDM's
    # preconditioned UNet + Heun sampler (edm.py), dit = a pixel-space DiT (dit.py). `preset`
    # names the family's size presets; `prediction` applies to the DDPM families (unet, dit)
    family: str = "unet"
    edm: EDMConfig = field(default_factory=EDMConfig)


# the fields a family adds: they key a generator's artifacts only when the family is not unet,
# so a unet generator's keys and checkpoints are those made before families existed
FAMILY_FIELDS = ("family", "edm")


def config_view(cfg: GeneratorConfig) -> dict:
    """What identifies a generator's training: every field for unet except FAMILY_FIELDS
    (the keys of every earlier run stay valid); for another family, also its name and its
    own settings section (the field named after it, e.g. `edm`), if it has one."""
    view = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)
            if f.name not in FAMILY_FIELDS}
    if cfg.family != "unet":
        view["family"] = cfg.family
        section = getattr(cfg, cfg.family, None)
        if dataclasses.is_dataclass(section):
            view[cfg.family] = dataclasses.asdict(section)
    return view


def config_from_dict(d: dict) -> GeneratorConfig:
    """The inverse of dataclasses.asdict for GeneratorConfig (its `edm` section nested)."""
    return GeneratorConfig(**{**d, "edm": EDMConfig(**d.get("edm", {}))})


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


# ----------------------------------------------------------------------------- sampling

SAMPLERS = ("dpmpp", "ddim", "ddpm")  # the DDPM families' (unet, dit); the first is their auto
EDM_SAMPLER_NAMES = ("heun", "euler")  # the edm family's (edm.py); heun is its auto


@dataclass(frozen=True)
class SampleConfig:
    # auto = the generator family's default: dpmpp for unet and dit, heun for edm. DDPM
    # families: dpmpp (DPM-Solver++ 2M) | ddim | ddpm (ancestral, all 1000 steps);
    # edm: heun (EDM's 2nd-order, 2·steps − 1 evaluations) | euler (steps evaluations)
    sampler: str = "auto"
    # denoising steps = network evaluations per image (×2 with 0 ≠ CFG ≠ 1). 16: on the quick
    # study's generators every measure at 16 is within the sampling-seed spread of 25 and 50
    # (FD +0.04, recall −0.02; at 12 recall −0.04), at 0.64× the time of 25
    # (benchmarks/generators.py --steps, README); the other presets keep the 25 they
    # were measured with
    steps: int = 16
    cfg_scale: float = 1.0  # classifier-free guidance; 0 = unconditional, 1 = plain conditional
    batch_size: int = 256  # images denoised together, rounded up to whole network blocks
    seed: int = 0
    churn: float = 0.0  # EDM's S_churn (heun/euler only): 0 = the deterministic sampler


def check_sample_config(cfg: SampleConfig, names: Sequence[str] | None = None) -> None:
    """One-line errors; `names` = the family's samplers (None: any name, checked with the
    family's names by check_sampler)."""
    if names is not None and cfg.sampler not in ("auto", *names):
        raise SynthequivError(f"unknown sampler '{cfg.sampler}' for this generator family "
                              f"(use auto, {', '.join(names)})")
    if not isinstance(cfg.sampler, str) or not cfg.sampler:
        raise SynthequivError("sampling.sampler is empty (use auto)")
    check_positive("sampling.steps", cfg.steps)
    check_positive("sampling.batch_size", cfg.batch_size)
    if not math.isfinite(cfg.cfg_scale) or cfg.cfg_scale < 0:
        raise SynthequivError(f"sampling.cfg_scale must be >= 0, got {cfg.cfg_scale}")
    if not math.isfinite(cfg.churn) or cfg.churn < 0:
        raise SynthequivError(f"sampling.churn must be >= 0, got {cfg.churn}")


def check_sampler(cfg: SampleConfig, names: Sequence[str], churn: bool) -> None:
    """A family's view of the sampling config: the sampler is auto or one of its `names`, and
    churn is set only where its samplers have one (one check for the registry's names and the
    family's SamplerSet)."""
    check_sample_config(cfg, names)
    if cfg.churn and not churn:
        raise SynthequivError(f"sampling.churn is EDM's S_churn; the {cfg.sampler} "
                              "sampler has none (leave it at 0)")


# ----------------------------------------------------------------------------- open-set arm

OPENSET_KINDS = ("pool", "source", "pretrained")


@dataclass(frozen=True)
class OpenSetConfig:
    kind: str = "pool"  # "pool" | "source" | "pretrained" (see module docstring)
    source: str = ""  # data source string, for kind="source"
    model: str = ""  # local folder or hub id of a text-to-image pipeline, for kind="pretrained"
    prompt_template: str = "a photo of a {class_name}"  # '_' in class names becomes ' '
    negative_prompt: str = ""  # "" → the pipeline's default (empty unconditional prompt)
    guidance_scale: float = 7.5  # classifier-free guidance weight; diffusers applies it when > 1
    num_inference_steps: int = 25  # sampler steps per image
    batch_size: int = 8  # images per pipeline call (memory only: images do not depend on it)
    seed: int = 0  # image i is seeded from (seed, i)
    image_size_px: int = (
        0  # square generation size; 0 = the pipeline's native size (512 for SD 1.x)
    )

    def __post_init__(self) -> None:
        if self.kind not in OPENSET_KINDS:
            raise SynthequivError(
                f"open-set kind must be one of {OPENSET_KINDS}, got '{self.kind}'"
            )
        if self.kind == "source" and not self.source:
            raise SynthequivError("open-set kind 'source' needs source=<data source>")
        if self.kind == "pretrained" and not self.model:
            raise SynthequivError("open-set kind 'pretrained' needs model=<local folder or hub id>")
        check_positive("guidance_scale", self.guidance_scale, allow_zero=True)
        check_positive("num_inference_steps", self.num_inference_steps)
        check_positive("batch_size", self.batch_size)
        check_positive("image_size_px", self.image_size_px, allow_zero=True)
        if "{class_name}" not in self.prompt_template:  # as build_prompts checks it
            raise SynthequivError("prompt template must contain '{class_name}', got "
                                  f"'{self.prompt_template}'")


# ----------------------------------------------------------------------------- the stage's view


@dataclass(frozen=True)
class SyntheticConfig:
    """What the generation stage reads of one replicate (StudyConfig.synthetic builds it):
    synthetic.py and provided.py's per-replicate functions take this, never the study. Its
    generator, sampling and openset configs (a replicate's seeds) are what the generators' and
    samples' keys hash."""

    generator: GeneratorConfig
    sampling: SampleConfig
    openset: OpenSetConfig
    data: DataConfig  # the study's data config: openset.kind=source loads its source alike
    arms: tuple[str, ...]  # the grid's generative arms (closed, open), in the grid's order
    base_per_class: tuple[int, ...]  # splits.base_per_class: one closed generator per size
    n_per_class: int  # images sampled per class: the grid's largest S(m); 0 = none
