"""Simulated studies with a known truth: how often do the report's intervals cover it?

A study's accuracy in replicate u, seed s, cell c at base size n is

    truth(c) + e_base[u, n] + e_gen[u, n, arm] (synthetic cells) + e_cell[u, c] + e_seed[u, s, c]

truth: the real arm follows a power law acc(N) = a − b·N^(−α) in the total real images/class N;
a synthetic cell is worth n_real⁺ extra real images by the paper's formula (so its truth is
acc(n_base + n_real⁺)). e_base (base draw and test set of the replicate, shared by every cell at
that base size), e_gen (the replicate's generator), e_cell (cell × replicate interaction) and
e_seed (classifier seed) are independent normals. The defaults are sized after the digits
calibration in the design notes (seed sd ≈ 0.004 accuracy; baseline 0.948 at 10/class).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from synthequiv.stats.equivalence import gains, measured_points, paper_n_real
from synthequiv.stats.intervals import REAL, unit_table


@dataclass(frozen=True)
class Truth:
    a: float = 0.99
    b: float = 0.70
    alpha: float = 1.22  # acc(10) = 0.948, acc(20) = 0.972, as digits measured
    ln_c1_over_k: float = 0.172  # with c2: closed +160 ≈ real +5 at 10/class (design notes)
    c2: float = 15.0

    def real(self, n_total):
        return self.a - self.b * np.asarray(n_total, float) ** -self.alpha

    def n_real(self, n_base, n_syn) -> float:
        return float(paper_n_real(self.ln_c1_over_k, self.c2, n_base, n_syn))


@dataclass(frozen=True)
class Design:
    bases: tuple[int, ...] = (10, 20)
    real_add: tuple[int, ...] = (5, 10, 20, 40)
    syn_add: tuple[int, ...] = (40, 160)
    replicates: int = 3
    seeds: int = 2
    sd_base: float = 0.006
    sd_gen: float = 0.004
    sd_cell: float = 0.002
    sd_seed: float = 0.004
    arms: tuple[str, ...] = field(default=("closed",))


def simulate_rows(truth: Truth, design: Design, rng: np.random.Generator) -> list[dict]:
    rows = []
    for u in range(design.replicates):
        for nb in design.bases:
            e_base = rng.normal(0, design.sd_base)
            cells = [(REAL, m, truth.real(nb + m), 0.0) for m in (0, *design.real_add)]
            for arm in design.arms:
                e_gen = rng.normal(0, design.sd_gen)
                cells += [(arm, m, truth.real(nb + truth.n_real(nb, m)), e_gen)
                          for m in design.syn_add]
            for arm, m, acc, e_gen in cells:
                e_cell = rng.normal(0, design.sd_cell)
                for s in range(design.seeds):
                    rows.append({"n_base": nb, "arm": arm, "n_add": m, "seed": s, "replicate": u,
                                 "accuracy": float(acc + e_base + e_gen + e_cell
                                                   + rng.normal(0, design.sd_seed))})
    return rows


def _covers(lo: float, hi: float, value: float) -> bool:
    return bool(math.isfinite(lo) and lo <= value <= hi)


def coverage(truth: Truth = Truth(), design: Design = Design(), studies: int = 500,
             ci: float = 0.95, seed: int = 0) -> dict:
    """Fraction of simulated studies whose intervals contain the truth: the gain of every
    synthetic cell, and n_real_eq (hence the exchange rate n_syn / n_real_eq) of every cell."""
    rng = np.random.default_rng(seed)
    hits = {"gain": [], "n_real_eq": [], "gain_significant": []}
    for _ in range(studies):
        t = unit_table(simulate_rows(truth, design, rng))
        for g in gains(t, ci):
            if g["arm"] == REAL:
                continue
            true_gain = (truth.real(g["n_base"] + truth.n_real(g["n_base"], g["n_add"]))
                         - truth.real(g["n_base"]))
            hits["gain"].append(_covers(g["lo"], g["hi"], true_gain))
            hits["gain_significant"].append(g["significant"])
        for arm in design.arms:
            for p in measured_points(t, arm, ci):
                true_eq = truth.n_real(p["n_base"], p["n_syn"])
                hits["n_real_eq"].append(_covers(p["n_real_eq_lo"], p["n_real_eq_hi"], true_eq))
    return {name: float(np.mean(v)) if v else math.nan for name, v in hits.items()} | {
        "studies": studies, "cells": len(hits["gain"]) // max(studies, 1)}
