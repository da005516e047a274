"""Feature-level metrics between two sets of [N, D] features, and the sampling helpers the
analyses share. Tested against analytic values (tests/test_analyses.py).

  frechet_distance   FD between Gaussians fitted to the two sets
  kid                kernel inception distance (unbiased MMD², cubic kernel), mean and std
  prdc               precision, recall, density, coverage (Naeem et al. 2020)
"""

from __future__ import annotations

import numpy as np
import torch

from synthequiv.utils import SynthequivError, check_positive

SEED = 0  # one seed for every analysis classifier and subsample
PRDC_K = 5  # k of the k-NN manifolds (Naeem et al. 2020 default)


# ----------------------------------------------------------------------------- metrics


def _feats(name: str, f, min_n: int = 2) -> np.ndarray:
    a = np.asarray(f.numpy() if isinstance(f, torch.Tensor) else f, dtype=np.float64)
    if a.ndim != 2 or len(a) < min_n:
        raise SynthequivError(f"{name} must be a [N, D] feature array with N ≥ {min_n}, "
                              f"got {a.shape}")
    if not np.isfinite(a).all():
        raise SynthequivError(f"{name} contains NaN or infinite values")
    return a


def _pair(f1, f2, names=("f1", "f2"), min_n: int = 2) -> tuple[np.ndarray, np.ndarray]:
    a, b = _feats(names[0], f1, min_n), _feats(names[1], f2, min_n)
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
    """FD, KID (mean, std) and PRDC of `other` against the reference features.

    A metric the set sizes cannot support is NaN (None in analysis.json) with its reason under
    "unavailable" {"fd" | "kid" | "prdc": why}: FD and KID need ≥ 2 images per set, PRDC more
    than k. Small sets (a small test split, a low max_images) so never stop an analysis.
    """
    ref, other = _pair(ref_f, other_f, ("reference features", "compared features"), min_n=1)
    nan, got = float("nan"), f"got {len(ref)} and {len(other)}"
    n = min(len(ref), len(other))
    out = {"n_ref": len(ref), "n": len(other), "fd": nan, "kid": nan, "kid_std": nan,
           "precision": nan, "recall": nan, "density": nan, "coverage": nan}
    unavailable = {}
    if n >= 2:
        out["kid"], out["kid_std"] = kid(ref, other, subsets=50, subset_size=100, seed=seed)
        out["fd"] = frechet_distance(ref, other)
    else:
        unavailable["fd"] = unavailable["kid"] = f"needs ≥ 2 images per set, {got}"
    if n > PRDC_K:
        out.update(prdc(ref, other, PRDC_K))
    else:
        unavailable["prdc"] = f"needs more than k={PRDC_K} images per set, {got}"
    out["unavailable"] = unavailable
    return out


# ----------------------------------------------------------------------------- image helpers


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
