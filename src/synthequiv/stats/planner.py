"""Planner: to reach a target, "generate about N synthetic images/class or collect about M real
images/class", from a run's fitted curves; and a held-out check of how well those curves predict.

Target: a gain in points over each base size's baseline (``--target-gain 2`` = +0.02 accuracy)
or an absolute level (``--target-accuracy 0.97``). Every count is PER CLASS.

Real side, per base size. Inside the measured range, M inverts the real curve
(`equivalence.RealCurve`: isotonic, a monotone cubic in log(n_base + m)). Beyond the largest measured
amount m_max, a power law P(N) = a − b·N^(−α) (N = n_base + m, b ≥ 0) fitted to that base
size's real cell means gives the FURTHER gain, anchored at the curve's end:

    acc(m) = y_end + P(n_base + m) − P(n_base + m_max)        (m > m_max)

so the pieces meet; M is flagged as extrapolated. A target at or above the power law's ceiling
is "not reachable with real data".

Synthetic side, per arm and base size. With the paper's formula fitted (`fit_paper`),
N = paper_n_syn(ln c₁/k, c₂, n_base, n_real⁺ = M): the synthetic amount worth the M real
images the target needs. Without a fit, N is read off the arm's measured cells, baseline
included (isotonic, linear in log(n_base + n_syn) like the real curve); a target above them all
is "not reachable with synthetic data at the measured amounts". N beyond the largest measured
synthetic amount is flagged as extrapolated.

Intervals: jackknife over units (`intervals.jackknife`: leave one replicate out, redo the whole
plan, Student t on U − 1 df), on the scale log(n_base + amount) (the real curve's own axis:
amounts are positive and skewed, and M = 0 stays representable). Not test inversion: M and N
come out of a chain of fits (isotonic curve, power-law extrapolation, both formula
coefficients), so there is no single unit-level contrast whose t-test could be inverted; the
jackknife refits the chain without each unit, so it carries every stage's noise and the
correlation of the cells within a unit, as the report's other fitted numbers do. A target
unreachable in some leave-one-out refit leaves the interval open.

Honesty is measured, not assumed (`heldout_check`): the largest real and the largest synthetic
amount of every base size are left out, everything is refitted on the rest, and those cells'
accuracies are predicted (real: the anchored power law; synthetic: formula → real curve, or
the effective-data model when the formula does not fit). Each prediction's 95 % interval for
the observed mean is pred ± t·se, se the jackknife over units of (prediction − observed mean):
the refit's noise, the held-out cell's own, and their correlation within a unit. Reported per
cell: predicted, observed, error, covered; overall: RMSE and coverage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize

from synthequiv.stats.curves import RealCurve, monotone_inverse, real_curves
from synthequiv.stats.fitting import (
    ALPHA_BOUNDS,
    MAX_EXTRAPOLATION,
    _cell_se,
    _effective_predict,
    fit_effective,
    fit_paper,
    paper_n_real,
    paper_n_syn,
)
from synthequiv.stats.intervals import REAL, Key, UnitTable, jackknife, unit_table
from synthequiv.utils import SynthequivError

METRIC_MAX = 1.0  # accuracy-like metrics (results CSVs are checked to lie in [0, 1])
_ALPHA_GRID = np.geomspace(ALPHA_BOUNDS[0], 3.0, 30)  # start values of the power law's alpha


# ----------------------------------------------------------------------------- target


@dataclass(frozen=True)
class Target:
    """Exactly one of: a gain in points over each base size's baseline, or an absolute level."""

    gain_pts: float | None = None  # percentage points: 2 → +0.02 accuracy over the baseline
    accuracy: float | None = None  # metric value in (0, 1]

    def __post_init__(self) -> None:
        if (self.gain_pts is None) == (self.accuracy is None):
            raise SynthequivError("give exactly one target: --target-gain POINTS or "
                                  "--target-accuracy VALUE")
        if self.gain_pts is not None and not (math.isfinite(self.gain_pts) and self.gain_pts > 0):
            raise SynthequivError(f"--target-gain must be a positive number of points, got "
                                  f"{self.gain_pts}")
        if self.accuracy is not None and not 0 < self.accuracy <= 1:
            raise SynthequivError(f"--target-accuracy must lie in (0, 1], got {self.accuracy}")

    def level(self, baseline: float) -> float:
        return baseline + self.gain_pts / 100 if self.gain_pts is not None else self.accuracy

    def text(self) -> str:
        return (f"+{self.gain_pts:g} pts over each base size's baseline"
                if self.gain_pts is not None else f"{self.accuracy:g}")


# ----------------------------------------------------------------------------- real side


def fit_power(n_total, acc) -> dict:
    """Least squares of acc = a − b·n_total^(−alpha), b ≥ 0 (one base size's real cells)."""
    n, y = np.asarray(n_total, float), np.asarray(acc, float)
    out = {"a": math.nan, "b": math.nan, "alpha": math.nan, "rmse": math.nan,
           "n_points": int(n.size), "status": "ok", "at_bound": False}
    if np.unique(n).size < 3:
        out["status"] = "too_few_points"
        return out
    z = n[None, :] ** -_ALPHA_GRID[:, None]  # [A, K]
    zc, yc = z - z.mean(1, keepdims=True), y - y.mean()
    b = np.clip(-(zc * yc).sum(1) / (zc**2).sum(1), 0.0, None)
    a = y.mean() + b * z.mean(1)
    i = int(np.argmin(((a[:, None] - b[:, None] * z - y) ** 2).sum(1)))

    def resid(p):
        return p[0] - p[1] * n ** -p[2] - y

    # the ceiling a is at most 1, the metric's maximum (an unbounded a of 1.32 planned 1.4e6
    # real images/class for a target accuracy of 1.0)
    res = optimize.least_squares(resid, [min(a[i], METRIC_MAX), b[i], _ALPHA_GRID[i]],
                                 x_scale="jac", bounds=([-np.inf, 0.0, ALPHA_BOUNDS[0]],
                                                        [METRIC_MAX, np.inf, ALPHA_BOUNDS[1]]))
    out.update(a=float(res.x[0]), b=float(res.x[1]), alpha=float(res.x[2]),
               rmse=float(np.sqrt(np.mean(res.fun**2))),
               at_bound=bool(np.isclose(res.x[2], ALPHA_BOUNDS, rtol=1e-6).any()))
    return out


@dataclass
class RealModel:
    """The real arm at one base size: the measured curve inside its range, the anchored power
    law beyond it (module docstring)."""

    curve: RealCurve
    power: dict

    def _p(self, n_total: float) -> float:
        return self.power["a"] - self.power["b"] * n_total ** -self.power["alpha"]

    def acc(self, m: float) -> float:
        """Accuracy after m extra real images/class (NaN beyond the range without a power law)."""
        c = self.curve
        if not math.isfinite(m):
            return math.nan
        if m <= c.m_max:
            return float(c.at(m))
        if self.power["status"] != "ok":
            return math.nan
        return float(c.y[-1] + self._p(c.n_base + m) - self._p(c.n_base + c.m_max))

    def amount(self, level: float) -> tuple[float, str]:
        """(m, method) reaching `level`: baseline | measured | power_law | ceiling (the
        extrapolation levels off below it) | no_extrapolation (< 3 real amounts) | above_max
        (the level exceeds the metric's maximum, 1)."""
        c = self.curve
        if level > METRIC_MAX:
            return math.inf, "above_max"
        if level <= c.y[0]:
            return 0.0, "baseline"
        if level <= c.y[-1]:
            return c.inverse(level)[0], "measured"
        if self.power["status"] != "ok":
            return math.inf, "no_extrapolation"
        q = level - c.y[-1] + self._p(c.n_base + c.m_max)  # the power law's level to reach
        if q >= self.power["a"] or self.power["b"] <= 0:
            return math.inf, "ceiling"
        n_total = (self.power["b"] / (self.power["a"] - q)) ** (1 / self.power["alpha"])
        return max(float(n_total - c.n_base), c.m_max), "power_law"


def real_models(means: dict[Key, float]) -> dict[int, RealModel]:
    out = {}
    for nb, curve in real_curves(means).items():
        acc = [means[k] for k in curve.keys]
        out[nb] = RealModel(curve, fit_power(nb + curve.n_add, acc))
    return out


# ----------------------------------------------------------------------------- synthetic side


def _measured_syn(means, arm: str, nb: int, level: float) -> tuple[float, str]:
    """N read off the arm's measured cells at one base size (baseline at n_syn = 0)."""
    amounts = sorted(k[2] for k in means if k[:2] == (nb, arm) and k[2] > 0)
    if not amounts:
        return math.inf, "no_cells"
    x = np.log(nb + np.array([0, *amounts], float))
    y = [means[(nb, REAL, 0)], *(means[(nb, arm, m)] for m in amounts)]
    x_hit, flag = monotone_inverse(x, y, level)
    if flag == "above_range":
        return math.inf, "not_reached"
    return max(0.0, math.exp(x_hit) - nb), "measured"


def _syn_amount(fit: dict, means, arm: str, nb: int, level: float, m: float) -> tuple[float, str]:
    """N by the formula at n_real⁺ = m when it fitted and m is finite, else measured cells."""
    if fit["status"] == "ok" and math.isfinite(m):
        with np.errstate(over="ignore"):  # a far extrapolation may overflow: then inf
            n = float(paper_n_syn(fit["ln_c1_over_k"], fit["c2"], nb, m))
        return (n, "formula") if math.isfinite(n) else (math.inf, "not_reached")
    return _measured_syn(means, arm, nb, level)  # the formula cannot map an unreachable m


def _estimates(t: UnitTable, target: Target, k: float) -> dict[tuple[str, int], dict]:
    """Every amount of the plan from one unit table: {("real" | arm, n_base): {amount, method,
    …}}; called once on all units and once per left-out unit."""
    means, se = t.means(), _cell_se(t)
    models = real_models(means)
    arms = sorted({key[1] for key in means} - {REAL})
    fits = {arm: fit_paper(means, se, arm, k) for arm in arms}
    out = {}
    for nb, model in models.items():
        level = target.level(model.curve.y[0])
        m, how = model.amount(level)
        out[(REAL, nb)] = {"amount": m, "method": how, "level": level,
                           "baseline": float(model.curve.y[0])}
        for arm in arms:
            if not any(key[:2] == (nb, arm) for key in means) and fits[arm]["status"] != "ok":
                continue
            if how == "baseline":
                n, syn_how = 0.0, "baseline"
            else:
                n, syn_how = _syn_amount(fits[arm], means, arm, nb, level, m)
            out[(arm, nb)] = {"amount": n, "method": syn_how, "n_real_plus": m,
                              "formula": fits[arm]["status"]}
    return out


def _jackknife_amount(nb: int, full: float, loo: list[float], ci: float) -> tuple[float, float]:
    """Interval of an amount from leave-one-unit-out amounts, on log(n_base + amount)."""
    if not math.isfinite(full) or len(loo) < 2:
        return math.nan, math.nan
    if not all(math.isfinite(v) for v in loo):
        return math.nan, math.inf  # unreachable without some unit: open above
    jk = jackknife(math.log(nb + full), [math.log(nb + v) for v in loo], ci)
    with np.errstate(over="ignore"):  # a wild leave-one-out amount: inf, not OverflowError
        return max(0.0, float(np.exp(jk["lo"])) - nb), float(np.exp(jk["hi"])) - nb


# ----------------------------------------------------------------------------- plan


def plan(rows, target: Target, k: float = 1.0, ci: float = 0.95,
         metric: str = "accuracy") -> dict:
    """Per base size: the real images/class to collect and, per generative arm, the synthetic
    images/class to generate to reach `target` (module docstring), with jackknife intervals.

    Returns {"target", "metric", "unit", "n_units", "ci", "ci_method", "bases": [{"n_base",
    "baseline", "level", "real": {...}, "arms": {arm: {...}}}]}; each amount entry has
    amount, lo, hi (inf: unreachable / open), method, extrapolated, largest_measured; a
    synthetic entry's `unconstrained` marks an amount beyond MAX_EXTRAPOLATION × the largest
    measured (kept in the JSON, not worded as a recommendation)."""
    t = unit_table(rows, metric)
    full = _estimates(t, target, k)
    if not full:
        raise SynthequivError("no base size has a real baseline (arm real, n_add 0): "
                              "nothing to plan from")
    loo = [_estimates(t.drop_unit(i), target, k) for i in range(t.n_units)] if t.n_units > 1 else []
    means = t.means()
    models = real_models(means)
    bases = []
    for nb in sorted(models):
        real = _with_ci(full, loo, (REAL, nb), ci)
        real.update(largest_measured=models[nb].curve.m_max, power_law=models[nb].power,
                    n_real_amounts=len(models[nb].curve.keys) - 1,
                    extrapolated=real["method"] == "power_law")
        arms = {}
        for arm in sorted(a for a, b in full if b == nb and a != REAL):
            e = _with_ci(full, loo, (arm, nb), ci)
            cells = {key[2]: means[key] for key in means if key[:2] == (nb, arm) and key[2] > 0}
            largest = max(cells, default=0)
            best = max(cells, key=cells.get, default=None)
            e.update(largest_measured=largest,
                     extrapolated=bool(math.isfinite(e["amount"]) and e["amount"] > largest),
                     # the report's rule: no estimate this far beyond the measured amounts
                     unconstrained=bool(math.isfinite(e["amount"]) and e["amount"]
                                        > MAX_EXTRAPOLATION * max(largest, 1)),
                     best_measured=None if best is None else {"n_syn": best,
                                                              "mean": cells[best]},
                     moved_toward=bool(best is not None and cells[best] > real["baseline"]))
            arms[arm] = e
        bases.append({"n_base": nb, "baseline": real.pop("baseline"),
                      "level": real.pop("level"), "real": real, "arms": arms})
    return {"target": {"gain_pts": target.gain_pts, "accuracy": target.accuracy},
            "target_text": target.text(), "metric": metric, "unit": t.unit,
            "n_units": t.n_units, "ci": ci,
            "ci_method": (f"jackknife over {t.n_units} {t.unit}s on log(n_base + amount)"
                          if t.n_units > 1 else "none (one unit)"),
            "bases": bases}


def _with_ci(full: dict, loo: list[dict], key, ci: float) -> dict:
    values = [d.get(key, {}).get("amount", math.nan) for d in loo]
    return {**full[key], **dict(zip(("lo", "hi"), _jackknife_amount(key[1], full[key]["amount"],
                                                                    values, ci)))}


def _n(x: float) -> str:
    if x != x:
        return "n/a"
    if x == math.inf:
        return "∞"
    if x >= 1e5:
        return f"{x:.2g}"  # a count this far out is an order of magnitude, not a number
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def _ci(e: dict, ci: float) -> str:
    if e["lo"] != e["lo"] and e["hi"] == math.inf:
        return f"{100 * ci:g} % CI open: out of reach in some leave-one-unit-out refit"
    return f"{100 * ci:g} % CI {_n(e['lo'])}–{_n(e['hi'])}"


def _real_line(r: dict, ci: float) -> str:
    how = r["method"]
    if how == "baseline":
        return "real: the baseline already reaches the target (collect 0)"
    if how == "above_max":
        return f"real: not reachable — the target is above the metric's maximum of {METRIC_MAX:g}"
    if how == "ceiling":
        p = r["power_law"]
        return (f"real: not reachable by collecting real images — the power law fitted to the "
                f"{r['n_real_amounts']} real amounts levels off at {p['a']:.4f}")
    if how == "no_extrapolation":
        return (f"real: not reached within the measured +{r['largest_measured']:g}/class, and "
                f"{r['n_real_amounts']} real amount(s) are too few to extrapolate (need ≥ 2 "
                "besides the baseline)")
    text = f"real: collect about {_n(r['amount'])} real images/class ({_ci(r, ci)})"
    if r["extrapolated"]:
        return (text + f" — EXTRAPOLATED beyond the largest measured +{r['largest_measured']:g}"
                f"/class (power law a − b·n^−α, α = {r['power_law']['alpha']:.2f}"
                + (" at its bound: a rough guess" if r["power_law"]["at_bound"] else "") + ")")
    text += f", inside the measured range (up to +{r['largest_measured']:g}/class)"
    if r["hi"] > r["largest_measured"]:  # the estimate is measured, its uncertainty is not
        text += "; its interval reaches beyond it (EXTRAPOLATED there)"
    return text


def _arm_line(arm: str, e: dict, ci: float) -> str:
    how, where = e["method"], f"{arm}-set"
    if how == "baseline":
        return f"{where}: the baseline already reaches the target (generate 0)"
    if how in ("not_reached", "no_cells"):
        b = e["best_measured"]
        best = "no synthetic cell was measured here" if b is None else (
            f"best measured: +{b['n_syn']}/class gave {b['mean']:.4f}"
            + ("" if e["moved_toward"] else ", no better than the baseline"))
        why = (f"; no fitted formula to extrapolate with ({e['formula']})"
               if e["formula"] != "ok" else "; the fitted formula maps synthetic images onto "
               "real ones, and the real extrapolation does not reach the target either"
               if not math.isfinite(e["n_real_plus"]) else "")
        return (f"{where}: not reachable with synthetic data at the measured amounts "
                f"({best}{why})")
    by = ("by the fitted formula at n_real⁺ = " + _n(e["n_real_plus"]) if how == "formula"
          else "read off the measured synthetic cells (formula not fitted: "
               f"{e['formula']})")
    if e.get("unconstrained"):
        return (f"{where}: by the fitted formula, more than {MAX_EXTRAPOLATION:g}× the largest "
                f"measured +{e['largest_measured']}/class — not reported (an extrapolation the "
                "data do not constrain; measure larger synthetic amounts)")
    text = f"{where}: generate about {_n(e['amount'])} synthetic images/class ({_ci(e, ci)}), {by}"
    if e["extrapolated"]:
        text += (f" — EXTRAPOLATED beyond the largest measured +{e['largest_measured']}/class "
                 f"(×{_n(e['amount'] / max(e['largest_measured'], 1))})")
    return text


def plan_lines(p: dict) -> list[str]:
    """The plan in words: a header line per base size, then one line per source of images."""
    out = [f"target: {p['target_text']} ({p['metric']}); intervals: {p['ci_method']}"]
    for b in p["bases"]:
        gain = 100 * (b["level"] - b["baseline"])
        out.append(f"base {b['n_base']}/class: baseline {b['baseline']:.4f} → target "
                   f"{b['level']:.4f} ({gain:+.1f} pts)")
        out.append("  " + _real_line(b["real"], p["ci"]))
        out += ["  " + _arm_line(arm, e, p["ci"]) for arm, e in b["arms"].items()]
    return out


# ----------------------------------------------------------------------------- held-out check


def _held_out_keys(t: UnitTable) -> list[Key]:
    """The largest real amount and each arm's largest synthetic amount at every base size."""
    out = []
    for nb in sorted({k[0] for k in t.values if k[1:] == (REAL, 0)}):
        for arm in sorted({k[1] for k in t.values if k[0] == nb}):
            amounts = [k[2] for k in t.values if k[:2] == (nb, arm) and k[2] > 0]
            if amounts:
                out.append((nb, arm, max(amounts)))
    return out


def _predict(t: UnitTable, held: list[Key], k: float) -> tuple[np.ndarray, list[str]]:
    """Accuracy of each held-out cell predicted from `t` (which lacks them), and how."""
    means, se = t.means(), _cell_se(t)
    models = real_models(means)
    fits = {arm: (fit_paper(means, se, arm, k), fit_effective(means, arm))
            for arm in sorted({key[1] for key in held} - {REAL})}
    out = [_predict_one(models.get(nb), fits.get(arm), nb, arm, n) for nb, arm, n in held]
    return np.array([p for p, _ in out], float), [h for _, h in out]


def _predict_one(model: RealModel | None, fits, nb: int, arm: str, n: int) -> tuple[float, str]:
    if model is None:
        return math.nan, "no_baseline"
    if arm == REAL:
        return model.acc(n), "power_law"
    paper, eff = fits
    if paper["status"] == "ok":
        return model.acc(float(paper_n_real(paper["ln_c1_over_k"], paper["c2"], nb, n))), "formula"
    if eff["status"] == "ok":
        return float(_effective_predict(eff, nb, 0.0, n)), "effective_data"
    return math.nan, "none"


def _error_interval(pred_full, obs_full, pred_loo, obs_loo, ci: float) -> dict:
    """The observed mean's interval: jackknife over units of (prediction − observed mean)."""
    err = pred_full - obs_full
    jk = jackknife(err, list(np.asarray(pred_loo) - np.asarray(obs_loo)), ci)
    if not math.isfinite(jk["se"]):
        return {"lo": math.nan, "hi": math.nan, "se": math.nan, "covered": None}
    half = (jk["hi"] - jk["lo"]) / 2
    return {"lo": pred_full - half, "hi": pred_full + half, "se": jk["se"],
            "covered": bool(abs(err) <= half)}


def heldout_check(rows, k: float = 1.0, ci: float = 0.95, metric: str = "accuracy") -> dict:
    """Leave out the largest real and synthetic amount of every base size, refit on the rest,
    predict them (module docstring). Returns {"status": ok | not_possible, "reason", "cells":
    [{n_base, arm, n_add, method, predicted, observed, error, lo, hi, covered}], "rmse",
    "mean_error", "max_abs_error", "coverage", "n_predicted", "n_with_interval", "ci",
    "unit", "n_units"}; errors are predicted − observed, in metric units."""
    t = rows if isinstance(rows, UnitTable) else unit_table(rows, metric)
    held = _held_out_keys(t)
    rest = UnitTable(t.unit, t.units, {key: v for key, v in t.values.items() if key not in held},
                     t.n_rows)
    out = {"status": "ok", "reason": "", "cells": [], "rmse": math.nan, "mean_error": math.nan,
           "max_abs_error": math.nan, "coverage": math.nan, "n_predicted": 0,
           "n_with_interval": 0, "ci": ci, "unit": t.unit, "n_units": t.n_units,
           "what": "largest real and largest synthetic amount of every base size"}
    if not held:
        out.update(status="not_possible", reason="no base size has a real baseline and an "
                   "added amount to leave out")
        return out
    pred, how = _predict(rest, held, k)
    units = range(t.n_units if t.n_units > 1 else 0)
    pred_loo = np.array([_predict(rest.drop_unit(i), held, k)[0] for i in units]).reshape(
        len(units), len(held))
    for j, key in enumerate(held):
        v = t.values[key]
        obs = float(np.nanmean(v))
        # a cell of a partly finished run may exist in one unit only: leaving it out leaves
        # nothing to average (NaN, and then no interval for that cell)
        rest_v = [np.delete(v, i) for i in units]
        obs_loo = [float(np.mean(r[np.isfinite(r)])) if np.isfinite(r).any() else math.nan
                   for r in rest_v]
        cell = {"n_base": key[0], "arm": key[1], "n_add": key[2], "method": how[j],
                "predicted": float(pred[j]), "observed": obs,
                "error": float(pred[j] - obs)}
        cell.update(_error_interval(pred[j], obs, pred_loo[:, j], obs_loo, ci))
        out["cells"].append(cell)
    return _summarise(out)


def _summarise(out: dict) -> dict:
    err = np.array([c["error"] for c in out["cells"]], float)
    err = err[np.isfinite(err)]
    covered = [c["covered"] for c in out["cells"] if c["covered"] is not None]
    out["n_predicted"], out["n_with_interval"] = int(err.size), len(covered)
    if err.size:
        out.update(rmse=float(np.sqrt(np.mean(err**2))), mean_error=float(err.mean()),
                   max_abs_error=float(np.abs(err).max()))
    else:
        out.update(status="not_possible", reason="no held-out cell could be predicted from "
                   "the rest (too few real amounts or synthetic cells left)")
    if covered:
        out["coverage"] = float(np.mean(covered))
    return out


def heldout_text(check: dict) -> str:
    """One line: the check's RMSE, bias and coverage (or why there is none)."""
    if check["status"] != "ok":
        return f"held-out check: not possible ({check['reason']})"
    cov = ("no intervals (one unit)" if not check["n_with_interval"] else
           f"{check['coverage']:.2f} of {check['n_with_interval']} nominal "
           f"{100 * check['ci']:g} % intervals covered the observed mean")
    return (f"held-out check ({check['what']}): RMSE {100 * check['rmse']:.2f} pts, mean error "
            f"{100 * check['mean_error']:+.2f} pts over {check['n_predicted']} cells; {cov}")
