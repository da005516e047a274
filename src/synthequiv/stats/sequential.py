"""The stopping rule of `grid.replicates: auto`: add replicates until the headline's intervals
are as narrow as asked, the budget is spent, or the cap is reached.

Targets (grid.target):
  gain_halfwidth=X   every synthetic cell's gain interval (plain arms: the headline's family)
                     has a half-width ≤ X percentage points
  rate_halfwidth=X   every plain arm and base size has a measured exchange rate (the headline's
                     point: its largest usable amount) whose interval's half-width is ≤ X × the
                     rate; an arm without a rate (no gain the real curve can match) never meets
                     it, so with a useless arm the study runs to its budget or cap

The rule: the last third of the replicates does not decide. After n replicates (n ≥
min_replicates) the target is judged on the intervals of the first m = n − ⌈n/3⌉ (`deciding`:
2 of 3 or 4, 3 of 5, 8 of 12), their widest rescaled to n (× √(m/n): a mean's interval narrows
as 1/√n; to first order the rate's relative half-width too); the study stops at n when that
prediction meets the target and every judged interval of all n exists (`auto_status`). Below
3 replicates nothing is judged (m < 2 has no replicate-level variance): min_replicates 2 stops
on target at 3 at the earliest.

Why not judge all n: the decision and the reported intervals would then share all their data.
A study stops sooner when its variance estimate came out small, so its intervals at the stop
are too narrow; for the rate target the relative half-width (hi − lo)/2/rate also depends on
where the point estimate lies (the curve's slope there, its distance from 0), so the stop also
selects positions; and the moderated variance is selected harder than its degrees of freedom
suggest (the synthetic contrasts that pool it share their baseline and, per arm and base size,
their generator). Judging all n, the rate intervals under `rate_halfwidth=1.0` with the
generator sd ×3 covered 0.921 (1200 simulated studies) against 0.94 at a fixed count.

Why a third: every reported interval then holds ⌈n/3⌉ replicates — their share of the
variance and of the mean — that the stop did not select. It is an accelerated sequential
procedure (Hall 1983, "Sequential estimation saving sampling operations", JRSS B 45) at every
look: the sequential part decides on m replicates, the rest is a second stage whose size was
fixed before its data were seen, as in Stein's (1945) two-stage procedure. The share is
measured, not derived: over 900-1200 simulated studies per row of benchmarks/sequential.py
(seeds 0-3) the lowest coverage of any row was 0.921 judging all n, 0.924 holding out the last
replicate, 0.927 the last quarter, 0.931 the last third, 0.928 the last half. A larger share
stops later, and later costs a rate target coverage by itself: the rate interval reads the real
curve linearly in log(n_base + n) between its knots, which is biased for a concave curve, and
the narrower the intervals the more the bias shows (default design, fixed replicates: 0.947 at
3, 0.932 at 5, 0.905 at 11, 0.869 at 20). Also measured at seed 0 and not better: the
decision's variance replaced by its one-sided upper confidence bound (50, 80, 90 %), the target
met at two consecutive counts, a first look at 4 replicates, the rate judged at the ends of its
interval. The price: about half a replicate more where the target is met early, and the widest
interval at the stop can exceed the target (the benchmark prints how much).
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


def _replicate(row) -> int:
    r = row.get("replicate")
    return int(r) if r is not None and r == r else 0  # as unit_table: none (or NaN) is 0


def headline_equivalence(rows, ci: float, variance: str, metric: str = "accuracy") -> dict:
    """What the targets read of `analyse` — "gains" and "arms"[arm]["points"], the same numbers
    (the same intervals, ends clipped for a bounded metric) — without the fits."""
    from synthequiv.stats.equivalence import BOUNDED_METRICS, gains, measured_points
    from synthequiv.stats.intervals import unit_table

    t = unit_table(rows, metric)
    arms = sorted({key[1] for key in t.values} - {REAL})
    return {"gains": gains(t, ci, metric in BOUNDED_METRICS, variance),
            "arms": {a: {"points": measured_points(t, a, ci, variance)} for a in arms}}


def deciding(n: int) -> int:
    """How many of n replicates the stopping decision sees: all but the last third (rounded
    up) — 2 of 3 or 4, 3 of 5, 4 of 6, 8 of 12."""
    return n - math.ceil(n / 3)


def auto_status(rows, target: Target, ci: float = 0.95, variance: str = "moderated",
                equivalence_of=None) -> dict:
    """The stopping rule's status after the n replicates in `rows` (results rows with their
    "replicate"; see the module docstring): target_status of all of them ("widest", "where",
    "intervals": what the report shows), and "met" — the first m = deciding(n) replicates
    predict the target met with n ("predicted": their widest interval × √(m/n); inf below
    3 replicates; "predicted_where"), and every judged interval of all n exists ("widest"
    finite); "replicates" (n), "deciding" (m). equivalence_of(rows) → the dict target_status
    reads (default headline_equivalence at ci and variance; the simulation passes a memo)."""
    rows = list(rows)
    of = equivalence_of or (lambda r: headline_equivalence(r, ci, variance))
    status = target_status(of(rows), target)
    ids = sorted({_replicate(r) for r in rows})
    n, m = len(ids), deciding(len(ids))
    predicted, where = math.inf, "fewer than 3 replicates: not judged"
    if m >= 2:
        seen = set(ids[:m])
        before = target_status(of([r for r in rows if _replicate(r) in seen]), target)
        predicted, where = before["widest"] * math.sqrt(m / n), before["where"]
    met = predicted <= target.value and math.isfinite(status["widest"])
    return status | {"met": bool(met), "predicted": predicted, "predicted_where": where,
                     "replicates": n, "deciding": m}


def stop_reason(status: dict, replicates: int, max_replicates: int, elapsed_s: float,
                budget_s: float, next_s: float) -> str:
    """Why the study stops now ("" = add a replicate): target met (auto_status: predicted by
    the first two thirds of the replicates), the cap, or the budget (the next replicate, at
    `next_s` seconds, would end past it; budget_s 0 = none)."""
    if status["met"]:
        if "predicted" not in status:
            return "target met"
        n = status.get("replicates", replicates)
        m = status.get("deciding", deciding(n))
        return (f"target met (replicates 1–{m} predict a widest interval of "
                f"{status['predicted']:.3g} with {n}; the last {n - m} did not decide)")
    if replicates >= max_replicates:
        return f"max_replicates ({max_replicates}) reached"
    if budget_s > 0 and elapsed_s + next_s > budget_s:
        return (f"budget: another replicate (≈ {next_s / 60:.1f} min) would end past the "
                f"{budget_s / 60:.1f} min budget ({elapsed_s / 60:.1f} min used)")
    return ""


# ----------------------------------------------------------------------------- simulation


def sequential_coverage(truth, design, target: Target, min_replicates: int = 3,
                        max_replicates: int = 20, studies: int = 500, ci: float = 0.95,
                        variance: str = "moderated", seed: int = 0) -> dict:
    """Simulated studies (stats/simulate.py's model, `design` with any replicates count) run
    with the stopping rule (`auto_status`, as a study runs it), no budget: coverage of the gain
    and n_real_eq intervals at the replicate the rule stopped at, beside the same studies
    stopped at a fixed count (the mean stopping point, rounded), the distribution of stopping
    points, and the widest interval at the stop over the target (studies that stopped on it)."""
    import dataclasses

    from synthequiv.stats.simulate import simulate_rows

    rng = np.random.default_rng(seed)
    full = dataclasses.replace(design, replicates=max_replicates)
    hits = {"gain": [], "n_real_eq": []}
    stops, met, over = [], [], []
    per_study = []
    for _ in range(studies):
        rows = simulate_rows(truth, full, rng)
        memo: dict[int, dict] = {}  # rows of replicates < u are a prefix of rows

        def of(sub, memo=memo):
            if len(sub) not in memo:
                memo[len(sub)] = headline_equivalence(sub, ci, variance)
            return memo[len(sub)]

        for u in range(min_replicates, max_replicates + 1):
            now = [r for r in rows if r["replicate"] < u]
            status = auto_status(now, target, equivalence_of=of)
            if status["met"] or u == max_replicates:
                break
        stops.append(u)
        met.append(status["met"])
        if status["met"]:
            over.append(status["widest"] / target.value)
        per_study.append(rows)
        for k, v in _hits(truth, of(now), design.arms).items():
            hits[k].extend(v)
    fixed_u = int(round(float(np.mean(stops))))
    fixed = {"gain": [], "n_real_eq": []}
    for rows in per_study:
        eq = headline_equivalence([r for r in rows if r["replicate"] < fixed_u], ci, variance)
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
            "share_target_met": float(np.mean(met)),
            "widest_over_target": ([float(q) for q in np.percentile(over, [50, 90])] if over
                                   else [math.nan, math.nan]),
            "share_widest_within_target": float(np.mean(np.array(over) <= 1)) if over
            else math.nan}


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
