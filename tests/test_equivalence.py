"""Invariant tests of the equivalence stage: fits recover the coefficients that made the data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats
from sklearn.isotonic import IsotonicRegression

from synthequiv import equivalence as eq
from synthequiv.utils import SynthequivError, to_jsonable

N_BASES = (10, 20, 40)


# ----------------------------------------------------------------------------- data makers


def paper_points(c2, ln_c1_over_k, noise=0.0, seed=0):
    """Equivalent points from the paper's formula; log-normal noise on n_syn."""
    rng = np.random.default_rng(seed)
    points = []
    for n_base in (10, 20, 40, 80):
        for frac in (0.25, 0.5, 1.0, 1.5, 2.0):
            n_syn = n_base * math.exp(ln_c1_over_k * n_base) * (c2**frac - 1)
            points.append(
                {
                    "n_base": n_base,
                    "n_syn": n_syn * math.exp(noise * rng.normal()),
                    "acc_syn": math.nan,
                    "n_real_eq": frac * n_base,
                    "flag": "ok",
                }
            )
    return points


def power_law(n_eff):
    return 0.99 - 0.5 * n_eff**-0.7


def rows_effective(r=0.3, noise=0.001, seeds=5, seed=0):
    """Rows from acc = 0.99 − 0.5·(n_base + n_real + r·n_syn)^(−0.7) plus seed noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n_base in N_BASES:
        for s in range(seeds):
            for n_add in (0, 10, 20, 40, 80):
                acc = power_law(n_base + n_add) + noise * rng.normal()
                rows.append(
                    {"n_base": n_base, "arm": "real", "n_add": n_add, "seed": s, "accuracy": acc}
                )
            for n_add in (20, 40, 80, 160):
                acc = power_law(n_base + r * n_add) + noise * rng.normal()
                rows.append(
                    {"n_base": n_base, "arm": "closed", "n_add": n_add, "seed": s, "accuracy": acc}
                )
    return rows


def rows_paper(c2=2.53, ln_c1_over_k=0.02, noise=0.0005, seeds=5, seed=0):
    """Rows whose equivalence follows the paper's formula exactly.

    The real arm is piecewise linear between its knots (so interpolation adds no bias); each
    synthetic cell's accuracy is the real curve at the n_real+ the formula gives for its n_syn.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for n_base in N_BASES:
        knots = np.array([0.0, 0.25, 0.5, 1.0, 1.5, 2.0]) * n_base
        curve = power_law(n_base + knots)
        scale = math.exp(ln_c1_over_k * n_base)
        n_syns = {round(n_base * scale * (c2**f - 1)) for f in (0.3, 0.6, 1.0, 1.4)}
        cells = [("real", int(m), c) for m, c in zip(knots, curve)]
        for n_syn in sorted(n_syns):
            n_real = n_base * math.log1p(n_syn / n_base / scale) / math.log(c2)
            cells.append(("closed", n_syn, float(np.interp(n_real, knots, curve))))
        for arm, n_add, acc in cells:
            for s in range(seeds):
                rows.append(
                    {
                        "n_base": n_base,
                        "arm": arm,
                        "n_add": n_add,
                        "seed": s,
                        "accuracy": acc + noise * rng.normal(),
                    }
                )
    return rows


# ----------------------------------------------------------------------------- paper formula


@pytest.mark.parametrize(
    "c2, ln_c1_over_k", [(2.53, 0.02), (3.88, -0.01), (37.84, 0.005), (1.68, 0.0)]
)
def test_paper_fit_recovers_noise_free_coefficients(c2, ln_c1_over_k):
    fit = eq.fit_paper_formula(paper_points(c2, ln_c1_over_k), k=10.0)
    assert fit["status"] == "ok" and not fit["at_bound"]
    assert fit["c2"] == pytest.approx(c2, rel=1e-6)
    assert fit["ln_c1_over_k"] == pytest.approx(ln_c1_over_k, abs=1e-8)
    assert fit["c1"] == pytest.approx(math.exp(10.0 * ln_c1_over_k), rel=1e-6)
    assert fit["residual_rmse"] < 1e-6 and fit["n_points"] == 20


def test_paper_fit_with_noise_is_close():
    fit = eq.fit_paper_formula(paper_points(2.53, 0.02, noise=0.05, seed=1), k=10.0)
    assert fit["c2"] == pytest.approx(2.53, rel=0.08)
    assert fit["ln_c1_over_k"] == pytest.approx(0.02, abs=0.002)
    assert 0.02 < fit["residual_rmse"] < 0.1


def test_only_ln_c1_over_k_is_identifiable():
    points = paper_points(2.53, 0.02, noise=0.05, seed=2)
    a, b = eq.fit_paper_formula(points, k=5.0), eq.fit_paper_formula(points, k=20.0)
    assert a["ln_c1_over_k"] == pytest.approx(b["ln_c1_over_k"], rel=1e-5)
    assert a["c2"] == pytest.approx(b["c2"], rel=1e-5)
    assert a["c1"] != pytest.approx(b["c1"], rel=1e-3)  # c1 itself depends on the chosen k
    assert eq.exchange_rate(a, 40, 1.0) == pytest.approx(eq.exchange_rate(b, 40, 1.0), rel=1e-5)


def test_exchange_rate_matches_formula():
    fit = eq.fit_paper_formula(paper_points(2.53, 0.02), k=10.0)
    # matching n_real+ = n_base = 20: n_syn = 20·e^(0.4)·1.53, so 1.53·e^0.4 synthetic per real
    assert eq.exchange_rate(fit, 20, 1.0) == pytest.approx(1.53 * math.exp(0.4), rel=1e-6)
    assert eq.exchange_rate(fit, 20, 0.5) == pytest.approx(
        (2.53**0.5 - 1) / 0.5 * math.exp(0.4), rel=1e-6
    )
    with pytest.raises(SynthequivError):
        eq.exchange_rate(fit, 20, 0.0)


def test_too_few_usable_points_gives_status_not_exception():
    points = paper_points(2.53, 0.02)
    for p in points[1:]:
        p["flag"] = "above_range"
    points.append(
        {"n_base": 10, "n_syn": 5, "acc_syn": 0.5, "n_real_eq": 0.0, "flag": "below_range"}
    )
    fit = eq.fit_paper_formula(points, k=10.0)
    assert fit["status"] == "too_few_points" and fit["n_points"] == 1
    assert math.isnan(fit["c2"]) and math.isnan(fit["c1"]) and math.isnan(fit["ln_c1_over_k"])
    assert math.isnan(eq.exchange_rate(fit, 20, 1.0))
    assert eq.fit_paper_formula([], k=10.0)["status"] == "too_few_points"


def test_hurting_synthetic_data_is_flagged_and_analysis_survives():
    rows = [dict(r) for r in rows_effective(noise=0.0005)]
    for row in rows:
        if row["arm"] == "closed":
            row["accuracy"] -= 0.2  # synthetic data hurts everywhere
    points = eq.equivalent_points(rows, "closed")
    assert {p["flag"] for p in points} == {"below_range"}
    assert all(p["n_real_eq"] == 0 for p in points)
    out = eq.analyse(rows, eq.EquivalenceConfig(bootstrap=20))
    arm = out["arms"]["closed"]
    assert arm["fit"]["status"] == "too_few_points"
    assert arm["bootstrap"]["fit_failure_fraction"] == 1.0
    assert all(g["significant"] and g["gain"] < 0 for g in out["gains"] if g["arm"] == "closed")
    json.dumps(to_jsonable(out), allow_nan=False)


# ----------------------------------------------------------------------------- monotone inverse


def test_monotone_inverse_exact_at_knots_and_linear_between():
    x, y = [0, 10, 20, 40], [0.90, 0.95, 0.97, 0.98]
    for xi, yi in zip(x, y):
        assert eq.monotone_inverse(x, y, yi) == (pytest.approx(xi), "ok")
    assert eq.monotone_inverse(x, y, 0.96) == (pytest.approx(15.0), "ok")
    assert eq.monotone_inverse(x, y, 0.975) == (pytest.approx(30.0), "ok")


def test_monotone_inverse_flags_out_of_range_and_never_extrapolates():
    x, y = [0, 10, 20], [0.90, 0.95, 0.97]
    assert eq.monotone_inverse(x, y, 0.85) == (0.0, "below_range")
    assert eq.monotone_inverse(x, y, 0.99) == (20.0, "above_range")


def test_monotone_inverse_noisy_curve_is_monotone_and_matches_isotonic():
    rng = np.random.default_rng(3)
    x = np.array([0, 5, 10, 20, 40, 80.0])
    y = 0.9 + 0.01 * np.log1p(x) + rng.normal(0, 0.01, x.size)
    assert np.any(np.diff(y) < 0)  # the test needs a non-monotone curve
    y_iso = IsotonicRegression().fit_transform(x, y)
    queries = np.linspace(y.min() - 0.01, y.max() + 0.01, 400)
    xs, flags = zip(*(eq.monotone_inverse(x, y, q) for q in queries))
    xs = np.array(xs)
    assert np.all(np.diff(xs) >= -1e-12) and xs.min() >= x[0] and xs.max() <= x[-1]
    inside = np.array([f == "ok" for f in flags])
    assert inside.sum() > 100
    # an independent inverse: first point of a dense evaluation of sklearn's fit that reaches q
    dense_x = np.linspace(0, 80, 800_001)
    dense_y = np.interp(dense_x, x, y_iso)
    expect = dense_x[np.searchsorted(dense_y, queries[inside])]
    assert np.allclose(xs[inside], expect, atol=2e-4)
    assert flags[0] == "below_range" and flags[-1] == "above_range"


def test_monotone_inverse_flat_curve_and_bad_input():
    x, y = [0, 10, 20, 40], [0.90, 0.95, 0.95, 0.98]
    assert eq.monotone_inverse(x, y, 0.95) == (10.0, "flat")
    assert eq.monotone_inverse(x, y, 0.96) == (pytest.approx(20 + 20 / 3), "ok")
    assert eq.monotone_inverse([0, 10], [0.9, 0.8], 0.85) == (0.0, "flat")  # pooled to one level
    with pytest.raises(SynthequivError):
        eq.monotone_inverse([0, 0], [0.9, 0.95], 0.92)
    with pytest.raises(SynthequivError):
        eq.monotone_inverse([0, 10], [0.9, 0.95], math.nan)


# ----------------------------------------------------------------------------- results rows


def test_seed_means_and_real_curve():
    rows = rows_effective(noise=0.0, seeds=3)
    means = eq.seed_means(rows)
    mean, std, n = means[(20, "real", 40)]
    assert (
        mean == pytest.approx(power_law(60.0)) and std == pytest.approx(0.0, abs=1e-12) and n == 3
    )
    x, y = eq.real_curve(rows, 20)
    assert list(x) == [0, 10, 20, 40, 80] and y == pytest.approx(power_law(20.0 + x))


def test_equivalent_points_interpolate_the_real_curve():
    rows = rows_effective(r=0.3, noise=0.0)
    points = eq.equivalent_points(rows, "closed")
    assert len(points) == 12 and all(p["flag"] == "ok" for p in points)
    for p in points:
        knots = np.array([0, 10, 20, 40, 80.0])
        expect = np.interp(p["acc_syn"], power_law(p["n_base"] + knots), knots)
        assert p["n_real_eq"] == pytest.approx(expect, rel=1e-9)
        # linear interpolation of a concave curve overestimates the true 0.3·n_syn a little
        assert 0.3 * p["n_syn"] <= p["n_real_eq"] <= 0.3 * p["n_syn"] * 1.25 + 1e-9


def test_effective_data_fit_recovers_r_and_rates_are_finite():
    rows = rows_effective(r=0.3, noise=0.001)
    fit = eq.fit_effective_data(rows, "closed")
    assert fit["status"] == "ok" and fit["n_cells"] == 27
    assert fit["r"] == pytest.approx(0.3, rel=0.1)
    assert fit["alpha"] == pytest.approx(0.7, rel=0.25)
    assert fit["rmse"] < 0.002
    other = eq.fit_effective_data(rows_effective(r=1.2, noise=0.001), "closed")
    assert other["r"] == pytest.approx(1.2, rel=0.1)
    paper = eq.fit_paper_formula(eq.equivalent_points(rows, "closed"), k=10.0)
    rates = [eq.exchange_rate(paper, nb, f) for nb in N_BASES for f in (0.5, 1.0)]
    assert all(np.isfinite(rates)) and min(rates) > 0


def test_compare_models_prefers_the_model_that_made_the_data():
    out = eq.compare_models(rows_effective(r=0.3, noise=0.0005), "closed", k=10.0)
    assert out["n_cells"] == 12 and out["better"] == "effective_data"
    assert out["effective_data_rmse"] < out["paper_formula_rmse"]
    out = eq.compare_models(rows_paper(noise=0.0), "closed", k=10.0)
    assert out["better"] == "paper_formula" and out["paper_formula_rmse"] < 1e-3


def test_bad_tables_raise_user_errors():
    rows = rows_effective(seeds=2)
    with pytest.raises(SynthequivError, match="real baseline"):
        eq.equivalent_points([r for r in rows if (r["arm"], r["n_add"]) != ("real", 0)], "closed")
    with pytest.raises(SynthequivError, match="reference"):
        eq.equivalent_points(rows, "real")
    with pytest.raises(SynthequivError, match="no results for arm"):
        eq.fit_effective_data(rows, "open")
    with pytest.raises(SynthequivError, match="column"):
        eq.seed_means(rows, metric="auc")
    with pytest.raises(SynthequivError, match="twice"):
        eq.seed_means(rows + rows[:1])
    with pytest.raises(SynthequivError):
        eq.EquivalenceConfig(ci=1.5)


# ----------------------------------------------------------------------------- uncertainty


def test_bootstrap_contains_true_c2_and_widens_with_noise():
    cfg = eq.EquivalenceConfig(bootstrap=150, seed=1)
    quiet = eq.bootstrap(rows_paper(noise=0.0005), "closed", cfg)
    noisy = eq.bootstrap(rows_paper(noise=0.002), "closed", cfg)
    lo, hi = quiet["c2"]
    assert lo <= 2.53 <= hi and hi - lo < 1.0
    assert quiet["ln_c1_over_k"][0] <= 0.02 <= quiet["ln_c1_over_k"][1]
    assert noisy["c2"][1] - noisy["c2"][0] > 2 * (hi - lo)
    assert quiet["fit_failure_fraction"] == 0.0
    assert len(quiet["exchange_rates"]) == len(N_BASES) * len(cfg.exchange_points)
    for rate in quiet["exchange_rates"]:
        assert 0 < rate["lo"] < rate["hi"] < math.inf
    small = eq.EquivalenceConfig(bootstrap=10, seed=1)
    once, again = (eq.bootstrap(rows_paper(noise=0.0005), "closed", small) for _ in range(2))
    assert once == again  # seeded


def test_gain_significance_clear_gain_and_noise():
    rng = np.random.default_rng(4)

    def rows_for(shift):
        return [
            {
                "n_base": 10,
                "arm": arm,
                "n_add": n_add,
                "seed": s,
                "accuracy": 0.9 + (shift if arm == "closed" else 0.0) + 0.005 * rng.normal(),
            }
            for arm, n_add in (("real", 0), ("closed", 40))
            for s in range(5)
        ]

    clear = eq.gain_significance(rows_for(0.03), 10, "closed", 40)
    assert clear["significant"] and clear["lo"] > 0 and clear["lo"] < clear["gain"] < clear["hi"]
    rows = rows_for(0.0)
    got = eq.gain_significance(rows, 10, "closed", 40, ci=0.9)
    a = [r["accuracy"] for r in rows if r["arm"] == "closed"]
    b = [r["accuracy"] for r in rows if r["arm"] == "real"]
    ref = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.9)
    assert (got["lo"], got["hi"]) == (pytest.approx(ref.low), pytest.approx(ref.high))
    false_positive = np.mean(
        [eq.gain_significance(rows_for(0.0), 10, "closed", 40)["significant"] for _ in range(200)]
    )
    assert false_positive < 0.12
    one_seed = [r for r in rows_for(0.03) if r["seed"] == 0]
    assert not eq.gain_significance(one_seed, 10, "closed", 40)["significant"]


def test_analyse_covers_every_generative_arm_and_is_json():
    rows = rows_effective(r=0.3, noise=0.001, seeds=3)
    rows += [
        dict(r, arm="open", accuracy=r["accuracy"] + 0.002) for r in rows if r["arm"] == "closed"
    ]
    out = eq.analyse(rows, eq.EquivalenceConfig(bootstrap=30))
    assert set(out["arms"]) == {"closed", "open"}
    arm = out["arms"]["closed"]
    assert set(arm) == {
        "points",
        "fit",
        "exchange",
        "effective_data",
        "comparison",
        "ci",
        "bootstrap",
    }
    assert arm["fit"]["status"] == "ok" and len(arm["exchange"]) == 6
    for x in arm["exchange"]:
        assert x["rate"] == pytest.approx(eq.exchange_rate(arm["fit"], x["n_base"], x["frac"]))
        assert x["n_syn"] == pytest.approx(x["rate"] * x["n_real_plus"])
    assert len(out["cells"]) == 3 * (5 + 4 + 4) and len(out["gains"]) == 3 * (4 + 4 + 4)
    text = json.dumps(to_jsonable(out), allow_nan=False)
    assert json.loads(text)["config"]["k"] == 10.0


def test_no_interval_around_a_fit_that_failed():
    """Two usable points (no fit) but a cell straddling the baseline: a quarter of the seed
    resamples bring a third point and fit. Those fits must not pose as the fit's CI."""
    rows = [dict(r) for r in rows_effective(noise=0.0005)]
    base = np.mean([r["accuracy"] for r in rows
                    if r["arm"] == "real" and r["n_add"] == 0 and r["n_base"] == 10])
    for r in rows:
        if r["arm"] != "closed":
            continue
        if (r["n_base"], r["n_add"]) == (10, 80):  # mean just below the baseline
            r["accuracy"] = base + [-0.01, -0.01, -0.01, -0.01, 0.03][r["seed"]]
        elif (r["n_base"], r["n_add"]) not in ((10, 20), (10, 40)):
            r["accuracy"] -= 0.2
    arm = eq.analyse(rows, eq.EquivalenceConfig(bootstrap=200))["arms"]["closed"]
    assert arm["fit"]["status"] == "too_few_points" and arm["fit"]["n_points"] == 2
    assert arm["bootstrap"]["fit_failure_fraction"] < 0.9  # some resamples did fit
    for name in ("c1", "c2", "ln_c1_over_k"):
        assert all(math.isnan(v) for v in arm["ci"][name]), name
    assert all(math.isnan(x["lo"]) and math.isnan(x["hi"]) for x in arm["exchange"])
    assert all(math.isfinite(v) for v in arm["ci"]["r"])  # the effective-data fit stands
