"""The stopping rule of `grid.replicates: auto`: add replicates until the headline's intervals
are as narrow as asked, the budget is spent, or the cap is reached.

Targets (grid.target):
  gain_halfwidth=X   every synthetic cell's gain interval (plain arms: the headline's family)
                     has a half-width ≤ X percentage points
  rate_halfwidth=X   every plain arm and base size has a measured exchange rate (the headline's
                     point: its largest usable amount) whose interval's half-width is ≤ X × the
                     rate; an arm without a rate (no gain the real curve can match) never meets
                     it, so with a useless arm the study runs to its budget or cap
A rule that stops on the WIDTH of the intervals, not on their position, leaves them nearly
unbiased: for normal contrasts the sample variance is independent of the sample mean, so which
replicate the study stops at says nothing about where the mean lies. What it does cost is a
little coverage: a study stops sooner when its variance estimate happened to come out small,
and its intervals are then too narrow. `sequential_coverage` measures both by simulation (the
README quotes `benchmarks/sequential.py`).
"""

from __future__ import annotations

import math

import numpy as np

from synthequiv.stats.config import Target
from synthequiv.stats.intervals import REAL


def _plain(arm: str) -> bool:
    """A synthetic arm that is not a lever variant: variant labels always carry '@' (family,
    guidance, steps) or '+' (filter) after their base arm (generation.levers), arm labels never."""
    return arm != REAL and "@" not in arm and "+" not in arm


def _halfwidth(lo: float, hi: float, scale: float = 1.0) -> float:
    """(hi − lo) / 2 / scale; inf for an open or missing interval."""
    if not (math.isfinite(lo) and math.isfinite(hi) and scale > 0):
        return math.inf
    return (hi - lo) / 2 / scale


def target_status(equivalence: dict, target: Target) -> dict:
    """{"met", "widest" (in the target's units), "where" (the widest interval's cell),
    "intervals" (how many were judged)} from an equivalence result (`analyse`, or any dict with
    its "gains" and "arms"[arm]["points"])."""
    judged: list[tuple[float, str]] = []
    if target.kind == "gain_halfwidth":
        for g in equivalence.get("gains", []):
            if _plain(g["arm"]):
                judged.append((100 * _halfwidth(g["lo"], g["hi"]),
                               f"{g['arm']} +{g['n_add']} at {g['n_base']}/class"))
    else:
        for arm, eq in sorted(equivalence.get("arms", {}).items()):
            if not _plain(arm):
                continue
            for n in sorted({p["n_base"] for p in eq.get("points", [])}):
                usable = [p for p in eq["points"] if p["n_base"] == n and p["usable"]]
                where = f"{arm} at {n}/class"
                if not usable:
                    judged.append((math.inf, where + " (no rate)"))
                    continue
                p = max(usable, key=lambda p: p["n_syn"])
                judged.append((_halfwidth(p["rate_lo"], p["rate_hi"], p["rate"]),
                               f"{where} (+{p['n_syn']})"))
    if not judged:
        return {"met": False, "widest": math.inf, "where": "no synthetic cell", "intervals": 0}
    widest, where = max(judged, key=lambda j: j[0])
    return {"met": bool(widest <= target.value), "widest": widest, "where": where,
            "intervals": len(judged)}


def stop_reason(status: dict, replicates: int, max_replicates: int, elapsed_s: float,
                budget_s: float, next_s: float) -> str:
    """Why the study stops now ("" = add a replicate): target met, the cap, or the budget
    (the next replicate, at `next_s` seconds, would end past it; budget_s 0 = none)."""
    if status["met"]:
        return "target met"
    if replicates >= max_replicates:
        return f"max_replicates ({max_replicates}) reached"
    if budget_s > 0 and elapsed_s + next_s > budget_s:
        return (f"budget: another replicate (≈ {next_s / 60:.1f} min) would end past the "
                f"{budget_s / 60:.1f} min budget ({elapsed_s / 60:.1f} min used)")
    return ""


# ----------------------------------------------------------------------------- simulation


def _equivalence(t, ci: float, variance: str, arms) -> dict:
    from synthequiv.stats.equivalence import gains, measured_points

    return {"gains": gains(t, ci, variance=variance),
            "arms": {a: {"points": measured_points(t, a, ci, variance)} for a in arms}}


def sequential_coverage(truth, design, target: Target, min_replicates: int = 3,
                        max_replicates: int = 20, studies: int = 500, ci: float = 0.95,
                        variance: str = "moderated", seed: int = 0) -> dict:
    """Simulated studies (stats/simulate.py's model, `design` with any replicates count) run
    with the stopping rule, no budget: coverage of the gain and n_real_eq intervals at the
    replicate the rule stopped at, beside the same studies stopped at a fixed count (the mean
    stopping point, rounded), and the distribution of stopping points."""
    import dataclasses

    from synthequiv.stats.intervals import unit_table
    from synthequiv.stats.simulate import simulate_rows

    rng = np.random.default_rng(seed)
    full = dataclasses.replace(design, replicates=max_replicates)
    hits = {"gain": [], "n_real_eq": []}
    stops, met = [], []
    per_study = []
    for _ in range(studies):
        rows = simulate_rows(truth, full, rng)
        for u in range(min_replicates, max_replicates + 1):
            eq = _equivalence(unit_table([r for r in rows if r["replicate"] < u]), ci,
                              variance, design.arms)
            status = target_status(eq, target)
            if status["met"] or u == max_replicates:
                break
        stops.append(u)
        met.append(status["met"])
        per_study.append(rows)
        for k, v in _hits(truth, eq, design.arms).items():
            hits[k].extend(v)
    fixed_u = int(round(float(np.mean(stops))))
    fixed = {"gain": [], "n_real_eq": []}
    for rows in per_study:
        eq = _equivalence(unit_table([r for r in rows if r["replicate"] < fixed_u]), ci,
                          variance, design.arms)
        for k, v in _hits(truth, eq, design.arms).items():
            fixed[k].extend(v)
    return {"target": target.text(), "studies": studies, "variance": variance,
            "coverage_gain": float(np.mean(hits["gain"])),
            "coverage_n_real_eq": float(np.mean(hits["n_real_eq"])),
            "fixed_replicates": fixed_u,
            "fixed_coverage_gain": float(np.mean(fixed["gain"])),
            "fixed_coverage_n_real_eq": float(np.mean(fixed["n_real_eq"])),
            "mean_replicates": float(np.mean(stops)),
            "replicates_quantiles": [int(q) for q in np.percentile(stops, [10, 50, 90])],
            "share_target_met": float(np.mean(met))}


def _hits(truth, eq: dict, arms) -> dict:
    """Whether each synthetic gain and n_real_eq interval contains the truth."""
    out = {"gain": [], "n_real_eq": []}
    for g in eq["gains"]:
        if g["arm"] != REAL:
            true = truth.gain(g["n_base"], g["n_add"], g["arm"])
            out["gain"].append(bool(math.isfinite(g["lo"]) and g["lo"] <= true <= g["hi"]))
    for arm in arms:
        for p in eq["arms"][arm]["points"]:
            true = truth.n_real(p["n_base"], p["n_syn"], arm)
            lo, hi = p["n_real_eq_lo"], p["n_real_eq_hi"]
            out["n_real_eq"].append(bool(math.isfinite(lo) and lo <= true <= hi))
    return out
