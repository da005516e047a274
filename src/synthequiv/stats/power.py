"""Power of a planned design: the smallest gain a study would call significant.

A study's accuracies vary by four components (standard deviations in accuracy units, the same
model as simulate.py): `base` (a replicate's base draw and test set, shared by every cell at a
base size: it cancels in a gain), `generator` (a replicate's generator, shared by an arm's
synthetic cells at a base size), `cell` (cell × replicate) and `seed` (classifier seed within a
replicate and cell). A gain is a paired difference within replicates (seeds averaged), so over
replicates it varies with

    sd(gain) = √(generator² [synthetic cells] + 2·cell² + seed²/seeds + seed²/base_seeds)

(base_seeds: the baseline's seeds, grid.base_seed_factor × seeds; = seeds where not given).

The report calls a gain significant when its Holm-adjusted p < 1 − ci; for one cell of a
family of m the first Holm step is the strictest, so the detectable gain here is computed at
level (1 − ci)/m (Bonferroni: slightly conservative for all but the most significant cell).
With `variance="moderated"` the t has the family's pooled degrees of freedom on top of its own
(the cap in moderated.py: d0 ≤ (m' contrasts)·(U − 1), reached when the family's variances are
alike); with "per_cell" it has U − 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from synthequiv.stats.intervals import REAL, unit_table
from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class VarianceComponents:
    """Standard deviations of a study's accuracies (see the module docstring)."""

    base: float
    generator: float
    cell: float
    seed: float
    # the real arm's cell × replicate sd where it differs from the synthetic cells' (None: the
    # same): adding real images dilutes the base draw, so real gains vary with it and synthetic
    # ones (trained on the same base set) less — a quick study measured 0.0052 vs 0.0024
    cell_real: float | None = None

    def gain_sd(self, seeds: float, synthetic: bool = True,
                base_seeds: float | None = None) -> float:
        """sd over replicates of a gain (cell − baseline, averaged over `seeds` and
        `base_seeds` seeds; base_seeds None: `seeds`)."""
        base_seeds = seeds if base_seeds is None else base_seeds
        if min(seeds, base_seeds) < 1:
            raise SynthequivError(f"seeds must be ≥ 1, got {seeds} and {base_seeds}")
        gen = self.generator**2 if synthetic else 0.0
        cell = self.cell if synthetic or self.cell_real is None else self.cell_real
        return math.sqrt(gen + 2 * cell**2 + self.seed**2 / seeds + self.seed**2 / base_seeds)


def _seed_groups(rows: list[dict], metric: str) -> dict[tuple, list[float]]:
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        key = (r.get("replicate", 0), r["n_base"], r["arm"], r["n_add"])
        groups.setdefault(key, []).append(float(r[metric]))
    return groups


def _harmonic_seeds(groups: dict[tuple, list[float]]) -> tuple[float, float]:
    sizes = {0: [], 1: []}
    for key, v in groups.items():
        sizes[int(key[3] == 0)].append(len(v))
    h = {k: float(len(v) / np.sum(1 / np.array(v, float))) if v else math.nan
         for k, v in sizes.items()}
    cells = h[0] if h[0] == h[0] else h[1]
    return cells, (h[1] if h[1] == h[1] else cells)


def seed_counts(rows: list[dict], metric: str = "accuracy") -> tuple[float, float]:
    """(seeds per cell, seeds per baseline cell): harmonic means over the (replicate, cell)
    groups of the added cells and of the baselines (n_add = 0); each is the other's where a
    table has only one kind."""
    return _harmonic_seeds(_seed_groups(rows, metric))


def _seed_variance(rows: list[dict], metric: str) -> tuple[float, float, float]:
    """(pooled within-cell variance over seeds, seed_counts); variance 0 when every cell of a
    replicate has one seed."""
    groups = _seed_groups(rows, metric)
    sizes = np.array([len(v) for v in groups.values()], float)
    ss = sum(float(np.var(v) * len(v)) for v in groups.values())
    df = float((sizes - 1).sum())
    return (ss / df if df > 0 else 0.0, *_harmonic_seeds(groups))


def variance_components(rows: Iterable[Mapping[str, Any]], metric: str = "accuracy"
                        ) -> VarianceComponents:
    """Method-of-moments components from a results table with ≥ 2 replicates: seed from the
    spread over seeds within a replicate's cell; cell_real from the real gains' variance over
    replicates; the synthetic gains' variance v split into 2·cell² (at most as much as the real
    cells show) and the generator's share, the rest; base from the baseline's variance over
    replicates. A negative moment estimate is 0. One run cannot tell a generator's share from
    the synthetic cells' own, so gain_sd(synthetic=True) = √v is what is identified."""
    rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
    t = unit_table(rows, metric)
    if t.unit != "replicate":
        raise SynthequivError("variance components need results of ≥ 2 replicates")
    seed_var, seeds, base_seeds = _seed_variance(rows, metric)
    # a gain's seed share: its cell's seed mean and its baseline's
    seed_share = seed_var / seeds + seed_var / base_seeds
    real, syn, base = [], [], []
    for (nb, arm, na), v in t.values.items():
        b = t.values.get((nb, REAL, 0))
        if b is None:
            continue
        if (arm, na) == (REAL, 0):
            if np.isfinite(v).sum() >= 2:  # a baseline in one replicate only has no spread
                base.append(np.nanvar(v, ddof=1))
            continue
        d = v - b
        if np.isfinite(d).sum() >= 2:
            (real if arm == REAL else syn).append(np.nanvar(d, ddof=1))
    if not real:
        raise SynthequivError("variance components need real-arm cells beside the baseline")
    real_var = max(0.0, (float(np.mean(real)) - seed_share) / 2)
    syn_total = float(np.mean(syn)) if syn else 2 * real_var + seed_share
    cell_var = min(real_var, max(0.0, (syn_total - seed_share) / 2))
    gen_var = max(0.0, syn_total - 2 * cell_var - seed_share)
    base_var = max(0.0, (float(np.mean(base)) if base else 0.0) - cell_var
                   - seed_var / base_seeds)
    return VarianceComponents(base=math.sqrt(base_var), generator=math.sqrt(gen_var),
                              cell=math.sqrt(cell_var), seed=math.sqrt(seed_var),
                              cell_real=math.sqrt(real_var))


def lower_bound_components(rows: Iterable[Mapping[str, Any]], metric: str = "accuracy"
                           ) -> VarianceComponents:
    """Components from a one-replicate pilot: only the spread over classifier seeds is
    measured; the generator, cell and base components are unknown and set to 0, so a
    minimum detectable gain from these is a lower bound (0 with one seed per cell: the
    trivial bound, never an error, since a one-unit report asks for it too)."""
    rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
    if not rows:
        raise SynthequivError("variance components need results rows")
    seed_var = _seed_variance(rows, metric)[0]
    return VarianceComponents(base=0.0, generator=0.0, cell=0.0, seed=math.sqrt(seed_var))


def _df(replicates: int, variance: str, family_contrasts: int) -> float:
    if variance not in ("moderated", "per_cell"):
        raise SynthequivError(f"variance must be moderated or per_cell, got {variance!r}")
    own = replicates - 1
    return own * (1 + family_contrasts) if variance == "moderated" else own


def power_at(gain: float, sd: float, replicates: int, *, family_size: int = 1,
             ci: float = 0.95, variance: str = "moderated", family_contrasts: int | None = None
             ) -> float:
    """Probability that a true `gain` (accuracy units) with per-replicate sd `sd` is called
    significant (two-sided, level (1 − ci)/family_size) by a t over `replicates` units."""
    if replicates < 2:
        return 0.0
    df = _df(replicates, variance, family_size if family_contrasts is None else family_contrasts)
    crit = float(stats.t.ppf(1 - (1 - ci) / (2 * max(family_size, 1)), df))
    nc = gain * math.sqrt(replicates) / sd
    # the far tail (a significant loss) can be NaN in scipy's nct where it is ~1e-17: it is 0
    lower = float(np.nan_to_num(stats.nct.cdf(-crit, df, nc)))
    return float(stats.nct.sf(crit, df, nc)) + lower


def min_detectable_gain(components: VarianceComponents, replicates: int, seeds: float, *,
                        family_size: int = 8, ci: float = 0.95, power: float = 0.8,
                        variance: str = "moderated", synthetic: bool = True,
                        family_contrasts: int | None = None,
                        base_seeds: float | None = None) -> float:
    """The smallest true gain (accuracy units; ×100 for points) that a design of `replicates`
    replicates × `seeds` seeds (`base_seeds` for the baseline) calls significant with
    probability `power`, Holm-adjusted over
    `family_size` synthetic cells (see the module docstring). family_contrasts: contrasts whose
    variances are pooled (default family_size). inf with fewer than 2 replicates."""
    if not 0 < power < 1:
        raise SynthequivError(f"power must lie in (0, 1), got {power}")
    if replicates < 2:
        return math.inf
    sd = components.gain_sd(seeds, synthetic, base_seeds)
    if sd == 0:
        return 0.0
    kw = dict(family_size=family_size, ci=ci, variance=variance,
              family_contrasts=family_contrasts)
    f = lambda g: power_at(g, sd, replicates, **kw) - power  # noqa: E731
    hi = sd  # doubling bracket: nct is NaN far out, so the root is bracketed from below
    while f(hi) < 0:
        hi *= 2
    return float(optimize.brentq(f, 0.0, hi, xtol=1e-9 * sd))


def replicates_for(gain: float, components: VarianceComponents, seeds: float, *,
                   max_replicates: int = 200, **kw) -> int | None:
    """Fewest replicates whose min_detectable_gain (same keywords) is ≤ `gain`; None if more
    than `max_replicates` would be needed."""
    for u in range(2, max_replicates + 1):
        if min_detectable_gain(components, u, seeds, **kw) <= gain:
            return u
    return None
