"""Simulated studies with a known truth: coverage, power and informativeness of the intervals.

A study's accuracy in replicate u, seed s, cell c at base size n is

    truth(c) + e_base[u, n] + e_gen[u, n, arm] (synthetic cells) + h_c·(e_cell[u, c] + e_seed[u, s, c])

truth: the real arm follows a power law acc(N) = a − b·N^(−α) in the total real images/class N;
a synthetic cell is worth n_real⁺ extra real images — by the paper's formula, or a fixed worth
per synthetic image (Truth.worth) — so its truth is acc(n_base + n_real⁺). e_base (base draw and
test set of the replicate, shared by every cell at that base size), e_gen (the replicate's
generator), e_cell (cell × replicate interaction: the cell's own test-set and training noise)
and e_seed (classifier seed) are independent normals. Harder designs: h_c spreads the variance
of the cells over [1, hetero] (heteroscedastic cells); a share of generators fails (e_gen gets
a large negative shift, re-centred so the truth is still the mean); a share of rows is missing.
Design.quick() takes its standard deviations from a real quick study (see benchmarks/coverage.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from synthequiv.inputs.config import SplitConfig
from synthequiv.stats.config import GridConfig, cell_seeds
from synthequiv.stats.equivalence import gains, measured_points, paper_n_real
from synthequiv.stats.intervals import REAL, unit_table
from synthequiv.stats.power import VarianceComponents


@dataclass(frozen=True)
class Truth:
    a: float = 0.99
    b: float = 0.70
    alpha: float = 1.22  # acc(10) = 0.948, acc(20) = 0.972, as digits measured
    ln_c1_over_k: float = 0.172  # with c2: closed +160 ≈ real +5 at 10/class (design notes)
    c2: float = 15.0
    # real images one synthetic image is worth, per arm (overrides the formula for that arm)
    worth: tuple[tuple[str, float], ...] = ()

    def real(self, n_total):
        return self.a - self.b * np.asarray(n_total, float) ** -self.alpha

    def n_real(self, n_base, n_syn, arm: str = "closed") -> float:
        fixed = dict(self.worth)
        if arm in fixed:
            return float(fixed[arm] * n_syn)
        return float(paper_n_real(self.ln_c1_over_k, self.c2, n_base, n_syn))

    def gain(self, n_base, n_syn, arm: str = "closed") -> float:
        return float(self.real(n_base + self.n_real(n_base, n_syn, arm)) - self.real(n_base))


_QUICK_GRID = GridConfig()  # the config's defaults are the quick study's design


@dataclass(frozen=True)
class Design:
    bases: tuple[int, ...] = SplitConfig().base_per_class
    real_add: tuple[int, ...] = _QUICK_GRID.real_add_per_class
    syn_add: tuple[int, ...] = _QUICK_GRID.syn_add_per_class
    replicates: int = _QUICK_GRID.replicates
    seeds: int = len(_QUICK_GRID.seeds)
    base_seeds: int | None = len(cell_seeds(_QUICK_GRID, 0))  # the baseline's; None: seeds
    sd_base: float = 0.006
    sd_gen: float = 0.004
    sd_cell: float = 0.002
    sd_seed: float = 0.004
    arms: tuple[str, ...] = field(default=("closed",))
    sd_cell_real: float | None = None  # the real cells' e_cell sd, if not sd_cell
    hetero: float = 1.0  # cell variances spread evenly over [1, hetero] × the above
    gen_fail: float = 0.0  # share of generators that fail ...
    gen_fail_shift: float = 0.0  # ... and lose this much accuracy (before re-centring)
    missing: float = 0.0  # share of result rows missing at random


# power.variance_components of the quick study's design (bases 5, 10/class; 3 seeds; every
# digit outside the base sets and reserve as test set, ~130/class; sampling.steps 16) run with
# 6 replicates (324 classifiers: `make study`'s 3 and 3 more, `--set grid.replicates=6`), rounded.
# Synthetic gains vary by sd ≈ 0.0125 over replicates. Three replicates alone estimate these
# poorly: that run's replicates 0–2 gave cell .0058, its replicates 3–5 .0061, and other triples
# .0025–.0118; with 6 the estimator recovers cell, seed and cell_real within ±25 % (80 % of
# simulated studies). The value used before (base .0050, generator .0018, cell .0030, seed
# .0083, cell_real .0036: two 2-seed runs of one set of 3 replicates) was at that low end.
QUICK_NOISE = VarianceComponents(base=0.0080, generator=0.0, cell=0.0077, seed=0.0076,
                                 cell_real=0.0083)
QUICK_NOISE_SOURCE = ("a 6-replicate quick study 2026-12-06 (`synthequiv study --preset quick "
                      "--set grid.replicates=6`)")
# the quick design before 2026-12-06 (bases 10, 20; real +5, 10, 20, 40), from a 4-replicate run
# with 110 test images/class (`--set grid.replicates=4 --set splits.test_per_class=110`)
QUICK_NOISE_1020 = VarianceComponents(base=0.0077, generator=0.0, cell=0.0024, seed=0.0055,
                                      cell_real=0.0052)
# issue 26's independent simulator: a synthetic image worth 1/20 (closed) and 1/8 (open) real
QUICK_TRUTH = Truth(worth=(("closed", 1 / 20), ("open", 1 / 8)))


def quick_designs(vc: VarianceComponents = QUICK_NOISE, replicates: int = Design.replicates,
                  seeds: int = Design.seeds, base_seeds: int | None = Design.base_seeds,
                  **amounts) -> dict[str, Design]:
    """The quick study's design with noise `vc`, and the harder variants of issue 26;
    `amounts` (bases, real_add, syn_add) replace the quick study's."""
    d = Design(arms=("closed", "open"), replicates=replicates, seeds=seeds,
               base_seeds=base_seeds, sd_base=vc.base,
               sd_gen=vc.generator, sd_cell=vc.cell, sd_seed=vc.seed, sd_cell_real=vc.cell_real,
               **amounts)
    return {
        "default": d,
        "heteroscedastic ×3": replace(d, hetero=3.0),
        # 15 % of generators fail and lose 4 generator sd's (re-centred: the truth is the mean)
        "skewed generators": replace(d, gen_fail=0.15,
                                     gen_fail_shift=4 * max(vc.generator, 0.002)),
        "15 % rows missing": replace(d, missing=0.15),
    }


def _cell_scale(design: Design, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """sd multipliers h_c [n_cells]: variances evenly over [1, hetero], in a random order."""
    return np.sqrt(rng.permutation(np.linspace(1.0, design.hetero, n_cells)))


def _gen_effect(design: Design, rng: np.random.Generator) -> float:
    e = rng.normal(0, design.sd_gen)
    if design.gen_fail > 0:  # a failed generator: a one-sided loss, re-centred to mean 0
        e += design.gen_fail * design.gen_fail_shift
        e -= design.gen_fail_shift * float(rng.random() < design.gen_fail)
    return e


def simulate_rows(truth: Truth, design: Design, rng: np.random.Generator) -> list[dict]:
    """One study's results rows (see the module docstring for the model)."""
    cells = [(nb, REAL, m) for nb in design.bases for m in (0, *design.real_add)]
    cells += [(nb, arm, m) for nb in design.bases for arm in design.arms for m in design.syn_add]
    scale = dict(zip(cells, _cell_scale(design, len(cells), rng)))
    rows = []
    for u in range(design.replicates):
        e_base = {nb: rng.normal(0, design.sd_base) for nb in design.bases}
        e_gen = {(nb, arm): _gen_effect(design, rng) for nb in design.bases for arm in design.arms}
        for nb, arm, m in cells:
            acc = (truth.real(nb + m) if arm == REAL else
                   truth.real(nb + truth.n_real(nb, m, arm)) + e_gen[(nb, arm)])
            real_sd = design.sd_cell if design.sd_cell_real is None else design.sd_cell_real
            e_cell = rng.normal(0, real_sd if arm == REAL else design.sd_cell)
            n_seeds = design.seeds if m or arm != REAL else design.base_seeds or design.seeds
            for s in range(n_seeds):
                noise = scale[(nb, arm, m)] * (e_cell + rng.normal(0, design.sd_seed))
                rows.append({"n_base": nb, "arm": arm, "n_add": m, "seed": s, "replicate": u,
                             "accuracy": float(acc + e_base[nb] + noise)})
    if design.missing > 0:
        rows = [r for r in rows if rng.random() >= design.missing]
    return rows


def _covers(lo: float, hi: float, value: float) -> bool:
    return bool(math.isfinite(lo) and lo <= value <= hi)


def _study(truth: Truth, design: Design, t, ci: float, variance: str, power_band) -> dict:
    """Per-study hits of one variance method (lists, pooled over cells by `coverage`)."""
    hits = {k: [] for k in ("gain", "n_real_eq", "n_real_eq_finite", "finite", "power",
                            "significant")}
    for g in gains(t, ci, variance=variance):
        if g["arm"] == REAL:
            continue
        true_gain = truth.gain(g["n_base"], g["n_add"], g["arm"])
        hits["gain"].append(_covers(g["lo"], g["hi"], true_gain))
        hits["significant"].append(g["significant"] and g["gain"] > 0)
        if power_band[0] <= true_gain <= power_band[1]:
            hits["power"].append(g["significant"] and g["gain"] > 0)
    for arm in design.arms:
        for p in measured_points(t, arm, ci, variance):
            true_eq = truth.n_real(p["n_base"], p["n_syn"], arm)
            covered = _covers(p["n_real_eq_lo"], p["n_real_eq_hi"], true_eq)
            finite = bool(p["n_real_eq_lo"] > 0 and math.isfinite(p["n_real_eq_hi"]))
            hits["n_real_eq"].append(covered)
            hits["finite"].append(finite)
            if finite:
                hits["n_real_eq_finite"].append(covered)
    return hits


def coverage(truth: Truth = Truth(), design: Design = Design(), studies: int = 500,
             ci: float = 0.95, seed: int = 0, variances=("moderated",),
             power_band=(0.015, 0.025)) -> dict:
    """For each variance method (all on the same simulated studies): the fraction of intervals
    containing the truth — the gain of every synthetic cell ("gain"), n_real_eq and so the
    exchange rate n_syn / n_real_eq ("n_real_eq"; "n_real_eq_finite": among intervals finite at
    both ends) —, the share of rate intervals finite at both ends ("finite"), the share of cells
    with a true gain in `power_band` called significant after Holm ("power"), and of all
    synthetic cells ("significant"). One method: a flat dict; several: {method: dict}."""
    rng = np.random.default_rng(seed)
    pooled = {v: {} for v in variances}
    for _ in range(studies):
        t = unit_table(simulate_rows(truth, design, rng))
        for v in variances:
            for k, h in _study(truth, design, t, ci, v, power_band).items():
                pooled[v].setdefault(k, []).extend(h)
    out = {v: {k: float(np.mean(h)) if h else math.nan for k, h in res.items()}
           | {"studies": studies} for v, res in pooled.items()}
    return out[variances[0]] if len(variances) == 1 else out
