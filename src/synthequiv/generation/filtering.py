"""Synthetic filtering: keep the synthetic images a base-set classifier is most sure of.

The score of a synthetic image is the softmax probability of its own (conditioning) label
under a classifier trained on the replicate's base set B(n) ONLY — closed-set purity: it never
sees a test or reserve image, and it is the study's classifier recipe with a fixed seed. Per
class, the top ceil(q · count) images by score are kept (DM-Improves-AT keeps the top 20 % of
its ranking; the paper drops the bottom 20 % by a CLIP score, i.e. q = 0.8).

So that a filtered arm still has the grid's largest amount M per class, it filters a LARGER
pool: ceil(M / q) images per class (the arm's own set of M, then an extra draw from the same
generator and sampling setting with another sampling seed), keeping ceil(q · ceil(M / q)) ≥ M.
Kept images stay in pool order, so a cell of m < M images takes the first m kept ones
(nested subsets, as for every other arm) — not the m best, which would be a stricter filter.

Scores are cached in run_dir/filters/ keyed by (pool sample keys, B(n) digest, classifier
config, seed); filtered sets are ordinary samples files keyed by that and q.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import torch

from synthequiv.generation.synthetic import SyntheticSet
from synthequiv.utils import SynthequivError, atomic_savez, load_npz, stable_hash, tensor_digest

SCORER_SEED = 0  # one fixed seed: the filter is part of the arm, not a source of variance


def pool_per_class(max_add: int, q: float) -> int:
    """Pool images per class that keep-top-q filters down to at least max_add."""
    check_fraction(q)
    return math.ceil(max_add / q - 1e-9)  # 1e-9: 160 / 0.2 is 800.0000000000001 in floats


def check_fraction(q: float) -> None:
    if not (isinstance(q, float) and math.isfinite(q) and 0.0 < q <= 1.0):
        raise SynthequivError(f"grid.filters: keep-top fractions must be in (0, 1], got {q}")


def keep_top(scores: torch.Tensor, labels: torch.Tensor, q: float) -> torch.Tensor:
    """Indices (int64, ascending = pool order) of the top ceil(q · count_c) scores of every
    class c; ties broken by pool order (a stable sort), so the result is deterministic."""
    check_fraction(q)
    if scores.shape != labels.shape or scores.ndim != 1:
        raise SynthequivError("filter scores and labels must both be [N]")
    kept = []
    for c in torch.unique(labels).tolist():
        ids = torch.nonzero(labels == c).flatten()
        k = math.ceil(q * len(ids) - 1e-9)
        order = torch.sort(-scores[ids].double(), stable=True).indices
        kept.append(ids[order[:k]])
    return torch.sort(torch.cat(kept)).values if kept else labels.new_zeros(0)


def first_per_class(labels: torch.Tensor, m: int) -> torch.Tensor:
    """Indices (ascending) of the first m images of every class."""
    return torch.sort(torch.cat([torch.nonzero(labels == c).flatten()[:m]
                                 for c in torch.unique(labels).tolist()])).values


# ----------------------------------------------------------------------------- scoring


def label_scores(base_x: torch.Tensor, base_y: torch.Tensor, images: torch.Tensor,
                 labels: torch.Tensor, num_classes: int, ccfg, device) -> tuple[np.ndarray, dict]:
    """Softmax probability of each image's own label under a classifier trained on
    (base_x, base_y) only; with provenance {train_digest, n_images} of what it was trained on."""
    from synthequiv.classification.classifier import predict_proba, train_classifier

    model = train_classifier(base_x, base_y, num_classes, ccfg, SCORER_SEED, device=device)
    probs = predict_proba(model, images, device)  # [N, K] float32
    scores = probs.gather(1, labels.long().view(-1, 1)).flatten()  # [N]
    return scores.numpy(), {"train_digest": tensor_digest(base_x, base_y),
                            "n_images": len(base_y), "seed": SCORER_SEED}


def cached_scores(pool: SyntheticSet, base: tuple[torch.Tensor, torch.Tensor], num_classes,
                  ccfg, run_dir: Path, device) -> tuple[np.ndarray, dict]:
    """label_scores of the pool, cached in run_dir/filters/scores-<key>.npz."""
    import json

    base_x, base_y = base
    key = stable_hash("filter-scores", pool.key, tensor_digest(base_x, base_y), ccfg, SCORER_SEED)
    path = Path(run_dir) / "filters" / f"scores-{key}.npz"
    if path.exists():
        arrays = load_npz(path)
        return arrays["scores"], json.loads(str(arrays["meta_json"]))
    scores, meta = label_scores(base_x, base_y, pool.images, pool.labels, num_classes, ccfg,
                                device)
    meta = {**meta, "pool_key": pool.key, "key": key}
    atomic_savez(path, scores=scores.astype(np.float32), meta_json=np.array(json.dumps(meta)))
    return scores, meta


def concat_pool(own: SyntheticSet, extra: SyntheticSet | None) -> SyntheticSet:
    """The arm's own set followed by the extra draw (a class's images stay in this order)."""
    if extra is None:
        return own
    return dataclasses.replace(own, key=stable_hash("pool", own.key, extra.key),
                               images=torch.cat([own.images, extra.images]),
                               labels=torch.cat([own.labels, extra.labels]))


def filtered_set(own: SyntheticSet, extra: SyntheticSet | None, q: float, max_add: int,
                 base: tuple[torch.Tensor, torch.Tensor], label: str, name: str, num_classes,
                 ccfg, run_dir: Path, device) -> SyntheticSet:
    """The keep-top-q arm: the first pool_per_class(max_add, q) images/class of own ∪ extra,
    filtered by B(n)-classifier score; saved as samples/<name>-<key>.npz (+ .png)."""
    from synthequiv.generation.sampling import load_samples, save_grid_png, save_samples

    pool = concat_pool(own, extra)
    key = stable_hash("filtered", pool.key, tensor_digest(*base), ccfg, SCORER_SEED, q, max_add)
    path = Path(run_dir) / "samples" / f"{name}-{key}.npz"
    if path.exists():
        images, labels, _ = load_samples(path)
        return SyntheticSet(key, label, images, labels, path, own.generator_dir)
    scores, meta = cached_scores(pool, base, num_classes, ccfg, run_dir, device)
    head = first_per_class(pool.labels, pool_per_class(max_add, q))
    if int(torch.bincount(pool.labels[head], minlength=num_classes).min()) < pool_per_class(max_add, q):
        raise SynthequivError(f"filter pool for {name} has fewer than "
                              f"{pool_per_class(max_add, q)} images of some class")
    kept = head[keep_top(torch.from_numpy(scores)[head], pool.labels[head], q)]
    images, labels = pool.images[kept], pool.labels[kept]
    save_samples(path, images, labels, {
        "filter": {"keep_top": q, "pool_key": pool.key, "pool_per_class":
                   pool_per_class(max_add, q), "scorer": meta, "kept": kept.tolist()},
        "key": key})
    save_grid_png(path.with_suffix(".png"), images, labels, num_classes)
    return SyntheticSet(key, label, images, labels, path, own.generator_dir)
