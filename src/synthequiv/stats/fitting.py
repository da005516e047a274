"""Fitted models of the exchange: the paper's formula and the effective-data model.

See equivalence.py (items 3 and 4) for the models. A fit returns plain numbers and a status:
"ok", "too_few_points"/"too_few_cells" (not enough cells to fit), or "failed" with a "reason"
(the optimizer did not converge to finite numbers, or a coefficient lies outside the range the
data can pin down: a degenerate fit is never reported as a result).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import optimize

from synthequiv.stats.curves import RealCurve, real_curves
from synthequiv.stats.intervals import REAL, Key, UnitTable, t_interval
from synthequiv.utils import SynthequivError

LN_C2_RANGE = (1e-6, 30.0)  # ln c₂ outside: c₂ not pinned down by the data (fit "failed")
# |ln c₁/k · n_base| beyond this: the formula's scale c₁^(n_base/k) is outside e^±50, a fit that
# moved c₁ instead of c₂ to fit noise (fit "failed")
LN_SCALE_MAX = 50.0
_LN_C2_GRID = np.geomspace(1e-3, 30.0, 40)
_LN_C1_GRID = np.linspace(-0.3, 0.3, 41)  # ln c₁ / k start values (per-class counts, k = 1)
_ALPHA_GRID = np.geomspace(0.05, 3.0, 16)[:, None, None]  # start values for alpha [A, 1, 1]
_R_GRID = np.concatenate([[0.0], np.geomspace(1e-2, 20.0, 15)])[None, :, None]  # [1, R, 1]
ALPHA_BOUNDS = (0.05, 5.0)  # below 0.05, a and b become collinear and trf crawls
# a fitted synthetic amount beyond this × the largest measured one is not reported as an
# estimate (report's rates, planner's N): the formula's curvature is then unconstrained
MAX_EXTRAPOLATION = 10.0
R_MAX = 100.0


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
            # the curve the measured points are read off, so fitted and measured rates agree
            out[..., idx] = curve.at(np.nan_to_num(n_real[..., idx], nan=0.0, posinf=1e300))
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
    curve's range) | failed, with a "reason" (no finite optimum, or a degenerate one: c₂ or
    c₁^(n_base/k) outside the range the data can pin down — c₂ = 1.7e237 was once "ok")."""
    curves = real_curves(means)
    keys, obs, w = _cells_for_fit(means, se, curves, arm)
    inside = sum(curves[kk[0]].y[0] < means[kk] < curves[kk[0]].y[-1] for kk in keys)
    out = {"c1": math.nan, "c2": math.nan, "k": float(k), "ln_c1_over_k": math.nan,
           "n_points": len(keys), "n_inside": int(inside), "residual_rmse": math.nan,
           "status": "ok", "reason": "", "at_bound": False, "space": "accuracy"}
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
    reason = _degenerate(res, float(cells.nb.max()), k)
    if reason:
        out.update(status="failed", reason=reason)
        return out
    lc1, lc2 = float(res.x[0]), float(math.exp(res.x[1]))
    out.update(ln_c1_over_k=lc1, c1=math.exp(lc1 * k), c2=math.exp(lc2),
               residual_rmse=float(np.sqrt(np.mean((res.fun / w) ** 2))))
    return out


def _degenerate(res, nb_max: float, k: float) -> str:
    """Why the formula's optimum (res.x = [ln c₁/k, ln ln c₂]) is no result, or ""."""
    if not (np.isfinite(res.x).all() and np.isfinite(res.fun).all()):
        return "the optimizer found no finite optimum"
    ln_c2 = math.exp(min(float(res.x[1]), 700.0))
    if not LN_C2_RANGE[0] <= ln_c2 <= LN_C2_RANGE[1]:
        return (f"c₂ = e^{ln_c2:.3g} lies outside e^{LN_C2_RANGE[0]:g}–e^{LN_C2_RANGE[1]:g}: "
                "the data do not pin it down")
    if abs(float(res.x[0]) * nb_max) > LN_SCALE_MAX or abs(float(res.x[0]) * k) > 700:
        return (f"c₁^(n_base/k) = e^{float(res.x[0]) * nb_max:.3g} at n_base {nb_max:g}: "
                "beyond a sane scale")
    return ""


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
           "n_cells": len(acc), "status": "ok", "reason": "", "at_bound": False}
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
        out.update(status="failed", reason="the optimizer found no finite optimum")
        return out
    a, b, alpha, r = (float(v) for v in res.x)
    at_bound = np.isclose(alpha, ALPHA_BOUNDS, rtol=1e-6).any() or np.isclose(r, R_MAX, rtol=1e-6)
    out.update(a=a, b=b, alpha=alpha, r=r, rmse=float(np.sqrt(np.mean(res.fun**2))),
               at_bound=bool(at_bound))
    return out


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


def _cell_se(t: UnitTable) -> dict[Key, float]:
    """SE of each cell mean over units; cells with no spread take the median SE (never 0)."""
    se = {}
    for k, v in t.values.items():
        v = v[np.isfinite(v)]
        se[k] = float(v.std(ddof=1) / math.sqrt(v.size)) if v.size > 1 else math.nan
    finite = [s for s in se.values() if math.isfinite(s) and s > 0]
    floor = float(np.median(finite)) if finite else 1.0
    return {k: s if math.isfinite(s) and s > 0 else floor for k, s in se.items()}
