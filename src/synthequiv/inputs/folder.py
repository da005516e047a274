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
from synthequiv.utils import SynthequivError


def _class_dirs(root: Path) -> list[Path]:
    if not root.is_dir():
        raise SynthequivError(f"folder:{root}: not a directory")
    dirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not dirs:
        raise SynthequivError(f"folder:{root}: no class sub-folders")
    return dirs


def _open_all(dirs: list[Path]) -> list[tuple[Path, object, int]]:
    from PIL import Image, UnidentifiedImageError

    # PIL refuses images over 2 × MAX_IMAGE_PIXELS (~179 Mpx) as decompression bombs
    bad = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)

    items = []
    for label, d in enumerate(dirs):
        files = sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
        if not files:
            raise SynthequivError(f"folder: class folder {d} is empty")
        for f in files:
            try:
                with Image.open(f) as im:
                    im.load()  # decode now so truncated files fail here
                    items.append((f, im.copy(), label))
            except bad as exc:
                raise SynthequivError(f"folder: cannot read image {f}: {exc}") from exc
            except MemoryError:
                raise SynthequivError(f"folder: image {f} is too large to load") from None
    return items


def load_folder(root: Path, image_size: int = 0):
    dirs = _class_dirs(root)
    items = _open_all(dirs)
    colour = any(im.mode not in ("1", "L", "LA", "I", "I;16", "F") for _, im, _ in items)
    mode = "RGB" if colour else "L"
    first_path, first_im, _ = items[0]
    size = (image_size, image_size) if image_size > 0 else first_im.size
    arrays = []
    for path, im, _ in items:
        im = im.convert(mode)
        if im.size != size:
            if image_size <= 0:
                raise SynthequivError(
                    f"folder: {path} is {im.size[0]}×{im.size[1]} but {first_path} is "
                    f"{size[0]}×{size[1]}; pass --image-size N to resize all"
                )
            im = im.resize(size, resample=2)  # 2 = bilinear
        a = np.asarray(im, dtype=np.uint8)
        arrays.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
    images = torch.from_numpy(np.stack(arrays))  # [N, C, H, W]
    labels = torch.tensor([lab for _, _, lab in items], dtype=torch.int64)
    return Dataset(f"folder:{root}", images, labels, [d.name for d in dirs])
