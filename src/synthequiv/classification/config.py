"""The classification stage's config and its check: light (no torch), so the study's config
parses and validates without loading the networks."""

from __future__ import annotations

from dataclasses import dataclass

from synthequiv.utils import SynthequivError, check_positive

ARCHS = ("auto", "smallcnn", "resnet18", "torchvision-resnet18", "airbench")
MIXINGS = ("concat", "ratio")
BUDGETS = ("steps", "epochs")
OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")
PAD_MODES = ("replicate", "reflect", "constant")


@dataclass(frozen=True)
class ClassifierConfig:
    # auto (by image size) | smallcnn (≤ 16 px) | resnet18 (CIFAR stem, 17–64 px)
    # | torchvision-resnet18 (torchvision's ImageNet layout, > 64 px)
    # | airbench (airbench94-style fast net for ~32 px natural images; not chosen by auto)
    arch: str = "auto"
    # channels of the first stage; 0 = arch default (smallcnn 16, resnets 64, airbench 64)
    width: int = 0
    budget: str = "steps"  # steps: train_steps per cell (arms at equal compute) | epochs
    train_steps: int = 400  # optimizer steps per cell when budget == "steps"
    epochs: int = 30  # passes over the pooled real+synthetic set when budget == "epochs"
    batch_size: int = 128
    optimizer: str = "sgd"  # sgd (Nesterov, momentum 0.9) | adamw
    lr: float = 0.05  # peak learning rate at batch_size (sgd); use ~2e-3 for adamw
    weight_decay: float = 5e-4  # L2 on conv/linear weights only (not BN, not biases)
    label_smoothing: float = 0.1
    schedule: str = "onecycle"  # onecycle: linear warm-up then linear decay to 0 | cosine
    warmup_fraction: float = 0.1  # share of all steps spent warming up (both schedules)
    crop_pad_px: int = 1  # random-crop translation range in pixels (0 = no crop); ~1/8 of size
    pad_mode: str = "replicate"  # border fill for crops: replicate | reflect | constant (0)
    hflip: bool = False  # random horizontal flips: off for digits/text, on for natural images
    mixing: str = "concat"  # concat: real+synthetic pooled and shuffled (paper)
    #                         ratio: each batch holds round(syn_fraction·batch) synthetic images
    syn_fraction: float = 0.5  # synthetic share of each batch in ratio mode
    eval_batch_size: int = 1024  # for the caller: evaluate(..., batch_size=cfg.eval_batch_size)
    # torch intra-op threads while training on CPU; 0 = leave torch's setting (the study sets
    # it once from StudyConfig.cpu_threads). On a quiet 2-vCPU machine 2 threads ran a digits
    # cell in 2.5 s vs 3.8 s with 1; on a busy one 2 threads were 10× slower.
    cpu_threads: int = 0


def check(cfg: ClassifierConfig) -> None:
    """One-line errors for the classifier settings (no data needed)."""
    for name, value, allowed in [
        ("arch", cfg.arch, ARCHS), ("budget", cfg.budget, BUDGETS), ("mixing", cfg.mixing, MIXINGS),
        ("optimizer", cfg.optimizer, OPTIMIZERS), ("schedule", cfg.schedule, SCHEDULES),
        ("pad_mode", cfg.pad_mode, PAD_MODES),
    ]:
        if value not in allowed:
            raise SynthequivError(f"classifier.{name} '{value}' unknown (use {', '.join(allowed)})")
    check_positive("classifier.train_steps" if cfg.budget == "steps" else "classifier.epochs",
                   cfg.train_steps if cfg.budget == "steps" else cfg.epochs)
    check_positive("classifier.batch_size", cfg.batch_size)
    check_positive("classifier.eval_batch_size", cfg.eval_batch_size)
    check_positive("classifier.lr", cfg.lr)
    check_positive("classifier.width", cfg.width, allow_zero=True)
    check_positive("classifier.cpu_threads", cfg.cpu_threads, allow_zero=True)
    check_positive("classifier.crop_pad_px", cfg.crop_pad_px, allow_zero=True)
    check_positive("classifier.weight_decay", cfg.weight_decay, allow_zero=True)
    for name, value, top in [("label_smoothing", cfg.label_smoothing, "1)"),
                             ("warmup_fraction", cfg.warmup_fraction, "1)"),
                             ("syn_fraction", cfg.syn_fraction, "1]")]:
        if not (0.0 <= value < 1.0 or (top == "1]" and value == 1.0)):
            raise SynthequivError(f"classifier.{name} must be in [0, {top}, got {value}")
