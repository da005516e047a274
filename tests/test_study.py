"""End-to-end: a tiny study on digits produces a report, a complete summary, and resumes."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from synthequiv import config as C
from synthequiv.orchestration.study import load_inputs, run_study
from synthequiv.utils import SynthequivError, tensor_digest

TINY = [
    "splits.base_per_class=[5,10]",
    "grid.seeds=[0,1]",
    "grid.replicates=2",
    "grid.real_add_per_class=[5,20]",
    "grid.syn_add_per_class=[5,20]",
    "generator.train_kimg=2.0",
    "generator.warmup_kimg=0.5",
    "sampling.steps=5",
    "classifier.train_steps=30",
    "analysis.enabled=false",
    "device=cpu",
]


def tiny_cfg(*extra: str) -> C.StudyConfig:
    return C.resolve("quick", None, TINY + list(extra))


def table_rows(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return sorted(db.execute(
            "SELECT key, n_base, arm, n_add, seed, accuracy FROM cells").fetchall())


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A tiny study with (tiny) analyses, run as `synthequiv study` runs it: a run directory
    given relative to the working directory (runs/<name>)."""
    import os

    root = tmp_path_factory.mktemp("work")
    cfg = tiny_cfg("analysis.enabled=true", "analysis.domain_train_steps=10",
                   "analysis.max_images=60")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        out = run_study(cfg, Path("runs") / "tiny", progress=False)
    finally:
        os.chdir(cwd)
    run_dir = root / "runs" / "tiny"
    return cfg, run_dir, {**out, "report_md": (run_dir / "report.md").read_text()}


def test_the_study_report_equals_the_rebuilt_one(finished, monkeypatch):
    """Issue 25: the report written at the end of a study is the one `synthequiv report RUN`
    gives afterwards — byte-equal report.md, the same figures (the analyses' feature maps and
    closest pairs included: with a relative run dir they were left out)."""
    from synthequiv.orchestration.study import rebuild_report

    _, run_dir, out = finished
    first = json.loads((run_dir / "summary.json").read_text())["figures"]
    monkeypatch.chdir(run_dir.parents[1])
    rebuild_report(Path("runs") / "tiny")
    again = json.loads((run_dir / "summary.json").read_text())["figures"]
    assert (run_dir / "report.md").read_text() == out["report_md"]
    assert first == again
    sets = json.loads((run_dir / "analysis.json").read_text())["sets"]
    assert len(sets) == 2 * 2 - 1 and all(  # closed at 5 and 10, one shared open set
        f"analysis_{s}_{kind}" in first for s in sets for kind in ("maps", "nearest"))
    assert out["report_md"].count("![") == len(first)  # every figure embedded


def test_report_and_summary(finished):
    cfg, run_dir, out = finished
    for name in ("report.html", "report.md", "summary.json", "config.yaml"):
        assert (run_dir / name).stat().st_size > 0, name
    summary = json.loads((run_dir / "summary.json").read_text())
    for key in ("headline", "recommendation", "accuracy", "equivalence", "budget", "figures"):
        assert key in summary, key
    assert summary["headline"] == out["headline"]
    for rel in summary["figures"].values():
        assert (run_dir / rel).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["equivalence"]["arms"]) == {"closed", "open"}
    html = (run_dir / "report.html").read_text()
    assert "95 % CI" in html and "accuracy.png" in html


def test_every_cell_recorded_once(finished):
    cfg, run_dir, _ = finished
    rows = table_rows(run_dir)
    # 2 replicates × 2 base sizes × (2 real + 2 closed + 2 open amounts × 2 seeds + the
    # baseline × 6 seeds: grid.base_seed_factor 3)
    assert len(rows) == 2 * 2 * ((2 + 2 + 2) * 2 + 6)
    assert len({r[0] for r in rows}) == len(rows)
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        seeds = dict(db.execute("SELECT n_add, GROUP_CONCAT(DISTINCT seed) FROM cells "
                                "GROUP BY n_add"))
    assert sorted(map(int, seeds[0].split(","))) == [0, 1, 2, 3, 4, 5]
    assert all(sorted(map(int, v.split(","))) == [0, 1] for k, v in seeds.items() if k)
    assert all(0.0 <= r[5] <= 1.0 for r in rows)


def test_each_replicate_trains_its_own_generators_on_its_own_base_sets(finished):
    from synthequiv.orchestration.study import study_splits

    cfg, run_dir, _ = finished
    ds, _ = load_inputs(cfg)
    seen = {json.loads(p.read_text())["name"]: json.loads(p.read_text())
            for p in run_dir.glob("generators/*/trained_on.json")}
    assert len(seen) == 2 * (len(cfg.splits.base_per_class) + 1)
    for r in range(2):
        sp = study_splits(cfg, ds, r)
        for n in cfg.splits.base_per_class:
            info = seen[f"closed-n{n}-r{r}"]
            assert info["train_digest"] == tensor_digest(*sp.base(n))
            assert info["n_images"] == n * 10
        pool = sp.pool_indices()
        assert seen[f"open-pool-r{r}"]["train_digest"] == tensor_digest(
            sp.dataset.images[pool], sp.dataset.labels[pool])
    # different draws: the base sets of the two replicates are not the same images
    assert seen["closed-n5-r0"]["train_digest"] != seen["closed-n5-r1"]["train_digest"]


def test_each_replicate_tests_on_every_image_outside_its_base_sets_and_reserve(finished):
    """splits.test_per_class: all (default): digits has 1797 images; B(10) + R(20) per class
    leave 1497 for each replicate's test set, stated in the rows, summary and report."""
    _, run_dir, _ = finished
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        sizes = set(db.execute("SELECT replicate, n_test FROM cells"))
    assert sizes == {(0, 1497), (1, 1497)}
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test_images"]["per_replicate"] == {"0": 1497, "1": 1497}
    assert "Test set: 1497 images per replicate (2 replicate(s))" in (
        run_dir / "report.md").read_text()


def test_rows_carry_their_replicate(finished):
    import sqlite3 as sq

    _, run_dir, _ = finished
    with sq.connect(run_dir / "results.sqlite") as db:
        counts = dict(db.execute("SELECT replicate, COUNT(*) FROM cells GROUP BY replicate"))
    assert counts == {0: 36, 1: 36}


def _count_training(monkeypatch) -> dict:
    import synthequiv.classification.classifier as clf
    import synthequiv.generation.distributed as dist

    calls = {"classifier": 0, "generator": 0}
    real_clf, real_gen = clf.train_classifier, dist.train_distributed

    def counted_clf(*a, **k):
        calls["classifier"] += 1
        return real_clf(*a, **k)

    def counted_gen(*a, **k):
        calls["generator"] += 1
        return real_gen(*a, **k)

    monkeypatch.setattr(clf, "train_classifier", counted_clf)
    monkeypatch.setattr(dist, "train_distributed", counted_gen)
    return calls


def test_rerun_skips_everything(finished, monkeypatch):
    cfg, run_dir, _ = finished
    before = table_rows(run_dir)
    mtimes = {p: p.stat().st_mtime_ns for p in run_dir.glob("generators/*/checkpoint.pt")}
    calls = _count_training(monkeypatch)
    run_study(cfg, run_dir, progress=False)
    assert calls == {"classifier": 0, "generator": 0}
    assert table_rows(run_dir) == before
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes  # no generator retrained


def test_resume_after_lost_cells_equals_uninterrupted(finished, tmp_path, monkeypatch):
    cfg, run_dir, _ = finished
    import shutil

    copy = tmp_path / "resumed"
    shutil.copytree(run_dir, copy)
    with sqlite3.connect(copy / "results.sqlite") as db:  # as if killed after 5 cells
        keep = [k for (k,) in db.execute("SELECT key FROM cells ORDER BY key LIMIT 5")]
        db.execute(f"DELETE FROM cells WHERE key NOT IN ({','.join('?' * len(keep))})", keep)
    calls = _count_training(monkeypatch)
    run_study(cfg, copy, progress=False)
    assert calls == {"classifier": len(table_rows(run_dir)) - 5, "generator": 0}
    assert table_rows(copy) == table_rows(run_dir)


def test_lost_samples_of_every_replicate_are_redrawn_in_one_pass(finished, tmp_path,
                                                                 monkeypatch):
    """Samples lost after training (killed while sampling): one executor pass redraws every
    replicate's sets, each with its replicate's seed, bit-identical to the first run's."""
    import shutil

    import numpy as np

    import synthequiv.runtime.executor as ex

    cfg, run_dir, _ = finished
    copy = tmp_path / "resampled"
    shutil.copytree(run_dir, copy)
    lost = sorted(p.name for p in copy.glob("samples/*.npz"))
    for name in lost:
        (copy / "samples" / name).unlink()
    passes, real_map = [], ex.map_tasks

    def counted(fn, items, shared, cfg, kind="cell"):
        items = list(items)
        if kind == "sample":
            passes.append(sorted({t.path.name for t, _, _ in items}))
        return real_map(fn, items, shared, cfg, kind)

    monkeypatch.setattr(ex, "map_tasks", counted)
    calls = _count_training(monkeypatch)
    run_study(cfg, copy, progress=False)
    assert calls["generator"] == 0
    assert passes == [lost] and len(lost) == 3 * cfg.grid.replicates  # closed ×2, open
    assert {n.split("-")[-2] for n in lost} == {"r0", "r1"}
    for name in lost:
        a, b = (np.load(d / "samples" / name) for d in (run_dir, copy))
        np.testing.assert_array_equal(a["images"], b["images"])
    assert table_rows(copy) == table_rows(run_dir)


def test_a_failing_sampling_pass_keeps_the_sets_it_finished(finished, tmp_path, monkeypatch):
    """Each set is saved as soon as its last shard lands: a pass that fails on replicate 1's
    first set keeps replicate 0's files (a rerun samples only the rest)."""
    import shutil

    import synthequiv.generation.sampling as sampling

    cfg, run_dir, _ = finished
    copy = tmp_path / "failing"
    shutil.copytree(run_dir, copy)
    for p in copy.glob("samples/*"):
        p.unlink()
    real = sampling.sample_images

    def failing(*a, description="", **k):
        if "-r1" in description:
            raise RuntimeError("sampling died")
        return real(*a, description=description, **k)

    monkeypatch.setattr(sampling, "sample_images", failing)
    with pytest.raises(RuntimeError, match="sampling died"):
        run_study(cfg, copy, progress=False)
    kept = sorted(p.name for p in copy.glob("samples/*.npz"))
    assert kept == sorted(p.name for p in run_dir.glob("samples/*-r0-*.npz")) and len(kept) == 3


def test_changed_classifier_config_does_not_reuse_cells(finished, tmp_path):
    cfg, run_dir, _ = finished
    import shutil

    copy = tmp_path / "changed"
    shutil.copytree(run_dir, copy)
    cfg2 = tiny_cfg("classifier.train_steps=31")
    run_study(cfg2, copy, progress=False)
    rows = table_rows(copy)
    assert len(rows) == 2 * len(table_rows(run_dir))  # old rows kept, new ones added
    summary = json.loads((copy / "summary.json").read_text())
    assert summary["n_cells"] == len(table_rows(run_dir))


def test_too_large_real_arm_is_refused_before_training(tmp_path):
    cfg = tiny_cfg("grid.real_add_per_class=[500]")
    with pytest.raises(SynthequivError, match="class '0'"):
        run_study(cfg, tmp_path / "x", progress=False)
    assert not (tmp_path / "x" / "generators").exists()


def test_report_numbers_equal_a_recomputation_from_the_results_table(finished):
    """summary.json's equivalence block, headline and the report's tables are what the rows in
    results.sqlite give when the statistics are run again from scratch."""
    from synthequiv.reporting.findings import findings
    from synthequiv.reporting.power import report_power
    from synthequiv.reporting.report import mark_infinities
    from synthequiv.stats.equivalence import analyse
    from synthequiv.utils import to_jsonable

    cfg, run_dir, _ = finished
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM cells")]
    again = analyse(rows, cfg.equivalence)
    summary = json.loads((run_dir / "summary.json").read_text())
    # open interval ends are "inf" in summary.json, not estimable ones null
    assert summary["equivalence"] == json.loads(json.dumps(to_jsonable(mark_infinities(again))))
    headline, lines = findings(cfg, again)
    # the power section (reporting.power.report_power), from the rows and the run's timings;
    # when nothing is significant its resolving sentence ends the headline and the findings
    power = report_power(rows, cfg, again, summary["run"]["timings"], run_dir)
    assert summary["power"] == json.loads(json.dumps(to_jsonable(mark_infinities(power))))
    if power.get("resolve_text"):
        headline, lines = f"{headline} {power['resolve_text']}", lines + [power["resolve_text"]]
    assert summary["headline"] == headline and summary["recommendation"] == lines
    md = (run_dir / "report.md").read_text()
    assert headline in md
    for c in again["cells"]:  # every accuracy-table row, as printed
        assert f"| {c['n_base']} | {c['arm']} | {c['n_add']} | {c['mean']:.4f} |" in md
