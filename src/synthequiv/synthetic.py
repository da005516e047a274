"""Synthetic sets for the study's generative arms, cached in the run directory.

closed  one generator per base size n, trained on B(n) only (never reserve or test images)
open    one set shared by every base size:
          kind=pool        the same generator trained on the whole training pool B ∪ R
          kind=source      the same generator trained on another data source
          kind=pretrained  a text-to-image pipeline (openset.py) prompted with class names
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .splits import Splits
from .utils import SynthequivError, atomic_write_json, stable_hash, tensor_digest


@dataclass
class SyntheticSet:
    key: str  # hash of everything that made these samples
    arm: str  # closed | open
    images: torch.Tensor  # uint8 [N, C, H, W], the dataset's shape
    labels: torch.Tensor  # int64 [N]
    path: Path  # samples .npz (a .png grid beside it)
    generator_dir: Path | None  # None for a pretrained pipeline

    def first_per_class(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first m samples of every class: nested subsets S(10) ⊂ S(40) ⊂ …"""
        idx = []
        for c in torch.unique(self.labels).tolist():
            ids = torch.nonzero(self.labels == c).flatten()
            if len(ids) < m:
                raise SynthequivError(f"synthetic set {self.path.name} has {len(ids)} images "
                                      f"of class {c}, fewer than {m}")
            idx.append(ids[:m])
        idx = torch.cat(idx)
        return self.images[idx], self.labels[idx]


def match_shape(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N, C', H', W'] → uint8 [N, C, H, W]: resize (bilinear, antialiased), fix channels."""
    c, h, w = shape
    x = images.float()
    if x.shape[2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[1] == 3 and c == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and c == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- generation


def _train_and_sample(name: str, x, y, num_classes, out_shape, n_per_class, cfg, run_dir,
                      device, progress) -> SyntheticSet:
    from .generator import load_generator, train_generator
    from .sampling import class_quota_labels, load_samples, sample_images, save_grid_png, save_samples

    digest = tensor_digest(x, y)
    gen_key = stable_hash("generator", cfg.generator, digest, num_classes)
    gen_dir = run_dir / "generators" / f"{name}-{gen_key}"
    sample_key = stable_hash(gen_key, cfg.sampling, n_per_class, out_shape)
    path = run_dir / "samples" / f"{name}-{sample_key}.npz"
    if path.exists():
        images, labels, _ = load_samples(path)
        return SyntheticSet(sample_key, name.split("-")[0], images, labels, path, gen_dir)
    train_generator(x, y, num_classes, cfg.generator, gen_dir, device, progress)
    atomic_write_json(gen_dir / "trained_on.json", {"name": name, "train_digest": digest,
                                                     "n_images": len(y)})
    gen = load_generator(gen_dir, device)
    labels = class_quota_labels(n_per_class, num_classes)
    images = match_shape(sample_images(gen, labels, cfg.sampling, device, progress), out_shape)
    save_samples(path, images, labels, {"generator": gen_dir.name, "key": sample_key})
    save_grid_png(path.with_suffix(".png"), images, labels, num_classes)
    return SyntheticSet(sample_key, name.split("-")[0], images, labels, path, gen_dir)


def _pretrained(cfg, sp: Splits, n_per_class, run_dir, device, progress) -> SyntheticSet:
    from .openset import load_text_to_image, sample_pretrained
    from .sampling import class_quota_labels, load_samples, save_grid_png, save_samples

    ds = sp.dataset
    key = stable_hash("pretrained", cfg.openset, ds.class_names, n_per_class, ds.shape)
    path = run_dir / "samples" / f"open-pretrained-{key}.npz"
    if path.exists():
        images, labels, _ = load_samples(path)
        return SyntheticSet(key, "open", images, labels, path, None)
    pipe = load_text_to_image(cfg.openset.model, device)
    labels = class_quota_labels(n_per_class, ds.num_classes)
    images = sample_pretrained(pipe, ds.class_names, labels, cfg.openset, ds.shape, device,
                               progress)
    save_samples(path, images, labels, {"model": cfg.openset.model, "key": key})
    save_grid_png(path.with_suffix(".png"), images, labels, ds.num_classes)
    return SyntheticSet(key, "open", images, labels, path, None)


def _open_set(cfg, sp: Splits, n_per_class, run_dir, device, progress) -> SyntheticSet:
    ds, kind = sp.dataset, cfg.openset.kind
    if kind == "pretrained":
        return _pretrained(cfg, sp, n_per_class, run_dir, device, progress)
    if kind == "pool":
        idx = sp.pool_indices()  # B ∪ R: never the test split
        x, y = ds.images[idx], ds.labels[idx]
    elif kind == "source":
        from dataclasses import replace

        from .data import load_dataset

        other = load_dataset(replace(cfg.data, source=cfg.openset.source))
        if other.num_classes != ds.num_classes:
            raise SynthequivError(f"openset.source {cfg.openset.source} has {other.num_classes} "
                                  f"classes, the study's data has {ds.num_classes}")
        x, y = other.images, other.labels
    else:
        raise SynthequivError(f"unknown openset.kind '{kind}' (use pool, source or pretrained)")
    return _train_and_sample(f"open-{kind}", x, y, ds.num_classes, ds.shape, n_per_class, cfg,
                             run_dir, device, progress)


def prepare_synthetic(cfg, sp: Splits, run_dir: Path, device, progress: bool = True
                      ) -> dict[tuple[str, int], SyntheticSet]:
    """{(arm, n_base): SyntheticSet} for the generative arms in the grid."""
    arms = [a for a in cfg.grid.arms if a in ("closed", "open")]
    if not arms or not cfg.grid.syn_add_per_class:
        return {}
    n_per_class = max(cfg.grid.syn_add_per_class)
    ds, out = sp.dataset, {}
    if "closed" in arms:
        for n in cfg.splits.base_per_class:
            x, y = sp.base(n)  # B(n) only
            out[("closed", n)] = _train_and_sample(f"closed-n{n}", x, y, ds.num_classes,
                                                   ds.shape, n_per_class, cfg, Path(run_dir),
                                                   device, progress)
    if "open" in arms:
        shared = _open_set(cfg, sp, n_per_class, Path(run_dir), device, progress)
        out.update({("open", n): shared for n in cfg.splits.base_per_class})
    return out
