"""grid.replicates: auto — the stopping rule (targets, budget, cap) and a tiny auto study that
adds replicates one at a time with the keys of a fixed-replicates study."""

from __future__ import annotations

import json
import math
import shutil
import sqlite3

import pytest

from synthequiv import config as C
from synthequiv.stats.config import Target, parse_duration, parse_target
from synthequiv.stats.sequential import auto_status, deciding, stop_reason, target_status
from synthequiv.utils import SynthequivError

# ----------------------------------------------------------------------------- parsing


def test_targets_and_durations_parse():
    assert parse_target("gain_halfwidth=1.5") == Target("gain_halfwidth", 1.5)
    assert parse_target("rate_halfwidth=0.5") == Target("rate_halfwidth", 0.5)
    assert [parse_duration(t) for t in ("2h", "20m", "90s", "1h30m", "600")] == [
        7200, 1200, 90, 5400, 600]


@pytest.mark.parametrize("text, match", [
    ("gain=1", "grid.target must be"), ("gain_halfwidth=x", "not a number"),
    ("gain_halfwidth=0", "must be > 0"), ("rate_halfwidth", "grid.target must be")])
def test_bad_targets_are_one_error(text, match):
    with pytest.raises(SynthequivError, match=match):
        parse_target(text)


@pytest.mark.parametrize("text", ["", "2x", "h", "0m"])
def test_bad_durations_are_one_error(text):
    with pytest.raises(SynthequivError, match="--budget"):
        parse_duration(text)


@pytest.mark.parametrize("sets, match", [
    (["grid.replicates=auto"], "needs grid.target"),
    (["grid.replicates=auto", "grid.target=gain_halfwidth=1", "grid.min_replicates=1"],
     "2 ≤ grid.min_replicates"),
    (["grid.target=gain_halfwidth=1"], "apply to grid.replicates=auto only"),
    (["grid.budget_s=60"], "apply to grid.replicates=auto only"),
    (["grid.replicates=many"], "in \\[1, 1000\\] or auto"),
])
def test_auto_settings_are_checked_up_front(sets, match):
    with pytest.raises(SynthequivError, match=match):
        C.validate(C.resolve("quick", None, sets))


# ----------------------------------------------------------------------------- the rule


def _gain(arm, n_add, lo, hi, n_base=10):
    return {"arm": arm, "n_base": n_base, "n_add": n_add, "lo": lo, "hi": hi}


def _point(n_syn, rate, lo, hi, usable=True, n_base=10):
    return {"n_base": n_base, "n_syn": n_syn, "usable": usable, "rate": rate, "rate_lo": lo,
            "rate_hi": hi}


def test_gain_target_judges_every_plain_synthetic_gain():
    eq = {"gains": [_gain("real", 5, -0.1, 0.1),  # real cells are not the question
                    _gain("closed", 40, 0.00, 0.02), _gain("closed", 160, -0.01, 0.02),
                    _gain("closed@cfg2", 40, -0.2, 0.2)]}  # a lever variant: not the headline
    s = target_status(eq, Target("gain_halfwidth", 1.5))
    assert s["met"] and s["intervals"] == 2 and s["widest"] == pytest.approx(1.5)
    assert s["where"] == "closed +160 at 10/class"
    assert not target_status(eq, Target("gain_halfwidth", 1.4))["met"]
    eq["gains"].append(_gain("open", 40, math.nan, math.nan))  # no interval: never met
    assert target_status(eq, Target("gain_halfwidth", 100))["widest"] == math.inf


def test_rate_target_reads_the_headline_point_and_an_arm_without_rate_never_meets_it():
    eq = {"arms": {"closed": {"points": [_point(40, 8.0, 6.0, 10.0),
                                         _point(160, 20.0, 10.0, 40.0, usable=False)]}}}
    s = target_status(eq, Target("rate_halfwidth", 0.25))  # (10 − 6) / 2 / 8 = 0.25
    assert s["met"] and s["where"] == "closed at 10/class (+40)"
    eq["arms"]["open"] = {"points": [_point(40, math.nan, 0.0, math.inf, usable=False)]}
    s = target_status(eq, Target("rate_halfwidth", 10))
    assert not s["met"] and s["where"] == "open at 10/class (no rate)"


def _fake_equivalence(halfwidths: dict[int, float]):
    """equivalence_of for auto_status: one closed gain whose half-width (pts) depends on how
    many replicates the rows hold."""
    def of(rows):
        hw = halfwidths[len({r["replicate"] for r in rows})] / 100
        return {"gains": [_gain("closed", 40, -hw, hw)]}
    return of


def _rows(n):
    return [{"replicate": u, "n_base": 10, "arm": "real", "n_add": 0, "seed": 0,
             "accuracy": 0.9} for u in range(n)]


def test_auto_status_judges_the_first_two_thirds():
    """By hand: after n replicates the widest interval of the first m = n − ⌈n/3⌉, × √(m/n),
    against the target; "widest" and "where" stay those of all n (what the report shows)."""
    assert [deciding(n) for n in (2, 3, 4, 5, 6, 12, 20)] == [1, 2, 2, 3, 4, 8, 13]
    target = Target("gain_halfwidth", 1.0)
    # a lucky last third: all 6 replicates give 0.9 ≤ 1 (judging all of them stopped here),
    # but the first 4 give 1.3, and 1.3 × √(4/6) = 1.061 > 1: not yet
    s = auto_status(_rows(6), target, equivalence_of=_fake_equivalence({4: 1.3, 6: 0.9}))
    assert target_status(_fake_equivalence({6: 0.9})(_rows(6)), target)["met"]
    assert not s["met"] and s["widest"] == pytest.approx(0.9)
    assert s["predicted"] == pytest.approx(1.3 * math.sqrt(4 / 6))
    assert (s["replicates"], s["deciding"]) == (6, 4)
    assert s["predicted_where"] == "closed +40 at 10/class"
    assert auto_status(_rows(6), Target("gain_halfwidth", 1.07),
                       equivalence_of=_fake_equivalence({4: 1.3, 6: 0.9}))["met"]
    # the first 4 predict 1.2 × √(4/6) = 0.980 with 6: stop, though the last 2 widened it
    s = auto_status(_rows(6), target, equivalence_of=_fake_equivalence({4: 1.2, 6: 1.3}))
    assert s["met"] and s["widest"] == pytest.approx(1.3)
    assert stop_reason(s, 6, 20, 0, 0, 0) == (
        "target met (replicates 1–4 predict a widest interval of 0.98 with 6; the last 2 did "
        "not decide)")
    # ... unless an interval of all 6 does not exist (a rate interval opened, no spread)
    assert not auto_status(_rows(6), target,
                           equivalence_of=_fake_equivalence({4: 1.2, 6: math.inf}))["met"]
    # 3 replicates: the first 2 decide (× √(2/3)); 2: one left has no replicate-level variance
    s = auto_status(_rows(3), target, equivalence_of=_fake_equivalence({2: 1.2, 3: 0.5}))
    assert s["met"] and s["predicted"] == pytest.approx(1.2 * math.sqrt(2 / 3))
    s = auto_status(_rows(2), target, equivalence_of=_fake_equivalence({1: 0.1, 2: 0.1}))
    assert not s["met"] and s["predicted"] == math.inf
    assert stop_reason(s, 2, 3, 0, 0, 0) == ""


def test_auto_status_reads_the_intervals_analyse_reports():
    """One code path: headline_equivalence gives analyse's gains and measured points, and
    auto_status of simulated rows is target_status of their first two replicates of four."""
    import numpy as np

    from synthequiv.stats.config import EquivalenceConfig
    from synthequiv.stats.equivalence import analyse
    from synthequiv.stats.sequential import headline_equivalence
    from synthequiv.stats.simulate import Design, Truth, simulate_rows

    rows = simulate_rows(Truth(worth=(("closed", 1 / 20),)), Design(replicates=4),
                         np.random.default_rng(3))
    full, head = analyse(rows, EquivalenceConfig()), headline_equivalence(rows, 0.95, "moderated")
    assert head["gains"] == full["gains"]
    assert head["arms"]["closed"]["points"] == full["arms"]["closed"]["points"]
    target = Target("rate_halfwidth", 1.0)
    s = auto_status(rows, target)
    before = target_status(headline_equivalence([r for r in rows if r["replicate"] < 2], 0.95,
                                                "moderated"), target)  # 2 of 4 decide
    assert s["predicted"] == pytest.approx(before["widest"] * math.sqrt(2 / 4))
    assert s["widest"] == target_status(full, target)["widest"]
    assert s["met"] == (s["predicted"] <= 1.0)


def test_stop_reasons():
    met, not_met = {"met": True}, {"met": False}
    assert stop_reason(met, 3, 20, 0, 0, 0) == "target met"
    assert stop_reason(not_met, 3, 20, 100, 0, 50) == ""  # no budget: keep going
    assert stop_reason(not_met, 3, 20, 100, 200, 50) == ""  # 150 s ≤ 200 s
    assert stop_reason(not_met, 3, 20, 100, 140, 50).startswith("budget")
    assert stop_reason(not_met, 20, 20, 0, 0, 0) == "max_replicates (20) reached"


def test_simulated_stopping_rule_covers_and_stops_where_the_target_is_met():
    """A small run of benchmarks/sequential.py's measurement (its 300-study numbers are in the
    README): the rule stops between min and max, the fixed comparison uses the mean stop, and
    the same seed gives the same numbers."""
    from synthequiv.stats.sequential import sequential_coverage
    from synthequiv.stats.simulate import Design, Truth

    design, target = Design(arms=("closed",)), parse_target("gain_halfwidth=0.5")
    a = sequential_coverage(Truth(), design, target, 3, 8, studies=15, seed=1)
    assert a == sequential_coverage(Truth(), design, target, 3, 8, studies=15, seed=1)
    assert 3 < a["mean_replicates"] <= 8 and a["fixed_replicates"] == round(a["mean_replicates"])
    lo, mid, hi = a["replicates_quantiles"]
    assert 3 <= lo <= mid <= hi <= 8
    assert 0.8 <= a["coverage_gain"] <= 1 and 0.8 <= a["coverage_n_real_eq"] <= 1
    assert a["share_target_met"] > 0 and 0 < a["widest_over_target"][0] <= a["widest_over_target"][1]
    never = sequential_coverage(Truth(), design, parse_target("gain_halfwidth=0.001"), 3, 4,
                                studies=3)
    assert never["share_target_met"] == 0 and never["mean_replicates"] == 4


# ----------------------------------------------------------------------------- a tiny study

# the synthetic arm is a provided set of noise images (no generator to train: seconds)
SMALL = ["splits.base_per_class=[5]", "grid.seeds=[0,1]", "grid.arms=[real]",
         "grid.real_add_per_class=[5,10]", "grid.syn_add_per_class=[5]",
         "classifier.train_steps=10", "analysis.enabled=false", "device=cpu", "cpu_threads=1"]
AUTO = ["grid.replicates=auto", "grid.min_replicates=2", "grid.max_replicates=3",
        "grid.target=gain_halfwidth=0.001"]  # a target no study meets: it stops at the cap


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    import numpy as np

    tmp = tmp_path_factory.mktemp("auto")
    rng = np.random.default_rng(0)
    np.savez(tmp / "noise.npz", images=rng.integers(0, 256, (50, 1, 8, 8), dtype=np.uint8),
             labels=np.repeat(np.arange(10), 5), class_names=np.array([str(c) for c in range(10)]))
    return tmp, SMALL + [f'provided.sets=["noise=npz:{tmp / "noise.npz"}"]']


@pytest.fixture(scope="module")
def auto_run(small):
    from synthequiv.orchestration.study import run_study

    tmp, sets = small
    out = run_study(C.resolve("quick", None, sets + AUTO), tmp / "small", progress=False)
    return tmp / "small", out, sets


def _keys(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return dict(db.execute("SELECT key, replicate FROM cells"))


def test_auto_adds_replicates_to_the_cap_and_says_why(auto_run):
    run_dir, out, _ = auto_run
    assert sorted(set(_keys(run_dir).values())) == [0, 1, 2]
    stop = out["summary"]["run"]["stopping"]
    assert stop["replicates"] == 3 and stop["reason"] == "max_replicates (3) reached"
    log = (run_dir / "log.txt").read_text()
    assert "auto replicates: 2 done" in log and "adding replicate 3" in log
    assert "auto replicates: 3 done" in log and "stop — max_replicates (3) reached" in log
    md = (run_dir / "report.md").read_text()
    assert "replicates 3 (auto)" in md and "then stopped: max_replicates (3) reached" in md


def test_auto_replicates_are_a_fixed_study_s_replicates(auto_run, tmp_path, monkeypatch):
    """The same cells as grid.replicates=3: a fixed rerun in the directory trains nothing."""
    import synthequiv.classification.classifier as clf
    import synthequiv.generation.distributed as dist
    from synthequiv.orchestration.study import run_study

    run_dir, _, sets = auto_run
    copy = tmp_path / "small"
    shutil.copytree(run_dir, copy)
    calls = []
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: calls.append("cell"))
    monkeypatch.setattr(dist, "train_distributed", lambda *a, **k: calls.append("generator"))
    run_study(C.resolve("quick", None, sets + ["grid.replicates=3"]), copy, progress=False)
    assert calls == [] and _keys(copy) == _keys(run_dir)
    cells = json.loads((copy / "cells.json").read_text())["keys"]
    assert sorted(cells) == sorted(_keys(run_dir))


def test_auto_stops_at_the_budget_without_retraining(auto_run, tmp_path, monkeypatch):
    """A 1 s budget: the first pass (2 replicates, already done) is run, then the next
    replicate (at the time per replicate measured before) would end past the budget."""
    import synthequiv.classification.classifier as clf
    from synthequiv.orchestration import study
    from synthequiv.orchestration.study import run_study

    run_dir, _, sets = auto_run
    copy = tmp_path / "small"
    shutil.copytree(run_dir, copy)
    calls = []
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: calls.append("cell"))
    # a replicate "takes" a minute (the measured time on a fast quiet machine fitted in 1 s)
    monkeypatch.setattr(study, "previous_replicate_s", lambda run_dir: 60.0)
    out = run_study(C.resolve("quick", None, sets + AUTO + ["grid.budget_s=1"]), copy,
                    progress=False)
    stop = out["summary"]["run"]["stopping"]
    assert calls == [] and stop["replicates"] == 2 and stop["reason"].startswith("budget")
    assert "stop — budget" in (copy / "log.txt").read_text()


def test_dry_run_states_the_power_from_the_earlier_run(auto_run, cli):
    run_dir, _, sets = auto_run
    args = [a for s in sets + AUTO + ["grid.budget_s=1200"] for a in ("--set", s)]
    code, out, err = cli("study", "--dry-run", "--runs-dir", run_dir.parent, "--name",
                         run_dir.name, *args)
    assert code == 0, err
    power = [ln for ln in out.splitlines() if ln.startswith("# plan: power:")]
    assert len(power) == 1 and f"variance from the earlier run in {run_dir}" in power[0]
    assert "with 2 replicate(s) × 2 seed(s)" in power[0]  # auto: its first pass and its cap
    assert "with 3 replicate(s) × 2 seed(s)" in power[0]
    assert "# plan: replicates: auto — 2 first, then one at a time until every synthetic gain " \
           "interval within ±0.001 pts (judged on the first two thirds of the replicates, " \
           "scaled to all), the 20.0 min budget, or 3 replicates" in out


def test_budget_option_sets_the_budget(cli, tmp_path):
    code, out, _ = cli("study", "--dry-run", "--runs-dir", tmp_path, "--set",
                       "grid.replicates=auto", "--set", "grid.target=gain_halfwidth=1.5",
                       "--budget", "1h30m")
    assert code == 0 and "budget_s: 5400.0" in out
    code, _, err = cli("study", "--dry-run", "--runs-dir", tmp_path, "--budget", "20m")
    assert code != 0 and "error: grid.target and a budget" in err


def test_report_states_the_power_of_the_design_that_ran(auto_run):
    run_dir, out, _ = auto_run
    power = out["summary"]["power"]
    assert power["designs"][0]["replicates"] == 3 and power["designs"][0]["cells"] == 1
    assert power["mde_text"].startswith("Power: the smallest true synthetic gain this design "
                                        "detects with 80 % power (Holm over 1 synthetic cells)")
    assert power["mde_text"] in (run_dir / "report.md").read_text()
    if not power["significant"]:  # noise images: what would resolve it (or that nothing would)
        assert power["resolve_text"] in out["headline"]
