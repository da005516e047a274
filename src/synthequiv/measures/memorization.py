"""Memorization: the nearest generator-training image of every synthetic image, judged
against how near held-out real images come to the training set."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthequiv.measures.features import _check_images, _pixels, _same_shape
from synthequiv.reporting.figures import nearest_pairs
from synthequiv.utils import SynthequivError


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
        out["figure"] = str(nearest_pairs(fake_x, train_x, d_fake, nn_idx, Path(out_png)))
    return out
