"""Equivalence stage: how many synthetic images are worth one real image?

Input is the grid's results table: one row per trained classifier,
``{"n_base", "arm", "n_add", "seed", "replicate" (optional), <metric>}``. Every count is PER
CLASS. The real arm's ``n_add = 0`` cell at a base size (or arm "baseline") is the shared
baseline of every arm at that base size. Intervals: see `intervals.py` (replicates are the
units; t-intervals of within-unit contrasts, moderated across the cells of a family by default
(moderated.py), Fieller-type test inversion; fitted numbers are point estimates).

1. The real learning curve at each base size is the real arm's cell means against
   x = log(n_base + n_add), made monotone by isotonic regression, a monotone cubic (PCHIP) in x
   between knots (`intervals.curve_interpolant`: accuracy is concave in log data, and a chord
   between sparse knots overstates what a synthetic cell is worth); the real arm's amounts
   should cover the synthetic range densely (≥ 4 per base size in every preset). The measured
   points, their intervals and the formula fit (item 3) all read this one curve.

2. Measured points. Each synthetic cell's mean accuracy read off the real curve gives
   n_real_eq, the extra real images/class it is worth, and the exchange rate n_syn / n_real_eq
   (synthetic images per real image). Its interval is every real amount the cell is not
   significantly different from (paired t over units). A cell outside the curve is CENSORED
   (flag "below_range": the synthetic data did no better than the baseline; "above_range": it
   beat the largest real amount, n_real_eq ≥ that amount), never dropped.

3. The paper's form (arXiv 2508.09550), n_real⁺ the extra real images matched:

       n_syn / n_base ≈ c₁^(n_base/k) · (c₂^(n_real⁺/n_base) − 1)

   fitted in ACCURACY space: formula → n_real⁺ → real curve → predicted accuracy of every
   synthetic cell, weighted by 1/SE² of the cell mean; a censored cell enters as a bound (its
   accuracy is clipped to the curve's range, so a prediction at or beyond that end costs
   nothing). k = 1 by default with per-class counts: c₁ is then per class image. The paper
   counts images in total (N = C·n for C classes), so its c₁ at its k_p equals
   c₁^(k_p / (C·k)) here; only ln(c₁)/k is identifiable.

4. The effective-data model acc = a − b·(n_base + n_real⁺ + r·n_syn)^(−α) (r: one synthetic
   image's worth in real images) is the alternative, compared with the formula by
   leave-one-cell-out prediction error, with an interval on the paired difference.

Layout: the real curve is curves.py, the fits of items 3–4 fitting.py (re-exported here), the
interval methods intervals.py and moderated.py; this module makes the measured points and gains
and assembles one arm's answer. Fitted coefficients and rates are model-based point estimates
without an interval: a jackknife over 3 replicates covered 74–92 % in issue 26's simulation,
below the 90 % the report would need to print one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy import stats

from synthequiv.stats.config import (  # noqa: F401 (the stage's config, re-exported)
    FITTED_CI_METHOD,
    VARIANCES,
    EquivalenceConfig,
)
from synthequiv.stats.curves import (  # noqa: F401  (monotone_inverse: re-exported)
    RealCurve,
    _isotonic,
    monotone_inverse,
    real_curves,
)
from synthequiv.stats.fitting import (  # noqa: F401  (re-exported: the stage's public names)
    ALPHA_BOUNDS,
    LN_C2_RANGE,
    MAX_EXTRAPOLATION,
    R_MAX,
    _cell_se,
    _effective_predict,
    compare_models,
    exchange_rate,
    fit_effective,
    fit_paper,
    paper_n_real,
    paper_n_syn,
)
from synthequiv.stats.intervals import (
    BOUNDED_METRICS,
    MEASURED_COVERAGE,
    NO_SPREAD,
    REAL,
    Key,
    UnitTable,
    clip_ends,
    holm,
    inversion_interval,
    t_interval,
    unit_table,
    unit_variances,
)
from synthequiv.stats.moderated import MIN_CONTRASTS, Prior, fit_prior
from synthequiv.utils import SynthequivError

# ----------------------------------------------------------------------------- real curve

def real_curve(rows, n_base: int, metric: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(n_add [m], monotone mean metric [m]) of the real arm at `n_base`, including n_add = 0."""
    curves = real_curves(unit_table(rows, metric).means())
    if int(n_base) not in curves:
        raise SynthequivError(
            f"no real baseline (arm real, n_add 0) at n_base {n_base}: nothing to compare with")
    c = curves[int(n_base)]
    return c.n_add, c.y


# ----------------------------------------------------------------------------- measured points


def _paired_curve(curve: RealCurve, real_u: np.ndarray, have: np.ndarray) -> RealCurve:
    """The real curve from the units where the synthetic cell exists (`have` [U]): comparing a
    cell measured in some replicates with the curve averaged over all of them mixes different
    base draws, generators and test sets (one study headlined 1 real ≈ 7472 synthetic so)."""
    if have.all():
        return curve
    sub = real_u[:, have]
    n = np.isfinite(sub).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        y = np.nansum(sub, 1) / n
    raw = np.array([np.nanmean(v) for v in real_u])  # a knot missing in all of them: all units
    y = np.where(n > 0, y, raw)
    return RealCurve(curve.n_base, curve.n_add, curve.x, _isotonic(y), curve.keys)


def _point(t: UnitTable, curve: RealCurve, key: Key, ci: float, prior: Prior | None) -> dict:
    syn_u = t.values[key]
    real_u = np.stack([t.values[k] for k in curve.keys])
    acc = float(np.nanmean(syn_u))
    n_eq, flag = _paired_curve(curve, real_u, np.isfinite(syn_u)).inverse(acc)
    if flag in ("ok", "flat") and n_eq <= 1e-6 * curve.n_base:
        flag = "below_range"  # the baseline itself (up to rounding): worth nothing
    inv = inversion_interval(syn_u, real_u, curve.x, ci, prior=prior)
    lo = max(0.0, math.exp(inv["x_lo"]) - curve.n_base) if math.isfinite(inv["x_lo"]) else math.nan
    hi = max(0.0, math.exp(inv["x_hi"]) - curve.n_base) if math.isfinite(inv["x_hi"]) else math.nan
    if inv["lower_open"]:
        lo = 0.0  # the curve's start (exp∘log rounding would leave ~1e-15): "worth nothing"
    if inv["empty"] and flag == "above_range":
        lo, hi = curve.m_max, math.inf  # significantly beyond the largest real amount
    elif inv["upper_open"]:
        hi = math.inf  # the data allow any amount beyond the largest measured
    if math.isfinite(lo):  # the estimate lies in its own interval: the isotonic point may sit
        # just outside the raw hull, and a censored mean (a flat or noisy real curve) outside
        # the amounts its unit-level test accepts; above the range it is a bound n_eq ≥ m_max
        hi = math.inf if flag == "above_range" else hi
        lo, hi = min(lo, n_eq), max(hi, n_eq)
    n_syn = key[2]
    usable = flag in ("ok", "flat") and n_eq > 0
    return {
        "n_base": key[0], "arm": key[1], "n_syn": n_syn, "acc_syn": acc, "n_real_eq": n_eq,
        "n_real_eq_lo": lo, "n_real_eq_hi": hi, "flag": flag, "usable": usable,
        "rate": n_syn / n_eq if usable else math.nan,
        "rate_lo": _ratio(n_syn, hi), "rate_hi": _ratio(n_syn, lo),
        "n_units": inv["n_units"], "largest_real": curve.m_max,
    }


def _ratio(n_syn: float, n_real: float) -> float:
    """n_syn / n_real with the interval conventions: n_real 0 → inf, inf → 0, NaN stays."""
    if not n_real == n_real:
        return math.nan
    return math.inf if n_real <= 0 else n_syn / n_real


def measured_points(t: UnitTable, arm: str, ci: float, variance: str = "moderated") -> list[dict]:
    """One dict per synthetic cell of `arm` (see module docstring, item 2); `variance`: see
    EquivalenceConfig (the synthetic family's prior moderates the test inversion)."""
    means = t.means()
    curves = real_curves(means)
    prior = inversion_prior(t, variance)
    return [_point(t, curves[k[0]], k, ci, prior) for k in sorted(means)
            if k[1] == arm and k[2] > 0 and k[0] in curves]


def equivalent_points(rows, arm: str, metric: str = "accuracy", ci: float = 0.95,
                      variance: str = "moderated") -> list[dict]:
    t = unit_table(rows, metric)
    _check_arm(t.values, arm)
    return measured_points(t, arm, ci, variance)


def _check_arm(values: Mapping[Key, Any], arm: str) -> None:
    if arm == REAL:
        raise SynthequivError("the real arm is the reference; pick a generative arm")
    if not any(k[1] == arm for k in values):
        arms = sorted({k[1] for k in values})
        raise SynthequivError(f"no results for arm '{arm}' (arms present: {', '.join(arms)})")


def fit_effective_data(rows, arm: str, metric: str = "accuracy") -> dict:
    t = unit_table(rows, metric)
    _check_arm(t.values, arm)
    return fit_effective(t.means(), arm)



# ----------------------------------------------------------------------------- gains


def _contrasts(t: UnitTable) -> dict[Key, np.ndarray]:
    """Each non-baseline cell's per-unit difference from its baseline [U] (NaN where either is
    missing: paired on the units where both exist)."""
    out = {}
    for key in sorted(t.values):
        nb, arm, na = key
        base = (nb, REAL, 0)
        if (arm, na) != (REAL, 0) and base in t.values:
            out[key] = t.values[key] - t.values[base]
    return out


def family_priors(t: UnitTable, variance: str = "moderated") -> dict[str, Prior | None]:
    """The moderated-variance prior of each family ("synthetic": every generative arm's cells;
    "real"), fitted to their gain contrasts; None for each with variance "per_cell"."""
    if variance not in VARIANCES:
        raise SynthequivError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    d = _contrasts(t)
    out: dict[str, Prior | None] = {}
    for name, member in (("synthetic", lambda k: k[1] != REAL), ("real", lambda k: k[1] == REAL)):
        rows = [v for k, v in d.items() if member(k)]
        if variance == "per_cell":
            out[name] = None
            continue
        s2, df = unit_variances(np.array(rows).reshape(len(rows), t.n_units))
        out[name] = fit_prior(s2, df)
    return out


def inversion_prior(t: UnitTable, variance: str = "moderated") -> Prior | None:
    """The moderated-variance prior of the exchange-rate test inversion: fitted to what it
    tests, each synthetic cell against each real knot beyond the baseline at its base size.
    The gains' prior (cell − baseline) does not fit it: the baseline trains
    grid.base_seed_factor × as many seeds as a knot, so a gain has less seed variance than the
    inversion's contrasts, and with the gains' prior the rate intervals covered ~0.93 instead
    of ~0.95 once the replicates were many (the prior then outweighs each contrast's own
    variance). d0 is capped at the synthetic family's pooled df, as for the gains: the
    contrasts of one cell against several knots are not independent; with fewer synthetic
    cells than a prior needs (moderated.MIN_CONTRASTS), or no knot beyond the baseline, the
    gains' prior (then none, or the one the gains use)."""
    if variance not in VARIANCES:
        raise SynthequivError(f"variance must be one of {', '.join(VARIANCES)}, got {variance!r}")
    if variance == "per_cell":
        return None
    gains_prior = family_priors(t, variance)["synthetic"]
    if gains_prior is None or gains_prior.n_contrasts < MIN_CONTRASTS:
        return gains_prior  # too few synthetic cells to borrow from, however many knots
    syn = [k for k in sorted(t.values) if k[1] != REAL and k[2] > 0]
    rows = [t.values[k] - t.values[r] for k in syn for r in sorted(t.values)
            if r[0] == k[0] and r[1] == REAL and r[2] > 0]
    if not rows:
        return gains_prior
    s2, df = unit_variances(np.array(rows).reshape(len(rows), t.n_units))
    return fit_prior(s2, df, cap=gains_prior.pooled_df)


def gains(t: UnitTable, ci: float, bounded: bool = False, variance: str = "moderated") -> list[dict]:
    """Every non-baseline cell's gain over its baseline, paired within units, with Holm-adjusted
    significance (families: synthetic cells; real cells) and a Bonferroni-simultaneous CI.
    `bounded`: the metric lies in [0, 1], so interval ends are clipped to what a gain over
    the baseline's mean b can be, [-b, 1 - b]. `variance`: see EquivalenceConfig."""
    priors = family_priors(t, variance)
    out = []
    for (nb, arm, na), d in _contrasts(t).items():
        prior = priors["real" if arm == REAL else "synthetic"]
        out.append({"n_base": nb, "arm": arm, "n_add": na, **t_interval(d, ci, prior), "_d": d,
                    "_prior": prior, "_base": float(np.nanmean(t.values[(nb, REAL, 0)]))})
    for family in (lambda g: g["arm"] != REAL, lambda g: g["arm"] == REAL):
        members = [g for g in out if family(g)]
        # a cell with no spread over units was tested but is undetermined: it counts in the
        # family as p = 1 (conservative for the others), and stays without a p-value itself
        pvals = [1.0 if g["no_interval"] == NO_SPREAD else g["p"] for g in members]
        m = sum(math.isfinite(p) for p in pvals)
        for g, p_adj in zip(members, holm(pvals)):
            g["p_holm"] = p_adj if math.isfinite(g["p"]) else math.nan
            g["family_size"] = m
            g["significant"] = bool(math.isfinite(p_adj) and p_adj < 1 - ci)
            sim = t_interval(g["_d"], 1 - (1 - ci) / max(m, 1), g["_prior"])
            g["sim_lo"], g["sim_hi"] = sim["lo"], sim["hi"]
    for g in out:
        g["gain"] = g.pop("estimate")
        del g["_d"], g["_prior"]
        b = g.pop("_base")  # a bounded metric's gain over a baseline b lies in [-b, 1 - b]
        clip_ends(g, 1.0 - b if bounded else None, -b, ("lo", "hi", "sim_lo", "sim_hi"))
    return out


def gain_significance(rows, n_base: int, arm: str, n_add: int, ci: float = 0.95,
                      metric: str = "accuracy") -> dict:
    """Gain of one cell over its baseline (unadjusted t over units; see `gains`)."""
    t = unit_table(rows, metric)
    key, base = (int(n_base), str(arm), int(n_add)), (int(n_base), REAL, 0)
    for k in (key, base):
        if k not in t.values:
            raise SynthequivError(f"no results for cell n_base={k[0]} arm={k[1]} n_add={k[2]}")
    b = float(np.nanmean(t.values[base]))  # a bounded metric's gain lies in [-b, 1 - b]
    r = clip_ends(t_interval(t.values[key] - t.values[base], ci),
                  1.0 - b if metric in BOUNDED_METRICS else None, -b)
    r["gain"] = r.pop("estimate")
    r["significant"] = bool(math.isfinite(r["p"]) and r["p"] < 1 - ci)
    return r


# ----------------------------------------------------------------------------- paper formula

def _arm_analysis(t: UnitTable, arm: str, cfg: EquivalenceConfig) -> dict:
    """Measured points, the two fitted models and their comparison for one generative arm.
    Fitted numbers are model-based point estimates without an interval (FITTED_CI_METHOD)."""
    means, se = t.means(), _cell_se(t)
    points = measured_points(t, arm, cfg.ci, cfg.variance)
    fit, eff = fit_paper(means, se, arm, cfg.k), fit_effective(means, arm)
    supported = {p["n_base"] for p in points if p["usable"]}
    exchange = []
    for nb in sorted({p["n_base"] for p in points}):
        for f in cfg.exchange_points:
            rate = exchange_rate(fit, nb, f) if fit["status"] == "ok" else math.nan
            exchange.append({"n_base": nb, "frac": f, "n_real_plus": f * nb,
                             "n_syn": rate * f * nb, "rate": rate, "lo": math.nan,
                             "hi": math.nan, "supported": nb in supported})
    ci = {name: [math.nan, math.nan] for name in ("c1", "c2", "ln_c1_over_k", "r")}
    return {"points": points, "fit": fit, "exchange": exchange, "effective_data": eff,
            "comparison": compare_models(means, se, arm, cfg.k, cfg.ci), "ci": ci,
            "ci_method": FITTED_CI_METHOD}


# ----------------------------------------------------------------------------- entry point


def cell_summaries(t: UnitTable, ci: float, bounded: bool = False) -> list[dict]:
    """Mean and t-interval over units for every cell (the accuracy table and curves);
    `bounded`: the metric lies in [0, 1], and so do the interval's ends."""
    out = []
    for (nb, a, na), v in sorted(t.values.items()):
        r = clip_ends(t_interval(v, ci), 1.0 if bounded else None, 0.0)
        v = v[np.isfinite(v)]
        out.append({"n_base": nb, "arm": a, "n_add": na, "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if v.size > 1 else math.nan,
                    "lo": r["lo"], "hi": r["hi"], "no_interval": r["no_interval"],
                    "n_units": int(v.size),
                    "n_runs": t.n_rows[(nb, a, na)]})
    return out


def analyse(rows, cfg: EquivalenceConfig, metric: str = "accuracy") -> dict:
    """Every equivalence number for each generative arm in the table.

    Returns {"config", "metric", "unit", "n_units", "coverage", "cells": cell_summaries,
    "gains": gains(...), "arms": {arm: {"points": measured points, "fit": paper formula,
    "exchange": fitted rates, "effective_data", "comparison", "ci": {"c1", "c2",
    "ln_c1_over_k", "r": [lo, hi]} (NaN: model-based point estimates), "ci_method"}},
    "variance": {"method", "synthetic", "real": each family's moderated-variance prior or
    None; "rates": the exchange-rate test inversion's prior, inversion_prior}}. Plain types; NaN
    marks what could not be estimated; inf marks an open interval end.
    """
    rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
    t = unit_table(rows, metric)
    config = dataclasses.asdict(cfg)
    config["exchange_points"] = list(cfg.exchange_points)
    arms = sorted({key[1] for key in t.values} - {REAL})
    priors = family_priors(t, cfg.variance)
    rates = inversion_prior(t, cfg.variance)
    return {
        "config": config, "metric": metric, "unit": t.unit, "n_units": t.n_units,
        "coverage": dict(MEASURED_COVERAGE),
        "t_crit": float(stats.t.ppf(0.5 + cfg.ci / 2, max(t.n_units - 1, 1))),
        "variance": {"method": cfg.variance, **{name: (p.as_dict() if p else None)
                                                for name, p in priors.items()},
                     "rates": rates.as_dict() if rates else None},
        "cells": cell_summaries(t, cfg.ci, metric in BOUNDED_METRICS),
        "gains": gains(t, cfg.ci, metric in BOUNDED_METRICS, cfg.variance),
        "arms": {arm: _arm_analysis(t, arm, cfg) for arm in arms},
    }
