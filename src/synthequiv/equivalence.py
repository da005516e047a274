"""Equivalence stage: how many synthetic images are worth n real ones?

Input is the grid's results table: one row per trained classifier,
``{"n_base", "arm", "n_add", "seed", <metric>, ...}``. Every count is PER CLASS. The real arm's
``n_add = 0`` cell at a base size is the shared baseline of every arm at that base size.

1. Equivalent real count. For each base size the real arm's seed means give a curve
   acc_real(n_add). It is made monotone non-decreasing by isotonic regression (pool adjacent
   violators, unweighted, on the seed means: a least-squares projection, so a noisy dip is
   averaged with its neighbours rather than overwritten by a running max that biases upwards),
   then inverted piecewise-linearly: n_real_eq(n_syn) = acc_real⁻¹(acc_syn(n_syn)). Nothing is
   extrapolated; a synthetic accuracy outside the real curve's range returns the nearest bound
   and a flag ("below_range": synthetic data hurt; "above_range": more real data would be needed
   than the grid measured; "flat": the curve is flat at that accuracy, the inverse not unique).

2. The paper's form (arXiv 2508.09550), with n_real⁺ the extra real images matched:

       n_syn / n_base ≈ c₁^(n_base/k) · (c₂^(n_real⁺/n_base) − 1)

   fitted by least squares on log(n_syn/n_base) in (ln c₁, ln c₂), c₂ > 1. Because
   c₁^(n_base/k) = exp(n_base · ln c₁ / k), only ln(c₁)/k is identifiable: k is fixed by the
   config (default 10) and reported next to c₁; compare c₁ across studies only at equal k.
   The exchange rate n_syn / n_real⁺ = c₁^(n_base/k) (c₂^f − 1) / f at f = n_real⁺/n_base is
   the number of synthetic images that buy one real image there.

3. An alternative, the effective-data model acc = a − b·(n_base + n_real⁺ + r·n_syn)^(−α),
   fitted on every real-arm cell and the arm's cells; r is one synthetic image's worth in real
   images (bounded to [0, R_MAX]: data that hurts gives r = 0). The two models are compared by
   leave-one-cell-out error on the synthetic cells' accuracy.

4. Uncertainty: a bootstrap over seeds (resampled with replacement independently within each
   cell) for every fitted number, and Welch t-intervals for the gain of each cell over the
   baseline. Cells run with one seed contribute no resampling noise, so their CIs are too narrow.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import optimize, stats

from synthequiv.utils import SynthequivError

REAL = "real"
Key = tuple[int, str, int]  # (n_base, arm, n_add), counts per class

# ln c2 outside this range means the data do not pin c2 down (c2 -> 1 or c2 -> infinity):
# the fit is kept but flagged "at_bound". Alpha and r are bounded in the effective-data fit so
# that a flat real curve cannot send them to infinity.
LN_C2_RANGE = (1e-6, 30.0)
_LN_C2_GRID = np.geomspace(1e-3, 30.0, 80)  # start values for ln c2
_ALPHA_GRID = np.geomspace(0.05, 3.0, 16)[:, None, None]  # start values for alpha [A, 1, 1]
_R_GRID = np.concatenate([[0.0], np.geomspace(1e-2, 20.0, 15)])[None, :, None]  # [1, R, 1]
ALPHA_BOUNDS = (0.05, 5.0)  # below 0.05, a and b become collinear and trf crawls
R_MAX = 100.0
_TIE_TOL = 1e-12  # accuracies closer than this count as equal (seed means of discrete accuracies)


@dataclass(frozen=True)
class EquivalenceConfig:
    k: float = 10.0  # fixed scale in c1^(n_base/k); only ln(c1)/k is identifiable
    bootstrap: int = 1000  # resamples over seeds for the CIs (0: no bootstrap, NaN CIs)
    ci: float = 0.95  # coverage of every interval
    exchange_points: tuple[float, ...] = (0.5, 1.0)  # n_real+ / n_base where rates are reported
    seed: int = 0  # seeds the bootstrap

    def __post_init__(self) -> None:
        if not (math.isfinite(self.k) and self.k > 0):
            raise SynthequivError(f"equivalence k must be a positive number, got {self.k}")
        if int(self.bootstrap) != self.bootstrap or self.bootstrap < 0:
            raise SynthequivError(
                f"equivalence bootstrap must be an integer >= 0, got {self.bootstrap}"
            )
        if not 0 < self.ci < 1:
            raise SynthequivError(f"equivalence ci must lie in (0, 1), got {self.ci}")
        if not self.exchange_points or any(not f > 0 for f in self.exchange_points):
            raise SynthequivError(
                f"equivalence exchange_points must be positive fractions, got {self.exchange_points}"
            )


# ----------------------------------------------------------------------------- results table


def _cell_values(rows: Iterable[Mapping[str, Any]], metric: str) -> dict[Key, np.ndarray]:
    """Group rows into cells: {(n_base, arm, n_add): metric per seed, shape [n_seeds]}."""
    if hasattr(rows, "to_dict"):  # a pandas DataFrame works too
        rows = rows.to_dict("records")
    cells: dict[Key, list[float]] = {}
    seen: set[tuple[Key, Any]] = set()
    for i, row in enumerate(rows):
        try:
            key = (int(row["n_base"]), str(row["arm"]), int(row["n_add"]))
            value = float(row[metric])
        except KeyError as exc:
            raise SynthequivError(f"results row {i} has no column {exc}") from exc
        except (TypeError, ValueError) as exc:
            raise SynthequivError(f"results row {i}: bad value ({exc})") from exc
        if key[0] <= 0 or key[2] < 0:
            raise SynthequivError(f"results row {i}: need n_base > 0 and n_add >= 0, got {key}")
        if not math.isfinite(value):
            raise SynthequivError(f"results row {i}: {metric} is not finite ({value})")
        if "seed" in row:
            if (key, row["seed"]) in seen:  # a doubled row would shrink every CI
                raise SynthequivError(
                    f"results row {i}: cell {key} seed {row['seed']} appears twice"
                )
            seen.add((key, row["seed"]))
        cells.setdefault(key, []).append(value)
    if not cells:
        raise SynthequivError("the results table is empty")
    return {k: np.asarray(v, dtype=float) for k, v in sorted(cells.items())}


def _means(values: Mapping[Key, np.ndarray]) -> dict[Key, float]:
    return {k: float(v.mean()) for k, v in values.items()}


def _check_arm(values: Mapping[Key, Any], arm: str) -> None:
    if arm == REAL:
        raise SynthequivError("the real arm is the reference; pick a generative arm")
    if not any(k[1] == arm for k in values):
        arms = sorted({k[1] for k in values})
        raise SynthequivError(f"no results for arm '{arm}' (arms present: {', '.join(arms)})")


def seed_means(rows, metric: str = "accuracy") -> dict[Key, tuple[float, float, int]]:
    """{(n_base, arm, n_add): (mean, std over seeds with ddof=1 — NaN for one seed, n_seeds)}."""
    out = {}
    for key, v in _cell_values(rows, metric).items():
        std = float(v.std(ddof=1)) if len(v) > 1 else math.nan
        out[key] = (float(v.mean()), std, len(v))
    return out


def _real_knots(means: Mapping[Key, float], n_base: int) -> tuple[np.ndarray, np.ndarray]:
    """The real arm at one base size: (n_add [m], seed-mean metric [m]), sorted, n_add[0] = 0."""
    pts = sorted((k[2], m) for k, m in means.items() if k[0] == n_base and k[1] == REAL)
    if not pts or pts[0][0] != 0:
        raise SynthequivError(
            f"no real baseline (arm real, n_add 0) at n_base {n_base}: nothing to compare with"
        )
    x, y = zip(*pts)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def real_curve(rows, n_base: int, metric: str = "accuracy") -> tuple[np.ndarray, np.ndarray]:
    """(n_add [m], seed-mean metric [m]) of the real arm at `n_base`, including n_add = 0."""
    return _real_knots(_means(_cell_values(rows, metric)), int(n_base))


# ----------------------------------------------------------------------------- monotone inverse


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


def _monotone_knots(x_knots, y_knots) -> tuple[np.ndarray, np.ndarray]:
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
    return x, _isotonic(y)


def monotone_inverse(x_knots, y_knots, y_query: float) -> tuple[float, str]:
    """x at which the monotone (isotonic) version of the curve y(x) reaches `y_query`.

    Exact at the knots of a monotone curve; linear between knots; never extrapolates.
    Flags: "ok"; "below_range" (y_query under the curve's start: returns x[0] — for the real
    curve, synthetic data hurt and n_real_eq would be <= 0); "above_range" (over the curve's
    end: returns x[-1], a lower bound); "flat" (y_query equals a level the curve holds over
    several knots: returns the leftmost such x).
    """
    y_query = float(y_query)
    if not math.isfinite(y_query):
        raise SynthequivError(f"cannot invert the curve at a non-finite value ({y_query})")
    x, y_iso = _monotone_knots(x_knots, y_knots)
    return _invert(x, y_iso, y_query)


def _points_from_means(means: Mapping[Key, float], arm: str) -> list[dict]:
    curves: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    points = []
    for (n_base, a, n_add), acc in means.items():
        if a != arm or n_add == 0:
            continue
        if n_base not in curves:
            x, y = _real_knots(means, n_base)
            curves[n_base] = (x, _isotonic(y))
        n_eq, flag = _invert(*curves[n_base], acc)
        points.append(
            {"n_base": n_base, "n_syn": n_add, "acc_syn": acc, "n_real_eq": n_eq, "flag": flag}
        )
    return points


def equivalent_points(rows, arm: str, metric: str = "accuracy") -> list[dict]:
    """One dict per (n_base, n_add > 0) cell of `arm`: {"n_base", "n_syn", "acc_syn",
    "n_real_eq", "flag"}; n_real_eq is the extra real images per class giving the same metric."""
    values = _cell_values(rows, metric)
    _check_arm(values, arm)
    return _points_from_means(_means(values), arm)


# ----------------------------------------------------------------------------- paper formula


def _log_expm1(z: np.ndarray) -> np.ndarray:
    """log(e^z − 1) for z > 0 without overflow."""
    return np.where(
        z > 20, z + np.log1p(-np.exp(-np.minimum(z, 700))), np.log(np.expm1(np.minimum(z, 20)))
    )


def _paper_start(u: np.ndarray, f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Initial (ln c1, ln c2): profile ln c1 out in closed form over a grid of ln c2."""
    ln_c2 = _LN_C2_GRID[:, None]  # [G, 1]
    rest = y[None, :] - _log_expm1(ln_c2 * f[None, :])  # [G, n]
    ln_c1 = rest @ u / (u @ u)  # [G]
    sse = ((rest - ln_c1[:, None] * u[None, :]) ** 2).sum(1)
    g = int(np.nanargmin(sse))
    return np.array([ln_c1[g], ln_c2[g, 0]])


def _fit_paper_arrays(n_base, n_syn, n_real, k: float) -> dict:
    """Least squares of log(n_syn/n_base) = (n_base/k) ln c1 + log(c2^(n_real/n_base) − 1).

    Parameters (ln c1, s = ln ln c2): c2 > 1 holds by construction, so the fast unbounded
    Levenberg-Marquardt solver applies (a bounded 'trf' costs ~3x more per bootstrap resample).
    """
    n_base, n_syn, n_real = (np.asarray(a, dtype=float) for a in (n_base, n_syn, n_real))
    u, f, y = n_base / k, n_real / n_base, np.log(n_syn / n_base)
    out = {
        "c1": math.nan,
        "c2": math.nan,
        "k": float(k),
        "ln_c1_over_k": math.nan,
        "n_points": len(y),
        "residual_rmse": math.nan,
        "status": "ok",
        "at_bound": False,
    }
    # two parameters: two points are always fitted exactly (no residual, no evidence), so a
    # fit needs at least three distinct points
    if len({(a, b) for a, b in zip(u, f)}) < 3:
        out["status"] = "too_few_points"
        return out

    def resid(p):
        return p[0] * u + _log_expm1(np.exp(p[1]) * f) - y

    def jac(p):  # d/d ln c2 of log(e^(ln c2 f) − 1) = f / (1 − e^(−ln c2 f)); chain rule for s
        ln_c2 = np.exp(p[1])
        return np.stack([u, ln_c2 * f / -np.expm1(-ln_c2 * f)], axis=1)

    ln_c1, ln_c2 = _paper_start(u, f, y)
    with np.errstate(over="ignore", invalid="ignore"):
        res = optimize.least_squares(
            resid, [ln_c1, np.log(ln_c2)], jac=jac, method="lm", max_nfev=200
        )
    ln_c1, ln_c2 = res.x[0], float(np.exp(res.x[1]))
    if not (np.isfinite([ln_c1, ln_c2]).all() and np.isfinite(res.fun).all()):
        out["status"] = "fit_failed"
        return out
    out.update(
        c1=float(np.exp(ln_c1)),
        c2=float(np.exp(ln_c2)),
        ln_c1_over_k=float(ln_c1 / k),
        residual_rmse=float(np.sqrt(np.mean(res.fun**2))),
        at_bound=not LN_C2_RANGE[0] <= ln_c2 <= LN_C2_RANGE[1],
    )
    return out


def _usable(points: Iterable[Mapping]) -> list[Mapping]:
    return [p for p in points if p["flag"] == "ok" and p["n_real_eq"] > 0]


def fit_paper_formula(points: Iterable[Mapping], k: float) -> dict:
    """Fit n_syn/n_base ≈ c1^(n_base/k)·(c2^(n_real+/n_base) − 1) to equivalent points.

    Uses only points with flag "ok" and n_real_eq > 0. Returns {"c1", "c2", "k",
    "ln_c1_over_k", "n_points", "residual_rmse" (in log(n_syn/n_base)), "status", "at_bound"};
    status is "ok", "too_few_points" (fewer than 3 distinct usable points: NaN coefficients) or
    "fit_failed"; at_bound says ln c2 left LN_C2_RANGE (c2 not pinned down by the data).
    """
    if not k > 0:
        raise SynthequivError(f"k must be > 0, got {k}")
    pts = _usable(points)
    cols = [[p[c] for p in pts] for c in ("n_base", "n_syn", "n_real_eq")]
    return _fit_paper_arrays(*cols, k=k)


def exchange_rate(fit: Mapping, n_base: float, frac: float) -> float:
    """Synthetic images per real image when matching n_real+ = frac·n_base (NaN without a fit):
    n_syn / n_real+ = c1^(n_base/k) (c2^frac − 1) / frac."""
    if not frac > 0:
        raise SynthequivError(f"exchange-rate fraction must be > 0, got {frac}")
    ln_c2 = math.log(fit["c2"]) if fit["c2"] > 0 else math.nan
    return float(np.exp(fit["ln_c1_over_k"] * n_base) * np.expm1(ln_c2 * frac) / frac)


def _paper_n_real(fit: Mapping, n_base: float, n_syn: float) -> float:
    """The formula solved for n_real+: n_base · log1p(n_syn/n_base / c1^(n_base/k)) / ln c2."""
    scale = np.exp(fit["ln_c1_over_k"] * n_base)
    return float(n_base * np.log1p(n_syn / n_base / scale) / np.log(fit["c2"]))


# ----------------------------------------------------------------------------- effective data


def _effective_arrays(means: Mapping[Key, float], arm: str):
    """Cells of the real arm and `arm` as (n_base, n_real, n_syn, acc), each of shape [cells]."""
    cells = [
        (k[0], k[2] if k[1] == REAL else 0, k[2] if k[1] == arm else 0, m)
        for k, m in means.items()
        if k[1] in (REAL, arm)
    ]
    return tuple(np.asarray(c, dtype=float) for c in zip(*cells))


def _effective_start(n_fixed: np.ndarray, n_syn: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """Initial (a, b, alpha, r): a grid over (alpha, r), (a, b) by linear least squares."""
    alpha, r = _ALPHA_GRID, _R_GRID
    z = (n_fixed + r * n_syn) ** -alpha  # [A, R, cells]
    zc, ac = z - z.mean(-1, keepdims=True), acc - acc.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.clip(-(zc * ac).sum(-1) / (zc**2).sum(-1), 0.0, None)  # [A, R]
    b = np.nan_to_num(b)
    a = acc.mean() + b * z.mean(-1)
    sse = ((a[..., None] - b[..., None] * z - acc) ** 2).sum(-1)
    i, j = np.unravel_index(int(np.argmin(sse)), sse.shape)
    return np.array([a[i, j], b[i, j], alpha[i, 0, 0], r[0, j, 0]])


def _fit_effective_arrays(n_base, n_real, n_syn, acc) -> dict:
    """Least squares of acc = a − b·(n_base + n_real + r·n_syn)^(−alpha) over cells."""
    out = {
        "a": math.nan,
        "b": math.nan,
        "alpha": math.nan,
        "r": math.nan,
        "rmse": math.nan,
        "n_cells": len(acc),
        "status": "ok",
        "at_bound": False,
    }
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

    lo = [-np.inf, 0.0, ALPHA_BOUNDS[0], 0.0]
    hi = [np.inf, np.inf, ALPHA_BOUNDS[1], R_MAX]
    x0 = np.clip(_effective_start(n_fixed, n_syn, acc), lo, hi)
    res = optimize.least_squares(resid, x0, jac=jac, bounds=(lo, hi), x_scale="jac", max_nfev=100)
    if not (np.isfinite(res.x).all() and np.isfinite(res.fun).all()):
        out["status"] = "fit_failed"
        return out
    a, b, alpha, r = (float(v) for v in res.x)
    at_bound = np.isclose(alpha, ALPHA_BOUNDS, rtol=1e-6).any() or np.isclose(r, R_MAX, rtol=1e-6)
    out.update(
        a=a,
        b=b,
        alpha=alpha,
        r=r,
        rmse=float(np.sqrt(np.mean(res.fun**2))),
        at_bound=bool(at_bound),
    )
    return out


def _effective_predict(fit: Mapping, n_base, n_real, n_syn):
    return fit["a"] - fit["b"] * (n_base + n_real + fit["r"] * n_syn) ** -fit["alpha"]


def fit_effective_data(rows, arm: str, metric: str = "accuracy") -> dict:
    """Fit acc = a − b·(n_base + n_real+ + r·n_syn)^(−alpha) on all real-arm and `arm` cells
    (seed means). Returns {"a", "b", "alpha", "r", "rmse", "n_cells", "status", "at_bound"};
    r is a synthetic image's worth in real images, in [0, R_MAX]."""
    values = _cell_values(rows, metric)
    _check_arm(values, arm)
    return _fit_effective_arrays(*_effective_arrays(_means(values), arm))


# ----------------------------------------------------------------------------- model comparison


def _loo_predictions(
    means: Mapping[Key, float], arm: str, key: Key, k: float
) -> tuple[float, float]:
    """Both models' prediction of cell `key`, each fitted without it."""
    rest = {kk: m for kk, m in means.items() if kk != key}
    n_base, _, n_syn = key
    paper = _fit_paper_arrays(
        *[
            [p[c] for p in _usable(_points_from_means(rest, arm))]
            for c in ("n_base", "n_syn", "n_real_eq")
        ],
        k=k,
    )
    pred_paper = math.nan
    if paper["status"] == "ok":
        x, y = _real_knots(rest, n_base)  # np.interp clamps: the real curve is not extrapolated
        pred_paper = float(np.interp(_paper_n_real(paper, n_base, n_syn), x, _isotonic(y)))
    eff = _fit_effective_arrays(*_effective_arrays(rest, arm))
    pred_eff = float(_effective_predict(eff, n_base, 0.0, n_syn))
    return pred_paper, pred_eff


def compare_models(rows, arm: str, k: float, metric: str = "accuracy") -> dict:
    """Leave-one-cell-out error on the arm's synthetic cells (seed means) of the paper formula
    (→ predicted n_real_eq → metric via the monotone real curve) and of the effective-data model.

    RMSEs are over the cells both models could predict (n_cells); "better" is "paper_formula",
    "effective_data", "tie" or "undetermined" (no cell predicted by both)."""
    values = _cell_values(rows, metric)
    _check_arm(values, arm)
    means = _means(values)
    held = [key for key in means if key[1] == arm and key[2] > 0]
    preds = np.array([_loo_predictions(means, arm, key, k) for key in held]).reshape(-1, 2)
    obs = np.array([means[key] for key in held])
    ok = np.isfinite(preds).all(1)
    rmse = (
        np.sqrt(np.mean((preds[ok] - obs[ok, None]) ** 2, axis=0)) if ok.any() else [math.nan] * 2
    )
    better = "undetermined"
    if ok.any():
        diff = rmse[0] - rmse[1]
        better = (
            "tie" if abs(diff) <= _TIE_TOL else ("paper_formula" if diff < 0 else "effective_data")
        )
    return {
        "paper_formula_rmse": float(rmse[0]),
        "effective_data_rmse": float(rmse[1]),
        "n_cells": int(ok.sum()),
        "better": better,
    }


# ----------------------------------------------------------------------------- uncertainty


def _percentile_ci(draws: np.ndarray, ci: float) -> list[float]:
    """Percentile interval over the finite draws (NaN when fewer than 2)."""
    draws = draws[np.isfinite(draws)]
    if draws.size < 2:
        return [math.nan, math.nan]
    lo, hi = np.percentile(draws, [50 * (1 - ci), 50 * (1 + ci)])
    return [float(lo), float(hi)]


def _resampled_means(
    values: Mapping[Key, np.ndarray], keys: list[Key], n: int, rng: np.random.Generator
) -> np.ndarray:
    """Seed means after resampling seeds with replacement within each cell: [n, len(keys)]."""
    out = np.empty((n, len(keys)))
    for j, key in enumerate(keys):
        v = values[key]
        out[:, j] = v[rng.integers(0, len(v), size=(n, len(v)))].mean(1)
    return out


def bootstrap(rows, arm: str, cfg: EquivalenceConfig, metric: str = "accuracy") -> dict:
    """Percentile CIs over seed resamples of every fitted number for `arm`.

    Returns {"n_resamples", "ci", "c1", "c2", "ln_c1_over_k", "r": [lo, hi] each,
    "exchange_rates": [{"n_base", "frac", "lo", "hi"}], "fit_failure_fraction" (paper formula),
    "effective_failure_fraction"}. Intervals use the resamples whose fit succeeded.
    """
    values = _cell_values(rows, metric)
    _check_arm(values, arm)
    keys = [key for key in values if key[1] in (REAL, arm)]
    n = int(cfg.bootstrap)
    rng = np.random.default_rng([cfg.seed, zlib.crc32(arm.encode())])
    resampled = _resampled_means(values, keys, n, rng)
    grid = [
        (nb, f)
        for nb in sorted({key[0] for key in keys if key[1] == arm})
        for f in cfg.exchange_points
    ]
    draws = np.full((n, 4 + len(grid)), np.nan)  # c1, c2, ln_c1_over_k, r, rates...
    for i in range(n):
        means = dict(zip(keys, resampled[i]))
        fit = fit_paper_formula(_points_from_means(means, arm), cfg.k)
        if fit["status"] == "ok":
            draws[i, :3] = fit["c1"], fit["c2"], fit["ln_c1_over_k"]
            draws[i, 4:] = [exchange_rate(fit, nb, f) for nb, f in grid]
        eff = _fit_effective_arrays(*_effective_arrays(means, arm))
        draws[i, 3] = eff["r"]
    cis = [_percentile_ci(draws[:, j], cfg.ci) for j in range(draws.shape[1])]
    return {
        "n_resamples": n,
        "ci": cfg.ci,
        "c1": cis[0],
        "c2": cis[1],
        "ln_c1_over_k": cis[2],
        "r": cis[3],
        "exchange_rates": [
            {"n_base": nb, "frac": f, "lo": c[0], "hi": c[1]} for (nb, f), c in zip(grid, cis[4:])
        ],
        "fit_failure_fraction": float(np.isnan(draws[:, 1]).mean()) if n else math.nan,
        "effective_failure_fraction": float(np.isnan(draws[:, 3]).mean()) if n else math.nan,
    }


def _welch(x: np.ndarray, base: np.ndarray, ci: float) -> dict:
    gain = float(x.mean() - base.mean())
    out = {
        "gain": gain,
        "lo": math.nan,
        "hi": math.nan,
        "significant": False,
        "n_seeds": len(x),
        "n_seeds_base": len(base),
    }
    if len(x) < 2 or len(base) < 2:
        return out  # no spread estimate: nothing can be called significant
    va, vb = x.var(ddof=1) / len(x), base.var(ddof=1) / len(base)
    se = math.sqrt(va + vb)
    if se == 0:  # identical values within both cells: the interval collapses onto the gain
        half = 0.0
    else:
        dof = (va + vb) ** 2 / (va**2 / (len(x) - 1) + vb**2 / (len(base) - 1))
        half = float(stats.t.ppf(0.5 + ci / 2, dof)) * se
    out.update(lo=gain - half, hi=gain + half, significant=bool(gain - half > 0 or gain + half < 0))
    return out


def gain_significance(
    rows, n_base: int, arm: str, n_add: int, ci: float = 0.95, metric: str = "accuracy"
) -> dict:
    """Gain of cell (n_base, arm, n_add) over the real n_add = 0 baseline with a Welch
    t-interval: {"gain", "lo", "hi", "significant" (interval excludes 0, either sign),
    "n_seeds", "n_seeds_base"}; a cell or baseline with one seed is never significant."""
    values = _cell_values(rows, metric)
    key, base_key = (int(n_base), str(arm), int(n_add)), (int(n_base), REAL, 0)
    for k in (key, base_key):
        if k not in values:
            raise SynthequivError(f"no results for cell n_base={k[0]} arm={k[1]} n_add={k[2]}")
    return _welch(values[key], values[base_key], ci)


# ----------------------------------------------------------------------------- entry point


def _arm_analysis(rows, arm: str, cfg: EquivalenceConfig, metric: str) -> dict:
    points = equivalent_points(rows, arm, metric)
    fit = fit_paper_formula(points, cfg.k)
    boot = bootstrap(rows, arm, cfg, metric)
    ci = {name: boot[name] for name in ("c1", "c2", "ln_c1_over_k", "r")}
    fitted = fit["status"] == "ok"
    if not fitted:  # resamples that happen to fit give no interval around a fit that has none
        ci.update({name: [math.nan, math.nan] for name in ("c1", "c2", "ln_c1_over_k")})
    exchange = []
    for b in boot["exchange_rates"]:  # one per (n_base of the arm, exchange point)
        rate = exchange_rate(fit, b["n_base"], b["frac"])
        n_real_plus = b["frac"] * b["n_base"]
        exchange.append(
            {
                "n_base": b["n_base"],
                "frac": b["frac"],
                "n_real_plus": n_real_plus,
                "n_syn": rate * n_real_plus,
                "rate": rate,
                "lo": b["lo"] if fitted else math.nan,
                "hi": b["hi"] if fitted else math.nan,
            }
        )
    return {
        "points": points,
        "fit": fit,
        "exchange": exchange,
        "effective_data": fit_effective_data(rows, arm, metric),
        "comparison": compare_models(rows, arm, cfg.k, metric),
        "ci": ci,
        "bootstrap": boot,
    }


def analyse(rows, cfg: EquivalenceConfig, metric: str = "accuracy") -> dict:
    """Every equivalence number for each generative arm in the table.

    Returns {"config", "metric", "cells": [{"n_base", "arm", "n_add", "mean", "std", "n_seeds"}],
    "gains": [gain_significance(...) + {"n_base", "arm", "n_add"} for every non-baseline cell],
    "arms": {arm: {"points": equivalent_points, "fit": fit_paper_formula, "exchange":
    [{"n_base", "frac", "n_real_plus", "n_syn", "rate", "lo", "hi"}], "effective_data",
    "comparison": compare_models, "ci": {"c1", "c2", "ln_c1_over_k", "r": [lo, hi]},
    "bootstrap": bootstrap}}}. Plain Python types; NaN marks numbers that could not be estimated.
    """
    rows = list(rows.to_dict("records") if hasattr(rows, "to_dict") else rows)
    values = _cell_values(rows, metric)
    config = dataclasses.asdict(cfg)
    config["exchange_points"] = list(cfg.exchange_points)
    cells = [
        {"n_base": nb, "arm": a, "n_add": na, "mean": m, "std": s, "n_seeds": c}
        for (nb, a, na), (m, s, c) in seed_means(rows, metric).items()
    ]
    gains = []
    for nb, a, na in values:
        if (a, na) != (REAL, 0) and (nb, REAL, 0) in values:
            g = _welch(values[(nb, a, na)], values[(nb, REAL, 0)], cfg.ci)
            gains.append({"n_base": nb, "arm": a, "n_add": na, **g})
    arms = sorted({key[1] for key in values} - {REAL})
    return {
        "config": config,
        "metric": metric,
        "cells": cells,
        "gains": gains,
        "arms": {arm: _arm_analysis(rows, arm, cfg, metric) for arm in arms},
    }
