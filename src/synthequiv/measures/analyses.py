"""Analyses stage: how do synthetic images differ from real ones? (the study driver)

The measures live in features.py (FD, KID, PRDC), domaingap.py (real-vs-synthetic
classifier, "separable yet overlapping"), memorization.py (nearest training images); reporting/analysis_report.py
writes the report section. This module runs them per synthetic set and caches
the result in analysis.json. Its names stay importable from here.

Per synthetic set (one per closed-set generator, one shared open-set set):
  domain        a real-vs-synthetic classifier (2 classes, balanced, 70/30 held-out split):
                accuracy and ROC AUC — can the two be told apart at all?
  overlap       in the feature space of a classifier trained on REAL data only (the paper's
                feature extractor; Inception weights are not available offline): Fréchet
                distance, KID, precision / recall / density / coverage (Naeem et al. 2020)
  cas           classification accuracy score: train on synthetic only, test on real test
  fidelity      the real-trained classifier's agreement with the conditioning labels
  memorization  nearest generator-training image per synthetic image (pixels and features)

Every number sits beside a real-vs-real baseline so it has a scale: the real test split is cut
into two stratified halves A and B; synthetic features are compared with A at |B| images, and
the baseline is B vs A (same sizes, so the finite-sample bias of FD/KID/PRDC is the same).
A metric the set sizes cannot support (PRDC needs more than k images per set) is NaN with its
reason in overlap["unavailable"]; inputs no analysis can use are refused before any training.

Feature-level metrics take numpy [N, D] arrays and are tested against analytic values. The
small classifiers behind them (feature extractor, domain classifiers, CAS models) are trained
first, in batched groups where the study groups cells (`cell_group`; on CUDA by default).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from synthequiv import __version__
from synthequiv.classification.classifier import (
    ClassifierConfig,
    evaluate,
    extract_features,
    predict_proba,
    train_classifier,
)
from synthequiv.inputs.config import SplitConfig
from synthequiv.inputs.sources import DataConfig
from synthequiv.measures.config import AnalysisConfig
from synthequiv.measures.domaingap import _train_domain, domain_gap, f4_verdict
from synthequiv.measures.features import (
    PRDC_K,
    SEED,
    _same_shape,
    _subsample,
    feature_metrics,
    frechet_distance,
    kid,
    prdc,
    split_halves,
)
from synthequiv.measures.memorization import memorization, nearest
from synthequiv.measures.trainings import distinct_sets, halves, trainings
from synthequiv.reporting import figure_pool
from synthequiv.reporting.figures import pca_maps
from synthequiv.utils import SynthequivError, atomic_write_json, check_positive, stable_hash

__all__ = ["analyse_study", "analyse_dirs", "compare_sets", "real_baseline", "read_analysis",
           "frechet_distance", "kid", "prdc", "feature_metrics",
           "memorization", "nearest", "domain_gap", "f4_verdict", "split_halves"]

ANALYSIS_FORMAT = 2  # bump when the contents of analysis.json change: invalidates caches


# ----------------------------------------------------------------------------- one generator


def _per_class(pred: np.ndarray, y: np.ndarray, num_classes: int) -> list[float | None]:
    """Accuracy within each true class (None for a class with no images)."""
    return [float((pred[y == c] == c).mean()) if (y == c).any() else None
            for c in range(num_classes)]


def _predict(model: nn.Module, x: torch.Tensor, device) -> np.ndarray:
    return predict_proba(model, x, device).argmax(1).numpy()


def _cas(fake_x, fake_y, real_x, real_y, test_x, test_y, num_classes, ccfg, seed, device,
         real_model: nn.Module | None, syn: nn.Module | None = None) -> dict:
    """Train on synthetic only, test on real; beside it the same recipe trained on real_x
    (`syn` / `real_model`: already trained, e.g. in a batched group)."""
    if syn is None:
        syn = train_classifier(fake_x, fake_y, num_classes, ccfg, seed, device=device)
    if real_model is None:
        real_model = train_classifier(real_x, real_y, num_classes, ccfg, seed, device=device)
    y = test_y.numpy()
    syn_pred, real_pred = _predict(syn, test_x, device), _predict(real_model, test_x, device)
    syn_eval = evaluate(syn, test_x, test_y, num_classes, device)
    return {"accuracy": float((syn_pred == y).mean()),
            "balanced_accuracy": syn_eval["balanced_accuracy"],
            "per_class": _per_class(syn_pred, y, num_classes),
            "real_accuracy": float((real_pred == y).mean()),
            "real_per_class": _per_class(real_pred, y, num_classes)}


def _fidelity(extractor, fake_x, fake_y, num_classes, device) -> dict:
    pred, y = _predict(extractor, fake_x, device), fake_y.numpy()
    return {"accuracy": float((pred == y).mean()), "per_class": _per_class(pred, y, num_classes)}


def compare_sets(real_x, real_y, fake_x, fake_y, train_x, test_x, test_y,
                 extractor_model: nn.Module, num_classes: int, *,
                 ccfg: ClassifierConfig | None = None, domain_steps: int = 300,
                 max_images: int = 1000, quantile: float = 0.05, seed: int = SEED,
                 device="cpu", figdir: Path | None = None, name: str = "synthetic",
                 arm: str = "closed", real_model: nn.Module | None = None,
                 models: dict | None = None) -> dict:
    """Every analysis of one synthetic set (fake_x, fake_y).

    real_x/real_y: the generator's real reference (B(n), or the pool for open-set) — the
    domain classifier's real side and the CAS reference recipe's training set.
    train_x: the generator's training images (memorization). test_x/test_y: the real test split
    (overlap halves, CAS test, memorization reference). extractor_model: classifier trained on
    real data only. real_model: an already trained classifier on (real_x, real_y) with ccfg.
    models: already trained {"cas", "cas_real"} models and "domain": (its DomainJob, model),
    e.g. from batched groups.
    Returns metrics plus "figures" {figure key: path} (empty without figdir).
    """
    ccfg = ccfg or ClassifierConfig()
    _same_shape(name, real_x, fake_x)
    t0 = time.time()
    out = {"arm": arm, "n_real": len(real_x), "n_synthetic": len(fake_x)}
    models = models or {}
    dom, dom_feats, dom_fake = _train_domain(real_x, fake_x, domain_steps, seed, device, ccfg,
                                             max_images, models.get("domain"))
    out["domain"] = dom
    half_a, half_b = split_halves(test_y, seed)
    m = min(len(half_b), max_images, len(fake_x))
    fake_sub = fake_x[_subsample(len(fake_x), m, seed)]
    ref_f = extract_features(extractor_model, test_x[half_a[:max_images]], device).numpy()
    fake_f = extract_features(extractor_model, fake_sub, device).numpy()
    out["overlap"] = feature_metrics(ref_f, fake_f, seed)
    out["fidelity"] = _fidelity(extractor_model, fake_x, fake_y, num_classes, device)
    out["cas"] = _cas(fake_x, fake_y, real_x, real_y, test_x, test_y, num_classes, ccfg, seed,
                      device, real_model if real_model is not None else models.get("cas_real"),
                      models.get("cas"))
    mem_x = fake_x[_subsample(len(fake_x), max_images, seed + 2)]  # every training image stays
    mem_test = test_x[_subsample(len(test_x), max_images, seed + 3)]
    mem_feats = tuple(extract_features(extractor_model, x, device).numpy()
                      for x in (mem_x, train_x, mem_test))
    mem_png = None if figdir is None else Path(figdir) / f"analysis_{name}_nearest.png"
    out["memorization"] = memorization(mem_x, train_x, mem_test, quantile, mem_feats, mem_png,
                                       device)
    out["memorization"]["flagged_idx"] = out["memorization"]["flagged_idx"][:32]  # keep JSON small
    out["figures"] = {}
    if figdir is not None:
        panels = [(dom_feats, dom_fake, f"domain classifier (AUC {dom['auc']:.2f})"),
                  (np.concatenate([ref_f, fake_f]),
                   np.r_[np.zeros(len(ref_f), bool), np.ones(len(fake_f), bool)],
                   f"real-trained classifier (coverage {_two(out['overlap']['coverage'])})")]
        maps = pca_maps(panels, arm, Path(figdir) / f"analysis_{name}_maps.png")
        out["figures"] = {f"analysis_{name}_maps": str(maps), f"analysis_{name}_nearest":
                          out["memorization"]["figure"]}
    out["wall_s"] = time.time() - t0
    return out


def _two(x: float) -> str:
    return f"{x:.2f}" if math.isfinite(x) else "n/a"


def _check_max_images(what: str, max_images) -> None:
    """The domain classifiers need 2 images per side (1 to train, 1 to score)."""
    if isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) \
            or max_images < 2:
        raise SynthequivError(f"{what} must be ≥ 2 (a domain classifier needs 2 images per "
                              f"side), got {max_images}")


# what a study's test split must give the analyses (run_study checks it before training)
STUDY_REFERENCE_NEED = ("the real test split is too small for the analyses (set "
                        "splits.test_per_class ≥ 2, or analysis.enabled=false)")


def check_reference(test_y: torch.Tensor, need: str) -> None:
    """Half B of the real test split (split_halves) is the real-vs-real reference: its domain
    classifier needs ≥ 2 images. `need`: what to tell the user to give."""
    _, half_b = split_halves(test_y, SEED)
    if len(half_b) < 2:
        raise SynthequivError(f"{need}: half of the real test images ({len(test_y)} here) is "
                              f"the real-vs-real reference, and that half has {len(half_b)} "
                              "image(s), 2 needed")


def real_baseline(extractor_model, test_x, test_y, *, ccfg=None, domain_steps: int = 300,
                  max_images: int = 1000, seed: int = SEED, device="cpu",
                  domain: tuple | None = None) -> dict:
    """Real-vs-real scale: test half B against half A (features) and A vs B (domain;
    `domain` = (its DomainJob, the model trained on it) when already trained)."""
    a, b = halves(test_x, test_y, seed, max_images)
    fa = extract_features(extractor_model, a, device).numpy()
    fb = extract_features(extractor_model, b, device).numpy()
    dom, _, _ = _train_domain(a, b, domain_steps, seed, device, ccfg, max_images, domain)
    return {"what": "real test split, stratified halves A vs B", "overlap": feature_metrics(
        fa, fb, seed), "domain": dom}


# ----------------------------------------------------------------------------- study driver


def _with_paths(analysis: dict, run_dir: Path) -> dict:
    """analysis.json stores figure paths relative to the run dir; callers get run_dir/rel."""
    return {**analysis, "figures": {k: str(run_dir / v) for k, v in analysis["figures"].items()}}


def _write(path: Path, analysis: dict, run_dir: Path) -> dict:
    """Write analysis.json; return what a cached rerun would return (NaN → None, lists)."""
    atomic_write_json(path, analysis)
    return _with_paths(json.loads(path.read_text()), run_dir)


def _cached(path: Path, key: str, run_dir: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if old.get("key") != key or not all((run_dir / v).exists() for v in old["figures"].values()):
        return None
    return _with_paths(old, run_dir)


class ScaledExtractor(nn.Module):
    """A real-trained classifier whose features are centred and divided by one scalar.

    mean [D] and scale are those of the real test features (scale: RMS per-dimension std), so
    features are O(1) around 0: KID's cubic kernel (x·y/D + 1)³ is then not dominated by the
    features' offset and magnitude (raw post-ReLU features gave KID values of ±0.5 with the
    same signal-to-noise), and FD reads in units of the real features' variance. FD is
    translation-invariant; PRDC and the PCA maps are unchanged. Logits are untouched.
    """

    def __init__(self, model: nn.Module, mean: torch.Tensor, scale: float):
        super().__init__()
        self.model, self.scale = model, float(scale)
        self.register_buffer("mean", mean.float().clone())  # [D]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return (self.model.features(x) - self.mean) / self.scale  # [N, D]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)  # [N, K]


def standardized_extractor(model: nn.Module, real_images: torch.Tensor, device
                           ) -> ScaledExtractor:
    f = extract_features(model, real_images, device).double()  # [N, D]
    s = float(f.var(0).mean().sqrt()) if len(f) > 1 else 0.0
    return ScaledExtractor(model, f.mean(0), s if math.isfinite(s) and s > 0 else 1.0)


def _analyse(named: dict, pool: tuple, test: tuple, num_classes: int, ccfg, acfg, figdir: Path,
             device, progress: bool, group: int = 1, trained: dict | None = None) -> dict:
    """Shared by analyse_study and analyse_dirs: extractor, baseline, then every set. Its small
    trainings (feature extractor, domain classifiers, CAS models: trainings.py) are made
    first, `group` at a time where compatible (batched.train_many; 1 = one by one, as on a
    CPU); those in `trained` (key: model, trained by the study's queue) are not."""
    from synthequiv.classification.batched import train_many
    from synthequiv.runtime.progress import progress_bar

    test_x, test_y = test
    steps, max_images = acfg["domain_train_steps"], acfg["max_images"]
    kw = {"ccfg": ccfg, "domain_steps": steps, "max_images": max_images, "seed": SEED,
          "device": device}
    specs, base_job, jobs, same = trainings(named, pool, test, num_classes, ccfg, acfg)
    given = {k: v for k, v in (trained or {}).items() if k in specs}
    todo = [k for k in specs if k not in given]
    with progress_bar("analyses", total=len(specs) + 2 + len(named), enabled=progress) as bar:
        def one_group(n: int) -> None:  # a line per trained group: no silent minutes
            bar.advance(n, f"{n} of {len(specs)} classifiers trained")

        if given:
            bar.advance(len(given), f"{len(given)} of {len(specs)} classifiers trained "
                                    "beside the grid")
        trained = given | dict(zip(todo, train_many([specs[k] for k in todo], group, device,
                                                    one_group)))
        extractor = standardized_extractor(trained["extractor"], test_x, device)
        ext = evaluate(extractor, test_x, test_y, num_classes, device)
        bar.advance(1, f"feature extractor: test accuracy {ext['accuracy']:.3f}")
        baseline = real_baseline(extractor, test_x, test_y,
                                 domain=(base_job, trained["baseline"]), **kw)
        bar.advance(1, "real-vs-real baseline")
        sets, figs = {}, {}
        with figure_pool.collect():  # figures written by workers (if any) while sets go on
            for name, (s, rx, ry, ref) in named.items():
                models = {k: trained[(name, k)] for k in ("cas", "cas_real")
                          if (name, k) in trained}
                models["domain"] = jobs[name], trained[(name, "domain")]
                r = compare_sets(rx, ry, s.images, s.labels, rx, test_x, test_y, extractor,
                                 num_classes, figdir=figdir, name=name, arm=s.arm,
                                 real_model=extractor if same[name] else None, models=models,
                                 **kw)
                figs.update(r.pop("figures"))
                sets[name] = {"reference": ref, **r}
                bar.advance(1, f"{name}: domain AUC {r['domain']['auc']:.2f}")
    extractor_info = {"trained_on": f"{len(pool[0])} real images", "seed": SEED,
                      "feature_scale": extractor.scale,
                      "test_accuracy": ext["accuracy"],
                      "test_per_class": _per_class(_predict(extractor, test_x, device),
                                                   test_y.numpy(), num_classes)}
    return {"extractor": extractor_info, "baseline": baseline, "sets": sets, "figures": figs,
            "paper_finding_f4": f4_verdict(sets, baseline)}


def _analysis_group(cell_group: int, ccfg, shape, device) -> int:
    """Classifiers trained at once in the analyses: the study's cell grouping (`cell_group`,
    auto = 1 on CPU, by architecture on CUDA), as for grid cells."""
    from synthequiv.classification.batched import resolve_group

    return resolve_group(cell_group, ccfg.arch, max(shape[1:]), device)


def _study_inputs(acfg: AnalysisConfig, ccfg: ClassifierConfig, sp, synth: dict, data, splits):
    """(distinct sets, cache key, settings, pool (x, y), test (x, y)) of a study's analyses."""
    named = distinct_sets(sp, synth)
    key = stable_hash("analysis", ANALYSIS_FORMAT, acfg, ccfg, data, sp.dataset.digest, splits,
                      {n: v[0].key for n, v in named.items()})
    settings = {"max_images": acfg.max_images, "domain_train_steps": acfg.domain_train_steps}
    ds, idx = sp.dataset, sp.pool_indices()
    return (named, key, settings, (ds.images[idx], ds.labels[idx]),
            (sp.test_images, sp.test_labels))


def study_trainings(acfg: AnalysisConfig, ccfg: ClassifierConfig, run_dir: Path, sp,
                    synth: dict, *, data: DataConfig, splits: SplitConfig) -> dict:
    """The small trainings analyse_study would make ({key: spec}, trainings.py), for a queue
    to train beforehand; {} when run_dir/analysis.json is current or there is no set."""
    named, key, settings, pool, test = _study_inputs(acfg, ccfg, sp, synth, data, splits)
    if not named or _cached(Path(run_dir) / "analysis.json", key, Path(run_dir)) is not None:
        return {}
    _check_max_images("analysis.max_images", acfg.max_images)
    check_reference(sp.test_labels, STUDY_REFERENCE_NEED)
    return trainings(named, pool, test, sp.dataset.num_classes, ccfg, settings)[0]


def analyse_study(acfg: AnalysisConfig, ccfg: ClassifierConfig, run_dir: Path, sp, synth: dict,
                  device, progress: bool = True, *, data: DataConfig, splits: SplitConfig,
                  cell_group: int = 0, trained: dict | None = None) -> dict:
    """Analyse every distinct synthetic set of a study; cached in run_dir/analysis.json.

    Real reference: B(n) for the closed-set generator of base size n, the pool for open-set.
    data, splits: the configs that made sp (they key the cache); cell_group: not in the key;
    trained: models of study_trainings' specs trained already (by the study's queue).
    Returns {"key", "sets", "baseline", "extractor", "figures" {key: path}, "paper_finding_f4",
    ...}; figure paths are run_dir/figures/…; the JSON file stores them relative to run_dir.
    """
    run_dir = Path(run_dir)
    named, key, settings, pool, test = _study_inputs(acfg, ccfg, sp, synth, data, splits)
    path = run_dir / "analysis.json"
    cached = _cached(path, key, run_dir)
    if cached is not None:
        return cached
    t0 = time.time()
    _check_max_images("analysis.max_images", acfg.max_images)
    ds = sp.dataset
    if named:
        check_reference(sp.test_labels, STUDY_REFERENCE_NEED)
        body = _analyse(named, pool, test, ds.num_classes, ccfg, settings, run_dir / "figures",
                        device, progress, _analysis_group(cell_group, ccfg, ds.shape, device),
                        trained)
    else:
        body = {"extractor": None, "baseline": None, "sets": {}, "figures": {},
                "paper_finding_f4": f4_verdict({}, None)}
    body["figures"] = {k: str(Path(v).relative_to(run_dir)) for k, v in body["figures"].items()}
    analysis = {"key": key, "version": __version__, "class_names": list(ds.class_names),
                "settings": {**settings, "quantile": 0.05, "prdc_k": PRDC_K, "seed": SEED}, **body,
                "wall_s": time.time() - t0}
    return _write(path, analysis, run_dir)


# ----------------------------------------------------------------------------- two .npz sets


@dataclasses.dataclass
class _Set:  # the fields of SyntheticSet that _analyse reads
    images: torch.Tensor
    labels: torch.Tensor
    arm: str = "synthetic"


def _holdout(labels: torch.Tensor, fraction: float, seed: int = SEED) -> torch.Tensor:
    """Boolean mask [N] of a stratified hold-out: ⌊fraction·n_c⌋ (≥ 1) images of each class."""
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in torch.unique(labels).tolist():
        ids = torch.nonzero(labels == c).flatten()
        mask[ids[torch.randperm(len(ids), generator=g)][:max(1, int(fraction * len(ids)))]] = True
    return mask


def _ranges(values: list[int]) -> str:
    """[0, 1, 2, 5, 7, 8] → "0–2, 5, 7–8" (at most 6 runs shown)."""
    runs: list[list[int]] = []
    for v in sorted(values):
        if runs and v == runs[-1][1] + 1:
            runs[-1][1] = v
        else:
            runs.append([v, v])
    text = [str(a) if a == b else f"{a}–{b}" for a, b in runs[:6]]
    return ", ".join(text) + (", …" if len(runs) > 6 else "")


def _check_classes(real, fake) -> int:
    """The class count: the real set's (its class_names, else its largest label + 1). Refuses a
    real set with < 2 classes present and synthetic labels that are no class of the real set
    (no real images of them: CAS, fidelity and per-class results would be meaningless)."""
    real_y = [real.labels] + ([real.test_labels] if real.test_labels is not None else [])
    real_classes = set(torch.unique(torch.cat(real_y)).tolist())
    fake_classes = set(torch.unique(fake.labels).tolist())
    if len(real_classes) < 2:
        raise SynthequivError(f"{real.name}: the real set holds {len(real_classes)} class "
                              f"({_ranges(sorted(real_classes))}); the analyses need ≥ 2")
    if len(fake_classes) < 2:
        raise SynthequivError(f"{fake.name}: the synthetic set holds {len(fake_classes)} class "
                              f"({_ranges(sorted(fake_classes))}); CAS needs ≥ 2")
    extra = sorted(fake_classes - real_classes)
    if extra:
        raise SynthequivError(f"{fake.name}: synthetic labels {_ranges(extra)} are not classes "
                              f"of the real set (its labels: {_ranges(sorted(real_classes))})")
    return real.num_classes


def analyse_dirs(real_npz: Path, fake_npz: Path, out_dir: Path, device="cpu",
                 max_images: int = 1000, domain_train_steps: int = 300,
                 ccfg: ClassifierConfig | None = None, test_fraction: float = 0.3,
                 progress: bool = False) -> dict:
    """Analyse a synthetic .npz against a real .npz (for a `synthequiv analyze` command).

    Both files: keys images + labels, or the MedMNIST layout. The real file's test split is the
    test set, else a stratified `test_fraction` hold-out; the rest trains the feature extractor
    and is the memorization reference. Writes out_dir/analysis.json and out_dir/figures/*.png;
    returns the same layout as analyse_study.
    """
    from synthequiv.inputs.data import _load_npz, validate

    out_dir = Path(out_dir)
    ccfg = ccfg or ClassifierConfig()
    _check_max_images("--max-images", max_images)
    check_positive("--domain-steps", domain_train_steps)
    if not 0.0 < test_fraction < 1.0:
        raise SynthequivError(f"test_fraction must be in (0, 1), got {test_fraction}")
    real, fake = validate(_load_npz(Path(real_npz))), validate(_load_npz(Path(fake_npz)))
    _same_shape("analyze", real.images, fake.images)
    num_classes = _check_classes(real, fake)
    x, y, tx, ty = real.images, real.labels, real.test_images, real.test_labels
    if tx is None:
        held = _holdout(y, test_fraction)
        x, y, tx, ty = x[~held], y[~held], x[held], y[held]
        per_class = next(n for n in range(2, 10**6) if int(test_fraction * n) >= 2)
        need = (f"the real set needs at least {per_class * num_classes} images "
                f"({per_class} per class: {test_fraction:.0%} of each class is held out as "
                "its test part)")
    else:
        need = "the real set's test split needs at least 2 images per class"
    check_reference(ty, need)
    if len(x) == 0:  # a given test split with an empty train split is refused by validate
        raise SynthequivError(f"{need}; none is left to train the feature extractor")
    named = {"synthetic": (_Set(fake.images, fake.labels), x, y, Path(real_npz).name)}
    acfg = {"max_images": max_images, "domain_train_steps": domain_train_steps}
    t0 = time.time()
    body = _analyse(named, (x, y), (tx, ty), num_classes, ccfg, acfg, out_dir / "figures",
                    device, progress, _analysis_group(0, ccfg, real.shape, device))
    body["figures"] = {k: str(Path(v).relative_to(out_dir)) for k, v in body["figures"].items()}
    analysis = {"key": stable_hash("analyze", str(real_npz), str(fake_npz), acfg, ccfg),
                "version": __version__, "class_names": list(real.class_names),
                "settings": {**acfg, "quantile": 0.05, "prdc_k": PRDC_K, "seed": SEED},
                **body, "wall_s": time.time() - t0}
    return _write(out_dir / "analysis.json", analysis, out_dir)


def read_analysis(run_dir: Path) -> dict | None:
    """A run directory's analysis.json with figure paths under run_dir (None without one):
    what the report shows, read without data or training."""
    path = Path(run_dir) / "analysis.json"
    try:
        return _with_paths(json.loads(path.read_text()), Path(run_dir))
    except (OSError, ValueError, KeyError):
        return None
