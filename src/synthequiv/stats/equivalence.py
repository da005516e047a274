"""Equivalence stage: how many synthetic images are worth one real image?

Input is the grid's results table: one row per trained classifier,
``{"n_base", "arm", "n_add", "seed", "replicate" (optional), <metric>}``. Every count is PER
CLASS. The real arm's ``n_add = 0`` cell at a base size (or arm "baseline") is the shared
baseline of every arm at that base size. Intervals: see `intervals.py` (replicates are the
units; t-intervals of within-unit contrasts, Fieller-type test inversion, jackknife).

1. The real learning curve at each base size is the real arm's cell means against
   x = log(n_base + n_add), made monotone by isotonic regression and linear in x between knots.
   Linear in log data is close to how accuracy grows (a straight line in raw n_add between
   sparse knots overstates the inverse on a concave curve); the real arm's amounts should cover
   the synthetic range densely (≥ 4 per base size in every preset).

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

Length (~590 lines): the measured points, the formula fit, the effective-data model and their
comparison share the real-curve machinery and the unit table; split apart, one estimator would
be spread over several files. The interval methods themselves live in intervals.py.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

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
    jackknife,
    t_interval,
    unit_table,
)
from synthequiv.utils import SynthequivError

LN_C2_RANGE = (1e-6, 30.0)  # ln c₂ outside: c₂ not pinned down by the data ("at_bound")
_LN_C2_GRID = np.geomspace(1e-3, 30.0, 40)
_LN_C1_GRID = np.linspace(-0.3, 0.3, 41)  # ln c₁ / k start values (per-class counts, k = 1)
_ALPHA_GRID = np.geomspace(0.05, 3.0, 16)[:, None, None]  # start values for alpha [A, 1, 1]
_R_GRID = np.concatenate([[0.0], np.geomspace(1e-2, 20.0, 15)])[None, :, None]  # [1, R, 1]
ALPHA_BOUNDS = (0.05, 5.0)  # below 0.05, a and b become collinear and trf crawls
# a fitted synthetic amount beyond this × the largest measured one is not reported as an
# estimate (report's rates, planner's N): the formula's curvature is then unconstrained
MAX_EXTRAPOLATION = 10.0
R_MAX = 100.0
_TIE_TOL = 1e-12


@dataclass(frozen=True)
class EquivalenceConfig:
    k: float = 1.0  # scale in c₁^(n_base/k), counts per class; only ln(c₁)/k is identifiable
    ci: float = 0.95  # coverage of every interval (and 1 − ci is the family-wise error rate)
    exchange_points: tuple[float, ...] = (0.5, 1.0)  # n_real⁺ / n_base for fitted rates
    bootstrap: int = 0  # unused since intervals became t/jackknife over replicates; accepted
    seed: int = 0  # unused (the intervals are deterministic); accepted so old configs load

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


# ----------------------------------------------------------------------------- real curve


def _isotonic(y: np.ndarray) -> np.ndarray:
    """Non-decreasing least-squares fit to y (pool adjacent violators, equal weights)."""
    levels: list[float] = []
    sizes: list[int] = []
    for v in y:
        levels.append(float(v))
        sizes.append(1)
        while len(levels) > 1 and levels[-2] > levels[-1]:
            n = sizes[-2] + sizes[-1]
            levels[-2:] = [(levels[-2] * sizes[-2] + levels[-1] * sizes[-1]) / n]
            sizes[-2:] = [n]
    return np.repeat(levels, sizes)


def _invert(x: np.ndarray, y_iso: np.ndarray, y_query: float) -> tuple[float, str]:
    """Piecewise-linear inverse of an already monotone curve; see `monotone_inverse`."""
    tol = _TIE_TOL * max(1.0, abs(y_query))
    if y_query < y_iso[0] - tol:
        return float(x[0]), "below_range"
    if y_query > y_iso[-1] + tol:
        return float(x[-1]), "above_range"
    on_level = np.abs(y_iso - y_query) <= tol
    if on_level.any():  # leftmost x that reaches the level (generalised inverse)
        return float(x[np.argmax(on_level)]), "flat" if on_level.sum() > 1 else "ok"
    j = int(np.searchsorted(y_iso, y_query))  # y_iso[j-1] < y_query < y_iso[j]
    t = (y_query - y_iso[j - 1]) / (y_iso[j] - y_iso[j - 1])
    return float(x[j - 1] + t * (x[j] - x[j - 1])), "ok"


def monotone_inverse(x_knots, y_knots, y_query: float) -> tuple[float, str]:
    """x at which the isotonic version of y(x) reaches `y_query`: exact at knots, linear
    between them, never extrapolated. Flags "ok", "below_range" (returns x[0]), "above_range"
    (returns x[-1], a bound), "flat" (a level held over several knots: the leftmost x)."""
    y_query = float(y_query)
    if not math.isfinite(y_query):
        raise SynthequivError(f"cannot invert the curve at a non-finite value ({y_query})")
    x = np.asarray(x_knots, dtype=float).ravel()
    y = np.asarray(y_knots, dtype=float).ravel()
    if x.size == 0 or x.shape != y.shape:
        raise SynthequivError(f"need equally many x and y knots (got {x.size} and {y.size})")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise SynthequivError("curve knots must be finite")
    order = np.argsort(x, kind="stable")
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise SynthequivError("curve knots need distinct x values")
    return _invert(x, _isotonic(y), y_query)


@dataclass
class RealCurve:
    """The real arm at one base size: knots in x = log(n_base + n_add)."""

    n_base: int
    n_add: np.ndarray  # [K], starts at 0
    x: np.ndarray  # [K]
    y: np.ndarray  # [K] isotonic cell means
    keys: list[Key]

    @property
    def m_max(self) -> float:
        return float(self.n_add[-1])

    def at(self, n_real: np.ndarray) -> np.ndarray:
        """Accuracy after n_real extra real images/class (clamped to the measured range)."""
        return np.interp(np.log(self.n_base + np.asarray(n_real, float)), self.x, self.y)

    def inverse(self, acc: float) -> tuple[float, str]:
        x, flag = _invert(self.x, self.y, acc)
        return max(0.0, math.exp(x) - self.n_base), flag


def real_curves(means: Mapping[Key, float]) -> dict[int, RealCurve]:
    """One curve per base size that has a real baseline (arm real, n_add 0)."""
    out = {}
    for n_base in sorted({k[0] for k in means}):
        keys = sorted(k for k in means if k[0] == n_base and k[1] == REAL)
        if not keys or keys[0][2] != 0:
            continue
        n_add = np.array([k[2] for k in keys], float)
        y = np.array([means[k] for k in keys])
        out[n_base] = RealCurve(n_base, n_add, np.log(n_base + n_add), _isotonic(y), keys)
    return out


def real_curve(rows, n_base: int, metric: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(n_add [m], monotone mean metric [m]) of the real arm at `n_base`, including n_add = 0."""
    curves = real_curves(unit_table(rows, metric).means())
    if int(n_base) not in curves:
        raise SynthequivError(
            f"no real baseline (arm real, n_add 0) at n_base {n_base}: nothing to compare with")
    c = curves[int(n_base)]
    return c.n_add, c.y


# ----------------------------------------------------------------------------- measured points


def _point(t: UnitTable, means, curve: RealCurve, key: Key, ci: float) -> dict:
    acc = means[key]
    n_eq, flag = curve.inverse(acc)
    if flag in ("ok", "flat") and n_eq <= 1e-6 * curve.n_base:
        flag = "below_range"  # the baseline itself (up to rounding): worth nothing
    real_u = np.stack([t.values[k] for k in curve.keys])
    inv = inversion_interval(t.values[key], real_u, curve.x, ci)
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


def measured_points(t: UnitTable, arm: str, ci: float) -> list[dict]:
    """One dict per synthetic cell of `arm` (see module docstring, item 2)."""
    means = t.means()
    curves = real_curves(means)
    return [_point(t, means, curves[k[0]], k, ci) for k in sorted(means)
            if k[1] == arm and k[2] > 0 and k[0] in curves]


def equivalent_points(rows, arm: str, metric: str = "accuracy", ci: float = 0.95) -> list[dict]:
    t = unit_table(rows, metric)
    _check_arm(t.values, arm)
    return measured_points(t, arm, ci)


def _check_arm(values: Mapping[Key, Any], arm: str) -> None:
    if arm == REAL:
        raise SynthequivError("the real arm is the reference; pick a generative arm")
    if not any(k[1] == arm for k in values):
        arms = sorted({k[1] for k in values})
        raise SynthequivError(f"no results for arm '{arm}' (arms present: {', '.join(arms)})")


# ----------------------------------------------------------------------------- gains


def gains(t: UnitTable, ci: float, bounded: bool = False) -> list[dict]:
    """Every non-baseline cell's gain over its baseline, paired within units, with Holm-adjusted
    significance (families: synthetic cells; real cells) and a Bonferroni-simultaneous CI.
    `bounded`: the metric lies in [0, 1], so interval ends are clipped to what a gain over
    the baseline's mean b can be, [-b, 1 - b]."""
    out = []
    for key in sorted(t.values):
        nb, arm, na = key
        base = (nb, REAL, 0)
        if (arm, na) == (REAL, 0) or base not in t.values:
            continue
        d = t.values[key] - t.values[base]
        out.append({"n_base": nb, "arm": arm, "n_add": na, **t_interval(d, ci), "_d": d,
                    "_base": float(np.nanmean(t.values[base]))})
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
            sim = t_interval(g["_d"], 1 - (1 - ci) / max(m, 1))
            g["sim_lo"], g["sim_hi"] = sim["lo"], sim["hi"]
    for g in out:
        g["gain"] = g.pop("estimate")
        del g["_d"]
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


def paper_n_real(ln_c1_over_k: float, c2: float, n_base, n_syn):
    """The formula solved for n_real⁺: n_base · log1p(n_syn / n_base / c₁^(n_base/k)) / ln c₂."""
    n_base = np.asarray(n_base, float)
    scale = np.exp(np.clip(ln_c1_over_k * n_base, -700, 700))
    return n_base * np.log1p(np.asarray(n_syn, float) / n_base / scale) / math.log(c2)


def paper_n_syn(ln_c1_over_k: float, c2: float, n_base, n_real):
    """The formula: n_syn = n_base · c₁^(n_base/k) · (c₂^(n_real⁺/n_base) − 1)."""
    n_base = np.asarray(n_base, float)
    return n_base * np.exp(ln_c1_over_k * n_base) * np.expm1(
        math.log(c2) * np.asarray(n_real, float) / n_base)


def exchange_rate(fit: Mapping, n_base: float, frac: float) -> float:
    """Synthetic images per real image when matching n_real⁺ = frac·n_base (NaN without a fit)."""
    if not frac > 0:
        raise SynthequivError(f"exchange-rate fraction must be > 0, got {frac}")
    if not (fit.get("c2", math.nan) > 1):
        return math.nan
    return float(paper_n_syn(fit["ln_c1_over_k"], fit["c2"], n_base, frac * n_base)
                 / (frac * n_base))


def _cells_for_fit(means, se, curves, arm):
    keys = [k for k in sorted(means) if k[1] == arm and k[2] > 0 and k[0] in curves]
    obs = np.array([np.clip(means[k], curves[k[0]].y[0], curves[k[0]].y[-1]) for k in keys])
    w = np.array([1.0 / se.get(k, 1.0) for k in keys])
    return keys, obs, w


class _FitCells:
    """The arm's synthetic cells as arrays, grouped by base size for vectorised prediction."""

    def __init__(self, keys: list[Key], curves: dict[int, RealCurve]):
        self.nb = np.array([k[0] for k in keys], float)
        self.n_syn = np.array([k[2] for k in keys], float)
        self.groups = [(curves[b], np.flatnonzero(self.nb == b)) for b in sorted({k[0] for k in keys})]

    def predict(self, ln_c1_over_k, ln_c2) -> np.ndarray:
        """Accuracy the formula predicts for each cell; ln_c1_over_k, ln_c2: scalars or arrays
        broadcasting against [cells]."""
        lc1, lc2 = np.asarray(ln_c1_over_k, float), np.asarray(ln_c2, float)
        scale = np.exp(np.clip(lc1 * self.nb, -700, 700))
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            n_real = self.nb * np.log1p(self.n_syn / self.nb / scale) / lc2
        out = np.empty(n_real.shape)
        for curve, idx in self.groups:
            x = np.log(curve.n_base + np.nan_to_num(n_real[..., idx], nan=0.0, posinf=1e300))
            out[..., idx] = np.interp(x, curve.x, curve.y)
        return out


def _fit_start(cells: _FitCells, obs, w) -> tuple[float, float]:
    """Best (ln c₁/k, ln c₂) on a grid; the ln c₁ range scales with the base sizes."""
    lc1 = (_LN_C1_GRID / max(1.0, float(cells.nb.mean()) / 10))[:, None, None]
    lc2 = _LN_C2_GRID[None, :, None]
    sse = (((obs - cells.predict(lc1, lc2)) * w) ** 2).sum(-1)  # [A, B]
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return float(lc1[i, 0, 0]), float(lc2[0, j, 0])


def fit_paper(means: Mapping[Key, float], se: Mapping[Key, float], arm: str,
              k: float) -> dict:
    """Weighted least squares of the arm's cell accuracies on formula → real curve (see the
    module docstring, item 3). status: ok | too_few_points (< 3 synthetic cells inside the real
    curve's range) | fit_failed."""
    curves = real_curves(means)
    keys, obs, w = _cells_for_fit(means, se, curves, arm)
    inside = sum(curves[kk[0]].y[0] < means[kk] < curves[kk[0]].y[-1] for kk in keys)
    out = {"c1": math.nan, "c2": math.nan, "k": float(k), "ln_c1_over_k": math.nan,
           "n_points": len(keys), "n_inside": int(inside), "residual_rmse": math.nan,
           "status": "ok", "at_bound": False, "space": "accuracy"}
    if inside < 3:
        out["status"] = "too_few_points"
        return out

    cells = _FitCells(keys, curves)

    def resid(p):  # np.exp: a step far out gives inf (a flat prediction), never OverflowError
        return (obs - cells.predict(p[0], np.exp(p[1]))) * w

    lc1, lc2 = _fit_start(cells, obs, w)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        res = optimize.least_squares(resid, [lc1, math.log(lc2)], method="lm", xtol=1e-14,
                                     ftol=1e-14, gtol=1e-14, max_nfev=2000)
    if not (np.isfinite(res.x).all() and res.x[1] < 6.5 and abs(res.x[0] * k) < 700):
        out["status"] = "fit_failed"  # ln c₂ > e^6.5 ≈ 665 or c₁ beyond float range: no fit
        return out
    lc1, lc2 = float(res.x[0]), float(math.exp(res.x[1]))
    if not (np.isfinite([lc1, lc2]).all() and np.isfinite(res.fun).all()):
        out["status"] = "fit_failed"
        return out
    out.update(ln_c1_over_k=lc1, c1=math.exp(lc1 * k), c2=math.exp(lc2),
               residual_rmse=float(np.sqrt(np.mean((res.fun / w) ** 2))),
               at_bound=not LN_C2_RANGE[0] <= lc2 <= LN_C2_RANGE[1])
    return out


# ----------------------------------------------------------------------------- effective data


def _effective_arrays(means: Mapping[Key, float], arm: str):
    """Cells of the real arm and `arm` as (n_base, n_real, n_syn, acc), each of shape [cells]."""
    cells = [(k[0], k[2] if k[1] == REAL else 0, k[2] if k[1] == arm else 0, m)
             for k, m in means.items() if k[1] in (REAL, arm)]
    if not cells:  # e.g. the arm's cells exist in one unit only and it was left out
        return tuple(np.zeros(0) for _ in range(4))
    return tuple(np.asarray(c, dtype=float) for c in zip(*cells))


def _effective_start(n_fixed, n_syn, acc) -> np.ndarray:
    """Initial (a, b, alpha, r): a grid over (alpha, r), (a, b) by linear least squares."""
    z = (n_fixed + _R_GRID * n_syn) ** -_ALPHA_GRID  # [A, R, cells]
    zc, ac = z - z.mean(-1, keepdims=True), acc - acc.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.nan_to_num(np.clip(-(zc * ac).sum(-1) / (zc**2).sum(-1), 0.0, None))
    a = acc.mean() + b * z.mean(-1)
    sse = ((a[..., None] - b[..., None] * z - acc) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return np.array([a[i, j], b[i, j], _ALPHA_GRID[i, 0, 0], _R_GRID[0, j, 0]])


def fit_effective(means: Mapping[Key, float], arm: str) -> dict:
    """Least squares of acc = a − b·(n_base + n_real + r·n_syn)^(−alpha) over cell means."""
    n_base, n_real, n_syn, acc = _effective_arrays(means, arm)
    out = {"a": math.nan, "b": math.nan, "alpha": math.nan, "r": math.nan, "rmse": math.nan,
           "n_cells": len(acc), "status": "ok", "at_bound": False}
    if len(acc) < 5:
        out["status"] = "too_few_cells"
        return out
    if not (n_syn > 0).any():
        out["status"] = "no_synthetic_cells"
        return out
    n_fixed = n_base + n_real

    def resid(p):
        return p[0] - p[1] * (n_fixed + p[3] * n_syn) ** -p[2] - acc

    def jac(p):
        n = n_fixed + p[3] * n_syn
        z = n ** -p[2]
        return np.stack([np.ones_like(n), -z, p[1] * z * np.log(n), p[1] * p[2] * z / n * n_syn], 1)

    lo, hi = [-np.inf, 0.0, ALPHA_BOUNDS[0], 0.0], [np.inf, np.inf, ALPHA_BOUNDS[1], R_MAX]
    x0 = np.clip(_effective_start(n_fixed, n_syn, acc), lo, hi)
    res = optimize.least_squares(resid, x0, jac=jac, bounds=(lo, hi), x_scale="jac", max_nfev=100)
    if not (np.isfinite(res.x).all() and np.isfinite(res.fun).all()):
        out["status"] = "fit_failed"
        return out
    a, b, alpha, r = (float(v) for v in res.x)
    at_bound = np.isclose(alpha, ALPHA_BOUNDS, rtol=1e-6).any() or np.isclose(r, R_MAX, rtol=1e-6)
    out.update(a=a, b=b, alpha=alpha, r=r, rmse=float(np.sqrt(np.mean(res.fun**2))),
               at_bound=bool(at_bound))
    return out


def fit_effective_data(rows, arm: str, metric: str = "accuracy") -> dict:
    t = unit_table(rows, metric)
    _check_arm(t.values, arm)
    return fit_effective(t.means(), arm)


def _effective_predict(fit: Mapping, n_base, n_real, n_syn):
    return fit["a"] - fit["b"] * (n_base + n_real + fit["r"] * n_syn) ** -fit["alpha"]


# ----------------------------------------------------------------------------- comparison


def compare_models(means, se, arm: str, k: float, ci: float) -> dict:
    """Leave-one-cell-out prediction of each synthetic cell's accuracy by both models; the
    paired difference of squared errors gets a t-interval (negative favours the formula)."""
    held = [key for key in sorted(means) if key[1] == arm and key[2] > 0]
    errs = []
    for key in held:
        rest = {kk: m for kk, m in means.items() if kk != key}
        paper = fit_paper(rest, se, arm, k)
        curves = real_curves(rest)
        p = math.nan
        if paper["status"] == "ok" and key[0] in curves:
            n_real = paper_n_real(paper["ln_c1_over_k"], paper["c2"], key[0], key[2])
            p = float(curves[key[0]].at(n_real))
        eff = fit_effective(rest, arm)
        e = float(_effective_predict(eff, key[0], 0.0, key[2]))
        errs.append((p - means[key], e - means[key]))
    errs = np.array(errs, float).reshape(-1, 2)
    ok = np.isfinite(errs).all(1)
    out = {"paper_formula_rmse": math.nan, "effective_data_rmse": math.nan,
           "n_cells": int(ok.sum()), "diff_sq_err": math.nan, "diff_lo": math.nan,
           "diff_hi": math.nan, "better": "undetermined"}
    if ok.sum() == 0:
        return out
    rmse = np.sqrt(np.mean(errs[ok] ** 2, axis=0))
    d = t_interval(errs[ok, 0] ** 2 - errs[ok, 1] ** 2, ci)
    better = "no clear difference"
    if d["hi"] < 0:
        better = "paper_formula"
    elif d["lo"] > 0:
        better = "effective_data"
    out.update(paper_formula_rmse=float(rmse[0]), effective_data_rmse=float(rmse[1]),
               diff_sq_err=d["estimate"], diff_lo=d["lo"], diff_hi=d["hi"],
               better=better if ok.sum() >= 2 else "undetermined")
    return out


# ----------------------------------------------------------------------------- one arm


def _cell_se(t: UnitTable) -> dict[Key, float]:
    """SE of each cell mean over units; cells with no spread take the median SE (never 0)."""
    se = {}
    for k, v in t.values.items():
        v = v[np.isfinite(v)]
        se[k] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    finite = [s for s in se.values() if math.isfinite(s) and s > 0]
    floor = float(np.median(finite)) if finite else 1.0
    return {k: s if math.isfinite(s) and s > 0 else floor for k, s in se.items()}


def _fits(t: UnitTable, arm: str, k: float) -> tuple[dict, dict]:
    """(paper formula, effective-data model) fitted to one unit table's cell means."""
    means = t.means()
    return fit_paper(means, _cell_se(t), arm, k), fit_effective(means, arm)


def _fitted_numbers(fit: dict, eff: dict, grid) -> np.ndarray:
    """[c₂, ln c₁/k, r, rate at each (n_base, frac) of grid] of one pair of fits."""
    rates = [exchange_rate(fit, nb, f) if fit["status"] == "ok" else math.nan for nb, f in grid]
    return np.array([fit["c2"], fit["ln_c1_over_k"], eff["r"], *rates], float)


def _arm_analysis(t: UnitTable, arm: str, cfg: EquivalenceConfig) -> dict:
    means, se = t.means(), _cell_se(t)
    points = measured_points(t, arm, cfg.ci)
    fit, eff = _fits(t, arm, cfg.k)
    bases = sorted({p["n_base"] for p in points})
    grid = [(nb, f) for nb in bases for f in cfg.exchange_points]
    full = _fitted_numbers(fit, eff, grid)
    units = range(t.n_units if t.n_units > 1 else 0)  # one unit: no jackknife, no interval
    loo = np.array([_fitted_numbers(*_fits(t.drop_unit(i), arm, cfg.k), grid)
                    for i in units]).reshape(len(units), len(full))
    jk = [jackknife(full[j], loo[:, j].tolist(), cfg.ci, log=(j != 1)) for j in range(len(full))]
    fitted = fit["status"] == "ok"
    supported = {p["n_base"] for p in points if p["usable"]}
    exchange = []
    for (nb, f), rate, j in zip(grid, full[3:].tolist(), jk[3:]):
        exchange.append({"n_base": nb, "frac": f, "n_real_plus": f * nb,
                         "n_syn": rate * f * nb, "rate": rate,
                         "lo": j["lo"] if fitted else math.nan,
                         "hi": j["hi"] if fitted else math.nan,
                         "supported": nb in supported})
    ci = {"c2": [jk[0]["lo"], jk[0]["hi"]], "ln_c1_over_k": [jk[1]["lo"], jk[1]["hi"]],
          "r": [jk[2]["lo"], jk[2]["hi"]]}
    ci["c1"] = [math.exp(v * cfg.k) if math.isfinite(v) else math.nan for v in ci["ln_c1_over_k"]]
    if not fitted:
        ci.update({n: [math.nan, math.nan] for n in ("c1", "c2", "ln_c1_over_k")})
    return {"points": points, "fit": fit, "exchange": exchange, "effective_data": eff,
            "comparison": compare_models(means, se, arm, cfg.k, cfg.ci), "ci": ci,
            "ci_method": (f"jackknife over {t.n_units} {t.unit}s, Student t" if t.n_units > 1
                          else "none: no interval (one unit)")}


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
    "ln_c1_over_k", "r": [lo, hi]}, "ci_method"}}}. Plain types; NaN marks what could not be
    estimated; inf marks an open interval end.
    """
    rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
    t = unit_table(rows, metric)
    config = dataclasses.asdict(cfg)
    config["exchange_points"] = list(cfg.exchange_points)
    arms = sorted({key[1] for key in t.values} - {REAL})
    return {
        "config": config, "metric": metric, "unit": t.unit, "n_units": t.n_units,
        "coverage": dict(MEASURED_COVERAGE),
        "t_crit": float(stats.t.ppf(0.5 + cfg.ci / 2, max(t.n_units - 1, 1))),
        "cells": cell_summaries(t, cfg.ci, metric in BOUNDED_METRICS),
        "gains": gains(t, cfg.ci, metric in BOUNDED_METRICS),
        "arms": {arm: _arm_analysis(t, arm, cfg) for arm in arms},
    }
