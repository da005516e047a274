"""Data stage: every source becomes uint8 images [N, C, H, W], int64 labels [N], class names.

The sources by name, their config and where each looks are in sources.py (light, no torch);
this module loads them, converts them to the one layout and checks them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from synthequiv.inputs.dataset import Dataset  # noqa: F401 (re-exported)
from synthequiv.inputs.sources import (  # noqa: F401 (the data stage's config and sources)
    TORCHVISION_SOURCES,
    DataConfig,
    check_source,
    data_root,
    medmnist_file,
)
from synthequiv.utils import SynthequivError, load_npz

MAX_CLASSES = 100_000  # labels beyond this are refused before any per-class allocation


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load `cfg.source` into memory; any problem is one SynthequivError line."""
    check_source(cfg.source)
    kind, _, arg = cfg.source.partition(":")
    if kind == "digits" and not arg:
        ds = _load_digits()
    elif kind in TORCHVISION_SOURCES and not arg:
        ds = _load_torchvision(kind, data_root(cfg), cfg.download)
    elif kind == "medmnist" and arg:
        ds = _load_medmnist(arg, data_root(cfg), cfg.medmnist_size, cfg.download)
    elif kind == "folder" and arg:
        from synthequiv.inputs.folder import load_folder

        ds = load_folder(Path(arg), cfg.image_size)
    elif kind == "npz" and arg:
        ds = _load_npz(Path(arg))
    else:
        raise SynthequivError(
            f"unknown data source '{cfg.source}' (run `synthequiv datasets` for the list)"
        )
    validate(ds)
    return ds


# ----------------------------------------------------------------------------- conversions


def to_nchw_uint8(images: np.ndarray, what: str) -> torch.Tensor:
    """[N,H,W] / [N,H,W,C] / [N,C,H,W] numpy → uint8 tensor [N, C, H, W] (C = 1 or 3).

    Integers must lie in 0..255; floats in [0, 1] are scaled by 255, floats up to 255 taken as
    0..255. Values outside (a [-1, 1] float pipeline, 12/16-bit integers) are refused: clipping
    them would silently destroy half the image. NaN/inf, complex, bool or non-numeric images are
    refused too: NaN would silently become 0."""
    a = np.asarray(images)
    kind = a.dtype.kind
    if kind not in "uif":
        raise SynthequivError(f"{what}: images must be real numbers (uint8 or float), "
                              f"got dtype {a.dtype}")
    if a.ndim == 3:
        a = a[:, None]
    elif a.ndim == 4 and a.shape[-1] in (1, 3) and a.shape[1] not in (1, 3):
        a = a.transpose(0, 3, 1, 2)
    if a.ndim != 4 or a.shape[1] not in (1, 3):
        raise SynthequivError(f"{what}: images must be [N,H,W], [N,H,W,C] or [N,C,H,W]; got {a.shape}")
    if a.dtype != np.uint8:
        if kind == "f" and a.size and not np.isfinite(a).all():
            raise SynthequivError(f"{what}: images contain NaN or infinite values")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0 or hi > 255:
            hint = ("rescale to [0, 1] first, e.g. (x + 1) / 2 for [-1, 1]" if kind == "f" else
                    "rescale to 0..255 first (e.g. 12- or 16-bit data)")
            raise SynthequivError(f"{what}: image values range {lo:g} to {hi:g}; expected uint8 "
                                  f"0..255 or floats in [0, 1]: {hint}")
        if kind == "f" and hi <= 1.0:
            a = a * 255.0  # float images in [0, 1]
        a = np.clip(np.rint(a), 0, 255).astype(np.uint8)
    return torch.from_numpy(np.ascontiguousarray(a))


def to_labels(labels: np.ndarray, what: str) -> torch.Tensor:
    """One integer class per image → int64 [N]; floats must hold whole numbers."""
    a = np.asarray(labels)
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1:
        raise SynthequivError(f"{what}: labels must be one integer per image; got shape {a.shape}")
    if a.dtype.kind not in "uif":
        raise SynthequivError(f"{what}: labels must be integers, got dtype {a.dtype}")
    if a.dtype.kind == "f":
        if not (np.isfinite(a).all() and np.all(np.mod(a, 1) == 0)):
            raise SynthequivError(f"{what}: labels must be integers")
    if a.size and a.min() < 0:
        raise SynthequivError(f"{what}: label {int(a.min())} is negative (classes are 0, 1, 2, …)")
    if a.size and a.max() >= MAX_CLASSES:
        raise SynthequivError(f"{what}: label {int(a.max())} out of range [0, {MAX_CLASSES})")
    return torch.from_numpy(a.astype(np.int64))


def validate(ds: Dataset) -> Dataset:
    """≥ 2 classes with printable names, lengths match, labels in [0, num_classes), no empty
    split: checked when loading, before any training."""
    pairs = [("train", ds.images, ds.labels)]
    if ds.test_images is not None:
        pairs.append(("test", ds.test_images, ds.test_labels))
    for split, x, y in pairs:
        if len(x) != len(y):
            raise SynthequivError(
                f"{ds.name}: {split} has {len(x)} images but {len(y)} labels"
            )
        if len(y) == 0:
            raise SynthequivError(f"{ds.name}: the {split} split has no images")
    if ds.num_classes < 2:
        raise SynthequivError(f"{ds.name}: {ds.num_classes} class(es); a classifier needs >= 2")
    dup = sorted({n for n in ds.class_names if ds.class_names.count(n) > 1})
    if dup:  # provided sets are matched to classes by name: two classes would get one's images
        raise SynthequivError(f"{ds.name}: duplicate class name(s) {', '.join(map(repr, dup))}; "
                              "every class needs its own name")
    for name in ds.class_names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:  # e.g. a folder name in another encoding
            raise SynthequivError(f"{ds.name}: class name {ascii(name)} is not valid UTF-8; "
                                  "rename it") from None
    for split, _, y in pairs:
        if int(y.min()) < 0 or int(y.max()) >= ds.num_classes:
            bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
            raise SynthequivError(
                f"{ds.name}: {split} label {bad} out of range [0, {ds.num_classes})"
            )
    if ds.test_images is not None and ds.test_images.shape[1:] != ds.images.shape[1:]:
        raise SynthequivError(f"{ds.name}: train and test images differ in shape")
    return ds


# ----------------------------------------------------------------------------- sources


def _load_digits() -> Dataset:
    from sklearn.datasets import load_digits

    d = load_digits()
    # values are 0..16 ink counts → rescale to 0..255
    x = np.rint(d.images * (255.0 / 16.0)).astype(np.uint8)  # [1797, 8, 8]
    return Dataset("digits", to_nchw_uint8(x, "digits"), to_labels(d.target, "digits"),
                   [str(i) for i in range(10)])


def _load_torchvision(name: str, root: Path, download: bool) -> Dataset:
    import torchvision.datasets as tvd

    cls_name, marker = TORCHVISION_SOURCES[name]
    cls = getattr(tvd, cls_name)
    try:
        if name == "svhn":
            train = cls(str(root), split="train", download=download)
            test = cls(str(root), split="test", download=download)
            classes = [str(i) for i in range(10)]
            xs, ys = (train.data, test.data), (train.labels, test.labels)
        else:
            train = cls(str(root), train=True, download=download)
            test = cls(str(root), train=False, download=download)
            classes = list(train.classes)
            xs, ys = (np.asarray(train.data), np.asarray(test.data)), (train.targets, test.targets)
    except RuntimeError as exc:
        raise SynthequivError(
            f"{name}: files not found under {root / marker} ({exc}); "
            f"pass --download to fetch them, or copy them there"
        ) from exc
    except (AssertionError, ValueError, TypeError, KeyError, OSError, EOFError) as exc:
        # files present but corrupt/truncated: torchvision's readers fail with bare asserts
        raise SynthequivError(
            f"{name}: cannot read the files under {root} ({type(exc).__name__}: {exc}); "
            f"delete them and pass --download to fetch them again"
        ) from exc
    return Dataset(name, to_nchw_uint8(xs[0], name), to_labels(np.asarray(ys[0]), name), classes,
                   to_nchw_uint8(xs[1], name), to_labels(np.asarray(ys[1]), name))


def _load_medmnist(flag: str, root: Path, size: int, download: bool) -> Dataset:
    try:
        import medmnist  # lazy: the package imports torch and its datasets
    except ImportError as exc:
        raise SynthequivError("medmnist sources need `pip install synthequiv[medmnist]`") from exc
    if flag not in medmnist.INFO:
        raise SynthequivError(f"unknown MedMNIST flag '{flag}' (known: {', '.join(medmnist.INFO)})")
    info = medmnist.INFO[flag]
    if info["task"].startswith("multi-label"):
        raise SynthequivError(f"medmnist:{flag} is multi-label; only single-label sets are supported")
    path = medmnist_file(flag, root, size)
    if download and not path.exists():
        # the package's own downloader writes <root>/<flag>[_size].npz
        root.mkdir(parents=True, exist_ok=True)
        getattr(medmnist, info["python_class"])(split="train", root=str(root), size=size,
                                                download=True)
    if not path.exists():
        raise SynthequivError(
            f"medmnist:{flag}: {path} not found; pass --download or copy the MedMNIST file there"
        )
    ds = _load_npz(path, name=f"medmnist:{flag}")
    ds.class_names = [info["label"][str(i)] for i in range(len(info["label"]))]
    return ds


def _load_npz(path: Path, name: str | None = None) -> Dataset:
    name = name or f"npz:{path}"
    if not path.exists():
        raise SynthequivError(f"{name}: file not found: {path}")
    arrays = load_npz(path)
    if "train_images" in arrays:  # MedMNIST layout: train/val/test; the pool is train (val unused)
        need = ["train_images", "train_labels", "test_images", "test_labels"]
        missing = [k for k in need if k not in arrays]
        if missing:
            raise SynthequivError(f"{name}: missing key(s) {', '.join(missing)}")
        x, y = arrays["train_images"], arrays["train_labels"]
        xt, yt = arrays["test_images"], arrays["test_labels"]
    elif "images" in arrays and "labels" in arrays:
        x, y, xt, yt = arrays["images"], arrays["labels"], None, None
    else:
        raise SynthequivError(
            f"{name}: needs keys images+labels or train_images/train_labels/test_images/test_labels;"
            f" found {', '.join(arrays) or 'none'}"
        )
    images, labels = to_nchw_uint8(x, name), to_labels(y, name)
    if len(images) != len(labels):
        raise SynthequivError(f"{name}: {len(images)} images but {len(labels)} labels")
    test = (None, None) if xt is None else (to_nchw_uint8(xt, name), to_labels(yt, name))
    return Dataset(name, images, labels, _class_names(arrays, labels, test[1], name), *test)


def _class_names(arrays: dict, labels: torch.Tensor, test_labels, name: str) -> list[str]:
    """The file's class_names (a 1-d array), else "0", "1", … up to the largest label (which
    to_labels has bounded by MAX_CLASSES, so this never allocates without limit)."""
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise SynthequivError(f"{name}: class_names must be a 1-d array of strings, got "
                                  f"shape {names.shape} dtype {names.dtype}")
        return [c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in names]
    top = max((int(t.max()) for t in (labels, test_labels) if t is not None and len(t)),
              default=-1)
    return [str(i) for i in range(top + 1)]
