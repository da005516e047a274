"""The splits' config and its check: light (no torch), so the study's config parses and
validates without loading data code."""

from __future__ import annotations

from dataclasses import dataclass

from synthequiv.utils import SynthequivError, check_positive

TEST_ALL = "all"


@dataclass(frozen=True)
class SplitConfig:
    # base-set sizes n (images per class). The quick default measures where the digits curve is
    # steep: at 20/class +20 real images add ~1 pt, so a synthetic cell's worth cannot be
    # resolved there at this compute (benchmarks/coverage.py: finite rate intervals 29 % at
    # (10, 20), 69 % at (5, 10); README "How much the quick study can resolve")
    base_per_class: tuple[int, ...] = (5, 10)
    # hold-out test images per class when the source has no official test split: "all" = every
    # image not in a base set or the real arm's reserve (capped below), an integer = that many.
    # Larger test sets shrink each cell's test-set noise (binomial: sd √(p(1−p)/N))
    test_per_class: int | str = TEST_ALL
    seed: int = 0
    test_cap_per_class: int = 2000  # the cap on test_per_class: all (images per class)


def check_split_config(cfg: SplitConfig) -> None:
    """One-line errors for the split settings (no data needed)."""
    if not cfg.base_per_class:
        raise SynthequivError("splits.base_per_class is empty")
    for n in cfg.base_per_class:
        check_positive("splits.base_per_class entry", n)
    t = cfg.test_per_class
    if t != TEST_ALL and (not isinstance(t, int) or isinstance(t, bool)):
        raise SynthequivError(f"splits.test_per_class must be a positive integer or "
                              f"'{TEST_ALL}', got {t!r}")
    if t != TEST_ALL:
        check_positive("splits.test_per_class", t)
    if not isinstance(cfg.test_cap_per_class, int) or isinstance(cfg.test_cap_per_class, bool):
        raise SynthequivError("splits.test_cap_per_class must be a positive integer, got "
                              f"{cfg.test_cap_per_class!r}")
    check_positive("splits.test_cap_per_class", cfg.test_cap_per_class)
