"""Intervals for a replicated grid: what every CI in the report is, and why it covers.

The design. A study has R replicates; each draws its own base sets, reserve and (hold-out) test
set, and trains its own generators; classifier seeds are nested inside a replicate. Everything in
one replicate is shared by its cells (the base draw, the test set, the generator behind every
synthetic cell at a base size, and, seed for seed, the classifier's initial weights and batch
order), so cells of one replicate are correlated and cells of different replicates are not.

The unit of analysis is therefore the replicate: a cell's value in replicate u is its mean over
that replicate's seeds, and every comparison is a contrast computed WITHIN each unit, then
summarised across units with Student's t on U − 1 degrees of freedom:

  gain          D_u = acc_u(cell) − acc_u(baseline)                 mean(D) ± t·s̃/√U
  n_real_eq     {m : |t(D_u(m))| ≤ t_crit} with D_u(m) = acc_u(syn) − real-curve_u(m)  (Fieller-
                type test inversion: the CI is every real amount the synthetic cell is not
                significantly different from, so it is exact whenever the unit-level contrast
                is normal, needs no resampling, and is open-ended when the data are)
  fitted numbers no interval: model-based point estimates (`jackknife` is kept for the planner)

s̃² is the contrast's variance over units, moderated by default across the contrasts of its
family (empirical Bayes, Smyth 2004; moderated.py): t on d0 + U − 1 degrees of freedom instead
of U − 1. With `equivalence.variance: per_cell` it is the contrast's own sample variance.

Why not a bootstrap: with the few replicates a study can afford (3–5), a percentile bootstrap
over units has 10–126 distinct resamples and undercovers (the variance of a resampled mean is
shrunk by (U−1)/U and its quantiles are discrete); the t-based forms keep nominal coverage at
any U ≥ 2 under normal unit-level contrasts. Coverage is measured, not assumed:
`benchmarks/coverage.py` simulates studies with a known truth at the default design (the
numbers it printed are in MEASURED_COVERAGE, quoted by the report).

With one replicate the units fall back to classifier seeds (paired by seed, since a seed fixes
the initial weights in every cell): those intervals are conditional on ONE base draw, ONE
generator per base size and ONE test set, and the report says so.

Multiplicity: gains are tested cell by cell, so "significant" is decided by Holm's step-down
procedure over the family of synthetic cells (and, separately, the real-arm cells); the report's
headline gain carries a Bonferroni-simultaneous interval (level 1 − α/m), which is what protects
"the best cell" against the winner's curse.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import interpolate, stats

from synthequiv.utils import SynthequivError

REAL = "real"
Key = tuple[int, str, int]  # (n_base, arm, n_add), counts per class

# What benchmarks/coverage.py measured for the default variance (moderated), 500 simulated
# studies of the current quick design, seed 0, noise of a real 6-replicate quick run
# (simulate.QUICK_NOISE): fraction of nominal-95 % intervals that contained the truth, the
# share of rate intervals finite at both ends and the Holm power for a true +1.5 to +2.5 pt
# gain. Updated by hand from its output (2026-12-06 20:00, the inversion's own prior; README
# quotes the whole table: the heteroscedastic, skewed-generator and missing-row designs cover
# 0.940–0.945 / 0.967–0.972).
MEASURED_COVERAGE = {
    "design": "3 replicates × 2 seeds (6 for the baseline), real +2/+5/+15/+40, closed and "
              "open +40/+160, base 5 and 10, moderated variance",
    "gain": 0.943,
    "n_real_eq": 0.970,
    "n_real_eq_finite": 0.961,
    "finite": 0.435,
    "power_2pt": 0.445,
    "command": "python benchmarks/coverage.py --studies 500",
}


# ----------------------------------------------------------------------------- unit table


@dataclass
class UnitTable:
    """Cell values per unit: values[key] is float [U] (NaN where a unit lacks the cell)."""

    unit: str  # "replicate" | "seed" | "row"
    units: list[Any]
    values: dict[Key, np.ndarray]
    n_rows: dict[Key, int]  # classifier runs behind each cell (all units)

    @property
    def n_units(self) -> int:
        return len(self.units)

    def means(self) -> dict[Key, float]:
        return {k: float(np.nanmean(v)) for k, v in self.values.items()}

    def drop_unit(self, i: int) -> UnitTable:
        keep = [j for j in range(self.n_units) if j != i]
        vals = {k: v[keep] for k, v in self.values.items() if np.isfinite(v[keep]).any()}
        return UnitTable(self.unit, [self.units[j] for j in keep], vals, self.n_rows)


def _row_key(row: Mapping, i: int, metric: str) -> tuple[Key, float]:
    try:
        arm, n_add = str(row["arm"]), int(row["n_add"])
        if arm == "baseline":  # results from other pipelines may name the baseline so
            arm, n_add = REAL, 0
        key = (int(row["n_base"]), arm, n_add)
        value = float(row[metric])
    except KeyError as exc:
        raise SynthequivError(f"results row {i} has no column {exc}") from exc
    except (TypeError, ValueError) as exc:
        raise SynthequivError(f"results row {i}: bad value ({exc})") from exc
    if key[0] <= 0 or key[2] < 0:
        raise SynthequivError(f"results row {i}: need n_base > 0 and n_add >= 0, got {key}")
    if not math.isfinite(value):
        raise SynthequivError(f"results row {i}: {metric} is not finite ({value})")
    return key, value


def _opt_int(row: Mapping, name: str, i: int) -> int | None:
    v = row.get(name)
    if v is None or (isinstance(v, float) and math.isnan(v)) or v == "":
        return None
    try:
        return int(v)
    except (TypeError, ValueError) as exc:
        raise SynthequivError(f"results row {i}: {name} must be an integer, got {v!r}") from exc


def unit_table(rows: Iterable[Mapping[str, Any]], metric: str = "accuracy") -> UnitTable:
    """Group result rows into per-unit cell values (see the module docstring for the unit)."""
    if hasattr(rows, "to_dict"):  # a pandas DataFrame works too
        rows = rows.to_dict("records")
    runs: dict[tuple[int, Key], dict[Any, float]] = {}
    for i, row in enumerate(rows):
        key, value = _row_key(row, i, metric)
        rep, seed = _opt_int(row, "replicate", i) or 0, _opt_int(row, "seed", i)
        per = runs.setdefault((rep, key), {})
        sid = seed if seed is not None else ("row", len(per))
        if sid in per:  # a doubled row would shrink every CI
            raise SynthequivError(
                f"results row {i}: cell {key} replicate {rep} seed {seed} appears twice")
        per[sid] = value
    if not runs:
        raise SynthequivError("the results table is empty")
    reps = sorted({r for r, _ in runs})
    keys = sorted({k for _, k in runs})
    n_rows = {k: sum(len(v) for (r, kk), v in runs.items() if kk == k) for k in keys}
    if len(reps) >= 2:
        units: list[Any] = reps
        vals = {k: np.array([np.mean(list(runs[(r, k)].values())) if (r, k) in runs else np.nan
                             for r in reps]) for k in keys}
        return UnitTable("replicate", units, vals, n_rows)
    per_key = {k: runs[(reps[0], k)] for k in keys}
    seeded = all(not isinstance(s, tuple) for v in per_key.values() for s in v)
    units = sorted({s for v in per_key.values() for s in v}, key=str)
    vals = {k: np.array([per_key[k].get(s, np.nan) for s in units]) for k in keys}
    return UnitTable("seed" if seeded else "row", units, vals, n_rows)


# ----------------------------------------------------------------------------- t intervals


NO_UNIT = "no unit"
ONE_UNIT = "one unit"
NO_SPREAD = "no spread over units: interval undetermined"
# a spread below this (× the contrasts' scale) is float rounding of equal values (0.672 − 0.626
# and 0.700 − 0.654 differ in the 17th digit), not a measured variability
_SPREAD_TOL = 1e-9


def _has_spread(se, d: np.ndarray, axis=None):
    """Whether contrasts d (per unit along `axis`) with standard error `se` vary over units
    beyond float rounding; vectorised over the other axes."""
    return se > _SPREAD_TOL * np.maximum(1.0, np.abs(d).max(axis=axis))


def unit_variances(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(s² [...], d = n − 1 [...]) of contrasts d [..., U] over their finite units (NaN:
    missing, so each contrast is paired on the units where both its cells exist); s² is NaN
    where fewer than 2 units remain and 0 where the contrast has no spread beyond rounding."""
    d = np.asarray(d, float)
    n = np.isfinite(d).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(d, -1) / n
        s2 = np.nansum((d - mean[..., None]) ** 2, -1) / (n - 1)
        spread = _has_spread(np.sqrt(s2 / n), np.nan_to_num(d), axis=-1)
    s2 = np.where(spread, s2, 0.0)
    return np.where(n >= 2, s2, np.nan), (n - 1).astype(float)


def t_interval(d: np.ndarray, ci: float, prior=None) -> dict:
    """Mean of unit-level contrasts with a Student-t interval and two-sided p-value.

    prior (moderated.Prior, or None for the per-cell t): the family's prior, which replaces the
    contrast's variance by its moderated posterior on more degrees of freedom (see
    moderated.py); a contrast without spread then gets the prior's share as its variance.
    "no_interval" says why lo/hi/p are NaN ("" when they are not): fewer than 2 units, or no
    spread over units and no prior (equal contrasts in every unit, common with a discrete
    metric: a zero sample spread over a handful of units does not show a zero variance).
    """
    d = np.asarray(d, float)
    d = d[np.isfinite(d)]
    out = {"estimate": float(d.mean()) if d.size else math.nan, "lo": math.nan,
           "hi": math.nan, "se": math.nan, "p": math.nan, "n_units": int(d.size),
           "df": math.nan, "no_interval": ""}
    if d.size < 2:
        out["no_interval"] = ONE_UNIT if d.size else NO_UNIT
        return out
    s2, df = unit_variances(d)
    if prior is not None:
        s2, df = prior.posterior(s2, df)
    se = float(math.sqrt(float(s2) / d.size))
    if not se > 0:
        out["no_interval"] = NO_SPREAD
        return out
    df = float(df)
    half = float(stats.t.ppf(0.5 + ci / 2, df)) * se
    p = float(2 * stats.t.sf(abs(out["estimate"]) / se, df))
    out.update(lo=out["estimate"] - half, hi=out["estimate"] + half, se=se, p=p, df=df)
    return out


# metrics bounded to [0, 1] (a cell mean's interval is clipped there, a difference's to [-1, 1])
BOUNDED_METRICS = frozenset({"accuracy", "balanced_accuracy", "auc"})


def clip_ends(r: dict, bound: float | None, lower: float, names=("lo", "hi")) -> dict:
    """r with its interval ends `names` clipped to [lower, bound] (in place); bound None: as is.
    A t-interval of a bounded metric over 2–3 units can reach far beyond the possible values."""
    if bound is not None:
        for n in names:
            if math.isfinite(r[n]):
                r[n] = float(min(max(r[n], lower), bound))
    return r


def holm(pvalues: list[float]) -> list[float]:
    """Holm step-down adjusted p-values (NaN stays NaN and is not counted in the family)."""
    p = np.asarray(pvalues, float)
    ok = np.flatnonzero(np.isfinite(p))
    adj = np.full(p.shape, np.nan)
    m = ok.size
    running = 0.0
    for rank, j in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[j]))
        adj[j] = running
    return adj.tolist()


def jackknife(theta_full: float, theta_loo: list[float], ci: float, log: bool = False) -> dict:
    """Jackknife-t interval from leave-one-unit-out estimates; on the log scale if `log`
    (positive quantities such as c₂ or a rate). NaN when a leave-one-out fit failed."""
    loo = np.asarray(theta_loo, float)
    out = {"lo": math.nan, "hi": math.nan, "se": math.nan, "n_units": int(loo.size)}
    if loo.size < 2 or not math.isfinite(theta_full) or not np.isfinite(loo).all():
        return out
    if log and (theta_full <= 0 or (loo <= 0).any()):
        return out
    f = np.log if log else (lambda v: v)
    t_full, t_loo = f(theta_full), f(loo)
    u = loo.size
    se = float(math.sqrt((u - 1) / u * np.sum((t_loo - t_loo.mean()) ** 2)))
    half = float(stats.t.ppf(0.5 + ci / 2, u - 1)) * se
    lo, hi = t_full - half, t_full + half
    if log:  # np.exp: a degenerate leave-one-out fit (c₂ = 1.7e237) gives inf, not a traceback
        with np.errstate(over="ignore"):
            lo, hi = float(np.exp(lo)), float(np.exp(hi))
    out.update(lo=float(lo), hi=float(hi), se=se)
    return out


# ----------------------------------------------------------------------------- test inversion


def _segments(knots_x: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knot index j and weight w with x = (1 − w)·knots_x[j] + w·knots_x[j+1] (clamped)."""
    j = np.clip(np.searchsorted(knots_x, x, side="right") - 1, 0, len(knots_x) - 2)
    w = np.clip((x - knots_x[j]) / (knots_x[j + 1] - knots_x[j]), 0.0, 1.0)
    return j, w


# exponents tried for the curve's shape (accuracy ≈ a − b·N^(−α)); learning curves measured
# in the literature and here have α ≈ 0.1–1.5 (digits calibration 1.22, issue 26's curve 0.6)
_SHAPE_ALPHAS = np.geomspace(0.02, 5.0, 240)


def curve_exponent(knots_x: np.ndarray, y: np.ndarray) -> float | None:
    """α of the least-squares power law y ≈ a − b·N^(−α), b > 0, through knots at
    x = log N (the profile over α on a fixed grid: for each α, (a, b) by linear least squares);
    None with fewer than 3 knots, no rising fit (a flat or falling curve has no such shape), or
    where a line in x (the limit α → 0) fits at least as well."""
    x, y = np.asarray(knots_x, float), np.asarray(y, float)
    if x.size < 3 or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return None
    z = np.exp(-_SHAPE_ALPHAS[:, None] * x[None, :])  # [A, K]: N^(−α)
    zc, yc = z - z.mean(1, keepdims=True), y - y.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        b = -(zc * yc).sum(1) / (zc**2).sum(1)  # slope of y on −z
    sse = ((yc + b[:, None] * zc) ** 2).sum(1)
    sse = np.where(np.isfinite(b) & (b > 0), sse, np.inf)
    i = int(np.argmin(sse))
    # α → 0 is a line in x = log N: where that fits as well, the curve is read in x itself
    xc = x - x.mean()
    line = float(((yc - (xc * yc).sum() / (xc**2).sum() * xc) ** 2).sum())
    return float(_SHAPE_ALPHAS[i]) if np.isfinite(sse[i]) and sse[i] < line else None


def curve_interpolant(knots_x: np.ndarray, y: np.ndarray):
    """The real curve between its knots: a monotone cubic Hermite (PCHIP, Fritsch–Carlson) in
    u = −N^(−α), α the power law fitted to the knots (`curve_exponent`; x = log N), linear with
    2 knots, and in x itself where no rising power law fits. Accuracy is concave in log n, so a
    line between knots lies below it: reading a synthetic cell off the chord overstates the
    real images it is worth (by up to 0.25 pts at the quick design's knots on the digits
    calibration curve), and with many replicates the intervals close in on the biased value.
    PCHIP in x left up to 0.06 pts there (rate coverage at a fixed count 0.927 at 20
    replicates); in u it is exact for any power-law curve (learning curves are close to one)
    and within 0.02–0.05 pts of PCHIP in x on curves that are not (an exponential saturation,
    a logistic in log N: README). Shape-preserving: the knots are interpolated, no overshoot
    between monotone knots, flat at a local extremum."""
    x, y = np.asarray(knots_x, float), np.asarray(y, float)
    alpha = curve_exponent(x, y)
    if alpha is None:
        return interpolate.PchipInterpolator(x, y)
    cubic = interpolate.PchipInterpolator(-np.exp(-alpha * x), y)
    return lambda xq: cubic(-np.exp(-alpha * np.asarray(xq, float)))


def _curve_per_unit(real_u: np.ndarray, j: np.ndarray, w: np.ndarray,
                    bend: np.ndarray | None = None) -> np.ndarray:
    """The real curve at each grid position per unit [G, U]: linear between knots j and j + 1,
    plus `bend` [G] (the mean curve's interpolant minus its chord: the curvature, 0 at knots);
    NaN only where a knot that carries weight is missing in that unit."""
    a, b, w = real_u[j], real_u[j + 1], w[:, None]
    with np.errstate(invalid="ignore"):
        mid = (1 - w) * a + w * b
    out = np.where(w <= 0, a, np.where(w >= 1, b, mid))
    return out if bend is None else out + bend[:, None]


def _bend(real_u: np.ndarray, knots_x: np.ndarray, xs: np.ndarray, j: np.ndarray,
          w: np.ndarray) -> np.ndarray:
    """curve_interpolant of the knots' means over units minus their chord, at xs [G] (0 where a
    knot has no unit, or with fewer than 3 knots: nothing to bend)."""
    with np.errstate(invalid="ignore"):
        y = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in real_u])
    if len(knots_x) < 3 or not np.isfinite(y).all():
        return np.zeros(len(xs))
    chord = (1 - w) * y[j] + w * y[j + 1]
    return curve_interpolant(knots_x, y)(xs) - chord


def inversion_interval(syn_u: np.ndarray, real_u: np.ndarray, knots_x: np.ndarray, ci: float,
                       grid: int = 600, prior=None) -> dict:
    """Set of real-curve positions x (knots_x: log(n_base + n_add) of the real cells) that a
    synthetic cell is not significantly different from, by a paired t-test over units. Each
    unit's curve is its knots read linearly, bent by the mean curve's curvature
    (curve_interpolant), so that a position's contrast has the unit's own noise and the
    curve's shape.

    syn_u: [U] the synthetic cell per unit; real_u: [K, U] the real cells per unit (K knots);
    NaN marks a missing cell, and each position is tested on the units where the synthetic
    cell and the knots it uses all exist. prior: the family's moderated-variance prior (see
    t_interval), None for the per-cell t.
    Returns {"x_lo", "x_hi", "lower_open" (x_lo is the curve's start: the gain may be 0),
    "upper_open" (x_hi is the curve's end: more real data than measured may be needed),
    "empty" (no position accepted: the cell lies significantly outside the curve), "n_units"
    (the most units any position was tested on)}.
    """
    out = {"x_lo": math.nan, "x_hi": math.nan, "lower_open": False, "upper_open": False,
           "empty": False, "n_units": 0}
    if len(knots_x) < 2:
        return out
    xs = np.linspace(knots_x[0], knots_x[-1], grid)
    j, w = _segments(knots_x, xs)
    real_u = np.asarray(real_u, float)
    d = np.asarray(syn_u, float)[None, :] - _curve_per_unit(
        real_u, j, w, _bend(real_u, np.asarray(knots_x, float), xs, j, w))
    n = np.isfinite(d).sum(1)  # [G]
    out["n_units"] = int(n.max())
    if n.max() < 2:
        return out
    s2, df = unit_variances(d)
    if prior is not None:
        s2, df = prior.posterior(s2, df)
    with np.errstate(invalid="ignore", divide="ignore"):
        se = np.sqrt(s2 / n)
        mean = np.nansum(d, 1) / n
        tcrit = stats.t.ppf(0.5 + ci / 2, np.maximum(df, 1))
    # fewer than 2 units or no spread at a position: nothing can be rejected there
    accept = (n < 2) | ~(se > 0) | (np.abs(mean) <= tcrit * se + 1e-15)
    if not accept.any():
        out["empty"] = True
        return out
    idx = np.flatnonzero(accept)
    # each end where the test's margin |mean| − t·se crosses 0 between the last rejected and
    # the first accepted grid position (linear in between): the accepted grid points alone
    # shrink the interval by up to a grid step per end, which at 20 replicates (an interval
    # ~25 steps wide) cost ~1 point of coverage
    with np.errstate(invalid="ignore"):
        margin = np.abs(mean) - tcrit * se
    out.update(x_lo=_crossing(xs, margin, idx[0], -1), x_hi=_crossing(xs, margin, idx[-1], 1),
               lower_open=bool(accept[0]), upper_open=bool(accept[-1]))
    return out


def _crossing(xs: np.ndarray, margin: np.ndarray, i: int, step: int) -> float:
    """Where the margin (≤ 0 accepted) crosses 0 between accepted position i and its rejected
    neighbour i + step; xs[i] itself at the grid's end or where either margin is undefined."""
    k = i + step
    if not 0 <= k < len(xs):
        return float(xs[i])
    a, r = float(margin[i]), float(margin[k])
    if not (math.isfinite(a) and math.isfinite(r) and a <= 0 < r):
        return float(xs[i])
    return float(xs[i] + (xs[k] - xs[i]) * (-a) / (r - a))
