"""The in-memory dataset every source becomes (its own module: data.py and folder.py both
build one without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from synthequiv.utils import tensor_digest


@dataclass
class Dataset:
    """Pool (the official train split, or everything) plus the official test split if any."""

    name: str
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    class_names: list[str]
    test_images: torch.Tensor | None = None  # uint8 [M, C, H, W]
    test_labels: torch.Tensor | None = None  # int64 [M]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.images.shape[1:])  # (C, H, W)

    @cached_property
    def digest(self) -> str:
        """Content hash of every image and label (pool and official test split): artifact
        keys include it, so changed data at the same path never reuses old results."""
        parts = [self.images, self.labels]
        if self.test_images is not None:
            parts += [self.test_images, self.test_labels]
        return tensor_digest(*parts)
