"""Analyses stage: how do synthetic images differ from real ones? (paper finding F4 and more)

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

Feature-level metrics take numpy [N, D] arrays and are tested against analytic values.
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

from . import __version__
from .classifier import (
    ClassifierConfig,
    evaluate,
    extract_features,
    predict_proba,
    train_classifier,
)
from .utils import SynthequivError, atomic_write_json, check_positive, stable_hash

ANALYSIS_FORMAT = 1  # bump when the contents of analysis.json change: invalidates caches
SEED = 0  # one seed for every analysis classifier and subsample
TRAIN_FRACTION = 0.7  # domain classifier: share of each domain used for training
SEPARABLE_AUC = 0.9  # F4 "separable": held-out domain AUC at least this
OVERLAP_MIN = 0.5  # F4 "overlapping": precision and coverage both at least this
PRDC_K = 5  # k of the k-NN manifolds (Naeem et al. 2020 default)


# ----------------------------------------------------------------------------- feature metrics


def _feats(name: str, f) -> np.ndarray:
    a = np.asarray(f.numpy() if isinstance(f, torch.Tensor) else f, dtype=np.float64)
    if a.ndim != 2 or len(a) < 2:
        raise SynthequivError(f"{name} must be a [N, D] feature array with N ≥ 2, got {a.shape}")
    if not np.isfinite(a).all():
        raise SynthequivError(f"{name} contains NaN or infinite values")
    return a


def _pair(f1, f2, names=("f1", "f2")) -> tuple[np.ndarray, np.ndarray]:
    a, b = _feats(names[0], f1), _feats(names[1], f2)
    if a.shape[1] != b.shape[1]:
        raise SynthequivError(f"feature dims differ: {a.shape[1]} vs {b.shape[1]}")
    return a, b


def frechet_distance(f1: np.ndarray, f2: np.ndarray) -> float:
    """‖μ1 − μ2‖² + Tr(Σ1 + Σ2 − 2(Σ1Σ2)^½) between Gaussians fitted to [N, D] features."""
    import scipy.linalg

    a, b = _pair(f1, f2)
    mu1, mu2 = a.mean(0), b.mean(0)
    s1 = np.atleast_2d(np.cov(a, rowvar=False))
    s2 = np.atleast_2d(np.cov(b, rowvar=False))
    # Tr((Σ1Σ2)^½) = Σ √λ over the eigenvalues of Σ1Σ2: they equal those of the PSD matrix
    # Σ1^½ Σ2 Σ1^½, so real and ≥ 0 up to round-off (clipped). Stabler than sqrtm for rank-
    # deficient covariances (D > N).
    eig = scipy.linalg.eigvals(s1 @ s2)
    tr_covmean = np.sqrt(np.clip(eig.real, 0.0, None)).sum()
    fd = ((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * tr_covmean
    return float(max(fd, 0.0))


def poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """KID's kernel k(x, y) = (x·y / D + 1)³ → [N, M]."""
    return (a @ b.T / a.shape[1] + 1.0) ** 3


def kid(f1, f2, subsets: int = 50, subset_size: int = 100, seed: int = 0) -> tuple[float, float]:
    """Kernel inception distance: unbiased MMD² (cubic polynomial kernel) over random subsets.

    Returns (mean, std) over `subsets` draws of min(subset_size, N1, N2) rows from each set.
    """
    a, b = _pair(f1, f2)
    check_positive("kid subsets", subsets)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        raise SynthequivError(f"kid subset_size must be ≥ 2, got {subset_size}")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        kxx, kyy, kxy = poly_kernel(x, x), poly_kernel(y, y), poly_kernel(x, y)
        within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
        vals.append(within - 2.0 * kxy.mean())
    return float(np.mean(vals)), float(np.std(vals))


def _kth_nn_radius(x: np.ndarray, k: int) -> np.ndarray:
    """Distance of every row to its k-th nearest other row → [N]."""
    from sklearn.neighbors import NearestNeighbors

    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(x).kneighbors(x)
    return dist[:, k]  # column 0 is the point itself (distance 0)


def prdc(real_f, fake_f, k: int = PRDC_K) -> dict:
    """Precision, recall, density, coverage of fake vs real k-NN manifolds (Naeem et al. 2020).

    Memory: one [N_real, N_fake] float64 distance matrix.
    """
    from scipy.spatial.distance import cdist

    real, fake = _pair(real_f, fake_f, ("real features", "fake features"))
    check_positive("prdc k", k)
    if k >= min(len(real), len(fake)):
        raise SynthequivError(f"prdc needs more than k={k} samples per set, got "
                              f"{len(real)} real and {len(fake)} fake")
    r_real, r_fake = _kth_nn_radius(real, k), _kth_nn_radius(fake, k)
    d = cdist(real, fake)  # [N, M]
    inside_real = d <= r_real[:, None]  # fake j inside the k-NN ball of real i
    return {
        "precision": float(inside_real.any(0).mean()),
        "recall": float((d <= r_fake[None, :]).any(1).mean()),
        "density": float(inside_real.sum(0).mean() / k),
        "coverage": float((d.min(1) <= r_real).mean()),
    }


def feature_metrics(ref_f, other_f, seed: int = SEED) -> dict:
    """FD, KID (mean, std) and PRDC of `other` against the reference features."""
    ref, other = _pair(ref_f, other_f, ("reference features", "compared features"))
    kid_mean, kid_std = kid(ref, other, subsets=50, subset_size=100, seed=seed)
    return {"n_ref": len(ref), "n": len(other), "fd": frechet_distance(ref, other),
            "kid": kid_mean, "kid_std": kid_std, **prdc(ref, other, PRDC_K)}


# ----------------------------------------------------------------------------- helpers


def _check_images(what: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.dtype != torch.uint8 or x.ndim != 4:
        raise SynthequivError(f"{what} must be a uint8 tensor [N, C, H, W]")
    if len(x) == 0:
        raise SynthequivError(f"{what} is empty")


def _same_shape(what: str, a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape[1:] != b.shape[1:]:
        raise SynthequivError(f"{what}: image shapes differ, {tuple(a.shape[1:])} vs "
                              f"{tuple(b.shape[1:])} (C, H, W must match)")


def _subsample(n: int, m: int, seed: int) -> torch.Tensor:
    """m distinct indices of range(n) (all of them, shuffled, when m ≥ n)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:m]


def split_halves(labels: torch.Tensor, seed: int = SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """Stratified halves (A, B) of a labelled set: per class, a seeded shuffle cut in two.

    Each half comes back shuffled across classes, so a prefix half[:m] is a random subset.
    """
    g = torch.Generator().manual_seed(seed)
    a, b = [], []
    for c in torch.unique(labels).tolist():
        ids = torch.nonzero(labels == c).flatten()
        ids = ids[torch.randperm(len(ids), generator=g)]
        half = (len(ids) + 1) // 2
        a.append(ids[:half])
        b.append(ids[half:])
    a, b = torch.cat(a), torch.cat(b)
    return a[torch.randperm(len(a), generator=g)], b[torch.randperm(len(b), generator=g)]


def _pixels(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(len(x), -1).float().div_(255.0)  # [N, C·H·W] in [0, 1]


def nearest(query: torch.Tensor, ref: torch.Tensor, device="cpu", chunk: int = 1024
            ) -> tuple[np.ndarray, np.ndarray]:
    """L2 nearest `ref` row of every `query` row → (distance float64 [Q], index int64 [Q]).

    The argmin runs in float32 on the device (‖r‖² − 2 q·r, chunked); the distance to the
    chosen row is then recomputed exactly in float64, so an exact copy reads 0.
    """
    dev = torch.device(device)
    r = ref.to(dev, torch.float32)
    r2 = (r * r).sum(1)  # [R]
    idx = []
    for i in range(0, len(query), chunk):
        q = query[i:i + chunk].to(dev, torch.float32)
        idx.append((r2[None, :] - 2.0 * q @ r.T).argmin(1).cpu())  # [chunk]
    idx = torch.cat(idx)
    dist = (query.double() - ref[idx].double()).norm(dim=1)
    return dist.numpy(), idx.numpy()


# ----------------------------------------------------------------------------- figures


def _pca_2d(feats: np.ndarray) -> np.ndarray:
    from sklearn.decomposition import PCA

    return PCA(n_components=2, random_state=0).fit_transform(feats)  # [N, 2]


def _scatter(ax, feats: np.ndarray, is_fake: np.ndarray, title: str, arm: str) -> None:
    from .figures import ARM_COLORS

    z = _pca_2d(feats)
    ax.scatter(z[~is_fake, 0], z[~is_fake, 1], s=5, alpha=0.5, c="tab:blue", label="real")
    ax.scatter(z[is_fake, 0], z[is_fake, 1], s=5, alpha=0.5, c=ARM_COLORS.get(arm, "tab:red"),
               label="synthetic")
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(fontsize=7, markerscale=2, loc="best")


def _maps_png(panels: list[tuple[np.ndarray, np.ndarray, str]], arm: str, path: Path) -> Path:
    """One PCA scatter per (features [N, D], is_fake [N], title) panel, side by side."""
    import matplotlib.pyplot as plt

    from .figures import _save

    fig, axes = plt.subplots(1, len(panels), figsize=(3.8 * len(panels), 3.6), squeeze=False)
    for ax, (feats, is_fake, title) in zip(axes[0], panels):
        _scatter(ax, feats, is_fake, title, arm)
    fig.tight_layout()
    return _save(fig, path)


def _tile(img: torch.Tensor) -> np.ndarray:
    a = img.permute(1, 2, 0).numpy()  # [H, W, C]
    return a[..., 0] if a.shape[2] == 1 else a


def _nearest_pairs_png(fake_x, train_x, dist: np.ndarray, idx: np.ndarray, path: Path,
                       n_pairs: int = 8) -> Path:
    """Top row: the synthetic images closest to a training image; bottom row: that image."""
    import matplotlib.pyplot as plt

    from .figures import _save

    order = np.argsort(dist, kind="stable")[:n_pairs]
    fig, axes = plt.subplots(2, len(order), figsize=(1.2 * len(order) + 0.6, 2.9), squeeze=False)
    for j, i in enumerate(order):
        axes[0][j].imshow(_tile(fake_x[i]), cmap="gray", vmin=0, vmax=255)
        axes[0][j].set_title(f"d={dist[i]:.2f}", fontsize=7)
        axes[1][j].imshow(_tile(train_x[idx[i]]), cmap="gray", vmin=0, vmax=255)
    for ax in axes.flat:
        ax.axis("off")
    axes[0][0].text(-0.15, 0.5, "synthetic", transform=axes[0][0].transAxes, rotation=90,
                    va="center", ha="right", fontsize=8)
    axes[1][0].text(-0.15, 0.5, "nearest train", transform=axes[1][0].transAxes, rotation=90,
                    va="center", ha="right", fontsize=8)
    fig.suptitle("closest synthetic–training pairs (pixel L2 on [0, 1])", fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


# ----------------------------------------------------------------------------- domain classifier


def _train_domain(real_x, fake_x, steps: int, seed: int, device, ccfg=None,
                  max_images: int | None = None) -> tuple[dict, np.ndarray, np.ndarray]:
    """Real (0) vs synthetic (1) classifier on balanced sets, scored on a 30 % held-out split.

    Returns (metrics, held-out penultimate features [M, D], held-out is_fake [M]).
    """
    from sklearn.metrics import roc_auc_score

    _check_images("real images", real_x)
    _check_images("synthetic images", fake_x)
    _same_shape("domain classifier", real_x, fake_x)
    check_positive("domain classifier steps", steps)
    m = min(len(real_x), len(fake_x), max_images or len(real_x))
    if m < 2:
        raise SynthequivError(f"domain classifier needs ≥ 2 images per side, got {m}")
    n_tr = min(max(1, round(TRAIN_FRACTION * m)), m - 1)
    r = real_x[_subsample(len(real_x), m, seed)]
    f = fake_x[_subsample(len(fake_x), m, seed + 1)]
    zeros, ones = torch.zeros(m, dtype=torch.int64), torch.ones(m, dtype=torch.int64)
    x_tr, y_tr = torch.cat([r[:n_tr], f[:n_tr]]), torch.cat([zeros[:n_tr], ones[:n_tr]])
    x_te, y_te = torch.cat([r[n_tr:], f[n_tr:]]), torch.cat([zeros[n_tr:], ones[n_tr:]])
    cfg = dataclasses.replace(ccfg or ClassifierConfig(), budget="steps", train_steps=steps)
    model = train_classifier(x_tr, y_tr, 2, cfg, seed, device=device)
    p_fake = predict_proba(model, x_te, device)[:, 1].double().numpy()  # [M]
    y = y_te.numpy()
    metrics = {"accuracy": float(((p_fake > 0.5) == (y == 1)).mean()),
               "auc": float(roc_auc_score(y, p_fake)), "n_train_per_side": n_tr,
               "n_test_per_side": m - n_tr, "steps": steps}
    return metrics, extract_features(model, x_te, device).numpy(), y == 1


def domain_gap(real_x, fake_x, cfg_steps: int, seed: int = SEED, device="cpu",
               out_png: Path | None = None, ccfg: ClassifierConfig | None = None,
               max_images: int | None = None) -> dict:
    """{"accuracy", "auc", "n_train_per_side", "n_test_per_side", "steps", "figure"} of a
    real-vs-synthetic classifier; "figure" is a PCA map of its features (None without out_png).
    """
    metrics, feats, is_fake = _train_domain(real_x, fake_x, cfg_steps, seed, device, ccfg,
                                            max_images)
    metrics["figure"] = None
    if out_png is not None:
        title = f"domain classifier features (held-out AUC {metrics['auc']:.2f})"
        metrics["figure"] = str(_maps_png([(feats, is_fake, title)], "closed", Path(out_png)))
    return metrics


# ----------------------------------------------------------------------------- memorization


def _nn_summary(d_fake: np.ndarray, d_test: np.ndarray, quantile: float) -> dict:
    thr = float(np.quantile(d_test, quantile))
    return {"threshold": thr, "frac_below": float((d_fake <= thr).mean()),
            "median_fake": float(np.median(d_fake)), "median_test": float(np.median(d_test)),
            "exact_copies": int((d_fake < 1e-9).sum())}


def memorization(fake_x, train_x, test_x, quantile: float = 0.05, feats: tuple | None = None,
                 out_png: Path | None = None, device="cpu") -> dict:
    """Nearest generator-training image of every synthetic image.

    A synthetic image is flagged when it lies closer (pixel L2 on [0, 1] floats) to its nearest
    training image than the `quantile` of real test images' nearest-training distances — a
    held-out real image is flagged with probability `quantile`, a copy always.
    feats: optional (fake_f, train_f, test_f) [N, D] features of the same images: the same
    statistics in feature space under "feature" (None without feats).
    """
    for what, x in (("synthetic images", fake_x), ("training images", train_x),
                    ("test images", test_x)):
        _check_images(what, x)
    _same_shape("memorization", fake_x, train_x)
    _same_shape("memorization", test_x, train_x)
    if not 0.0 < quantile < 1.0:
        raise SynthequivError(f"memorization quantile must be in (0, 1), got {quantile}")
    train_p = _pixels(train_x)
    d_fake, nn_idx = nearest(_pixels(fake_x), train_p, device)
    d_test, _ = nearest(_pixels(test_x), train_p, device)
    pixel = _nn_summary(d_fake, d_test, quantile)
    flagged = np.flatnonzero(d_fake <= pixel["threshold"])
    out = {"quantile": quantile, "n_synthetic": len(fake_x), "n_train": len(train_x),
           "pixel": pixel, "feature": None,
           "flagged_idx": flagged[np.argsort(d_fake[flagged], kind="stable")].tolist(),
           "figure": None}
    if feats is not None:
        ff, tf, sf = (torch.as_tensor(np.asarray(f), dtype=torch.float32) for f in feats)
        fd_fake, _ = nearest(ff, tf, device)
        fd_test, _ = nearest(sf, tf, device)
        out["feature"] = _nn_summary(fd_fake, fd_test, quantile)
    if out_png is not None:
        out["figure"] = str(_nearest_pairs_png(fake_x, train_x, d_fake, nn_idx, Path(out_png)))
    return out


# ----------------------------------------------------------------------------- one generator


def _per_class(pred: np.ndarray, y: np.ndarray, num_classes: int) -> list[float | None]:
    """Accuracy within each true class (None for a class with no images)."""
    return [float((pred[y == c] == c).mean()) if (y == c).any() else None
            for c in range(num_classes)]


def _predict(model: nn.Module, x: torch.Tensor, device) -> np.ndarray:
    return predict_proba(model, x, device).argmax(1).numpy()


def _cas(fake_x, fake_y, real_x, real_y, test_x, test_y, num_classes, ccfg, seed, device,
         real_model: nn.Module | None) -> dict:
    """Train on synthetic only, test on real; beside it the same recipe trained on real_x."""
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
                 arm: str = "closed", real_model: nn.Module | None = None) -> dict:
    """Every analysis of one synthetic set (fake_x, fake_y).

    real_x/real_y: the generator's real reference (B(n), or the pool for open-set) — the
    domain classifier's real side and the CAS reference recipe's training set.
    train_x: the generator's training images (memorization). test_x/test_y: the real test split
    (overlap halves, CAS test, memorization reference). extractor_model: classifier trained on
    real data only. real_model: an already trained classifier on (real_x, real_y) with ccfg.
    Returns metrics plus "figures" {figure key: path} (empty without figdir).
    """
    ccfg = ccfg or ClassifierConfig()
    _same_shape(name, real_x, fake_x)
    t0 = time.time()
    out = {"arm": arm, "n_real": len(real_x), "n_synthetic": len(fake_x)}
    dom, dom_feats, dom_fake = _train_domain(real_x, fake_x, domain_steps, seed, device, ccfg,
                                             max_images)
    out["domain"] = dom
    half_a, half_b = split_halves(test_y, seed)
    m = min(len(half_b), max_images, len(fake_x))
    fake_sub = fake_x[_subsample(len(fake_x), m, seed)]
    ref_f = extract_features(extractor_model, test_x[half_a[:max_images]], device).numpy()
    fake_f = extract_features(extractor_model, fake_sub, device).numpy()
    out["overlap"] = feature_metrics(ref_f, fake_f, seed)
    out["fidelity"] = _fidelity(extractor_model, fake_x, fake_y, num_classes, device)
    out["cas"] = _cas(fake_x, fake_y, real_x, real_y, test_x, test_y, num_classes, ccfg, seed,
                      device, real_model)
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
                   f"real-trained classifier (coverage {out['overlap']['coverage']:.2f})")]
        maps = _maps_png(panels, arm, Path(figdir) / f"analysis_{name}_maps.png")
        out["figures"] = {f"analysis_{name}_maps": str(maps), f"analysis_{name}_nearest":
                          out["memorization"]["figure"]}
    out["wall_s"] = time.time() - t0
    return out


def real_baseline(extractor_model, test_x, test_y, *, ccfg=None, domain_steps: int = 300,
                  max_images: int = 1000, seed: int = SEED, device="cpu") -> dict:
    """Real-vs-real scale: test half B against half A (features) and A vs B (domain)."""
    half_a, half_b = split_halves(test_y, seed)
    a, b = test_x[half_a[:max_images]], test_x[half_b[:max_images]]
    fa = extract_features(extractor_model, a, device).numpy()
    fb = extract_features(extractor_model, b, device).numpy()
    dom, _, _ = _train_domain(a, b, domain_steps, seed, device, ccfg, max_images)
    return {"what": "real test split, stratified halves A vs B", "overlap": feature_metrics(
        fa, fb, seed), "domain": dom}


# ----------------------------------------------------------------------------- F4 verdict


def _span(vals: list[float], digits: int = 2) -> str:
    lo, hi = min(vals), max(vals)
    return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else (
        f"{lo:.{digits}f}–{hi:.{digits}f}")


def f4_verdict(sets: dict, baseline: dict | None) -> dict:
    """Paper finding F4: separable by a domain classifier, yet overlapping in real features."""
    per = {}
    for name, r in sets.items():
        ov, dom = r["overlap"], r["domain"]
        base_fd = baseline["overlap"]["fd"] if baseline else float("nan")
        per[name] = {"separable": bool(dom["auc"] >= SEPARABLE_AUC),
                     "overlapping": bool(ov["precision"] >= OVERLAP_MIN
                                         and ov["coverage"] >= OVERLAP_MIN),
                     "fd_over_baseline": ov["fd"] / base_fd if base_fd > 0 else None}
    if not per:
        return {"holds": None, "per_set": {}, "text": "No synthetic set was analysed.",
                "criteria": ""}
    both = [n for n, v in per.items() if v["separable"] and v["overlapping"]]
    aucs = [sets[n]["domain"]["auc"] for n in sets]
    cov = [sets[n]["overlap"]["coverage"] for n in sets]
    prec = [sets[n]["overlap"]["precision"] for n in sets]
    base = (f" (real vs real: AUC {baseline['domain']['auc']:.2f}, precision "
            f"{baseline['overlap']['precision']:.2f}, coverage "
            f"{baseline['overlap']['coverage']:.2f})") if baseline else ""
    text = (f"Paper finding F4 (separable yet overlapping) holds for {len(both)} of {len(per)} "
            f"synthetic set(s): a real-vs-synthetic classifier reaches held-out AUC "
            f"{_span(aucs)}, while in the real-trained classifier's feature space the synthetic "
            f"images reach precision {_span(prec)} and coverage {_span(cov)}{base}.")
    return {"holds": len(both) == len(per), "per_set": per, "text": text,
            "criteria": f"separable: domain AUC ≥ {SEPARABLE_AUC}; overlapping: precision and "
                        f"coverage ≥ {OVERLAP_MIN} (k = {PRDC_K})"}


# ----------------------------------------------------------------------------- study driver


def _distinct_sets(sp, synth: dict) -> dict:
    """{name: (SyntheticSet, real_x, real_y, reference)} — a shared open-set set once."""
    out, seen = {}, set()
    ds = sp.dataset
    n_open = len({s.key for (arm, _), s in synth.items() if arm != "closed"})
    for (arm, n) in sorted(synth, key=lambda k: (k[0], k[1])):
        s = synth[(arm, n)]
        if s.key in seen:
            continue
        seen.add(s.key)
        if arm == "closed":
            x, y = sp.base(n)
            out[f"closed-n{n}"] = (s, x, y, f"B({n})")
        else:
            idx = sp.pool_indices()
            out[arm if n_open == 1 else f"{arm}-n{n}"] = (s, ds.images[idx], ds.labels[idx],
                                                          "pool")
    return out


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
             device, progress: bool) -> dict:
    """Shared by analyse_study and analyse_dirs: extractor, baseline, then every set."""
    from .progress import progress_bar

    pool_x, pool_y = pool
    test_x, test_y = test
    kw = {"ccfg": ccfg, "domain_steps": acfg["domain_train_steps"],
          "max_images": acfg["max_images"], "seed": SEED, "device": device}
    with progress_bar("analyses", total=2 + len(named), enabled=progress) as bar:
        extractor = train_classifier(pool_x, pool_y, num_classes, ccfg, SEED, device=device)
        extractor = standardized_extractor(extractor, test_x, device)
        ext = evaluate(extractor, test_x, test_y, num_classes, device)
        bar.advance(1, f"feature extractor: test accuracy {ext['accuracy']:.3f}")
        baseline = real_baseline(extractor, test_x, test_y, **kw)
        bar.advance(1, "real-vs-real baseline")
        sets, figs = {}, {}
        for name, (s, rx, ry, ref) in named.items():
            same = rx.shape == pool_x.shape and torch.equal(rx, pool_x)
            r = compare_sets(rx, ry, s.images, s.labels, rx, test_x, test_y, extractor,
                             num_classes, figdir=figdir, name=name, arm=s.arm,
                             real_model=extractor if same else None, **kw)
            figs.update(r.pop("figures"))
            sets[name] = {"reference": ref, **r}
            bar.advance(1, f"{name}: domain AUC {r['domain']['auc']:.2f}")
    extractor_info = {"trained_on": f"{len(pool_x)} real images", "seed": SEED,
                      "feature_scale": extractor.scale,
                      "test_accuracy": ext["accuracy"],
                      "test_per_class": _per_class(_predict(extractor, test_x, device),
                                                   test_y.numpy(), num_classes)}
    return {"extractor": extractor_info, "baseline": baseline, "sets": sets, "figures": figs,
            "paper_finding_f4": f4_verdict(sets, baseline)}


def analyse_study(cfg, run_dir: Path, sp, synth: dict, device, progress: bool = True) -> dict:
    """Analyse every distinct synthetic set of a study; cached in run_dir/analysis.json.

    Real reference: B(n) for the closed-set generator of base size n, the pool for open-set.
    Returns {"key", "sets", "baseline", "extractor", "figures" {key: path}, "paper_finding_f4",
    ...}; figure paths are run_dir/figures/…; the JSON file stores them relative to run_dir.
    """
    run_dir = Path(run_dir)
    named = _distinct_sets(sp, synth)
    key = stable_hash("analysis", ANALYSIS_FORMAT, cfg.analysis, cfg.classifier, cfg.data,
                      cfg.splits, {n: v[0].key for n, v in named.items()})
    path = run_dir / "analysis.json"
    cached = _cached(path, key, run_dir)
    if cached is not None:
        return cached
    t0 = time.time()
    acfg = {"max_images": cfg.analysis.max_images,
            "domain_train_steps": cfg.analysis.domain_train_steps}
    check_positive("analysis.max_images", acfg["max_images"])
    ds = sp.dataset
    if named:
        idx = sp.pool_indices()
        body = _analyse(named, (ds.images[idx], ds.labels[idx]), (sp.test_images, sp.test_labels),
                        ds.num_classes, cfg.classifier, acfg, run_dir / "figures", device,
                        progress)
    else:
        body = {"extractor": None, "baseline": None, "sets": {}, "figures": {},
                "paper_finding_f4": f4_verdict({}, None)}
    body["figures"] = {k: str(Path(v).relative_to(run_dir)) for k, v in body["figures"].items()}
    analysis = {"key": key, "version": __version__, "class_names": list(ds.class_names),
                "settings": {**acfg, "quantile": 0.05, "prdc_k": PRDC_K, "seed": SEED}, **body,
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
    from .data import _load_npz, validate

    out_dir = Path(out_dir)
    ccfg = ccfg or ClassifierConfig()
    real, fake = validate(_load_npz(Path(real_npz))), validate(_load_npz(Path(fake_npz)))
    _same_shape("analyze", real.images, fake.images)
    x, y, tx, ty = real.images, real.labels, real.test_images, real.test_labels
    if tx is None:
        held = _holdout(y, test_fraction)
        x, y, tx, ty = x[~held], y[~held], x[held], y[held]
    num_classes = max(real.num_classes, fake.num_classes)
    named = {"synthetic": (_Set(fake.images, fake.labels), x, y, Path(real_npz).name)}
    acfg = {"max_images": max_images, "domain_train_steps": domain_train_steps}
    t0 = time.time()
    body = _analyse(named, (x, y), (tx, ty), num_classes, ccfg, acfg, out_dir / "figures",
                    device, progress)
    body["figures"] = {k: str(Path(v).relative_to(out_dir)) for k, v in body["figures"].items()}
    analysis = {"key": stable_hash("analyze", str(real_npz), str(fake_npz), acfg, ccfg),
                "version": __version__, "class_names": list(real.class_names),
                "settings": {**acfg, "quantile": 0.05, "prdc_k": PRDC_K, "seed": SEED},
                **body, "wall_s": time.time() - t0}
    return _write(out_dir / "analysis.json", analysis, out_dir)


# ----------------------------------------------------------------------------- report


def _f(x, digits: int = 3) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _rows(analysis: dict) -> list[list[str]]:
    b = analysis.get("baseline") or {}
    rows = []
    if b:
        o, d = b["overlap"], b["domain"]
        ext = analysis.get("extractor") or {}
        rows.append(["real vs real (test halves)", _f(d["accuracy"]), _f(d["auc"]), _f(o["fd"]),
                     _f(1e3 * o["kid"]), _f(o["precision"]), _f(o["recall"]), _f(o["density"]),
                     _f(o["coverage"]), _f(ext.get("test_accuracy")) + " (real test)", "n/a",
                     _f(analysis.get("settings", {}).get("quantile", 0.05), 2) + " (by def.)"])
    for name, r in analysis.get("sets", {}).items():
        o, d, c, m = r["overlap"], r["domain"], r["cas"], r["memorization"]
        rows.append([f"{name} (vs {r.get('reference', 'real')})", _f(d["accuracy"]), _f(d["auc"]),
                     _f(o["fd"]), _f(1e3 * o["kid"]), _f(o["precision"]), _f(o["recall"]),
                     _f(o["density"]), _f(o["coverage"]), _f(r["fidelity"]["accuracy"]),
                     f"{_f(c['accuracy'])} ({_f(c['real_accuracy'])})",
                     f"{_f(m['pixel']['frac_below'], 2)}"])
    return rows


def _reading(analysis: dict) -> str:
    sets = analysis.get("sets", {})
    if not sets:
        return "No synthetic set was analysed."
    f4 = analysis["paper_finding_f4"]["text"]
    cas = [r["cas"]["accuracy"] for r in sets.values()]
    real = [r["cas"]["real_accuracy"] for r in sets.values()]
    fid = [r["fidelity"]["accuracy"] for r in sets.values()]
    mem = [r["memorization"]["pixel"]["frac_below"] for r in sets.values()]
    q = next(iter(sets.values()))["memorization"]["quantile"]
    return (f"{f4} Trained on synthetic images alone, a classifier reaches test accuracy "
            f"{_span(cas, 3)} (the same recipe on the generators' real training images: "
            f"{_span(real, 3)}); the real-trained classifier agrees with the synthetic images' "
            f"labels on {_span(fid, 3)} of them, and {_span([100 * v for v in mem], 1)} % of "
            f"synthetic images lie closer to a training image than {100 * (1 - q):.0f} % of real "
            f"test images do ({100 * q:.0f} % expected without memorization).")


def _per_class_table(analysis: dict) -> tuple[list[str], list[list[str]]] | None:
    names = analysis.get("class_names") or []
    sets = analysis.get("sets", {})
    if not sets or not names or len(names) > 20:
        return None
    header = ["set", "metric"] + [str(n) for n in names]
    rows = []
    for name, r in sets.items():
        rows.append([name, "fidelity"] + [_f(v, 2) for v in r["fidelity"]["per_class"]])
        rows.append([name, "CAS recall"] + [_f(v, 2) for v in r["cas"]["per_class"]])
    return header, rows


def report_section(analysis: dict) -> tuple[str, str]:
    """(markdown, html) of the "Real vs synthetic" section: metrics table and a reading."""
    import html as H

    from .report import _table_html, _table_md

    header = ["set", "domain acc", "domain AUC", "FD", "KID ×10³", "precision", "recall",
              "density", "coverage", "fidelity", "CAS (train-on-real)", "memorized"]
    rows = _rows(analysis)
    s = analysis.get("settings", {})
    note = ("Domain: a real-vs-synthetic classifier, held-out accuracy/AUC (0.5 = "
            "indistinguishable). FD, KID, precision/recall/density/coverage: synthetic vs half A "
            "of the real test split in the feature space of a classifier trained on real data "
            "only; the first row compares the two real halves. CAS: train on synthetic, test on "
            "real. Fidelity: real-trained classifier's agreement with the synthetic labels. "
            f"Memorized: share of synthetic images nearer (pixels) to a training image than the "
            f"{100 * s.get('quantile', 0.05):.0f} % quantile of real test images.")
    reading = _reading(analysis)
    md = ["## Real vs synthetic", "", reading, "", _table_md(header, rows), "", note, ""]
    h = ["<h2>Real vs synthetic</h2>", f"<p>{H.escape(reading)}</p>",
         _table_html(header, rows), f"<p><small>{H.escape(note)}</small></p>"]
    per_class = _per_class_table(analysis)
    if per_class:
        md += ["Per class:", "", _table_md(*per_class), ""]
        h += ["<p>Per class:</p>", _table_html(*per_class)]
    crit = analysis.get("paper_finding_f4", {}).get("criteria")
    if crit:
        md += [f"F4 criteria: {crit}.", ""]
        h.append(f"<p><small>F4 criteria: {H.escape(crit)}.</small></p>")
    return "\n".join(md) + "\n", "\n".join(h)
