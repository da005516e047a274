"""`folder:<path>` source: one sub-folder per class, image files inside.

Policy for mixed inputs (documented in the README):
- modes: if any image has colour, every image is converted to RGB, else to grayscale (L);
  palette/alpha images are converted the same way, so C is 1 or 3 for the whole set.
- sizes: refused (error naming the first odd file) unless `image_size` > 0, then every image
  is resized to image_size × image_size (bilinear).
Hidden files are ignored; any other file that PIL cannot decode is an error naming it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthequiv.inputs.dataset import Dataset
from synthequiv.utils import SynthequivError, check_memory


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise SynthequivError(f"folder:{root}: not a directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise SynthequivError(f"folder:{root}: no class sub-folders")
    return dirs


GRAY = ("1", "L", "LA", "I", "I;16", "F")


def _bad():
    from PIL import Image, UnidentifiedImageError

    # PIL refuses images over 2 × MAX_IMAGE_PIXELS (~179 Mpx) as decompression bombs
    return (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError)


def _headers(dirs: list[Path]) -> list[tuple[Path, tuple[int, int], str, int]]:
    """(file, (w, h), mode, label) of every image, from its header alone (nothing decoded)."""
    from PIL import Image

    items = []
    for label, d in enumerate(dirs):
        files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise SynthequivError(f"folder: class folder {d} is empty")
        for f in files:
            try:
                with Image.open(f) as im:
                    items.append((f, im.size, im.mode, label))
            except _bad() as exc:
                raise SynthequivError(f"folder: cannot read image {f}: {exc}") from exc
    return items


def _decode(path: Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """One image as uint8 [C, H, W], converted and resized as soon as it is decoded (a folder
    of large photos never holds more than one at full size)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()  # decode now so truncated files fail here
            im = im.convert(mode)
    except _bad() as exc:
        raise SynthequivError(f"folder: cannot read image {path}: {exc}") from exc
    except MemoryError:
        raise SynthequivError(f"folder: image {path} is too large to load") from None
    if im.size != size:
        im = im.resize(size, resample=2)  # 2 = bilinear
    a = np.asarray(im, dtype=np.uint8)
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def load_folder(root: Path, image_size: int = 0):
    dirs = _class_dirs(root)
    items = _headers(dirs)
    mode = "L" if all(m in GRAY for _, _, m, _ in items) else "RGB"
    first_path, first_size = items[0][0], items[0][1]
    size = (image_size, image_size) if image_size > 0 else first_size
    for path, sz, _, _ in items:
        if sz != size and image_size <= 0:
            _decode(path, mode, sz)  # a corrupt file is named as such, not by its odd size
            raise SynthequivError(
                f"folder: {path} is {sz[0]}×{sz[1]} but {first_path} is "
                f"{size[0]}×{size[1]}; pass --image-size N to resize all")
    c = 1 if mode == "L" else 3
    # the stacked set (twice: the list, then np.stack) plus the largest image decoded as RGBA
    need = 2 * len(items) * c * size[0] * size[1] + max(w * h * 4 for _, (w, h), _, _ in items)
    check_memory(need, f"folder:{root} ({len(items)} images of {size[0]}×{size[1]}×{c})"
                 + ("" if image_size > 0 else "; --image-size N makes them smaller"))
    images = torch.from_numpy(np.stack([_decode(p, mode, size) for p, _, _, _ in items]))
    labels = torch.tensor([lab for _, _, _, lab in items], dtype=torch.int64)
    return Dataset(f"folder:{root}", images, labels, [d.name for d in dirs])
