"""The statistics stage's config (EquivalenceConfig), checked as it is built: light (no numpy
or scipy), so the study's config parses without loading the statistics."""

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
