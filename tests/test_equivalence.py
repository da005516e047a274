"""Invariant tests of the equivalence stage: fits recover the coefficients that made the data,
intervals cover a known truth, and every number can be recomputed by hand."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import optimize, stats
from sklearn.isotonic import IsotonicRegression

from synthequiv.stats import equivalence as eq
from synthequiv.stats.intervals import holm, unit_table

NO_SPREAD = "no spread over units: interval undetermined"
from synthequiv.stats.simulate import Design, Truth, coverage, simulate_rows
from synthequiv.utils import SynthequivError, to_jsonable

N_BASES = (10, 20, 40)
REAL_ADD = (0, 5, 10, 20, 40, 80)


# ----------------------------------------------------------------------------- data makers


def log_curve(n_base, n_add):
    """Real accuracy linear in log(n_base + n_add): the inverse the stage uses is then exact."""
    return 0.5 + 0.1 * np.log(n_base + np.asarray(n_add, float))


def rows_known(c2=2.53, ln_c1_over_k=0.02, reps=3, seeds=2, noise=0.0, seed=0,
               fracs=(0.3, 0.6, 1.0, 1.4)):
    """Rows whose synthetic cells follow the paper's formula exactly (k = 1, per-class counts):
    each synthetic amount is an integer n_syn, and its accuracy is the real curve at the
    n_real+ the formula gives for that n_syn."""
    rng = np.random.default_rng(seed)
    rows = []
    for nb in N_BASES:
        cells = [("real", m, float(log_curve(nb, m))) for m in REAL_ADD]
        for f in fracs:
            n_syn = round(float(eq.paper_n_syn(ln_c1_over_k, c2, nb, f * nb)))
            n_real = float(eq.paper_n_real(ln_c1_over_k, c2, nb, n_syn))
            cells.append(("closed", n_syn, float(log_curve(nb, n_real))))
        for r in range(reps):
            for arm, n_add, acc in cells:
                for s in range(seeds):
                    rows.append({"n_base": nb, "arm": arm, "n_add": n_add, "seed": s,
                                 "replicate": r, "accuracy": acc + noise * rng.normal()})
    return rows


def power_law(n_eff):
    return 0.99 - 0.5 * n_eff**-0.7


def rows_effective(r=0.3, noise=0.001, reps=3, seeds=2, seed=0):
    """Rows from acc = 0.99 − 0.5·(n_base + n_real + r·n_syn)^(−0.7) plus noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for n_base in N_BASES:
        for u in range(reps):
            for s in range(seeds):
                for n_add in (0, 10, 20, 40, 80):
                    rows.append({"n_base": n_base, "arm": "real", "n_add": n_add, "seed": s,
                                 "replicate": u,
                                 "accuracy": power_law(n_base + n_add) + noise * rng.normal()})
                for n_add in (20, 40, 80, 160):
                    rows.append({"n_base": n_base, "arm": "closed", "n_add": n_add, "seed": s,
                                 "replicate": u, "accuracy": power_law(n_base + r * n_add)
                                 + noise * rng.normal()})
    return rows


# ----------------------------------------------------------------------------- known answer


@pytest.mark.parametrize("c2, ln_c1_over_k",
                         [(2.53, 0.02), (3.88, -0.01), (37.84, 0.005), (1.68, 0.0)])
def test_formula_recovered_exactly_end_to_end_from_rows(c2, ln_c1_over_k):
    out = eq.analyse(rows_known(c2, ln_c1_over_k), eq.EquivalenceConfig())
    fit = out["arms"]["closed"]["fit"]
    assert fit["status"] == "ok" and not fit["at_bound"] and fit["k"] == 1.0
    assert fit["c2"] == pytest.approx(c2, rel=1e-6)
    assert fit["ln_c1_over_k"] == pytest.approx(ln_c1_over_k, abs=1e-6)
    assert fit["c1"] == pytest.approx(math.exp(ln_c1_over_k), rel=1e-6)  # k = 1
    assert fit["residual_rmse"] < 1e-9 and fit["n_points"] == 12


def test_measured_points_equal_the_truth_and_rates_equal_the_formula_by_hand():
    arm = eq.analyse(rows_known(), eq.EquivalenceConfig())["arms"]["closed"]
    for p in arm["points"]:
        truth = float(eq.paper_n_real(0.02, 2.53, p["n_base"], p["n_syn"]))
        assert p["flag"] == "ok" and p["usable"]
        assert p["n_real_eq"] == pytest.approx(truth, rel=1e-9)
        assert p["rate"] == pytest.approx(p["n_syn"] / truth, rel=1e-9)
    for x in arm["exchange"]:
        nb, f = x["n_base"], x["frac"]
        by_hand = nb * math.exp(0.02 * nb) * (2.53**f - 1) / (f * nb)  # n_syn / n_real+
        assert x["rate"] == pytest.approx(by_hand, rel=1e-6)
        assert x["n_syn"] == pytest.approx(by_hand * f * nb, rel=1e-6)
        assert x["supported"]


def test_only_ln_c1_over_k_is_identifiable():
    rows = rows_known(noise=0.0005, seed=2)
    a = eq.analyse(rows, eq.EquivalenceConfig(k=1.0))["arms"]["closed"]["fit"]
    b = eq.analyse(rows, eq.EquivalenceConfig(k=10.0))["arms"]["closed"]["fit"]
    assert a["ln_c1_over_k"] == pytest.approx(b["ln_c1_over_k"], rel=1e-6)
    assert a["c2"] == pytest.approx(b["c2"], rel=1e-6)
    assert b["c1"] == pytest.approx(a["c1"] ** 10, rel=1e-6)  # c₁ itself depends on k
    assert eq.exchange_rate(a, 40, 1.0) == pytest.approx(eq.exchange_rate(b, 40, 1.0), rel=1e-4)
    with pytest.raises(SynthequivError):
        eq.exchange_rate(a, 20, 0.0)


def test_censored_cell_is_kept_as_a_bound_and_does_not_bias_the_fit():
    rows = rows_known()
    top = float(log_curve(10, 80))
    rows += [{"n_base": 10, "arm": "closed", "n_add": 200_000, "seed": s, "replicate": r,
              "accuracy": top + 0.01} for r in range(3) for s in range(2)]
    arm = eq.analyse(rows, eq.EquivalenceConfig())["arms"]["closed"]
    p = next(p for p in arm["points"] if p["n_syn"] == 200_000)  # formula: n_real+ ≈ 104
    assert p["flag"] == "above_range" and not p["usable"] and p["n_real_eq"] == 80
    assert arm["fit"]["n_points"] == 13 and arm["fit"]["n_inside"] == 12
    assert arm["fit"]["c2"] == pytest.approx(2.53, rel=1e-6)  # at the truth the bound holds


def test_hurting_synthetic_data_is_flagged_and_analysis_survives():
    rows = rows_effective(noise=0.0005)
    for row in rows:
        if row["arm"] == "closed":
            row["accuracy"] -= 0.2  # synthetic data hurts everywhere
    points = eq.equivalent_points(rows, "closed")
    assert {p["flag"] for p in points} == {"below_range"}
    assert not any(p["usable"] for p in points) and all(math.isnan(p["rate"]) for p in points)
    out = eq.analyse(rows, eq.EquivalenceConfig())
    arm = out["arms"]["closed"]
    assert arm["fit"]["status"] == "too_few_points"
    assert all(math.isnan(x["lo"]) for x in arm["exchange"])
    assert not any(x["supported"] for x in arm["exchange"])
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


# ----------------------------------------------------------------------------- units, gains


def test_replicates_are_the_units_and_seeds_are_averaged_within():
    rows = rows_effective(noise=0.002, reps=4, seeds=3)
    t = unit_table(rows)
    assert t.unit == "replicate" and t.n_units == 4
    key = (20, "real", 40)
    by_hand = [np.mean([r["accuracy"] for r in rows if r["replicate"] == u and r["n_base"] == 20
                        and r["arm"] == "real" and r["n_add"] == 40]) for u in range(4)]
    assert t.values[key] == pytest.approx(by_hand)
    one = unit_table([r for r in rows if r["replicate"] == 0])
    assert one.unit == "seed" and one.n_units == 3  # one replicate: paired by seed


def test_gain_is_a_paired_t_interval_over_replicates():
    rows = rows_effective(noise=0.003, reps=5)
    got = eq.gain_significance(rows, 10, "closed", 40, ci=0.9)
    t = unit_table(rows)
    d = t.values[(10, "closed", 40)] - t.values[(10, "real", 0)]
    ref = stats.ttest_1samp(d, 0.0)
    lo, hi = ref.confidence_interval(0.9)
    assert (got["lo"], got["hi"], got["p"]) == (pytest.approx(lo), pytest.approx(hi),
                                                pytest.approx(ref.pvalue))


def test_holm_by_hand():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.2, math.nan, 0.01]) == pytest.approx([0.2, math.nan, 0.02], nan_ok=True)


def test_no_true_effect_family_wise_error_is_controlled():
    """Synthetic images worth nothing: how often does a study call any synthetic cell
    significantly better? Holm keeps it at or below 5 % (unadjusted, 4 cells: ~15 %)."""
    truth, design = Truth(ln_c1_over_k=20.0), Design(arms=("closed", "open"))
    rng = np.random.default_rng(7)
    any_sig = []
    for _ in range(150):
        g = eq.gains(unit_table(simulate_rows(truth, design, rng)), 0.95)
        any_sig.append(any(x["significant"] and x["gain"] > 0 for x in g if x["arm"] != "real"))
    assert np.mean(any_sig) <= 0.07


def test_intervals_cover_at_a_small_design():
    cov = coverage(studies=80, seed=3, variances=("per_cell", "moderated"))
    for method in ("per_cell", "moderated"):
        assert cov[method]["gain"] >= 0.88 and cov[method]["n_real_eq"] >= 0.88


def test_moderation_buys_power_and_finite_rates_on_the_same_studies():
    """60 simulated quick-design studies analysed both ways: a true +1.5 to +2.5 pt gain is
    Holm-significant far more often with the moderated variance (2 df → ≈ 18 df)."""
    truth = Truth(worth=(("closed", 1 / 20), ("open", 1 / 8)))
    cov = coverage(truth, Design(arms=("closed", "open")), studies=60, seed=5,
                   variances=("per_cell", "moderated"))
    per_cell, moderated = cov["per_cell"], cov["moderated"]
    assert moderated["power"] >= per_cell["power"] + 0.4
    assert moderated["finite"] >= per_cell["finite"] + 0.1
    assert moderated["gain"] >= 0.9


@pytest.mark.slow
def test_intervals_cover_the_truth_at_the_default_design():
    """Issue 26's bar at the quick design with the noise of a real quick run (the components
    benchmarks/coverage.py uses, from 6 replicates): nominal 95 % intervals cover about 0.93 or
    more with both variance methods in every hard design, also among the finite rate
    intervals; the moderated variance has several times the per-cell t's power and finite
    rate intervals, and with 5 replicates it comes to the targets (≥ 60 % power at +2 pts,
    ≥ 60 % finite rate intervals: 0.754 and 0.596 at seed 0), which 3 replicates do not
    (README: 0.445 and 0.435). At many replicates the rates still cover (the inversion's own
    prior: with the gains' it fell to ~0.93 at 20)."""
    from synthequiv.stats.simulate import QUICK_NOISE, QUICK_TRUTH, quick_designs

    for name, design in quick_designs().items():
        cov = coverage(QUICK_TRUTH, design, studies=400, seed=1,
                       variances=("per_cell", "moderated"))
        for method, c in cov.items():
            # moderated gains sit near the bar (0.938–0.951 at seed 0, README); ±0.01 of
            # simulation noise
            assert c["gain"] >= 0.92 and c["n_real_eq"] >= 0.93, (name, method, c)
            # few finite intervals per 400 studies (≈ 250 heteroscedastic): ±0.02 of noise
            assert c["n_real_eq_finite"] >= 0.90, (name, method, c)
        if name == "default":  # moderated vs per-cell t: 0.45 vs 0.09 power, 0.435 vs 0.24 finite
            m, p = cov["moderated"], cov["per_cell"]
            assert m["power"] >= 3 * p["power"] and m["finite"] >= p["finite"] + 0.12, (m, p)
    five = coverage(QUICK_TRUTH, quick_designs(QUICK_NOISE, replicates=5)["default"],
                    studies=400, seed=1)
    assert five["power"] >= 0.6 and five["finite"] >= 0.56, five  # 0.754 and 0.596 at seed 0
    assert five["gain"] >= 0.92 and five["n_real_eq"] >= 0.93, five
    many = coverage(QUICK_TRUTH, Design(arms=("closed", "open"), replicates=20), studies=300,
                    seed=1)
    assert many["n_real_eq"] >= 0.94 and many["gain"] >= 0.93, many  # 0.951 / 0.945 at seed 0
    null = coverage(Truth(worth=(("closed", 0.0), ("open", 0.0))), quick_designs()["default"],
                    studies=400, seed=2)
    assert null["significant"] <= 0.03  # per cell; the family-wise rate is Holm's 5 %


def test_fitted_numbers_are_point_estimates_without_an_interval():
    """Item 5 of issue 26: the jackknife over 3 replicates covered 74–92 %, so the fitted
    coefficients and rates are model-based point estimates, and say so."""
    arm = eq.analyse(rows_known(noise=0.0005, reps=5, seed=1), eq.EquivalenceConfig())["arms"]
    arm = arm["closed"]
    assert arm["fit"]["status"] == "ok" and arm["fit"]["c2"] == pytest.approx(2.53, rel=0.05)
    assert all(math.isnan(v) for lo_hi in arm["ci"].values() for v in lo_hi)
    assert all(math.isfinite(x["rate"]) and math.isnan(x["lo"]) for x in arm["exchange"])
    assert arm["ci_method"].startswith("none: model-based point estimates")


def _degenerate_rows():
    """Synthetic cells a hair above the baseline at every amount: the formula can only fit
    them with n_real⁺ ≈ 0, i.e. c₂ → ∞ (lm stopped at c₂ = e^598 — "ok" before)."""
    rows = []
    for nb in (10, 20):
        for r in range(3):
            cells = [("real", m, float(log_curve(nb, m))) for m in (0, 5, 10, 20, 40)]
            cells += [("closed", m, float(log_curve(nb, 0)) + e)
                      for m, e in ((40, 0.001), (160, 0.001), (640, 0.0011))]
            rows += [{"n_base": nb, "arm": arm, "n_add": m, "seed": 0, "replicate": r,
                      "accuracy": acc + 0.001 * r} for arm, m, acc in cells]
    return rows


def test_a_degenerate_formula_fit_fails_with_its_reason_and_nothing_raises():
    from synthequiv.stats import planner
    from synthequiv.stats.intervals import jackknife

    # the crash of issue 26: a leave-one-out c₂ of 1.7e237 on the log scale overflowed math.exp
    jk = jackknife(1.7e237, [1.7e237, 2.0, 3.0], 0.95, log=True)
    assert jk["lo"] == 0.0 and jk["hi"] == math.inf
    rows = _degenerate_rows()
    t = unit_table(rows)
    fit = eq.fit_paper(t.means(), eq._cell_se(t), "closed", 1.0)
    assert fit["status"] == "failed" and "c₂" in fit["reason"] and math.isnan(fit["c2"])
    arm = eq.analyse(rows, eq.EquivalenceConfig())["arms"]["closed"]
    assert arm["fit"]["status"] == "failed"
    assert all(math.isnan(x["rate"]) for x in arm["exchange"])
    planner.plan(rows, planner.Target(gain_pts=1.0))  # the planner's leave-one-out fits too


# ----------------------------------------------------------------------------- other models


def test_effective_data_fit_recovers_r():
    fit = eq.fit_effective_data(rows_effective(r=0.3, noise=0.001), "closed")
    assert fit["status"] == "ok" and fit["n_cells"] == 27
    assert fit["r"] == pytest.approx(0.3, rel=0.1) and fit["rmse"] < 0.002
    other = eq.fit_effective_data(rows_effective(r=1.2, noise=0.001), "closed")
    assert other["r"] == pytest.approx(1.2, rel=0.1)


def test_compare_models_prefers_the_model_that_made_the_data():
    cfg = eq.EquivalenceConfig()
    out = eq.analyse(rows_effective(r=0.3, noise=0.0002), cfg)["arms"]["closed"]["comparison"]
    assert out["n_cells"] == 12 and out["effective_data_rmse"] < out["paper_formula_rmse"]
    assert out["better"] == "effective_data" and out["diff_lo"] > 0
    out = eq.analyse(rows_known(), cfg)["arms"]["closed"]["comparison"]
    assert out["paper_formula_rmse"] < 1e-6 < out["effective_data_rmse"]
    assert out["better"] in ("paper_formula", "no clear difference")


def test_bad_tables_raise_user_errors():
    rows = rows_effective(seeds=2)
    with pytest.raises(SynthequivError, match="reference"):
        eq.equivalent_points(rows, "real")
    with pytest.raises(SynthequivError, match="no results for arm"):
        eq.fit_effective_data(rows, "open")
    with pytest.raises(SynthequivError, match="column"):
        unit_table(rows, metric="auc")
    with pytest.raises(SynthequivError, match="twice"):
        unit_table(rows + rows[:1])
    with pytest.raises(SynthequivError, match="replicate must be an integer"):
        unit_table([dict(rows[0], replicate="x")])
    with pytest.raises(SynthequivError):
        eq.EquivalenceConfig(ci=1.5)
    with pytest.raises(SynthequivError, match="variance must be one of"):
        eq.EquivalenceConfig(variance="pooled")
    with pytest.raises(SynthequivError, match="real baseline"):
        eq.real_curve([r for r in rows if (r["arm"], r["n_add"]) != ("real", 0)], 10)


def test_baseline_arm_name_from_other_pipelines():
    rows = rows_effective()
    renamed = [dict(r, arm="baseline", n_add=0) if (r["arm"], r["n_add"]) == ("real", 0) else r
               for r in rows]
    a, b = (eq.analyse(x, eq.EquivalenceConfig())["gains"] for x in (rows, renamed))
    assert a == b


def test_analyse_is_json_and_names_its_method():
    rows = rows_effective(r=0.3, noise=0.001)
    rows += [dict(r, arm="open", accuracy=r["accuracy"] + 0.002)
             for r in rows if r["arm"] == "closed"]
    out = eq.analyse(rows, eq.EquivalenceConfig())
    assert set(out["arms"]) == {"closed", "open"} and out["unit"] == "replicate"
    assert len(out["cells"]) == 3 * (5 + 4 + 4) and len(out["gains"]) == 3 * (4 + 4 + 4)
    syn = [g for g in out["gains"] if g["arm"] != "real"]
    assert {g["family_size"] for g in syn} == {24}
    assert "point estimates" in out["arms"]["closed"]["ci_method"]
    assert out["variance"]["method"] == "moderated" and out["variance"]["synthetic"]["prior_df"] > 0
    text = json.dumps(to_jsonable(out), allow_nan=False)
    assert json.loads(text)["config"]["k"] == 1.0


# ----------------------------------------------------------------------------- degenerate tables


def _partly_finished(reps=2):
    """Replicate 0 complete, the later replicates' synthetic cells not trained yet."""
    return [r for r in rows_known(noise=0.001, reps=reps, seeds=1)
            if not (r["replicate"] > 0 and r["arm"] == "closed")]


def test_one_unit_gives_the_full_table_fits_and_no_intervals():
    """One replicate with one seed: the jackknife has no leave-one-out table (this crashed in
    fit_effective); the fits on the full table stand, every interval is NaN and says why."""
    out = eq.analyse(rows_known(reps=1, seeds=1), eq.EquivalenceConfig())
    assert out["n_units"] == 1
    arm = out["arms"]["closed"]
    assert arm["fit"]["status"] == "ok" and arm["fit"]["c2"] == pytest.approx(2.53, rel=1e-6)
    assert arm["effective_data"]["status"] == "ok"
    assert all(math.isnan(v) for lo_hi in arm["ci"].values() for v in lo_hi)
    assert all(math.isnan(x["lo"]) and math.isfinite(x["rate"]) for x in arm["exchange"])
    assert all(p["usable"] and math.isnan(p["n_real_eq_lo"]) for p in arm["points"])
    assert arm["ci_method"].startswith("none: ")
    assert all(math.isnan(g["p"]) and not g["significant"] and g["no_interval"] == "one unit"
               for g in out["gains"])
    assert all(math.isnan(c["lo"]) and c["no_interval"] == "one unit" for c in out["cells"])
    assert eq.fit_effective({}, "closed")["status"] == "too_few_cells"
    json.dumps(to_jsonable(out), allow_nan=False)


def test_partly_finished_run_tests_only_the_cells_with_two_units():
    out = eq.analyse(_partly_finished(), eq.EquivalenceConfig())
    syn = [g for g in out["gains"] if g["arm"] == "closed"]
    real = [g for g in out["gains"] if g["arm"] == "real"]
    assert all(g["n_units"] == 1 and math.isnan(g["p"]) and not g["significant"] for g in syn)
    assert all(g["n_units"] == 2 and math.isfinite(g["p"]) for g in real)
    assert {g["family_size"] for g in syn} == {0}
    arm = out["arms"]["closed"]
    assert arm["fit"]["status"] == "ok"  # on the full table's means
    assert all(math.isnan(x["lo"]) for x in arm["exchange"])  # leave-one-out lacks the arm


def test_equal_differences_in_every_unit_have_no_interval_and_are_not_significant():
    """+0.046 in both units (0.672 − 0.626 and 0.700 − 0.654: equal up to float rounding) is
    no evidence of zero variance: before, lo = hi = 0.046 with p = 0 ("significant")."""
    from synthequiv.stats.intervals import t_interval

    r = t_interval(np.array([0.672, 0.700]) - np.array([0.626, 0.654]), 0.95)
    assert r["estimate"] == pytest.approx(0.046)
    assert math.isnan(r["p"]) and math.isnan(r["lo"]) and math.isnan(r["hi"])
    assert r["no_interval"] == NO_SPREAD
    rows = [{"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u, "accuracy": a}
            for arm, n, accs in (("real", 0, (0.626, 0.654)), ("real", 10, (0.672, 0.700)),
                                 ("real", 20, (0.690, 0.730)), ("closed", 40, (0.672, 0.700)))
            for u, a in enumerate(accs)]
    out = eq.analyse(rows, eq.EquivalenceConfig())
    g = {(x["arm"], x["n_add"]): x for x in out["gains"]}
    for key in (("real", 10), ("closed", 40)):
        assert math.isnan(g[key]["p"]) and not g[key]["significant"]
        assert g[key]["no_interval"] == NO_SPREAD
    assert math.isfinite(g[("real", 20)]["p"])  # a varying difference is still tested
    p = out["arms"]["closed"]["points"][0]  # equal to real +10 in both units: nothing rejected
    assert p["n_real_eq"] == pytest.approx(10) and p["flag"] == "ok"
    assert (p["n_real_eq_lo"], p["n_real_eq_hi"]) == (0.0, math.inf)


def test_a_censored_point_lies_in_its_own_interval():
    """A flat real curve (isotonic: one level) and a synthetic mean marginally above it: the
    point is the bound n_real_eq ≥ 20 and its interval holds it (before: [0, 8.05])."""
    cells = {("real", 0): (0.6200, 0.6300, 0.6274), ("real", 10): (0.6250, 0.6240, 0.6260),
             ("real", 20): (0.6240, 0.6250, 0.6260), ("closed", 20): (0.6256, 0.6267, 0.6275)}
    rows = [{"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u, "accuracy": a}
            for (arm, n), accs in cells.items() for u, a in enumerate(accs)]
    out = eq.analyse(rows, eq.EquivalenceConfig())
    p = out["arms"]["closed"]["points"][0]
    assert p["flag"] == "above_range" and p["n_real_eq"] == pytest.approx(20)
    assert p["n_real_eq_lo"] <= p["n_real_eq"] <= p["n_real_eq_hi"] == math.inf
    assert p["rate_lo"] <= 20 / p["n_real_eq"] <= p["rate_hi"]
    assert not next(g for g in out["gains"] if g["arm"] == "closed")["significant"]


def test_intervals_of_a_bounded_metric_stay_in_its_range():
    """Two units far apart: t(1 df) = 12.7 puts a cell's interval at about −4.6 to 5.6."""
    cells = {("real", 0): (0.1, 0.9), ("real", 10): (0.2, 0.95), ("closed", 20): (0.9, 0.1)}
    rows = [{"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u, "accuracy": a,
             "loss": a} for (arm, n), accs in cells.items() for u, a in enumerate(accs)]
    out = eq.analyse(rows, eq.EquivalenceConfig())
    base = next(c for c in out["cells"] if (c["arm"], c["n_add"]) == ("real", 0))
    assert (base["lo"], base["mean"], base["hi"]) == (0.0, pytest.approx(0.5), 1.0)
    g = next(g for g in out["gains"] if g["arm"] == "closed")
    # a gain over a baseline of mean 0.5 lies in [-0.5, +0.5] (was clipped to ±1 only)
    assert (g["lo"], g["hi"], g["sim_lo"], g["sim_hi"]) == pytest.approx((-0.5, 0.5, -0.5, 0.5))
    assert eq.gain_significance(rows, 10, "closed", 20)["lo"] == pytest.approx(-0.5)
    loss = eq.analyse(rows, eq.EquivalenceConfig(), metric="loss")  # not a bounded metric
    assert next(c for c in loss["cells"] if c["n_add"] == 0)["lo"] < -4


def test_a_cell_without_spread_counts_in_the_holm_family_as_untestable():
    """A cell whose differences are equal in every unit has no p-value of its own, but it was
    tested: it counts in the Holm family (as p = 1), so it never makes the others' adjustment
    milder than with the cell present and varying."""
    rows = []
    for u, (b, r5, c40, c160) in enumerate([(0.80, 0.82, 0.85, 0.83), (0.81, 0.83, 0.87, 0.84),
                                            (0.79, 0.81, 0.84, 0.82)]):
        for arm, n, a in (("real", 0, b), ("real", 5, r5), ("closed", 40, c40),
                          ("closed", 160, c160)):
            rows.append({"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u,
                         "accuracy": a})
    g = {(x["arm"], x["n_add"]): x for x in eq.gains(eq.unit_table(rows), 0.95)}
    flat, varying = g[("closed", 160)], g[("closed", 40)]
    assert flat["no_interval"] and math.isnan(flat["p"]) and not flat["significant"]
    assert varying["family_size"] == flat["family_size"] == 2
    assert varying["p_holm"] == pytest.approx(min(1.0, 2 * varying["p"]))


# ----------------------------------------------------------------------------- moderated variance


def _family_rows(diffs: dict, base=(0.80, 0.82, 0.79)) -> list[dict]:
    """One base size, 3 replicates: the baseline and cells at baseline + the given
    per-replicate differences ((arm, n_add) → 3 differences)."""
    rows = [{"n_base": 10, "arm": "real", "n_add": 0, "seed": 0, "replicate": u, "accuracy": b}
            for u, b in enumerate(base)]
    rows += [{"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u,
              "accuracy": base[u] + d[u]} for (arm, n), d in diffs.items() for u in range(3)]
    return rows


def test_moderated_variance_equals_smyths_formulas_by_hand():
    """Smyth (2004) §6.2 on four synthetic contrasts of 3 units (2 df each), by hand: e_g =
    log s_g² − ψ(1) + log(1); ψ'(d0/2) = var(e) − ψ'(1); s0² = exp(ē + ψ(d0/2) − log(d0/2));
    s̃² = (d0·s0² + 2·s²)/(d0 + 2), t on d0 + 2 df."""
    from scipy import special

    diffs = {("closed", 40): (0.010, 0.030, 0.020), ("closed", 160): (0.000, 0.050, 0.010),
             ("open", 40): (0.020, 0.021, 0.025), ("open", 160): (-0.010, 0.060, 0.040),
             ("real", 5): (0.01, 0.02, 0.03)}
    d = {k: np.array(v) for k, v in diffs.items() if k[0] != "real"}
    s2 = np.array([v.var(ddof=1) for v in d.values()])
    e = np.log(s2) - special.digamma(1.0) + np.log(1.0)
    excess = e.var(ddof=1) - special.polygamma(1, 1.0)
    assert excess > 0  # these variances differ by more than 2-df sampling explains
    half_d0 = optimize.brentq(lambda x: special.polygamma(1, x) - excess, 1e-8, 1e8)
    d0 = 2 * half_d0
    s0 = math.exp(e.mean() + special.digamma(half_d0) - math.log(half_d0))
    t = unit_table(_family_rows(diffs))
    prior = eq.family_priors(t)["synthetic"]
    assert (prior.df, prior.s2) == (pytest.approx(d0, rel=1e-9), pytest.approx(s0, rel=1e-9))
    g = {(x["arm"], x["n_add"]): x for x in eq.gains(t, 0.95)}
    for (key, v), s2_g in zip(d.items(), s2):
        post = (d0 * s0 + 2 * s2_g) / (d0 + 2)
        tstat = v.mean() / math.sqrt(post / 3)
        assert g[key]["df"] == pytest.approx(d0 + 2)
        assert g[key]["p"] == pytest.approx(2 * stats.t.sf(abs(tstat), d0 + 2), rel=1e-9)
        half = stats.t.ppf(0.975, d0 + 2) * math.sqrt(post / 3)
        assert g[key]["hi"] - g[key]["gain"] == pytest.approx(half, rel=1e-9)
    # the real family has one contrast: no prior, its own t on 2 df
    assert g[("real", 5)]["df"] == 2.0 and eq.family_priors(t)["real"].df == 0
    per_cell = {(x["arm"], x["n_add"]): x for x in eq.gains(t, 0.95, variance="per_cell")}
    ref = stats.ttest_1samp(d[("closed", 40)], 0.0)
    assert per_cell[("closed", 40)]["p"] == pytest.approx(ref.pvalue)


def test_equal_variances_pool_fully_up_to_the_familys_degrees_of_freedom():
    """Four contrasts with identical sample variances: no spread beyond sampling, so Smyth's
    d0 is ∞; it is capped at the family's pooled 4 × 2 = 8 df and s0² = exp(ē)."""
    from scipy import special

    diffs = {("closed", n): (0.01 + c, 0.03 + c, 0.02 + c)
             for n, c in zip((10, 20, 40, 80), (0.0, 0.001, 0.002, 0.003))}
    prior = eq.family_priors(unit_table(_family_rows(diffs)))["synthetic"]
    s2 = np.var([0.01, 0.03, 0.02], ddof=1)
    assert prior.df_uncapped == math.inf and prior.df == 8.0
    assert prior.s2 == pytest.approx(math.exp(math.log(s2) - special.digamma(1.0)), rel=1e-6)


def test_a_cell_missing_in_some_replicates_is_compared_on_the_units_where_it_exists():
    """Replicate 2 is 5 points easier than the others and has no synthetic cell. Paired on
    replicates 0-1, the cell lies 1/10 of the way from real +10 to real +20 in accuracy (10.8
    in the chord's log amount; the curve between knots is the monotone cubic); unpaired,
    against the curve averaged over all three, it read as about +2.2 real/class."""
    from synthequiv.stats.curves import RealCurve

    reals = {0: 0.80, 5: 0.81, 10: 0.82, 20: 0.83, 40: 0.84}
    shift = (0.0, 0.004, 0.05)
    rows = [{"n_base": 10, "arm": "real", "n_add": m, "seed": 0, "replicate": u,
             "accuracy": a + shift[u]} for m, a in reals.items() for u in range(3)]
    rows += [{"n_base": 10, "arm": "closed", "n_add": 160, "seed": 0, "replicate": u,
              "accuracy": reals[10] + shift[u] + 0.002 * u} for u in range(2)]
    for variance in ("moderated", "per_cell"):
        p = eq.equivalent_points(rows, "closed", variance=variance)[0]
        assert p["n_units"] == 2 and p["flag"] == "ok"
        n_add = np.array(sorted(reals), float)
        paired = RealCurve(10, n_add, np.log(10 + n_add),
                           np.array([reals[m] + 0.002 for m in sorted(reals)]), [])
        assert p["n_real_eq"] == pytest.approx(paired.inverse(0.823)[0], rel=1e-9)
        assert p["n_real_eq"] == pytest.approx(20 * 1.5**0.1 - 10, rel=0.02)  # 10.8, not 2.2
    g = next(g for g in eq.gains(unit_table(rows), 0.95) if g["arm"] == "closed")
    assert g["n_units"] == 2 and g["gain"] == pytest.approx(0.021)


def test_quoted_coverage_names_the_current_default_design():
    """The report quotes MEASURED_COVERAGE as the coverage of the default design: its design
    line must name the defaults' base sizes, amounts and seeds (it once named a design two
    changes old, base 10 and 20, which the report printed under every study)."""
    from synthequiv.inputs.config import SplitConfig
    from synthequiv.stats.config import GridConfig, cell_seeds
    from synthequiv.stats.intervals import MEASURED_COVERAGE

    g, design = GridConfig(), MEASURED_COVERAGE["design"]
    bases = " and ".join(str(b) for b in SplitConfig().base_per_class)
    assert f"base {bases}" in design
    assert "real " + "/".join(f"+{m}" for m in g.real_add_per_class) in design
    assert "+" + "/+".join(str(m) for m in g.syn_add_per_class) in design
    assert f"{g.replicates} replicates × {len(g.seeds)} seeds" in design
    assert f"({len(cell_seeds(g, 0))} for the baseline)" in design
    assert 0.93 <= MEASURED_COVERAGE["gain"] <= 1 and 0.93 <= MEASURED_COVERAGE["n_real_eq"] <= 1


def test_the_formula_fit_reads_the_same_curve_as_the_measured_points():
    """On a concave real curve (a power law, sparse knots) synthetic cells placed on the real
    curve the measured points use (the monotone cubic between knots) at the formula's n_real⁺
    are fitted exactly, and every measured n_real_eq equals the formula's: the fit reads that
    curve too (it once read the chord between knots, and its rates disagreed with the points')."""
    c2, lc1 = 3.0, 0.01
    rows = []
    for nb in N_BASES:
        real = {m: float(power_law(nb + m)) for m in REAL_ADD}
        curve = eq.real_curves({(nb, "real", m): a for m, a in real.items()})[nb]
        cells = [("real", m, a) for m, a in real.items()]
        for f in (0.3, 0.6, 1.0, 1.4):
            n_syn = round(float(eq.paper_n_syn(lc1, c2, nb, f * nb)))
            n_real = float(eq.paper_n_real(lc1, c2, nb, n_syn))
            cells.append(("closed", n_syn, float(curve.at(n_real))))
        rows += [{"n_base": nb, "arm": arm, "n_add": m, "seed": 0, "replicate": r,
                  "accuracy": a} for r in range(3) for arm, m, a in cells]
    arm = eq.analyse(rows, eq.EquivalenceConfig())["arms"]["closed"]
    assert arm["fit"]["status"] == "ok"
    assert arm["fit"]["c2"] == pytest.approx(c2, rel=1e-5)
    assert arm["fit"]["ln_c1_over_k"] == pytest.approx(lc1, abs=1e-6)
    assert arm["fit"]["residual_rmse"] < 1e-8
    for p in arm["points"]:
        assert p["n_real_eq"] == pytest.approx(
            float(eq.paper_n_real(lc1, c2, p["n_base"], p["n_syn"])), rel=1e-6)


@pytest.mark.parametrize("alpha", [0.3, 0.6, 1.22, 2.5])
def test_the_real_curve_between_knots_is_exact_for_a_power_law_and_a_log_line(alpha):
    """Learning curves are close to a − b·N^(−α): the curve between knots follows one exactly
    (a chord in log N was 0.25 pts off at the quick knots, a monotone cubic in log N 0.06), and
    a curve that is a line in log N stays that line."""
    from synthequiv.stats.intervals import curve_exponent, curve_interpolant

    n = 10 + np.array([0, 2, 5, 15, 40.0])
    x, xq = np.log(n), np.linspace(np.log(10), np.log(50), 400)
    truth = lambda N: 0.99 - 0.6 * N**-alpha  # noqa: E731
    assert curve_exponent(x, truth(n)) == pytest.approx(alpha, rel=0.02)
    assert np.abs(curve_interpolant(x, truth(n))(xq) - truth(np.exp(xq))).max() < 2e-5
    line = 0.5 + 0.1 * x
    assert curve_exponent(x, line) is None
    assert np.abs(curve_interpolant(x, line)(xq) - (0.5 + 0.1 * xq)).max() < 1e-12
    assert curve_exponent(x[:2], truth(n[:2])) is None  # 2 knots: a line


def test_inversion_interval_ends_do_not_depend_on_the_grid():
    """The interval's ends are where the test's margin crosses 0, not the last accepted grid
    positions (those shrank the interval by up to a grid step per end)."""
    from synthequiv.stats.intervals import inversion_interval

    rng = np.random.default_rng(3)
    knots = np.log(10 + np.array([0, 5, 15, 40.0]))
    real_u = (0.99 - 0.6 * np.exp(knots)[:, None] ** -1.0) + rng.normal(0, 0.004, (4, 8))
    syn_u = 0.99 - 0.6 * 17.0**-1.0 + rng.normal(0, 0.004, 8)
    fine = inversion_interval(syn_u, real_u, knots, 0.95, grid=40000)
    coarse = inversion_interval(syn_u, real_u, knots, 0.95, grid=60)
    step = (knots[-1] - knots[0]) / 59
    assert not fine["lower_open"] and not fine["upper_open"]
    for end in ("x_lo", "x_hi"):
        assert abs(coarse[end] - fine[end]) < 0.02 * step, end


def test_the_rate_inversion_borrows_from_contrasts_like_its_own():
    """The baseline trains 3× the seeds of a knot, so gains (cell − baseline) vary less than
    the inversion's contrasts (cell − knot): the inversion's prior is fitted to the latter
    (larger s0² here), on at most the synthetic family's pooled df; per_cell has none."""
    rng = np.random.default_rng(0)
    rows = []
    for u in range(30):
        for arm, m, sd in [("real", 0, 0.001)] + [("real", k, 0.01) for k in (5, 15, 40)] + [
                (a, k, 0.01) for a in ("closed", "open") for k in (40, 160)]:
            rows.append({"n_base": 10, "arm": arm, "n_add": m, "seed": 0, "replicate": u,
                         "accuracy": 0.9 + 0.001 * m ** 0.5 + rng.normal(0, sd)})
    t = unit_table(rows)
    gains, inv = eq.family_priors(t)["synthetic"], eq.inversion_prior(t)
    # by construction 2·0.01² against 0.01² + 0.001²
    assert inv.s2 / gains.s2 == pytest.approx(2.0, rel=0.25) and 0 < inv.df <= 4 * 29
    assert eq.inversion_prior(t, "per_cell") is None
