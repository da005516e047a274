"""The in-memory dataset every source becomes (its own module: data.py and folder.py both
build one without importing each other)."""

from __future__ import annotations

from dataclasses import dataclass

import torch


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
