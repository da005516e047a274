"""The statistics stage's config (EquivalenceConfig), checked as it is built, and the settings
of grid.replicates: auto (target, budget): light (no numpy or scipy), so the study's config
parses and validates without loading the statistics."""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthequiv.utils import SynthequivError

VARIANCES = ("moderated", "per_cell")
FITTED_CI_METHOD = ("none: model-based point estimates (a jackknife over 3 replicates covered "
                    "74–92 % in issue 26's simulation, so no interval is printed)")


@dataclass(frozen=True)
class EquivalenceConfig:
    k: float = 1.0  # scale in c₁^(n_base/k), counts per class; only ln(c₁)/k is identifiable
    ci: float = 0.95  # coverage of every interval (and 1 − ci is the family-wise error rate)
    exchange_points: tuple[float, ...] = (0.5, 1.0)  # n_real⁺ / n_base for fitted rates
    bootstrap: int = 0  # unused since intervals became t/jackknife over replicates; accepted
    seed: int = 0  # unused (the intervals are deterministic); accepted so old configs load
    # variance of each gain / exchange-rate contrast: "moderated" borrows strength across the
    # cells of a family (empirical Bayes, Smyth 2004; see moderated.py), "per_cell" is each
    # cell's own t over units (U − 1 degrees of freedom)
    variance: str = "moderated"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k > 0):
            raise SynthequivError(f"equivalence k must be a positive number, got {self.k}")
        if not 0 < self.ci < 1:
            raise SynthequivError(f"equivalence ci must lie in (0, 1), got {self.ci}")
        if not self.exchange_points or any(not (f > 0 and math.isfinite(f))
                                           for f in self.exchange_points):
            raise SynthequivError(
                f"equivalence exchange_points must be positive fractions, got {self.exchange_points}"
            )
        if self.variance not in VARIANCES:
            raise SynthequivError(f"equivalence variance must be one of {', '.join(VARIANCES)}, "
                                  f"got {self.variance!r}")


# ----------------------------------------------------------------------------- grid.replicates: auto

AUTO = "auto"
TARGET_KINDS = {"gain_halfwidth": "percentage points", "rate_halfwidth": "× the rate"}


@dataclass(frozen=True)
class Target:
    kind: str  # gain_halfwidth | rate_halfwidth
    value: float

    def text(self) -> str:
        if self.kind == "gain_halfwidth":
            return f"every synthetic gain interval within ±{self.value:g} pts"
        return f"every headline exchange-rate interval within ±{100 * self.value:g} % of the rate"


def parse_target(text: str) -> Target:
    """'gain_halfwidth=1.0' → Target; anything else is one error line naming the forms."""
    kind, sep, raw = str(text).partition("=")
    kind = kind.strip()
    forms = "gain_halfwidth=POINTS (e.g. 1.0) or rate_halfwidth=FRACTION (e.g. 0.5)"
    if not sep or kind not in TARGET_KINDS:
        raise SynthequivError(f"grid.target must be {forms}, got {text!r}")
    try:
        value = float(raw)
    except ValueError:
        raise SynthequivError(f"grid.target {text!r}: {raw!r} is not a number ({forms})") from None
    if not (math.isfinite(value) and value > 0):
        raise SynthequivError(f"grid.target {text!r}: the half-width must be > 0")
    return Target(kind, value)


def parse_duration(text: str) -> float:
    """'2h', '20m', '90s', '1h30m' or plain seconds ('600') → seconds; else one error line."""
    import re

    s = str(text).strip().lower()
    if re.fullmatch(r"\d+(\.\d+)?", s):
        seconds = float(s)
    else:
        parts = re.fullmatch(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?:in)?)?"
                             r"(?:(\d+(?:\.\d+)?)s)?", s)
        if not s or parts is None:
            raise SynthequivError(f"--budget {text!r}: expected a duration such as 2h, 20m, "
                                  "1h30m or 90s")
        h, m, sec = (float(v) if v else 0.0 for v in parts.groups())
        seconds = 3600 * h + 60 * m + sec
    if not seconds > 0:
        raise SynthequivError(f"--budget {text!r}: must be longer than 0")
    return seconds


def first_replicates(cfg) -> int:
    """Replicates of the first pass: all of them, or an auto study's min_replicates."""
    return cfg.grid.min_replicates if cfg.grid.replicates == AUTO else cfg.grid.replicates
