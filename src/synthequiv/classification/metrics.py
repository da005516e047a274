"""A classifier's test metrics from its class probabilities, for many classifiers at once.

`classification_metrics(probs [G, N, K], labels [N], K)` gives each of G classifiers scored on
one labelled test set its accuracy, balanced accuracy and ROC AUC, in a few array operations:
a grid group's cells are scored together instead of G calls of scikit-learn's
`balanced_accuracy_score` and `roc_auc_score`, whose input checks cost more than the
arithmetic (~6 ms per 10-class call on the 2-vCPU machine against ~0.4 ms here; ~30 ms per
cell under cProfile on an H100 host, where 108 cells spent 3.3 s in them).

The values are scikit-learn's (tests/test_classifier.py compares them, ties included):
  balanced accuracy  the mean recall over the classes present in `labels` (a class only
                     predicted counts nowhere, as in sklearn, which warns about it);
  AUC                the Mann–Whitney form of the area under the ROC curve, from average
                     ranks (`scipy.stats.rankdata`: a tied positive–negative pair counts ½,
                     the trapezoid sklearn integrates): the class-1 probability for K = 2,
                     the macro one-vs-rest mean for K > 2; NaN when a class is absent.
Non-finite probabilities (a diverged model) are an error, as they were in scikit-learn.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from synthequiv.utils import SynthequivError


def classification_metrics(probs: np.ndarray, labels: np.ndarray, num_classes: int
                           ) -> list[dict[str, float]]:
    """[{"accuracy", "balanced_accuracy", "auc"}] for each of probs' G classifiers.

    probs: float [G, N, K], each row a distribution over the K classes (normalised here
    again, as sklearn requires); labels: int [N] in [0, K).
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels).astype(np.int64)
    g, n, k = probs.shape
    if y.shape != (n,) or k != num_classes:
        raise ValueError(f"probabilities {probs.shape} do not fit {y.shape} labels of "
                         f"{num_classes} classes")
    if n and (y.min() < 0 or y.max() >= k):
        raise ValueError(f"labels must lie in [0, {k - 1}], got [{y.min()}, {y.max()}]")
    if not np.isfinite(probs).all():  # sklearn refused these too ("Input contains NaN")
        bad = sorted({int(i) for i in np.nonzero(~np.isfinite(probs).all((1, 2)))[0]})
        raise SynthequivError(f"classifier outputs are not finite (model {bad} of {g}: its "
                              "training diverged; lower classifier.lr)")
    probs = probs / probs.sum(-1, keepdims=True)
    onehot = np.eye(k)[y]  # [N, K]
    correct = (probs.argmax(-1) == y).astype(np.float64)  # [G, N]
    counts = onehot.sum(0)  # [K] test images per class
    present = counts > 0
    recall = (correct @ onehot)[:, present] / counts[present]  # [G, K present]
    auc = np.full(g, np.nan)
    if present.all() and n:
        cols = [1] if k == 2 else list(range(k))
        ranks = rankdata(probs[:, :, cols], axis=1)  # [G, N, |cols|], ties averaged
        npos = counts[cols]
        rank_sum = np.einsum("gnc,nc->gc", ranks, onehot[:, cols])
        auc = ((rank_sum - npos * (npos + 1) / 2) / (npos * (n - npos))).mean(1)
    return [{"accuracy": float(correct[i].mean()) if n else float("nan"),
             "balanced_accuracy": float(recall[i].mean()) if present.any() else float("nan"),
             "auc": float(auc[i])} for i in range(g)]
