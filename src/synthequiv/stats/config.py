"""The statistics stage's configs, light (no numpy or scipy), so the study's config parses and
validates without loading the statistics: the design (GridConfig: arms, amounts, replicates,
seeds, levers — the cells the intervals are made of), grid.replicates: auto's settings (target,
budget) and the analysis of the results (EquivalenceConfig, checked as it is built).

The lever fields of the grid are checked with the generator families (generation/levers.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from synthequiv.utils import SynthequivError, check_counts, check_positive

ARMS = ("real", "closed", "open")
AUTO = "auto"  # grid.replicates: auto (below)


# ----------------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class GridConfig:
    # defaults = the quick digits study. Replicates are the units of every interval: each draws
    # its own base sets, reserve and hold-out test set and trains its own generators, so the CIs
    # include the generator's variance (intervals.py); seeds are nested inside a replicate
    arms: tuple[str, ...] = ARMS
    # ≥ 4 real amounts per base size: the real curve is what synthetic cells are read off.
    # The smallest is near a synthetic cell's worth (a cell between knots is read off a line in
    # log n: with +5 first, a cell worth +2 at 5/class was covered 78 % of the time)
    real_add_per_class: tuple[int, ...] = (2, 5, 15, 40)  # extra real images/class (R(m))
    syn_add_per_class: tuple[int, ...] = (40, 160)  # synthetic images/class per generative arm
    replicates: int | str = 3  # independent draws of the design (base sets, generators, test set)
    # replicates: auto — start with min_replicates, then add one at a time (nothing is
    # retrained) until `target` is met, `budget_s` is spent or max_replicates is reached
    # (stats/sequential.py). target: "gain_halfwidth=1.0" (pts) or "rate_halfwidth=0.5" (×rate)
    target: str = ""
    budget_s: float = 0.0  # wall-clock budget of an auto study (0 = none); study --budget 2h
    min_replicates: int = 3
    max_replicates: int = 20
    # classifier seeds per cell within each replicate
    seeds: tuple[int, ...] = (0, 1)
    # the baseline cells (n_add = 0) train base_seed_factor × as many seeds: `seeds`, then the
    # next unused integers. Every gain of a base size subtracts its baseline, so the baseline's
    # seed noise enters all k of them (and the real curve): a shared control is best measured
    # √k times as often as each cell it is compared with (Dunnett's allocation; k = 8 in the
    # quick study). 2 seeds per cell and 6 for the baseline give a gain the variance of 3 seeds
    # everywhere with 5 fewer cells per base size (on the quick study's own seed spreads —
    # 1.7 pts at the 5/class baseline, 0.3–1.3 elsewhere — a smaller one)
    base_seed_factor: int = 3
    # levers (levers.py): each setting is its own synthetic arm, e.g. closed@cfg2, closed+top0.5;
    # off in the quick study (cost), on in the `levers` preset. A filtered arm keeps the top q
    # per class of a pool of ceil(max syn_add_per_class / q) images/class (filtering.py)
    filters: tuple[float, ...] = ()  # keep-top fractions q in (0, 1] by base-set classifier score
    guidance: tuple[float, ...] = ()  # CFG scales; () = only sampling.cfg_scale
    sampler_steps: tuple[int, ...] = ()  # sampler steps; () = only sampling.steps
    lever_arms: tuple[str, ...] = ("closed",)  # generative arms that get the variants
    cross_levers: bool = False  # every combination; False = one lever at a time around plain
    # generator families (families.py) for variant arms, e.g. [edm, dit] → closed@edm,
    # closed@dit: the same arm's generators trained with that family (plain sampling, unfiltered)
    generator_families: tuple[str, ...] = ()


def check_grid(g: GridConfig) -> None:
    """One-line errors for the grid's arms, amounts, seeds and replicates (its levers:
    generation/levers.check_levers)."""
    if not g.arms:
        raise SynthequivError("grid.arms is empty")
    bad = [a for a in g.arms if a not in ARMS]
    if bad:
        raise SynthequivError(f"unknown arm '{bad[0]}' in grid.arms (use {', '.join(ARMS)})")
    if len(set(g.arms)) != len(g.arms):
        raise SynthequivError(f"grid.arms has duplicate entries: {list(g.arms)}")
    check_counts("grid.real_add_per_class", g.real_add_per_class, allow_empty=True)
    check_counts("grid.syn_add_per_class", g.syn_add_per_class, allow_empty=True)
    if not g.seeds:
        raise SynthequivError("grid.seeds is empty")
    check_replicates(g)
    if len(set(g.seeds)) != len(g.seeds):
        raise SynthequivError(f"grid.seeds has duplicate seeds: {list(g.seeds)} (a repeated "
                              "seed repeats the same cell and narrows the CIs falsely)")
    f = g.base_seed_factor
    if not isinstance(f, int) or isinstance(f, bool) or not 1 <= f <= 100:
        raise SynthequivError(f"grid.base_seed_factor must be an integer in [1, 100], got {f!r}")


def cell_seeds(g: GridConfig, n_add: int) -> tuple[int, ...]:
    """The classifier seeds of a cell adding `n_add` images/class: `seeds`, and for the
    baseline (n_add = 0) base_seed_factor × as many (`seeds` first, then the next unused
    integers, so the baseline has every seed its cells have)."""
    if n_add:
        return tuple(g.seeds)
    extra = (g.base_seed_factor - 1) * len(g.seeds)
    free = (s for s in range(max(g.seeds) + extra + 2) if s not in g.seeds)
    return tuple(g.seeds) + tuple(next(free) for _ in range(extra))


def check_replicates(g: GridConfig) -> None:
    """grid.replicates: a count in [1, 1000] or auto, with auto's target, budget and bounds."""
    auto = g.replicates == AUTO
    if not auto and (not isinstance(g.replicates, int) or isinstance(g.replicates, bool)
                     or not 1 <= g.replicates <= 1000):
        raise SynthequivError(f"grid.replicates must be in [1, 1000] or auto, got "
                              f"{g.replicates!r}")
    check_positive("grid.budget_s", g.budget_s, allow_zero=True)
    if not auto:
        if g.target or g.budget_s:
            raise SynthequivError("grid.target and a budget (grid.budget_s, --budget) apply to "
                                  "grid.replicates=auto only")
        return
    if not g.target:
        raise SynthequivError("grid.replicates=auto needs grid.target, e.g. "
                              "'grid.target=gain_halfwidth=1.0' (pts) or 'rate_halfwidth=0.5'")
    parse_target(g.target)
    if not 2 <= g.min_replicates <= g.max_replicates <= 1000:
        raise SynthequivError("grid.replicates=auto needs 2 ≤ grid.min_replicates ≤ "
                              f"grid.max_replicates ≤ 1000, got {g.min_replicates} and "
                              f"{g.max_replicates}")


def first_replicates(grid: GridConfig) -> int:
    """Replicates of the first pass: all of them, or an auto study's min_replicates."""
    return grid.min_replicates if grid.replicates == AUTO else grid.replicates


# ----------------------------------------------------------------------------- the analysis

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
