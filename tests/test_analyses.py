"""Analyses: feature metrics against analytic values, domain gap and overlap on digits,
memorization of planted copies, and a tiny cached analyse_study with its report section."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import torch

from synthequiv.classification.classifier import ClassifierConfig, train_classifier
from synthequiv.generation.synthetic import SyntheticSet
from synthequiv.inputs.data import DataConfig, load_dataset
from synthequiv.inputs.splits import SplitConfig, make_splits
from synthequiv.measures import analyses as A
from synthequiv.reporting.analysis_report import report_section
from synthequiv.utils import SynthequivError

PNG = b"\x89PNG\r\n\x1a\n"
FAST = ClassifierConfig(train_steps=40)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # 8×8 images in batches of 128: a second intra-op thread only adds overhead, and on a
    # shared CPU it makes every optimizer step many times slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- feature metrics


def test_frechet_distance_matches_gaussian_formula():
    rng = np.random.default_rng(0)
    d, n = 4, 40_000
    mu1, mu2 = np.zeros(d), np.array([1.0, -0.5, 0.0, 2.0])
    l1, l2 = rng.normal(size=(d, d)), rng.normal(size=(d, d))
    s1, s2 = l1 @ l1.T / d + 0.1 * np.eye(d), l2 @ l2.T / d + 0.1 * np.eye(d)
    x = rng.multivariate_normal(mu1, s1, n)
    y = rng.multivariate_normal(mu2, s2, n)
    exact = ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    assert A.frechet_distance(x, y) == pytest.approx(exact, rel=0.03)
    same = rng.multivariate_normal(mu1, s1, n)
    assert A.frechet_distance(x, same) < 0.01 * exact


def _gaussian_poly_mmd2(mu: np.ndarray) -> float:
    """Population MMD² of k(x,y) = (x·y/d + 1)³ between N(0, I) and N(μ, I).

    E k(x, y) = E(x·y)³/d³ + 3 E(x·y)²/d² + 3 E(x·y)/d + 1 for independent x, y, and
    E(x·y)^j = <M_j(x), M_j(y)> with M_j the j-th moment tensor, so
    MMD² = ‖ΔM3‖²/d³ + 3‖ΔM2‖²/d² + 3‖ΔM1‖²/d.
    """
    d, eye = len(mu), np.eye(len(mu))
    m3 = (np.einsum("i,j,k->ijk", mu, mu, mu) + np.einsum("i,jk->ijk", mu, eye)
          + np.einsum("j,ik->ijk", mu, eye) + np.einsum("k,ij->ijk", mu, eye))  # M3(0) = 0
    m2 = np.outer(mu, mu)  # M2(μ) − M2(0) = μμᵀ
    return (m3 ** 2).sum() / d ** 3 + 3 * (m2 ** 2).sum() / d ** 2 + 3 * (mu ** 2).sum() / d


def test_kid_zero_for_same_distribution_and_analytic_for_mean_shift():
    # one unbiased MMD² over all 2000 rows: its spread over data draws is ≈ 8 % of the value at
    # shift 0.5 and ≈ 5 % at 1.0 (measured), so 20 % is a 2.5–4 σ tolerance
    rng = np.random.default_rng(1)
    d, n = 3, 2000
    x = rng.normal(size=(n, d))
    same, _ = A.kid(x, rng.normal(size=(n, d)), subsets=1, subset_size=n)
    assert abs(same) < 0.01
    values = []
    for shift in (0.5, 1.0, 1.5):
        mu = np.array([shift, 0.0, 0.0])
        est, _ = A.kid(x, rng.normal(size=(n, d)) + mu, subsets=1, subset_size=n)
        assert est == pytest.approx(_gaussian_poly_mmd2(mu), rel=0.2), shift
        values.append(est)
    assert values[0] < values[1] < values[2]
    mean, std = A.kid(x, x + 1.0, subsets=20, subset_size=200, seed=3)
    assert std > 0 and mean > 5 * std


def test_prdc_identical_disjoint_and_half_covered():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 8))
    same = A.prdc(real, real.copy(), k=5)
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    assert same["density"] == pytest.approx(6 / 5)  # each point: its own ball + k neighbours'
    fresh = A.prdc(real, rng.normal(size=(400, 8)), k=5)  # same distribution, new draw
    assert fresh["density"] == pytest.approx(1.0, abs=0.2) and fresh["coverage"] > 0.8
    far = A.prdc(real, rng.normal(size=(400, 8)) + 100.0, k=5)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # real: two far clusters; fake: only one of them → precise but half the recall/coverage
    two = np.concatenate([rng.normal(size=(300, 2)), rng.normal(size=(300, 2)) + 50.0])
    one = rng.normal(size=(300, 2))
    half = A.prdc(two, one, k=5)
    assert half["precision"] > 0.9
    assert half["recall"] == pytest.approx(0.5, abs=0.06)
    assert half["coverage"] == pytest.approx(0.5, abs=0.06)


def test_feature_metrics_reject_bad_input():
    with pytest.raises(SynthequivError, match="feature dims differ"):
        A.frechet_distance(np.zeros((5, 3)), np.zeros((5, 4)))
    with pytest.raises(SynthequivError, match="more than k"):
        A.prdc(np.zeros((4, 2)), np.zeros((10, 2)), k=5)


def test_split_halves_are_stratified_disjoint_and_shuffled():
    labels = torch.arange(10).repeat_interleave(50)  # sorted by class
    a, b = A.split_halves(labels, seed=0)
    assert len(a) == len(b) == 250 and not set(a.tolist()) & set(b.tolist())
    assert (labels[a].bincount(minlength=10) == 25).all()
    assert len(torch.unique(labels[a[:50]])) >= 8  # a prefix is a random subset, not class 0


# ----------------------------------------------------------------------------- digits


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset(DataConfig())
    sp = make_splits(ds, SplitConfig(base_per_class=(10,), test_per_class=50, seed=0))
    pool = sp.pool_indices()
    half_a, half_b = A.split_halves(ds.labels[pool], seed=0)
    px, py = ds.images[pool], ds.labels[pool]
    extractor = train_classifier(px, py, 10, ClassifierConfig(train_steps=60), 0)
    return {"sp": sp, "p1": (px[half_a], py[half_a]), "p2": (px[half_b], py[half_b]),
            "extractor": extractor}


def test_domain_gap_and_overlap_real_vs_real_and_noise(digits, tmp_path):
    sp, ext = digits["sp"], digits["extractor"]
    (x1, y1), (x2, y2) = digits["p1"], digits["p2"]
    kw = {"ccfg": FAST, "domain_steps": 60, "max_images": 400, "device": "cpu",
          "real_model": ext}
    base = A.real_baseline(ext, sp.test_images, sp.test_labels, ccfg=FAST, domain_steps=60,
                           max_images=400)
    real = A.compare_sets(x1, y1, x2, y2, x1, sp.test_images, sp.test_labels, ext, 10,
                          figdir=tmp_path, name="real", **kw)
    noise_x = torch.randint(0, 256, x2.shape, generator=torch.Generator().manual_seed(0),
                            dtype=torch.uint8)
    noise = A.compare_sets(x1, y1, noise_x, y2, x1, sp.test_images, sp.test_labels, ext, 10,
                           **kw)
    assert abs(real["domain"]["accuracy"] - 0.5) <= 0.12
    assert noise["domain"]["accuracy"] >= 0.95 and noise["domain"]["auc"] >= 0.97
    fd0 = base["overlap"]["fd"]
    assert real["overlap"]["fd"] < 2.0 * fd0
    assert noise["overlap"]["fd"] > 10.0 * fd0
    assert real["overlap"]["coverage"] > 0.8 and noise["overlap"]["coverage"] < 0.2
    assert real["cas"]["accuracy"] > 0.8 and noise["cas"]["accuracy"] < 0.3
    assert real["fidelity"]["accuracy"] > 0.8 and len(real["fidelity"]["per_class"]) == 10
    for path in real["figures"].values():
        assert Path(path).read_bytes()[:8] == PNG


def test_memorization_flags_planted_copies(digits, tmp_path):
    sp = digits["sp"]
    train_x, _ = digits["p1"]
    held_out, _ = digits["p2"]
    g = torch.Generator().manual_seed(0)
    copies = train_x[:20]
    noise = torch.randint(0, 256, (30, *train_x.shape[1:]), generator=g, dtype=torch.uint8)
    fake = torch.cat([copies, noise, held_out[:200]])

    def pix(x):
        return x.reshape(len(x), -1).float().numpy()

    out = A.memorization(fake, train_x, sp.test_images, 0.05,
                         feats=(pix(fake), pix(train_x), pix(sp.test_images)),
                         out_png=tmp_path / "nearest.png")
    flagged = set(out["flagged_idx"])
    assert set(range(20)) <= flagged
    assert not flagged & set(range(20, 50))  # noise is never near a training image
    assert len(flagged - set(range(50))) / 200 < 0.2  # held-out real: ≈ 5 % by construction
    assert out["pixel"]["exact_copies"] == 20 and out["feature"]["exact_copies"] == 20
    assert out["flagged_idx"][:20] == sorted(out["flagged_idx"][:20])  # copies first (d = 0)
    assert (tmp_path / "nearest.png").read_bytes()[:8] == PNG


# ----------------------------------------------------------------------------- study driver


def _noisy(x, y, per_class: int, noise: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    idx = torch.cat([torch.nonzero(y == c).flatten()[torch.randint(
        0, int((y == c).sum()), (per_class,), generator=g)] for c in range(10)])
    out = x[idx].float() + noise * torch.randn(x[idx].shape, generator=g)
    return out.clamp(0, 255).round().to(torch.uint8), y[idx]


def _study_inputs(*extra):
    from synthequiv import config as C

    # a 50/class hold-out: the pool (open-set reference) is more than B(10)
    cfg = C.resolve("quick", None, ["splits.base_per_class=[10]", "splits.test_per_class=50",
                                    "classifier.train_steps=40",
                                    "analysis.domain_train_steps=40", "analysis.max_images=300",
                                    "device=cpu", *extra])
    ds = load_dataset(cfg.data)
    sp = make_splits(ds, cfg.splits)
    closed = SyntheticSet("c10", "closed", *_noisy(*sp.base(10), 20, 20.0, 0), Path("c.npz"), None)
    pool = sp.pool_indices()
    opened = SyntheticSet("open", "open", *_noisy(ds.images[pool], ds.labels[pool], 20, 40.0, 1),
                          Path("o.npz"), None)
    return cfg, sp, {("closed", 10): closed, ("open", 10): opened}


def _analyse_study(cfg, run_dir, sp, synth, device, progress=True) -> dict:
    """analyse_study with the study's stage configs, as orchestration/study.py calls it."""
    return A.analyse_study(cfg.analysis, cfg.classifier, run_dir, sp, synth, device, progress,
                           data=cfg.data, splits=cfg.splits, cell_group=cfg.cell_group)


def test_analyse_study_writes_cached_analysis_and_report(tmp_path, monkeypatch):
    from synthequiv.classification import batched

    cfg, sp, synth = _study_inputs()
    out = _analyse_study(cfg, tmp_path, sp, synth, "cpu", progress=False)
    assert set(out["sets"]) == {"closed-n10", "open"}
    stored = json.loads((tmp_path / "analysis.json").read_text())
    assert stored["key"] == out["key"] and stored["sets"].keys() == out["sets"].keys()
    assert len(out["figures"]) == 4
    for path in out["figures"].values():
        assert Path(path).read_bytes()[:8] == PNG and Path(path).parent == tmp_path / "figures"
    assert isinstance(out["paper_finding_f4"]["holds"], bool)
    assert out["sets"]["closed-n10"]["memorization"]["pixel"]["frac_below"] > 0.5  # noisy copies

    def boom(*a, **k):
        raise AssertionError("retrained although analysis.json matches")

    monkeypatch.setattr(A, "train_classifier", boom)
    monkeypatch.setattr(batched, "train_many", boom)
    again = _analyse_study(cfg, tmp_path, sp, synth, "cpu", progress=False)
    assert again == out

    md, html = report_section(out)
    auc = f"{out['sets']['closed-n10']['domain']['auc']:.3f}"
    fd = f"{out['baseline']['overlap']['fd']:.3f}"
    for text in (md, html):
        assert "Real vs synthetic" in text and auc in text and fd in text and "closed-n10" in text
    assert md.count("\n|") >= 4 and "<table>" in html


def test_analyses_train_their_classifiers_in_groups_like_cells(tmp_path, monkeypatch):
    """With cell groups (auto on CUDA; forced here on the CPU) the analyses' 7 small trainings
    (extractor, 3 domain classifiers, 2 CAS models, B(10)'s CAS reference) run as 2 batched
    groups, one per class count; the numbers stay those of one-by-one training up to float
    rounding amplified by training (as for cells)."""
    from synthequiv.classification import batched

    cfg, sp, synth = _study_inputs()
    alone = _analyse_study(cfg, tmp_path / "alone", sp, synth, "cpu", progress=False)
    groups = []
    real = batched.train_classifiers
    monkeypatch.setattr(batched, "train_classifiers",
                        lambda d, seeds, k, *a, **kw: groups.append((len(d), k))
                        or real(d, seeds, k, *a, **kw))
    cfg, sp, synth = _study_inputs("cell_group=8")
    grouped = _analyse_study(cfg, tmp_path / "grouped", sp, synth, "cpu", progress=False)
    assert sorted(groups) == [(3, 2), (4, 10)]
    assert grouped["key"] == alone["key"]  # a runtime knob: the same analysis
    for name, s in alone["sets"].items():
        g = grouped["sets"][name]
        assert abs(g["domain"]["auc"] - s["domain"]["auc"]) < 0.1
        assert abs(g["cas"]["accuracy"] - s["cas"]["accuracy"]) < 0.05
        assert g["overlap"]["fd"] == pytest.approx(s["overlap"]["fd"], rel=0.2)


# ----------------------------------------------------------------------------- small / bad sets


def test_feature_metrics_too_few_images_are_nan_with_a_reason():
    rng = np.random.default_rng(0)
    few = A.feature_metrics(rng.normal(size=(4, 3)), rng.normal(size=(3, 3)))
    assert np.isfinite(few["fd"]) and np.isfinite(few["kid"])
    for key in ("precision", "recall", "density", "coverage"):
        assert np.isnan(few[key]), key
    assert "needs more than k=5 images per set" in few["unavailable"]["prdc"]
    one = A.feature_metrics(rng.normal(size=(4, 3)), rng.normal(size=(1, 3)))
    assert np.isnan(one["fd"]) and np.isnan(one["kid"]) and "≥ 2" in one["unavailable"]["fd"]
    full = A.feature_metrics(rng.normal(size=(20, 3)), rng.normal(size=(20, 3)))
    assert full["unavailable"] == {} and np.isfinite(full["coverage"])


def test_f4_verdict_without_overlap_says_so():
    nan = float("nan")
    sets = {"s": {"domain": {"auc": 0.95}, "overlap": {
        "fd": 1.0, "precision": nan, "coverage": nan,
        "unavailable": {"prdc": "needs more than k=5 images per set, got 3 and 3"}}}}
    v = A.f4_verdict(sets, None)
    assert v["holds"] is None and v["per_set"]["s"]["overlapping"] is None
    assert "nan" not in v["text"] and "needs more than k=5 images per set" in v["text"]


def test_analyse_study_with_tiny_sets_reports_prdc_as_unavailable(tmp_path):
    cfg, sp, synth = _study_inputs("splits.test_per_class=2", "analysis.max_images=4")
    out = _analyse_study(cfg, tmp_path, sp, synth, "cpu", progress=False)
    for r in [out["baseline"], *out["sets"].values()]:
        ov = r["overlap"]
        assert ov["precision"] is None and ov["coverage"] is None and ov["fd"] is not None
        assert "needs more than k=5 images per set" in ov["unavailable"]["prdc"]
    stored = json.loads((tmp_path / "analysis.json").read_text())
    assert stored["sets"]["open"]["overlap"]["unavailable"] == \
        out["sets"]["open"]["overlap"]["unavailable"]
    md, _ = report_section(out)
    assert "closed-n10" in md and "Not computed (too few images): PRDC needs more than k=5" in md
    assert all(v["overlapping"] is None for v in out["paper_finding_f4"]["per_set"].values())


def _npz(path: Path, x, y) -> Path:
    np.savez(path, images=x.numpy(), labels=np.asarray(y))
    return path


@pytest.fixture
def no_training(monkeypatch):
    from synthequiv.classification import batched

    def boom(*a, **k):
        raise AssertionError("trained before refusing the input")

    monkeypatch.setattr(batched, "train_many", boom)
    monkeypatch.setattr(A, "train_classifier", boom)


@pytest.fixture(scope="module")
def digit_sets():
    ds = load_dataset(DataConfig())
    return ds.images[:400], ds.labels[:400]


@pytest.mark.parametrize("case, match", [
    ("shifted", "synthetic labels 20–29 are not classes of the real set"),
    ("superset", "synthetic labels 5–9 are not classes of the real set"),
    ("one_real_class", "the real set holds 1 class"),
    ("one_fake_class", "the synthetic set holds 1 class"),
])
def test_analyse_dirs_refuses_mismatched_classes_before_training(
        tmp_path, no_training, digit_sets, case, match):
    x, y = digit_sets
    rx, ry, fx, fy = x, y, x[:200], y[:200]
    if case == "shifted":
        fy = fy + 20
    elif case == "superset":
        keep = y < 5
        rx, ry = x[keep], y[keep]
    elif case == "one_real_class":
        rx, ry = x[y == 3], y[y == 3]
    else:
        fx, fy = x[y == 3], y[y == 3]
    real, fake = _npz(tmp_path / "r.npz", rx, ry), _npz(tmp_path / "f.npz", fx, fy)
    with pytest.raises(SynthequivError, match=match):
        A.analyse_dirs(real, fake, tmp_path / "out", ccfg=FAST, domain_train_steps=20)


@pytest.mark.parametrize("n_real, max_images, match", [
    (4, 1000, "the real set needs at least 14 images"),
    (30, 1000, "the real set needs at least 70 images"),
    (400, 0, "--max-images must be ≥ 2"),
    (400, 1, "--max-images must be ≥ 2"),
])
def test_analyse_dirs_names_the_actual_problem(tmp_path, no_training, digit_sets, n_real,
                                               max_images, match):
    x, y = digit_sets
    rx, ry = x[:n_real], y[:n_real]
    if n_real == 4:
        rx, ry = x[:4], torch.tensor([0, 1, 0, 1])
    fx, fy = x[:100], y[:100]
    if n_real == 4:
        fx, fy = fx[fy < 2], fy[fy < 2]
    real, fake = _npz(tmp_path / "r.npz", rx, ry), _npz(tmp_path / "f.npz", fx, fy)
    with pytest.raises(SynthequivError, match=match):
        A.analyse_dirs(real, fake, tmp_path / "out", max_images=max_images, ccfg=FAST,
                       domain_train_steps=20)


def test_analyse_dirs_small_cap_degrades_and_counts_the_real_classes(tmp_path, digit_sets):
    x, y = digit_sets
    real = _npz(tmp_path / "r.npz", x, y)
    fake = _npz(tmp_path / "f.npz", x[:100][y[:100] < 5], y[:100][y[:100] < 5])  # a subset
    out = A.analyse_dirs(real, fake, tmp_path / "out", max_images=5, ccfg=FAST,
                         domain_train_steps=20)
    s = out["sets"]["synthetic"]
    assert s["overlap"]["precision"] is None and "k=5" in s["overlap"]["unavailable"]["prdc"]
    assert len(s["fidelity"]["per_class"]) == len(out["class_names"]) == 10


def test_analyse_study_refuses_a_test_split_without_a_reference_half(tmp_path, no_training):
    cfg, sp, synth = _study_inputs("splits.test_per_class=1")
    with pytest.raises(SynthequivError, match="set splits.test_per_class ≥ 2"):
        _analyse_study(cfg, tmp_path, sp, synth, "cpu", progress=False)
