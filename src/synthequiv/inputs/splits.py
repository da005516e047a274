"""Splits stage: seeded, stratified, nested.

  test      official test split, else a stratified hold-out taken from the END of each class
            order: `test_per_class: all` (default) = every image of the class not in B(max) or
            the reserve R(reserve_per_class), at most `test_cap_per_class`; an integer = exactly
            that many per class
  B(n)      base set, the first n images of each class in a seeded per-class order:
            B(10) ⊂ B(20) ⊂ … for one split seed
  R(m)      reserve for the real-augmentation arm: the next m images of each class after
            B(max), so every R(m) is disjoint from every base set, and R(10) ⊂ R(40) ⊂ …
  pool      every non-test image (B ∪ R, and with a capped hold-out the images beyond the cap)
Base sets and the reserve come from the front of a class order and the hold-out from its end,
so they never depend on the test size. A class too small for a request is an error naming the
class, never a silent shrink.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthequiv.inputs.config import (  # noqa: F401 (the stage's config, re-exported)
    TEST_ALL,
    SplitConfig,
    check_split_config,
)
from synthequiv.inputs.data import Dataset
from synthequiv.utils import SynthequivError, check_positive


@dataclass
class Splits:
    """Index bookkeeping over a Dataset's pool; tensors are materialised on request."""

    dataset: Dataset
    order: list[torch.Tensor]  # per class: pool indices in seeded order (test hold-out removed)
    test_images: torch.Tensor  # uint8 [M, C, H, W]
    test_labels: torch.Tensor  # int64 [M]
    max_base: int

    def base_indices(self, n: int) -> torch.Tensor:
        return self._take(0, n, f"base set of {n}/class")

    def reserve_indices(self, m: int) -> torch.Tensor:
        return self._take(self.max_base, m, f"base {self.max_base}/class + reserve {m}/class")

    def pool_indices(self) -> torch.Tensor:
        """Every non-test pool image (B ∪ R): the open-set generator's training data."""
        return torch.cat(self.order)

    def base(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.base_indices(n)
        return self.dataset.images[idx], self.dataset.labels[idx]

    def reserve(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.reserve_indices(m)
        return self.dataset.images[idx], self.dataset.labels[idx]

    def reserve_capacity(self) -> int:
        """Largest m with R(m) available for every class."""
        return min(len(o) for o in self.order) - self.max_base

    def _take(self, start: int, count: int, what: str) -> torch.Tensor:
        check_positive(what, count, allow_zero=True)
        for c, o in enumerate(self.order):
            if len(o) < start + count:
                name = self.dataset.class_names[c]
                raise SynthequivError(
                    f"class '{name}' has {len(o)} training images, too few for {what}"
                )
        return torch.cat([o[start:start + count] for o in self.order])


def _per_class_orders(labels: torch.Tensor, num_classes: int, g: torch.Generator):
    orders = []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        orders.append(idx[torch.randperm(len(idx), generator=g)])
    return orders


def holdout_sizes(cfg: SplitConfig, class_sizes: list[int], class_names: list[str],
                  reserve_per_class: int = 0) -> list[int]:
    """Test images per class of a hold-out (no official test split), checked: every class keeps
    its training images (an integer size) or B(max) + R(reserve) and ≥ 1 test image (all)."""
    if cfg.test_per_class != TEST_ALL:
        t = cfg.test_per_class
        for name, n in zip(class_names, class_sizes):
            if n <= t:
                raise SynthequivError(f"class '{name}' has {n} images, too few for a "
                                      f"{t}/class test hold-out plus training images")
        return [t] * len(class_sizes)
    keep = max(cfg.base_per_class) + reserve_per_class
    for name, n in zip(class_names, class_sizes):
        if n <= keep:
            raise SynthequivError(
                f"class '{name}' has {n} images, too few for the largest base set "
                f"({max(cfg.base_per_class)}/class) + real-arm reserve ({reserve_per_class}"
                "/class) + a hold-out test set of at least 1 (splits.test_per_class: all)")
    return [min(n - keep, cfg.test_cap_per_class) for n in class_sizes]


def make_splits(ds: Dataset, cfg: SplitConfig, reserve_per_class: int = 0) -> Splits:
    """reserve_per_class: the real arm's largest addition R(m), kept out of a `test_per_class:
    all` hold-out (an integer hold-out does not depend on it)."""
    check_split_config(cfg)
    check_positive("reserve per class", reserve_per_class, allow_zero=True)
    g = torch.Generator().manual_seed(cfg.seed)
    orders = _per_class_orders(ds.labels, ds.num_classes, g)
    if ds.test_images is not None:
        test_x, test_y = ds.test_images, ds.test_labels
    else:
        sizes = holdout_sizes(cfg, [len(o) for o in orders], ds.class_names, reserve_per_class)
        # the hold-out takes the LAST images of each class order, so the base sets and the
        # reserve (taken from the front) do not depend on the test size
        test_idx = torch.cat([o[len(o) - t:] for o, t in zip(orders, sizes)])
        orders = [o[:len(o) - t] for o, t in zip(orders, sizes)]
        test_x, test_y = ds.images[test_idx], ds.labels[test_idx]
    splits = Splits(ds, orders, test_x, test_y, max(cfg.base_per_class))
    splits.base_indices(splits.max_base)  # fail now, naming the class, if a base set can't fit
    return splits
