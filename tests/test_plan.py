"""The study plan's counts and cost estimate (plan.py): what a config trains and samples."""

from __future__ import annotations

import pytest

from synthequiv import config as C
from synthequiv.orchestration import plan as P


def plan(preset="quick", *sets):
    return P.study_plan(C.resolve(preset, None, list(sets)))


def test_quick_counts_and_sampling_work():
    p = plan()
    assert (p["generators"], p["sample_sets"], p["cells"]) == (9, 9, 108)
    assert P._counts(C.resolve("quick"))["sample_work_per_class"] == 9 * 160


def test_levers_price_guided_sets_twice_and_the_filter_pool():
    c = P._counts(C.resolve("levers"))
    # per replicate: plain closed ×2 bases + open at cfg 1: 3 × 160; closed@cfg2 and @cfg4:
    # 2 bases × 160 × 2 passes each; keep-top 0.8: a pool of 200/class = 40 extra × 2 bases
    assert c["sample_work_per_class"] == 3 * (3 * 160 + 2 * (2 * 160 * 2) + 2 * 40)
    assert c["sample_sets"] == 3 * (3 + 4)
    assert (c["filter_pool_sets"], c["filter_pool_per_class"]) == (3 * 2, 40)
    assert "sample sets: 21 × 160/class + 6 filter pools × 40/class" in P.plan_lines(
        P.study_plan(C.resolve("levers")))
    assert P._counts(C.resolve("quick"))["filter_pool_sets"] == 0
    assert c["generators"] == 9  # levers only sample
    fewer_steps = P._counts(C.resolve("quick", None, ["grid.sampler_steps=[25,10]"]))
    assert fewer_steps["sample_work_per_class"] == 3 * (3 * 160 + 2 * 160 * 10 / 25)


def test_provided_arms_train_no_generator_and_given_sets_are_not_sampled():
    c = P._counts(C.resolve("quick", None, [
        'provided.sets=["closed:10=npz:/x.npz", "sd15=folder:/imgs"]',
        'provided.generators=["mine=/gen"]']))
    # generators: closed B(20) and open per replicate (closed B(10) is given)
    assert c["generators"] == 3 * 2
    # sampled: closed B(20), open, and the provided generator's set
    assert c["sample_sets"] == 3 * 3 and c["sample_work_per_class"] == 3 * 3 * 160
    assert c["syn_arms"] == ["closed", "open", "sd15", "mine"]
    assert c["cells"] == 3 * 2 * 2 * (1 + 4 + 2 * 4)  # replicates × bases × seeds × amounts


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
