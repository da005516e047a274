"""Domain gap: can a classifier tell real from synthetic images (held-out accuracy, AUC), and
do the two still overlap in a real-trained classifier's features? ("separable yet
overlapping": the paper's finding F4, in words in the report.)"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from synthequiv.classification.classifier import (
    ClassifierConfig,
    extract_features,
    predict_proba,
    train_classifier,
)
from synthequiv.measures.features import PRDC_K, SEED, _check_images, _same_shape, _subsample
from synthequiv.reporting.figures import pca_maps
from synthequiv.utils import SynthequivError, check_positive

TRAIN_FRACTION = 0.7  # domain classifier: share of each domain used for training
SEPARABLE_AUC = 0.9  # F4 "separable": held-out domain AUC at least this
OVERLAP_MIN = 0.5  # F4 "overlapping": precision and coverage both at least this


@dataclasses.dataclass
class DomainJob:
    """One real-vs-synthetic classifier's data (balanced, 70/30 held out) and recipe."""

    x_tr: torch.Tensor
    y_tr: torch.Tensor
    x_te: torch.Tensor
    y_te: torch.Tensor
    cfg: ClassifierConfig
    seed: int
    n_tr: int
    m: int

    def spec(self) -> tuple:
        """(x, y, num_classes, cfg, seed): what `batched.train_many` trains."""
        return self.x_tr, self.y_tr, 2, self.cfg, self.seed


def domain_job(real_x, fake_x, steps: int, seed: int, ccfg=None,
               max_images: int | None = None) -> DomainJob:
    """Real (0) vs synthetic (1) on balanced sets of m images each, the first 70 % to train."""
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
    cfg = dataclasses.replace(ccfg or ClassifierConfig(), budget="steps", train_steps=steps)
    return DomainJob(torch.cat([r[:n_tr], f[:n_tr]]), torch.cat([zeros[:n_tr], ones[:n_tr]]),
                     torch.cat([r[n_tr:], f[n_tr:]]), torch.cat([zeros[n_tr:], ones[n_tr:]]),
                     cfg, seed, n_tr, m)


def domain_scores(model, job: DomainJob, device) -> tuple[dict, np.ndarray, np.ndarray]:
    """Held-out accuracy and ROC AUC of a trained domain classifier; its penultimate features
    of the held-out images [M, D] and which of them are synthetic [M]."""
    from sklearn.metrics import roc_auc_score

    p_fake = predict_proba(model, job.x_te, device)[:, 1].double().numpy()  # [M]
    y = job.y_te.numpy()
    metrics = {"accuracy": float(((p_fake > 0.5) == (y == 1)).mean()),
               "auc": float(roc_auc_score(y, p_fake)), "n_train_per_side": job.n_tr,
               "n_test_per_side": job.m - job.n_tr, "steps": job.cfg.train_steps}
    return metrics, extract_features(model, job.x_te, device).numpy(), y == 1


def _train_domain(real_x, fake_x, steps: int, seed: int, device, ccfg=None,
                  max_images: int | None = None, trained: tuple | None = None
                  ) -> tuple[dict, np.ndarray, np.ndarray]:
    """Real (0) vs synthetic (1) classifier on balanced sets, scored on a 30 % held-out split;
    `trained` = (its DomainJob, the model trained on it), e.g. in a batched group: scored only.

    Returns (metrics, held-out penultimate features [M, D], held-out is_fake [M]).
    """
    if trained is None:
        job = domain_job(real_x, fake_x, steps, seed, ccfg, max_images)
        trained = job, train_classifier(*job.spec(), device=device)
    job, model = trained
    return domain_scores(model, job, device)


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
        metrics["figure"] = str(pca_maps([(feats, is_fake, title)], "closed", Path(out_png)))
    return metrics


# ----------------------------------------------------------------------------- verdict


def _finite(x) -> bool:
    return x is not None and np.isfinite(x)


def _span(vals: list[float], digits: int = 2) -> str:
    vals = [v for v in vals if _finite(v)]
    if not vals:
        return "n/a"
    lo, hi = min(vals), max(vals)
    return f"{lo:.{digits}f}" if round(lo, digits) == round(hi, digits) else (
        f"{lo:.{digits}f}–{hi:.{digits}f}")


def _words(v: dict) -> str:
    sep = "easy to tell from real images" if v["separable"] else "hard to tell from real images"
    if v["overlapping"] is None:
        return sep + " (overlap in features not measured)"
    ov = "overlapping them in features" if v["overlapping"] else "off the real images' features"
    if v["separable"] and v["overlapping"]:
        return "separable yet overlapping (" + sep + ", yet " + ov + ")"
    return sep + " and " + ov


def f4_verdict(sets: dict, baseline: dict | None) -> dict:
    """Separable by a domain classifier, yet overlapping in real features? (The paper's
    finding F4; the JSON key keeps that name, the text says it in words.) Where precision or
    coverage could not be computed (too few images; overlap["unavailable"] says why), that
    set's "overlapping" and the overall "holds" are None."""
    per = {}
    for name, r in sets.items():
        ov, dom = r["overlap"], r["domain"]
        base_fd = baseline["overlap"]["fd"] if baseline else float("nan")
        known = _finite(ov["precision"]) and _finite(ov["coverage"])
        per[name] = {"separable": bool(dom["auc"] >= SEPARABLE_AUC),
                     "overlapping": bool(ov["precision"] >= OVERLAP_MIN
                                         and ov["coverage"] >= OVERLAP_MIN) if known else None,
                     "fd_over_baseline": ov["fd"] / base_fd
                     if _finite(ov["fd"]) and _finite(base_fd) and base_fd > 0 else None}
    if not per:
        return {"holds": None, "per_set": {}, "text": "No synthetic set was analysed.",
                "criteria": ""}
    both = [n for n, v in per.items() if v["separable"] and v["overlapping"]]
    aucs = [sets[n]["domain"]["auc"] for n in sets]
    cov = [sets[n]["overlap"]["coverage"] for n in sets]
    prec = [sets[n]["overlap"]["precision"] for n in sets]
    base = (f" (two halves of the real test set: AUC {_span([baseline['domain']['auc']])}, "
            f"precision {_span([baseline['overlap']['precision']])}, coverage "
            f"{_span([baseline['overlap']['coverage']])})") if baseline else ""
    verdicts = {n: _words(v) for n, v in per.items()}
    kinds = sorted(set(verdicts.values()))
    which = (f"all {len(per)} synthetic set(s) are {kinds[0]}" if len(kinds) == 1 else
             "; ".join(f"{n}: {w}" for n, w in verdicts.items()))
    text = (f"Domain gap: {which}. A classifier trained to tell real from synthetic images "
            f"reaches held-out AUC {_span(aucs)} (0.5 = indistinguishable), while in the "
            f"features of a classifier trained on real images the synthetic images reach "
            f"precision {_span(prec)} and coverage {_span(cov)}{base}.")
    if both:
        text += (" Separable yet overlapping means the images differ in detail from real ones "
                 "but carry the classes' information where real images do (the paper's "
                 "finding).")
    why = sorted({f"{metric.upper()} {reason.split(', got')[0]}"
                  for r in [*sets.values(), baseline or {}]
                  for metric, reason in ((r.get("overlap") or {}).get("unavailable") or {}).items()})
    if why:
        text += f" Not computed (too few images): {'; '.join(why)}."
    # False once a set with known overlap fails; None while an unmeasured one could decide it
    fails = any(v["overlapping"] is False or not v["separable"] for v in per.values())
    unknown = any(v["overlapping"] is None for v in per.values())
    holds = False if fails else None if unknown else True
    return {"holds": holds, "per_set": per, "text": text,
            "criteria": f"separable: domain AUC ≥ {SEPARABLE_AUC}; overlapping: precision and "
                        f"coverage ≥ {OVERLAP_MIN} (k = {PRDC_K})"}
