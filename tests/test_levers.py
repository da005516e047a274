"""Levers: synthetic filtering and the guidance/sampler sweep as grid dimensions."""

from __future__ import annotations

import json
import math
import sqlite3

import pytest
import torch

from synthequiv import config as C
from synthequiv.generation.filtering import filtered_set, keep_top, pool_per_class
from synthequiv.generation.levers import Variant, arm_label, check_levers, parse_label, variant_arms
from synthequiv.generation.synthetic import SyntheticSet
from synthequiv.utils import SynthequivError, tensor_digest

# ----------------------------------------------------------------------------- filtering


@pytest.mark.parametrize("q", [0.2, 0.5, 0.8, 1.0])
def test_keep_top_keeps_exactly_the_fraction_per_class_and_the_best(q):
    g = torch.Generator().manual_seed(0)
    counts = [7, 40, 13, 1]  # unequal classes: ceil(q · count) each
    labels = torch.cat([torch.full((c,), k) for k, c in enumerate(counts)])
    labels = labels[torch.randperm(len(labels), generator=g)]
    scores = torch.rand(len(labels), generator=g)
    kept = keep_top(scores, labels, q)
    assert torch.equal(kept, torch.sort(kept).values)  # pool order
    for k, c in enumerate(counts):
        mine = kept[labels[kept] == k]
        assert len(mine) == math.ceil(q * c)
        dropped = torch.nonzero(labels == k).flatten()
        dropped = dropped[~torch.isin(dropped, mine)]
        if len(dropped):
            assert scores[mine].min() > scores[dropped].max()


def test_pool_size_and_bad_fractions():
    assert pool_per_class(160, 0.5) == 320
    assert pool_per_class(160, 0.2) == 800  # not 801: 160 / 0.2 is 800.0000000000001
    assert pool_per_class(20, 0.3) == 67 and math.ceil(0.3 * 67) >= 20
    for q in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(SynthequivError, match="grid.filters"):
            keep_top(torch.zeros(3), torch.zeros(3, dtype=torch.long), q)


def test_filter_keeps_the_correctly_labelled_images(tmp_path):
    """A pool of real digits, half with their true label and half mislabelled: the keep-top-50 %
    filter scored by a classifier trained on the base set keeps mostly the true ones."""
    from synthequiv.generation.sampling import load_samples
    from synthequiv.inputs.data import load_dataset
    from synthequiv.inputs.splits import make_splits

    cfg = C.resolve("quick", None, ["device=cpu", "splits.test_per_class=50"])  # old hold-out
    sp = make_splits(load_dataset(cfg.data), cfg.splits)
    x, y = sp.reserve(40)
    wrong = torch.arange(len(y)) % 2 == 1
    labels = torch.where(wrong, (y + 1) % 10, y)
    order = torch.argsort(labels, stable=True)  # a samples file is grouped by class
    own = SyntheticSet("k0", "closed", x[order], labels[order], tmp_path / "own.npz", None)
    out = filtered_set(own, None, 0.5, 20, sp.base(20), "closed+top0.5", "closed+top0.5-n20",
                       10, cfg.classifier, tmp_path, "cpu")
    assert torch.equal(torch.bincount(out.labels, minlength=10), torch.full((10,), 20))
    kept = torch.tensor(load_samples(out.path)[2]["filter"]["kept"])
    assert wrong[order][kept].float().mean() < 0.2  # half the pool was mislabelled
    again = filtered_set(own, None, 0.5, 20, sp.base(20), "closed+top0.5", "closed+top0.5-n20",
                         10, cfg.classifier, tmp_path, "cpu")
    assert torch.equal(again.images, out.images) and again.key == out.key


# ----------------------------------------------------------------------------- planning


def test_labels_round_trip_and_one_lever_at_a_time():
    v = Variant("closed", 2.0, 10, 0.5)
    assert arm_label(v, 1.0, 25) == "closed@cfg2@s10+top0.5"
    assert parse_label("closed@cfg2@s10+top0.5", 1.0, 25) == v
    edm = Variant("closed", 1.0, 25, None, "edm")
    assert arm_label(edm, 1.0, 25) == "closed@edm" and parse_label("closed@edm", 1.0, 25) == edm
    assert parse_label("closed@s10", 1.0, 25) == Variant("closed", 1.0, 10)  # not family "s"
    assert parse_label("closed@gan", 1.0, 25) is None  # not a registered family
    fams = C.resolve("levers", None, ["grid.generator_families=[edm,dit]"])
    assert variant_arms(fams) == ["closed@edm", "closed@dit", "closed@cfg2", "closed@cfg4",
                                  "closed+top0.8"]
    check_levers(fams)
    assert parse_label("open+top0.25", 1.0, 25) == Variant("open", 1.0, 25, 0.25)
    assert parse_label("real", 1.0, 25) is None
    cfg = C.resolve("levers")
    assert variant_arms(cfg) == ["closed@cfg2", "closed@cfg4", "closed+top0.8"]
    assert variant_arms(C.resolve("quick")) == []  # off by default
    crossed = variant_arms(C.resolve("levers", None, ["grid.cross_levers=true"]))
    assert len(crossed) == 2 + 3 and "closed@cfg4+top0.8" in crossed


@pytest.mark.parametrize("override,match", [
    ("grid.filters=[0.0]", "grid.filters"), ("grid.guidance=[-1.0]", "grid.guidance"),
    ("grid.sampler_steps=[0]", "grid.sampler_steps"), ("grid.lever_arms=[real]", "lever_arms"),
    ("grid.filters=[0.5,0.5]", "repeated"),
    ("grid.generator_families=[gan]", "unknown generator family 'gan'"),
    ("grid.generator_families=[unet]", "generator.family already"),
    ("grid.generator_families=[dit,dit]", "repeated")])
def test_bad_lever_settings_are_one_line_errors(override, match):
    with pytest.raises(SynthequivError, match=match):
        check_levers(C.resolve("quick", None, [override]))


# ----------------------------------------------------------------------------- tiny study

TINY = ["splits.base_per_class=[5]", "grid.seeds=[0,1]", "grid.replicates=1",
        "grid.arms=[real,closed]", "grid.real_add_per_class=[5,20]",
        "grid.syn_add_per_class=[5,20]", "generator.train_kimg=1.0", "generator.warmup_kimg=0.25",
        "sampling.steps=5", "classifier.train_steps=20", "analysis.max_images=100",
        "analysis.domain_train_steps=20", "device=cpu",
        "grid.filters=[0.5]", "grid.guidance=[1.0,2.0]", "grid.generator_families=[dit]",
        "grid.base_seed_factor=1"]


@pytest.fixture(scope="module")
def lever_run(tmp_path_factory):
    from synthequiv.orchestration.study import run_study

    run_dir = tmp_path_factory.mktemp("runs") / "levers"
    cfg = C.resolve("quick", None, TINY)
    run_study(cfg, run_dir, progress=False)
    return cfg, run_dir


def _rows(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return sorted(db.execute("SELECT key, n_base, arm, n_add, seed, accuracy FROM cells"))


@pytest.mark.slow  # a lever study (~20 s); the default suite keeps the lever checks
def test_variant_arms_are_cells_and_analysed_arms(lever_run):
    cfg, run_dir = lever_run
    rows = _rows(run_dir)
    arms = {}
    for _, n, arm, m, _, _ in rows:
        arms.setdefault(arm, set()).add((n, m))
    synthetic = ("closed", "closed@cfg2", "closed+top0.5", "closed@dit")
    for arm in synthetic:
        assert arms[arm] == {(5, m) for m in (5, 20)}, arm
    # 1 base size × (baseline + 2 real + 4 synthetic arms × 2 amounts) × 2 seeds
    assert len(rows) == (1 + 2 + 4 * 2) * 2
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["equivalence"]["arms"]) == set(synthetic)
    levers = summary["levers"]
    assert {(r["arm"], r["n_base"]) for r in levers} == {(a, 5) for a in synthetic}
    assert {r["arm"]: r["family"] for r in levers}["closed@dit"] == "dit"
    for r in levers:  # every setting's analyses and its gain at the largest amount
        assert 0.0 <= r["fidelity"] <= 1.0 and 0.0 <= r["coverage"] <= 1.0, r
        assert r["n_add"] == 20 and r["gain_lo"] <= r["gain"] <= r["gain_hi"], r
    md = (run_dir / "report.md").read_text()
    assert "Levers: guidance, sampler steps and filtering" in md
    assert "| 5 | closed+top0.5 | 1 | 5 | top 0.5 |" in md
    assert "| 5 | closed@cfg2 | 2 | 5 | none |" in md


def test_guidance_resamples_the_same_generator_and_filter_scorer_sees_only_base(lever_run):
    from synthequiv.generation.sampling import load_samples
    from synthequiv.orchestration.study import load_inputs

    cfg, run_dir = lever_run
    from synthequiv.generation.families import family_of

    dirs = sorted(p.parent for p in run_dir.glob("generators/*/trained_on.json"))
    trained = [json.loads((d / "trained_on.json").read_text()) for d in dirs]
    # guidance and the filter reuse the unet generator; the family lever trains a DiT
    assert [t["name"] for t in trained] == ["closed-n5-r0"] * 2
    assert sorted(family_of(d).name for d in dirs) == ["dit", "unet"]
    _, sp = load_inputs(cfg)
    filtered = sorted(run_dir.glob("samples/closed+top0.5-n*-r0-*.npz"))
    assert len(filtered) == 1
    for path in filtered:
        n = int(path.name.split("-n")[1].split("-")[0])
        images, labels, meta = load_samples(path)
        # a pool of ceil(20 / 0.5) = 40 per class, exactly the top half of each class kept
        assert meta["filter"]["pool_per_class"] == 40
        assert torch.equal(torch.bincount(labels, minlength=10), torch.full((10,), 20))
        scorer = meta["filter"]["scorer"]
        assert scorer["train_digest"] == tensor_digest(*sp.base(n))  # B(n): no test/reserve
        assert scorer["n_images"] == n * 10
    scores = list(run_dir.glob("filters/scores-*.npz"))
    assert len(scores) == 1


def test_rerun_trains_and_samples_nothing_new(lever_run, monkeypatch):
    import synthequiv.classification.classifier as clf
    import synthequiv.generation.distributed as dist
    import synthequiv.generation.sampling as smp
    from synthequiv.orchestration.study import run_study

    cfg, run_dir = lever_run
    before = _rows(run_dir)
    files = {p: p.stat().st_mtime_ns for pat in ("generators/*/checkpoint.pt", "samples/*.npz",
                                                  "filters/*.npz") for p in run_dir.glob(pat)}
    calls = []
    for mod, name in ((clf, "train_classifier"), (dist, "train_distributed"),
                      (smp, "sample_images")):
        real = getattr(mod, name)
        monkeypatch.setattr(mod, name, lambda *a, _r=real, _n=name, **k: (calls.append(_n),
                                                                         _r(*a, **k))[1])
    run_study(cfg, run_dir, progress=False)
    assert calls == []
    assert _rows(run_dir) == before
    assert {p: p.stat().st_mtime_ns for p in files} == files
    assert set(run_dir.glob("samples/*.npz")) == {p for p in files if p.suffix == ".npz"
                                                  and p.parent.name == "samples"}


def test_results_csv_accepts_variant_arms_and_refuses_others(tmp_path):
    from synthequiv.reporting.rebuild import read_results_csv

    path = tmp_path / "r.csv"
    path.write_text("n_base,arm,n_add,seed,accuracy\n10,baseline,0,0,0.5\n"
                    "10,closed@cfg2+top0.5,40,0,0.6\n")
    assert [r["arm"] for r in read_results_csv(path)] == ["real", "closed@cfg2+top0.5"]
    path.write_text("n_base,arm,n_add,seed,accuracy\n10,closed@fast,40,0,0.6\n")
    with pytest.raises(SynthequivError, match="line 2: arm 'closed@fast'"):
        read_results_csv(path)


def test_the_plan_counts_the_generators_and_sets_the_lever_study_made(lever_run):
    """The dry run's counts are what the study trains and samples: the closed arm's own
    generator and the dit lever's (the plan once left family levers out)."""
    from synthequiv.orchestration.plan import _counts

    cfg, run_dir = lever_run
    trained = [d for d in (run_dir / "generators").iterdir()
               if (d / "checkpoint.pt").exists()]
    assert len(trained) == _counts(cfg)["generators"] == 2
