"""The analyses stage's config (AnalysisConfig) and its check: light (no torch), so the
study's config parses and validates without loading the measures."""

from __future__ import annotations

from dataclasses import dataclass

from synthequiv.utils import SynthequivError, check_positive


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = True
    max_images: int = 1000  # per set, for feature metrics and the domain classifier
    domain_train_steps: int = 300


def check(cfg: AnalysisConfig) -> None:
    """One-line errors for the analysis section (no data needed)."""
    check_positive("analysis.max_images", cfg.max_images)
    if cfg.enabled and cfg.max_images < 2:  # found before training, not after
        raise SynthequivError("analysis.max_images must be ≥ 2 (a domain classifier needs 2 "
                              f"images per side), got {cfg.max_images}")
    check_positive("analysis.domain_train_steps", cfg.domain_train_steps)
