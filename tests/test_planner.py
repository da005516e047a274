"""The planner: on curves with a known answer it recovers N and M; its held-out check reports
the true error of a deliberately wrong model; the `plan` command and its bad targets."""

from __future__ import annotations

import json
import math
import sqlite3

import numpy as np
import pytest

from synthequiv import config as C
from synthequiv.rundir import COLUMNS, ResultsTable, config_hash
from synthequiv.runtime.lock import RunLock
from synthequiv.stats import equivalence as eq
from synthequiv.stats import planner as P
from synthequiv.stats.simulate import Truth

# real accuracy a − b·N^(−α) (N = n_base + real added), synthetic cells by the paper's formula
TRUTH = Truth(a=1.0, b=0.5, alpha=0.7, ln_c1_over_k=0.02, c2=2.53)
DENSE = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64)
SYN_FRACS = (0.3, 0.6, 1.0, 1.5, 2.5)  # synthetic cells worth these × n_base real images


def rows_truth(real_add=DENSE, syn_fracs=SYN_FRACS, bases=(10, 20), noise=0.0, reps=3,
               seeds=2, seed=0, shift=0.0):
    """Rows of TRUTH; `shift` is added to the largest real and largest synthetic cell of every
    base size (a deliberately wrong model for them: nothing smooth predicts it)."""
    rng = np.random.default_rng(seed)
    rows = []
    for nb in bases:
        cells = [("real", m, float(TRUTH.real(nb + m))) for m in (0, *real_add)]
        for f in syn_fracs:
            n_syn = round(float(eq.paper_n_syn(TRUTH.ln_c1_over_k, TRUTH.c2, nb, f * nb)))
            cells.append(("closed", n_syn, float(TRUTH.real(nb + TRUTH.n_real(nb, n_syn)))))
        top = {a: max((m for aa, m, _ in cells if aa == a), default=0) for a in ("real", "closed")}
        for r in range(reps):
            for arm, m, acc in cells:
                extra = shift if m == top[arm] > 0 else 0.0
                rows += [{"n_base": nb, "arm": arm, "n_add": m, "seed": s, "replicate": r,
                          "accuracy": acc + extra + noise * rng.normal()} for s in range(seeds)]
    return rows


def true_m(nb: int, gain_pts: float) -> float:
    level = TRUTH.real(nb) + gain_pts / 100
    return (TRUTH.b / (TRUTH.a - level)) ** (1 / TRUTH.alpha) - nb


def true_n(nb: int, m: float) -> float:
    return float(eq.paper_n_syn(TRUTH.ln_c1_over_k, TRUTH.c2, nb, m))


def base(p: dict, nb: int) -> dict:
    return next(b for b in p["bases"] if b["n_base"] == nb)


# ----------------------------------------------------------------------------- known answer


@pytest.mark.parametrize("gain", [2.0, 3.0, 5.0])
def test_inside_the_measured_range_n_and_m_are_recovered_within_5_percent(gain):
    p = P.plan(rows_truth(), P.Target(gain_pts=gain))
    for nb in (10, 20):
        b = base(p, nb)
        m = true_m(nb, gain)
        if m > 64:  # base 20 at +5 pts lies beyond the measured +64: tested below
            continue
        assert b["level"] == pytest.approx(TRUTH.real(nb) + gain / 100, abs=1e-12)
        assert b["real"]["method"] == "measured" and not b["real"]["extrapolated"]
        assert b["real"]["amount"] == pytest.approx(m, rel=0.05)
        syn = b["arms"]["closed"]
        assert syn["method"] == "formula" and syn["amount"] == pytest.approx(true_n(nb, m),
                                                                              rel=0.05)
        assert syn["extrapolated"] == (syn["amount"] > syn["largest_measured"])


def test_beyond_the_measured_range_m_is_extrapolated_by_the_power_law_and_says_so():
    rows = rows_truth(real_add=(5, 10, 20))
    p = P.plan(rows, P.Target(gain_pts=6.0))
    b = base(p, 10)
    m = true_m(10, 6.0)  # ≈ 27 real/class, beyond the measured +20
    assert m > 20 and b["real"]["method"] == "power_law" and b["real"]["extrapolated"]
    assert b["real"]["amount"] == pytest.approx(m, rel=0.01)  # the truth IS a power law
    assert b["real"]["power_law"]["alpha"] == pytest.approx(TRUTH.alpha, rel=1e-3)
    assert not b["real"]["power_law"]["at_bound"]
    syn = b["arms"]["closed"]  # formula at an extrapolated n_real+: looser
    assert syn["amount"] == pytest.approx(true_n(10, m), rel=0.10)
    assert syn["extrapolated"] and syn["amount"] > syn["largest_measured"] == 112
    lines = P.plan_lines(p)
    real_line = next(ln for ln in lines if ln.startswith("  real:") and "+20/class" in ln)
    assert "EXTRAPOLATED beyond the largest measured +20/class" in real_line
    assert any("closed-set: generate about" in ln and "EXTRAPOLATED" in ln for ln in lines)


def test_a_synthetic_amount_far_beyond_the_measured_ones_is_not_recommended():
    """The report's rule (MAX_EXTRAPOLATION): +8 pts at base 10 needs ~91 real/class, which
    the formula turns into ~57,000 synthetic/class, ~500× the largest measured 112: the JSON
    keeps the number, the words do not recommend it."""
    p = P.plan(rows_truth(bases=(10,)), P.Target(gain_pts=8.0))
    syn = base(p, 10)["arms"]["closed"]
    assert syn["amount"] == pytest.approx(true_n(10, true_m(10, 8.0)), rel=0.10)
    assert syn["unconstrained"] and syn["amount"] > 10 * syn["largest_measured"] == 1120
    line = next(ln for ln in P.plan_lines(p) if ln.startswith("  closed-set"))
    assert "not reported" in line and "+112/class" in line and "generate about" not in line
    near = base(P.plan(rows_truth(bases=(10,)), P.Target(gain_pts=6.0)), 10)["arms"]["closed"]
    assert near["extrapolated"] and not near["unconstrained"]  # ~140/class: 1.3× the largest


def test_a_target_above_the_ceiling_is_unreachable_with_real_and_synthetic_data():
    """0.9386 + 0.07 is above 100 %: unreachable (before, a fitted ceiling a > 1 could plan
    finite amounts for such targets, e.g. 7.4e14 real images/class)."""
    p = P.plan(rows_truth(bases=(20,)), P.Target(gain_pts=7.0))
    b = base(p, 20)
    assert b["real"]["method"] == "above_max" and b["real"]["amount"] == math.inf
    assert b["real"]["power_law"]["a"] == pytest.approx(TRUTH.a, abs=1e-4)
    syn = b["arms"]["closed"]
    assert syn["amount"] == math.inf and syn["formula"] == "ok" and syn["moved_toward"]
    lines = P.plan_lines(p)
    assert "target 1.0086" in lines[1] + lines[2]
    assert "real: not reachable — the target is above the metric's maximum of 1" in lines[2]
    assert lines[3].startswith("  closed-set: not reachable with synthetic data at the "
                               "measured amounts (best measured: +274/class gave 0.9745")
    assert "the real extrapolation does not reach the target either" in lines[3]


def test_noisy_intervals_contain_the_truth_and_the_estimate():
    p = P.plan(rows_truth(noise=0.002, reps=4, seed=3), P.Target(gain_pts=3.0))
    for nb in (10, 20):
        b, m = base(p, nb), true_m(nb, 3.0)
        for e, truth in ((b["real"], m), (b["arms"]["closed"], true_n(nb, m))):
            assert e["lo"] < e["amount"] < e["hi"]
            assert e["lo"] <= truth <= e["hi"]
    assert p["ci_method"] == "jackknife over 4 replicates on log(n_base + amount)"


def _rows_measured_only(syn_acc: dict[int, float]) -> list[dict]:
    """Base 10 only, real cells of TRUTH, two synthetic cells with the given accuracies (too
    few for the formula, which needs 3 inside the real curve's range)."""
    rows = [r for r in rows_truth(bases=(10,), syn_fracs=()) if r["arm"] == "real"]
    rows += [{"n_base": 10, "arm": "closed", "n_add": m, "seed": s, "replicate": u,
              "accuracy": acc} for m, acc in syn_acc.items() for u in range(3) for s in range(2)]
    return rows


def test_without_a_formula_n_is_read_off_the_measured_cells_in_log_amount():
    base_acc = float(TRUTH.real(10))
    p = P.plan(_rows_measured_only({40: base_acc + 0.01, 160: base_acc + 0.03}),
               P.Target(gain_pts=2.0))
    syn = base(p, 10)["arms"]["closed"]
    assert syn["method"] == "measured" and syn["formula"] == "too_few_points"
    # halfway (in accuracy) between the cells: halfway in log(10 + n_syn)
    assert syn["amount"] == pytest.approx(math.sqrt(50 * 170) - 10, rel=1e-9)
    assert not syn["extrapolated"]


def test_no_cell_moved_toward_the_target_and_no_fit_means_not_reachable():
    base_acc = float(TRUTH.real(10))
    p = P.plan(_rows_measured_only({40: base_acc - 0.01, 160: base_acc - 0.02}),
               P.Target(gain_pts=2.0))
    syn = base(p, 10)["arms"]["closed"]
    assert syn["amount"] == math.inf and not syn["moved_toward"]
    line = next(ln for ln in P.plan_lines(p) if "closed-set" in ln)
    assert "not reachable with synthetic data at the measured amounts" in line
    assert "no better than the baseline" in line and "too_few_points" in line


def test_a_formula_fit_that_overflows_counts_as_failed_not_as_a_crash():
    rows = rows_truth(noise=0.002, shift=-0.05)  # some leave-one-out formula fits overflow
    p = P.plan(rows, P.Target(gain_pts=2.0))
    assert {b["n_base"] for b in p["bases"]} == {10, 20}


@pytest.mark.parametrize("kw, match", [
    ({"gain_pts": -2.0}, "positive"), ({"gain_pts": 0.0}, "positive"),
    ({"accuracy": 1.2}, r"\(0, 1\]"), ({}, "exactly one"),
    ({"gain_pts": 2.0, "accuracy": 0.97}, "exactly one")])
def test_bad_targets_are_refused(kw, match):
    with pytest.raises(P.SynthequivError, match=match):
        P.Target(**kw)


# ----------------------------------------------------------------------------- held-out check


def test_heldout_check_reports_the_true_error_of_a_deliberately_wrong_model():
    """The largest cells sit 5 pts below what every smooth curve through the rest predicts:
    the check must say so (error ≈ +5 pts, intervals missing), while on the unshifted rows
    the same check finds small errors."""
    wrong = P.heldout_check(rows_truth(noise=0.002, shift=-0.05))
    right = P.heldout_check(rows_truth(noise=0.002))
    assert wrong["status"] == right["status"] == "ok"
    assert [(c["n_base"], c["arm"], c["n_add"]) for c in wrong["cells"]] == [
        (10, "closed", 112), (10, "real", 64), (20, "closed", 274), (20, "real", 64)]
    assert {c["method"] for c in wrong["cells"]} == {"formula", "power_law"}
    for c, ok in zip(wrong["cells"], right["cells"]):
        assert c["predicted"] == pytest.approx(ok["predicted"], abs=1e-12)  # same rest
        assert c["error"] == pytest.approx(ok["error"] + 0.05, abs=1e-9)
        assert c["error"] == pytest.approx(0.05, abs=0.005)
    assert wrong["rmse"] == pytest.approx(0.05, abs=0.005)
    assert wrong["coverage"] == 0.0 and wrong["n_with_interval"] == 4
    assert right["rmse"] < 0.005 and right["coverage"] > 0
    assert "RMSE 5.0" in P.heldout_text(wrong) or "RMSE 4.9" in P.heldout_text(wrong)


def test_heldout_check_falls_back_to_the_effective_data_model_and_says_when_impossible():
    rows = rows_truth(real_add=(5, 10, 20, 40), syn_fracs=(0.5, 2.0))  # 1 synthetic left/base
    check = P.heldout_check(rows)
    methods = {c["arm"]: c["method"] for c in check["cells"]}
    assert methods == {"closed": "effective_data", "real": "power_law"}
    few = P.heldout_check(rows_truth(real_add=(5, 20), syn_fracs=()))  # 2 real cells left
    assert few["status"] == "not_possible" and "too few" in few["reason"]


def test_heldout_check_of_a_partly_finished_run_warns_nothing_and_crashes_nowhere():
    """Replicate 1's synthetic cells not trained yet: leaving replicate 0 out leaves nothing of
    them to average (this printed numpy's 'Mean of empty slice'); one unit: no intervals."""
    import warnings

    rows = [r for r in rows_truth(noise=0.002, reps=2, seeds=1)
            if not (r["replicate"] == 1 and r["arm"] == "closed")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check = P.heldout_check(rows)
        one = P.heldout_check([r for r in rows if r["replicate"] == 0])
    covered = {c["arm"]: c["covered"] for c in check["cells"]}
    assert check["status"] == "ok" and covered["closed"] is None
    assert covered["real"] is not None and check["n_with_interval"] == 2
    assert one["status"] == "ok" and one["n_units"] == 1 and one["n_with_interval"] == 0
    assert P.heldout_text(one).endswith("no intervals (one unit)")


# ----------------------------------------------------------------------------- CLI


@pytest.fixture
def run_dir(tmp_path):
    """A run directory as a study leaves it (config.yaml + results.sqlite), trained on
    nothing: the rows are TRUTH's, stamped with the config's hash; one foreign row."""
    cfg = C.resolve("quick", None, ["splits.base_per_class=[10,20]", "grid.replicates=3"])
    d = tmp_path / "run"
    d.mkdir()
    (d / "config.yaml").write_text(C.dump_yaml(cfg))
    ResultsTable(d / "results.sqlite").close()  # the study's schema
    chash = config_hash(cfg, "")  # no data_digest.txt in this run directory
    rows = [{**r, "key": f"k{i}", "config_hash": chash}
            for i, r in enumerate(rows_truth(real_add=(5, 10, 20, 40), noise=0.002))]
    rows.append({"key": "other", "config_hash": "x", "n_base": 10, "arm": "real", "n_add": 0,
                 "seed": 9, "replicate": 0, "accuracy": 0.1})
    with sqlite3.connect(d / "results.sqlite") as db:  # one transaction, not one per row
        db.executemany(f"INSERT INTO cells ({', '.join(COLUMNS)}) VALUES "
                       f"({', '.join('?' * len(COLUMNS))})",
                       [[r.get(c) for c in COLUMNS] for r in rows])
    return d


def test_plan_prints_per_base_lines_and_the_heldout_check(cli, run_dir):
    with RunLock(run_dir):  # as if the study were still running
        code, out, err = cli("plan", run_dir, "--target-gain", "2")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("target: +2 pts over each base size's baseline")
    for nb in (10, 20):
        i = next(j for j, ln in enumerate(lines) if ln.startswith(f"base {nb}/class: baseline"))
        assert "(+2.0 pts)" in lines[i]
        assert lines[i + 1].startswith("  real: collect about ")
        assert lines[i + 2].startswith("  closed-set: ")
    assert lines[-1].startswith("held-out check (largest real and largest synthetic")
    code, out, err = cli("plan", run_dir, "--target-gain", "2", "--json")
    result = json.loads(out)
    m = base(result["plan"], 10)["real"]["amount"]
    assert code == 0 and m == pytest.approx(true_m(10, 2.0), rel=0.1)  # the foreign row is out
    assert result["heldout"]["n_predicted"] == 4


def test_plan_reads_a_results_csv_too(cli, tmp_path):
    path = tmp_path / "mine.csv"
    rows = rows_truth()
    cols = ["n_base", "arm", "n_add", "seed", "replicate", "accuracy"]
    path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                   for r in rows]) + "\n")
    code, out, err = cli("plan", path, "--target-accuracy", "0.95")
    assert code == 0, err
    assert "base 10/class: baseline 0.9002 → target 0.9500 (+5.0 pts)" in out


@pytest.mark.parametrize("args", [["--target-gain", "-2"], [],
                                  ["--target-gain", "2", "--target-accuracy", "0.9"],
                                  ["--target-accuracy", "1.5"]])
def test_plan_bad_targets_are_one_error_line(cli, tmp_path, args):
    code, _, err = cli("plan", tmp_path, *args)  # checked before any file is read
    lines = err.strip("\n").splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "target" in lines[0]


def test_plan_of_a_missing_source_is_one_error_line(cli, tmp_path):
    code, _, err = cli("plan", tmp_path / "nope", "--target-gain", "2")
    assert code == 2 and err.startswith("error: ") and "not found" in err


# ----------------------------------------------------------------------------- report


def test_report_carries_the_heldout_check_in_summary_and_a_section(tmp_path):
    from synthequiv.reporting.rebuild import fit_results

    rows = rows_truth(noise=0.002, shift=-0.02)  # at −5 pts analyse's own fit overflows
    path = tmp_path / "wrong.csv"
    cols = ["n_base", "arm", "n_add", "seed", "replicate", "accuracy"]
    path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                   for r in rows]) + "\n")
    fit_results(path, tmp_path / "fit")
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    expected = P.heldout_check(rows)
    assert summary["planner"]["rmse"] == pytest.approx(expected["rmse"], rel=1e-9)
    assert summary["planner"]["coverage"] == 0.0 and len(summary["planner"]["cells"]) == 4
    md = (tmp_path / "fit" / "report.md").read_text()
    section = md[md.index("## Planner check"):]
    assert P.heldout_text(expected) in section
    assert section.count("| NO |") == 4  # no held-out cell inside its interval


def test_the_power_law_ceiling_never_exceeds_the_metrics_maximum():
    """Real cells still rising steeply at the largest amount fitted a ceiling a = 1.32, and
    --target-accuracy 1.0 then planned ~1.4e6 real images/class."""
    n = np.array([10.0, 15, 20, 30, 50])
    fit = P.fit_power(n, 1.32 - 1.9 * n ** -0.3)  # a curve whose own ceiling is 1.32
    assert fit["a"] <= 1.0


def test_an_amount_inside_the_range_with_an_interval_beyond_it_is_flagged():
    """'collect about 2.4 (95 % CI 0.0–6519), inside the measured range (up to +40/class)'
    read as if nothing were extrapolated."""
    r = {"method": "measured", "amount": 2.4, "lo": 0.0, "hi": 6519.0, "extrapolated": False,
         "largest_measured": 40}
    line = P._real_line(r, 0.95)
    assert "inside the measured range (up to +40/class)" in line
    assert line.endswith("its interval reaches beyond it (EXTRAPOLATED there)")
    assert "EXTRAPOLATED" not in P._real_line({**r, "hi": 30.0}, 0.95)
