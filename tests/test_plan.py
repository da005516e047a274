"""The study plan's counts and cost estimate (plan.py): what a config trains and samples."""

from __future__ import annotations

import pytest

from synthequiv import config as C
from synthequiv.orchestration import plan as P
from synthequiv.reporting.power import report_power


def plan(preset="quick", *sets):
    return P.study_plan(C.resolve(preset, None, list(sets)))


def test_quick_counts_and_sampling_work():
    p = plan()
    # per base size and replicate: the baseline × 6 seeds + 8 cells × 2 seeds
    assert (p["generators"], p["sample_sets"], p["cells"]) == (9, 9, 132)
    assert plan("quick", "grid.base_seed_factor=1")["cells"] == 108
    # 9 sets × 160/class at the quick default's 16 sampler steps, in 25-step units (plan.py)
    assert P._counts(C.resolve("quick"))["sample_work_per_class"] == pytest.approx(
        9 * 160 * 16 / 25)


def test_levers_price_guided_sets_twice_and_the_filter_pool():
    c = P._counts(C.resolve("levers"))
    # per replicate: plain closed ×2 bases + open at cfg 1: 3 × 160; closed@cfg2 and @cfg4:
    # 2 bases × 160 × 2 passes each; keep-top 0.8: a pool of 200/class = 40 extra × 2 bases
    # (in 25-step units: the levers preset samples at the quick default's 16 steps)
    assert c["sample_work_per_class"] == pytest.approx(
        3 * (3 * 160 + 2 * (2 * 160 * 2) + 2 * 40) * 16 / 25)
    assert c["sample_sets"] == 3 * (3 + 4)
    assert (c["filter_pool_sets"], c["filter_pool_per_class"]) == (3 * 2, 40)
    assert "sample sets: 21 × 160/class + 6 filter pools × 40/class" in P.plan_lines(
        P.study_plan(C.resolve("levers")))
    assert P._counts(C.resolve("quick"))["filter_pool_sets"] == 0
    assert c["generators"] == 9  # levers only sample
    fewer_steps = P._counts(C.resolve("quick", None, ["sampling.steps=25",
                                                      "grid.sampler_steps=[25,10]"]))
    assert fewer_steps["sample_work_per_class"] == 3 * (3 * 160 + 2 * 160 * 10 / 25)


def test_a_family_lever_trains_its_own_generators_and_samples_with_its_sampler():
    """grid.generator_families=[edm] on the closed arm: 2 more generators per replicate
    (one per base size), sampled with edm's heun (2·16 − 1 evaluations per image); the dry run
    once counted none of them (9 generators and a third less sampling)."""
    c = P._counts(C.resolve("quick", None, ["grid.generator_families=[edm]"]))
    assert c["generators"] == 3 * (3 + 2) and c["sample_sets"] == 3 * (3 + 2)
    assert c["sample_work_per_class"] == pytest.approx(3 * (3 * 160 * 16 + 2 * 160 * 31) / 25)
    both = P._counts(C.resolve("quick", None, ["grid.generator_families=[edm,dit]",
                                               "grid.lever_arms=[closed,open]"]))
    # edm and dit for the closed arm's 2 base sizes and the open arm: 2 × 3 more; dit samples
    # with the plain dpmpp at 16 steps
    assert both["generators"] == 3 * (3 + 6)
    assert both["sample_work_per_class"] == pytest.approx(
        3 * (3 * 160 * 16 + 3 * 160 * 31 + 3 * 160 * 16) / 25)


def test_provided_arms_train_no_generator_and_given_sets_are_not_sampled():
    c = P._counts(C.resolve("quick", None, [
        'provided.sets=["closed:10=npz:/x.npz", "sd15=folder:/imgs"]',
        'provided.generators=["mine=/gen"]']))
    # generators: closed B(5) and open per replicate (closed B(10) is given)
    assert c["generators"] == 3 * 2
    # sampled: closed B(5), open, and the provided generator's set
    assert c["sample_sets"] == 3 * 3
    assert c["sample_work_per_class"] == pytest.approx(3 * 3 * 160 * 16 / 25)  # 16 steps
    assert c["syn_arms"] == ["closed", "open", "sd15", "mine"]
    # replicates × bases × (the baseline × 6 seeds + amounts × 2 seeds)
    assert c["cells"] == 3 * 2 * (6 + 2 * (4 + 2 * 4))


def test_cost_uses_group_compile_and_architecture_rates(monkeypatch):
    quick = plan("quick", "device=cuda")["cost_estimate"]
    assert quick["hours"]["generator"] == pytest.approx(
        230400 / P.GROUPED[("cuda", "generator", "8px")] / 3600)
    alone = plan("quick", "device=cuda", "generator_group=1")["cost_estimate"]
    assert alone["hours"]["generator"] == pytest.approx(
        230400 / P.THROUGHPUT[("cuda", "generator", "8px")] / 3600)
    eager = plan("cifar10", "compile=false", "classifier.arch=airbench")["cost_estimate"]
    compiled = plan("cifar10", "classifier.arch=airbench")["cost_estimate"]  # preset: compile
    assert eager["classifier_arch"] == "airbench"
    ratio = eager["hours"]["generator"] / compiled["hours"]["generator"]
    assert ratio == pytest.approx(P.COMPILED[("cuda", "generator", "32px")]
                                  / P.THROUGHPUT[("cuda", "generator", "32px")])
    cpu = plan("quick", "device=cpu")["cost_estimate"]
    assert cpu["hours"]["generator"] == pytest.approx(
        230400 / P.THROUGHPUT[("cpu", "generator", "8px")] / 3600)  # no groups on a CPU


# ----------------------------------------------------------------------------- test set, power


def test_plan_states_the_test_images_per_replicate(digits):
    lines = P.plan_lines(P.study_plan(C.resolve("quick"), digits))
    assert ("test: every real image outside the base sets and reserve, at most 2000/class "
            "(splits.test_per_class: all; a new hold-out per replicate): 124–133/class, 1297 "
            "images per replicate") in lines
    assert "needs 51 real images per class" in lines[0]  # B(10) + R(40) + 1 test image
    fixed = P.plan_lines(P.study_plan(C.resolve("quick", None, ["splits.test_per_class=50"]),
                                      digits))
    assert "needs 100 real images per class" in fixed[0]
    assert "test: a hold-out of 50/class per replicate (splits.test_per_class)" in fixed


def test_power_is_unknown_without_an_earlier_run_and_says_how_to_get_it(tmp_path):
    p = P.study_plan(C.resolve("quick"), None, tmp_path / "quick")
    assert p["power"] == {"known": False, "cells": 8,
                          "why": f"no earlier run of this study in {tmp_path / 'quick'}"}
    text = P.plan_lines(p)[-1]
    assert text.startswith("power: minimum detectable gain unknown") and (
        "--set grid.replicates=1" in text)


def _simulated(worth: float, seed: int = 0):
    import numpy as np

    from synthequiv.stats.simulate import Design, Truth, simulate_rows

    truth = Truth(worth=(("closed", worth), ("open", worth)))
    return simulate_rows(truth, Design(arms=("closed", "open")), np.random.default_rng(seed))


def test_report_power_states_the_mde_and_what_would_resolve_a_null_result(tmp_path):
    from synthequiv.stats.equivalence import analyse
    from synthequiv.stats.power import min_detectable_gain, replicates_for, variance_components

    cfg = C.resolve("quick")
    (tmp_path / "config.yaml").write_text(C.dump_yaml(cfg))
    rows = _simulated(0.002, seed=3)  # a synthetic image worth 1/500 of a real one: tiny gains
    eq = analyse(rows, cfg.equivalence)
    assert not any(g["significant"] for g in eq["gains"] if g["arm"] != "real")
    out = report_power(rows, cfg, eq, {"per_replicate_s": 60.0}, tmp_path)
    comps = variance_components(rows)
    mde = min_detectable_gain(comps, 3, 2, family_size=8, base_seeds=6)
    assert out["designs"][0]["mde"] == pytest.approx(mde)
    assert (f"≈ {100 * mde:.1f} pts with 3 replicate(s) × 2 seed(s) (6 for the baseline)"
            in out["mde_text"])
    best = max((g for g in eq["gains"] if g["arm"] != "real"), key=lambda g: g["gain"])
    need = max(replicates_for(best["gain"], comps, 2, max_replicates=1000, family_size=8,
                              base_seeds=6), 4)
    assert out["resolve_replicates"] == need
    assert (f"about {need} replicates (≈ {need - 3:.1f} min more on this machine at the "
            "measured 1.0 min per replicate)") in out["resolve_text"]
    assert (f"`synthequiv study --config {tmp_path / 'config.yaml'} --runs-dir "
            f"{tmp_path.parent} --set grid.replicates={need}`") in out["resolve_text"]


def test_report_power_says_nothing_to_resolve_when_a_gain_is_significant(tmp_path):
    from synthequiv.stats.equivalence import analyse

    cfg = C.resolve("quick")
    rows = _simulated(0.5)  # every synthetic cell gains several points: all significant
    out = report_power(rows, cfg, analyse(rows, cfg.equivalence), {}, tmp_path)
    assert out["significant"] and "resolve_text" not in out and out["mde_text"]


def test_report_power_resolves_the_largest_gain_left_beside_significant_ones(tmp_path):
    """Closed-set images worth 1/2 a real one (significant), open-set 1/100 (gains under a
    point, not significant): the largest of those is what more replicates would resolve."""
    import numpy as np

    from synthequiv.stats.equivalence import analyse
    from synthequiv.stats.simulate import Design, Truth, simulate_rows

    cfg = C.resolve("quick")
    truth = Truth(worth=(("closed", 0.5), ("open", 0.01)))
    rows = simulate_rows(truth, Design(arms=("closed", "open")), np.random.default_rng(0))
    eq = analyse(rows, cfg.equivalence)
    out = report_power(rows, cfg, eq, {"per_replicate_s": 60.0}, tmp_path)
    left = [g for g in eq["gains"] if g["arm"] == "open" and not g["significant"]]
    best = max(left, key=lambda g: g["gain"])
    assert out["significant"] and best["gain"] > 0
    assert out["observed_gain"] == best["gain"]
    assert (f"the largest gain left unresolved (+{100 * best['gain']:.1f} pts, open "
            f"+{best['n_add']} at {best['n_base']}/class, not significant)") in out["resolve_text"]
    assert f"about {out['resolve_replicates']} replicates" in out["resolve_text"]
