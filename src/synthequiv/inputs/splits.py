"""Splits stage: seeded, stratified, nested.

  test      official test split, else a stratified hold-out of `test_per_class` per class
  B(n)      base set, the first n images of each class in a seeded per-class order:
            B(10) ⊂ B(20) ⊂ … for one split seed
  R(m)      reserve for the real-augmentation arm: the next m images of each class after
            B(max), so every R(m) is disjoint from every base set, and R(10) ⊂ R(40) ⊂ …
A class too small for a request is an error naming the class, never a silent shrink.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from synthequiv.inputs.data import Dataset
from synthequiv.utils import SynthequivError, check_positive


@dataclass(frozen=True)
class SplitConfig:
    base_per_class: tuple[int, ...] = (10, 20)  # base-set sizes n (images per class)
    test_per_class: int = 50  # hold-out size when the source has no official test split
    seed: int = 0


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


def make_splits(ds: Dataset, cfg: SplitConfig) -> Splits:
    if not cfg.base_per_class:
        raise SynthequivError("splits.base_per_class is empty")
    for n in cfg.base_per_class:
        check_positive("splits.base_per_class entry", n)
    g = torch.Generator().manual_seed(cfg.seed)
    orders = _per_class_orders(ds.labels, ds.num_classes, g)
    if ds.test_images is not None:
        test_x, test_y = ds.test_images, ds.test_labels
    else:
        check_positive("splits.test_per_class", cfg.test_per_class)
        for c, o in enumerate(orders):
            if len(o) <= cfg.test_per_class:
                raise SynthequivError(
                    f"class '{ds.class_names[c]}' has {len(o)} images, too few for a "
                    f"{cfg.test_per_class}/class test hold-out plus training images"
                )
        # the hold-out takes the LAST test_per_class of each class order, so the base sets
        # (taken from the front) do not depend on the test size
        test_idx = torch.cat([o[-cfg.test_per_class:] for o in orders])
        orders = [o[:-cfg.test_per_class] for o in orders]
        test_x, test_y = ds.images[test_idx], ds.labels[test_idx]
    splits = Splits(ds, orders, test_x, test_y, max(cfg.base_per_class))
    splits.base_indices(splits.max_base)  # fail now, naming the class, if a base set can't fit
    return splits
