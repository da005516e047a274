"""Provided arms: bring-your-own synthetic images (npz:/folder:) and a generator trained
earlier flow through a study like generated sets (keys, cells, analyses, report)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from synthequiv import config as C
from synthequiv.generation import provided_entries as PE
from synthequiv.generation.provided import load_provided, provided_sets
from synthequiv.orchestration.grid import Replicate, plan_cells
from synthequiv.orchestration.study import make_replicates, replicate_config, run_study
from synthequiv.utils import SynthequivError
from test_study import TINY as STUDY_TINY

# tests/test_study.py's tiny study, one replicate, no generator trained
# a 50/class hold-out keeps most of synthetic_digits' source images in the pool (the
# memorization reference); with every spare image as test set most would be test images
TINY = [s for s in STUDY_TINY if not s.startswith("grid.replicates")] + [
    "grid.replicates=1", "splits.test_per_class=50", "grid.base_seed_factor=1"]
PER_CLASS = 30  # images per class in the synthetic files (the grid uses the first 20)


def tiny_cfg(*extra: str) -> C.StudyConfig:
    return C.resolve("quick", None, TINY + list(extra))


def synthetic_digits(digits, per_class: int = PER_CLASS, seed: int = 0):
    """'Synthetic' digits: the first per_class pool images of each class, every pixel moved by
    +1..+8 (clamped), so no image equals a real one. uint8 [10·per_class, 1, 8, 8], labels."""
    idx = torch.cat([torch.nonzero(digits.labels == c).flatten()[:per_class] for c in range(10)])
    noise = torch.randint(1, 9, digits.images[idx].shape, generator=torch.Generator()
                          .manual_seed(seed))
    return (digits.images[idx].int() + noise).clamp(0, 255).to(torch.uint8), digits.labels[idx]


def write_npz(path: Path, images: torch.Tensor, labels: torch.Tensor, names) -> Path:
    np.savez(path, images=images.numpy(), labels=labels.numpy(), class_names=np.array(names))
    return path


@pytest.fixture(scope="module")
def byo_study(tmp_path_factory, digits):
    tmp = tmp_path_factory.mktemp("byo")
    x, y = synthetic_digits(digits)
    npz = write_npz(tmp / "sd.npz", x, y, digits.class_names)
    cfg = tiny_cfg("grid.arms=[real]", f'provided.sets=["sd:10=npz:{npz}"]',
                   "analysis.enabled=true", "analysis.max_images=200",
                   "analysis.domain_train_steps=20")
    out = run_study(cfg, tmp / "run", progress=False)
    return cfg, tmp / "run", out, (x, y)


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("entry, kind, expect", [
    ("sd15", "set", "expected ARM"),
    ("sd:x=npz:/a.npz", "set", "base size 'x'"),
    ("sd:0=npz:/a.npz", "set", "base size '0'"),
    ("sd=png:/a", "set", "npz:PATH or folder:PATH"),
    ("sd=npz:", "set", "npz:PATH or folder:PATH"),
    ("real=npz:/a.npz", "set", "real-data reference"),
    ("s-d=npz:/a.npz", "set", "arm 's-d'"),
    ("closed=npz:/a.npz", "set", "closed:N"),
    ("closed:10=", "generator", "expected ARM"),
])
def test_bad_entry_is_one_line_naming_it(entry, kind, expect):
    with pytest.raises(SynthequivError, match=expect) as err:
        PE.parse_provided(entry, kind)
    assert f"provided.{kind}s entry '{entry}'" in str(err.value)
    assert "\n" not in str(err.value)


def test_entries_are_checked_against_base_sizes_and_each_other():
    with pytest.raises(SynthequivError, match="base size 7 is not in"):
        tiny_cfg('provided.sets=["sd:7=npz:/a.npz"]')
    with pytest.raises(SynthequivError, match="already given by 'sd=npz:/a.npz'"):
        tiny_cfg('provided.sets=["sd=npz:/a.npz", "sd:5=folder:/b"]')
    with pytest.raises(SynthequivError, match="already given by 'closed:5=npz:/a.npz'"):
        tiny_cfg('provided.sets=["closed:5=npz:/a.npz"]', 'provided.generators=["closed:5=g"]')
    cfg = tiny_cfg('provided.sets=["sd:10=npz:/a.npz", "open=folder:/b"]',
                   "grid.arms=[real,closed]")
    assert PE.study_arms(cfg) == ("real", "closed", "sd", "open")
    e = PE.parse_provided("sd15:10=folder:/imgs/sd", "set")
    assert (e.arm, e.n_base, e.source) == ("sd15", 10, "folder:/imgs/sd")


# ----------------------------------------------------------------------------- a tiny study


def test_provided_arm_flows_through_a_study(byo_study):
    cfg, run_dir, out, _ = byo_study
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        rows = db.execute("SELECT n_base, arm, n_add, seed FROM cells").fetchall()
    sd = sorted(r for r in rows if r[1] == "sd")
    # sd given for base 10 only: its cells exist there, every amount × seed, nowhere else
    assert sd == [(10, "sd", m, s) for m in (5, 20) for s in (0, 1)]
    assert len(rows) == 2 * (1 + 2) * 2 + len(sd)  # real arm + baselines at both base sizes
    summary = json.loads((run_dir / "summary.json").read_text())
    assert set(summary["equivalence"]["arms"]) == {"sd"}
    assert {g["arm"] for g in summary["equivalence"]["gains"]} == {"real", "sd"}
    md = (run_dir / "report.md").read_text()
    assert "sd-set at 10 images/class" in md and "| 10 | sd | 20 |" in md
    assert "provided sets are fixed across replicates" in md
    assert any("provided sets are fixed" in line for line in summary["recommendation"])
    assert summary["headline"] != "No synthetic arm was run."
    assert (run_dir / "figures" / "equivalence_sd.png").is_file()


def test_the_set_used_is_the_first_m_images_per_class(byo_study):
    from synthequiv.generation.sampling import load_samples

    cfg, run_dir, _, (x, y) = byo_study
    path, = run_dir.glob("samples/sd-provided-n10-*.npz")
    images, labels, meta = load_samples(path)
    m = max(cfg.grid.syn_add_per_class)
    idx = torch.cat([torch.nonzero(y == c).flatten()[:m] for c in range(10)])
    assert torch.equal(images, x[idx]) and torch.equal(labels, y[idx])
    assert meta["source"].startswith("npz:") and meta["key"] in path.name


def test_analyses_run_on_the_provided_set(byo_study):
    _, run_dir, _, _ = byo_study
    sets = json.loads((run_dir / "analysis.json").read_text())["sets"]
    assert list(sets) == ["sd"]
    s = sets["sd"]
    assert s["arm"] == "sd" and s["n_synthetic"] == 200 and s["reference"] == "pool"
    # the "synthetic" images are perturbed pool images: memorization must flag most of them
    assert s["memorization"]["pixel"]["frac_below"] > 0.5


def test_rerun_reuses_every_cell(byo_study, monkeypatch):
    import synthequiv.classification.classifier as clf

    cfg, run_dir, _, _ = byo_study
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: pytest.fail("retrained"))
    run_study(cfg, run_dir, progress=False)


def test_a_changed_file_is_a_new_set_with_new_cell_keys(tmp_path, digits):
    x, y = synthetic_digits(digits)
    npz = write_npz(tmp_path / "sd.npz", x, y, digits.class_names)
    cfg = tiny_cfg(f'provided.sets=["sd=npz:{npz}"]', "grid.arms=[real]")
    splits = make_replicates(cfg, digits)

    def keys():
        synth = provided_sets(cfg.synthetic, cfg.runtime, splits[0], tmp_path / "run", "cpu",
                              False, "-r0", load_provided(cfg, splits[:1]))
        cells = plan_cells(cfg, [Replicate(0, cfg, splits[0], synth)])
        return synth[("sd", 5)].key, {c.key for c in cells if c.arm == "sd"}

    key, cells = keys()
    assert keys() == (key, cells)  # same content: same keys (a rerun resumes)
    x2 = x.clone()
    x2[PER_CLASS - 1] ^= 1  # class 0's 30th image: beyond the 20/class the grid uses
    write_npz(npz, x2, y, digits.class_names)
    assert keys() == (key, cells)  # an image beyond the first 20/class changes nothing
    x2[0, 0, 0, 0] ^= 1  # one pixel of class 0's first image
    write_npz(npz, x2, y, digits.class_names)
    key2, cells2 = keys()
    assert key2 != key and not cells2 & cells and len(cells2) == len(cells)


def test_classes_matched_by_name_and_shape_converted(tmp_path, digits, png):
    """A folder of RGB 16×16 images whose class folders are named in another order of
    appearance: every study class gets the images of its own name, as 1×8×8."""
    colour = {c: (10 * c, 255 - 10 * c, 5 * c) for c in range(10)}
    for c in range(10):
        for j in range(20):
            png(tmp_path / "imgs" / str(c) / f"{j:02d}.png", np.full((16, 16, 3), colour[c]))
    cfg = tiny_cfg(f'provided.sets=["sd=folder:{tmp_path / "imgs"}"]')
    p, = load_provided(cfg, make_replicates(cfg, digits))
    assert p.images.shape == (200, 1, 8, 8) and p.images.dtype == torch.uint8
    for c in range(10):
        r, g, b = colour[c]
        grey = round(0.299 * r + 0.587 * g + 0.114 * b)
        assert (p.images[p.labels == c].int() - grey).abs().max() <= 1, c
    # npz class names in reverse order: labels are renumbered by name
    x, y = synthetic_digits(digits)
    names = [str(9 - k) for k in range(10)]  # file label k is digit 9 - k
    npz = write_npz(tmp_path / "rev.npz", x, 9 - y, names)
    cfg = tiny_cfg(f'provided.sets=["sd=npz:{npz}"]')
    p, = load_provided(cfg, make_replicates(cfg, digits))
    for c in range(10):
        assert torch.equal(p.images[p.labels == c], x[y == c][:20])


# ----------------------------------------------------------------------------- bad inputs (CLI)


def _bad_npz(tmp_path, digits, case) -> Path:
    x, y = synthetic_digits(digits)
    names = list(digits.class_names)
    if case == "missing class":
        keep = y != 9
        x, y, names = x[keep], y[keep], names[:9]
    elif case == "unknown class":
        names[3] = "cat"
    elif case == "too few":
        keep = torch.cat([torch.nonzero(y == c).flatten()[:15 if c == 4 else 30]
                          for c in range(10)])
        x, y = x[keep], y[keep]
    elif case == "wrong shape":
        x = x.repeat(1, 2, 1, 1)  # 2 channels: not an image
    elif case == "test images":
        cfg = tiny_cfg()
        sp = make_replicates(cfg, digits)[0]
        x = torch.cat([x, sp.test_images[:3]])
        y = torch.cat([y, sp.test_labels[:3]])
    return write_npz(tmp_path / "bad.npz", x, y, names)


@pytest.mark.parametrize("case, expect", [
    ("missing class", "class '9' is missing"),
    ("unknown class", "class 'cat' is not a class of the study's data"),
    ("too few", "class '4' has 15 images, fewer than the grid's largest syn_add_per_class (20)"),
    ("wrong shape", "images must be"),
    ("test images", "contains 3 of the study's test images (replicate 0)"),
])
def test_bad_set_is_one_error_line_before_training(cli, tmp_path, digits, case, expect):
    npz = _bad_npz(tmp_path, digits, case)
    sets = [f"--set={s}" for s in TINY + [f'provided.sets=["sd:10=npz:{npz}"]']]
    code, out, err = cli("study", "--runs-dir", tmp_path / "runs", "--name", "x", *sets)
    assert code == 2, (out, err)
    assert err.startswith(f"error: provided.sets entry 'sd:10=npz:{npz}': ") and expect in err
    assert err.count("\n") == 1
    run = tmp_path / "runs" / "x"  # default arms (closed, open): nothing was trained
    assert not (run / "generators").exists() and not (run / "results.sqlite").exists()


# ----------------------------------------------------------------------------- a generator


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory, digits):
    """A tiny generator trained on B(10) of split seed 0, as `generator train` makes one."""
    from synthequiv.generation.generator import train_generator

    cfg = tiny_cfg("generator.train_kimg=0.3", "generator.warmup_kimg=0.1")
    sp = make_replicates(cfg, digits)[0]
    out = tmp_path_factory.mktemp("gen") / "g"
    train_generator(*sp.base(10), 10, cfg.generator, out, "cpu", progress=False)
    return out


def test_generator_is_sampled_per_replicate_with_its_seed(generator_dir, tmp_path, digits):
    from synthequiv.inputs.splits import make_splits

    cfg = tiny_cfg(f'provided.generators=["closed:10={generator_dir}"]')
    sp = make_splits(digits, cfg.splits)
    p, = load_provided(cfg, [sp])
    assert p.trained_on == "trained on B(10) of replicate 0"
    sets = [provided_sets(replicate_config(cfg, r).synthetic, cfg.runtime, sp, tmp_path, "cpu",
                          False, f"-r{r}", [p]) for r in range(2)]
    s0, s1 = sets[0][("closed", 10)], sets[1][("closed", 10)]
    assert set(sets[0]) == {("closed", 10)} and s0.generator_dir == generator_dir
    assert s0.key != s1.key and not torch.equal(s0.images, s1.images)  # new seed, new images
    assert s0.images.shape == (200, 1, 8, 8)
    assert torch.equal(s0.labels, torch.arange(10).repeat_interleave(20))
    again = provided_sets(cfg.synthetic, cfg.runtime, sp, tmp_path, "cpu", False, "-r0",
                          [p])[("closed", 10)]
    assert again.key == s0.key and torch.equal(again.images, s0.images)  # reused from file


def test_generator_whose_data_holds_a_test_image_is_refused(generator_dir, digits):
    """Digits has no official test split: replicate 1's hold-out can hold images of replicate
    0's B(10), which this generator saw."""
    cfg = tiny_cfg(f'provided.generators=["closed:10={generator_dir}"]', "grid.replicates=3")
    with pytest.raises(SynthequivError, match=r"trained on B\(10\) of replicate 0, which holds "
                                              r"\d+ of replicate [12]'s test images"):
        load_provided(cfg, make_replicates(cfg, digits))


@pytest.mark.parametrize("field, value, expect", [
    ("num_classes", 7, "the generator has 7 classes, the study's data 10"),
    ("image_shape", [1, 16, 16], "makes 1×16×16 images, the study's data is 1×8×8"),
    ("finished", False, "has not finished training"),
])
def test_generator_that_does_not_fit_is_refused(generator_dir, tmp_path, digits, field, value,
                                                expect):
    state = torch.load(generator_dir / "checkpoint.pt", weights_only=True)
    state[field] = value
    (tmp_path / "g").mkdir()
    torch.save(state, tmp_path / "g" / "checkpoint.pt")
    cfg = tiny_cfg(f'provided.generators=["closed:10={tmp_path / "g"}"]')
    with pytest.raises(SynthequivError, match=expect) as err:
        load_provided(cfg, make_replicates(cfg, digits))
    assert str(err.value).startswith(f"provided.generators entry 'closed:10={tmp_path / 'g'}'")


def test_generator_arm_flows_through_a_study(generator_dir, tmp_path, monkeypatch):
    import synthequiv.runtime.executor as ex

    cfg = tiny_cfg("splits.base_per_class=[10]", "grid.arms=[real]",
                   f'provided.generators=["closed:10={generator_dir}"]')
    passes, real_map = [], ex.map_tasks

    def counted(fn, items, shared, cfg, kind="cell"):
        items = list(items)
        if kind == "sample":
            passes.append([(t.name, t.resolution) for t, _, _ in items])
        return real_map(fn, items, shared, cfg, kind)

    monkeypatch.setattr(ex, "map_tasks", counted)
    out = run_study(cfg, tmp_path / "run", progress=False)
    # sampled in the study's one pass with its checkpoint's resolution (shards align to it)
    assert passes == [[("closed-generator-n10-r0", 8)]]
    with sqlite3.connect(tmp_path / "run" / "results.sqlite") as db:
        arms = dict(db.execute("SELECT arm, COUNT(*) FROM cells GROUP BY arm"))
    assert arms == {"real": 2 * 3, "closed": 2 * 2}
    assert "closed" in out["summary"]["equivalence"]["arms"]
    assert any("sampled with a new seed in every replicate" in line
               for line in out["summary"]["recommendation"])
    assert not (tmp_path / "run" / "generators").exists()  # nothing trained by the study


@pytest.mark.parametrize("lever", ["grid.filters=[0.5]", "grid.guidance=[2.0]",
                                   "grid.sampler_steps=[4]"])
def test_levers_on_an_arm_given_as_images_are_refused(lever):
    """Guidance/step variants of a provided closed set were the plain set relabelled (same
    accuracies, reported as levers); a filter's pool repeated the set's images (800 unique of
    1,600). Both need the arm's generator: refused before any work."""
    with pytest.raises(SynthequivError, match="need its generator"):
        C.validate(tiny_cfg('provided.sets=["closed:5=npz:/a.npz"]', lever))
    C.validate(tiny_cfg('provided.sets=["closed:5=npz:/a.npz"]', lever,
                        "grid.lever_arms=[open]"))  # levers on another arm: fine
