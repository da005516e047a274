"""The data sources by name, their config and where each looks: light (no torch, numpy or
medmnist import), so `synthequiv datasets` and config errors answer at once.

Sources (`SOURCE` strings):
  digits                 scikit-learn's bundled load_digits (8×8), the embedded default
  mnist | fashion-mnist | kmnist | cifar10 | cifar100 | svhn    torchvision datasets under `root`
  medmnist:<flag>        MedMNIST `<root>/<flag>.npz` (or `<flag>_<size>.npz`), via the medmnist package
  folder:<path>          one sub-folder per class, image files inside (PIL)
  npz:<path>             keys images/labels, or MedMNIST-style train_images/test_images/...
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class DataConfig:
    source: str = "digits"
    root: str = ""  # where torchvision/medmnist files live; "" = $SYNTHEQUIV_DATA or ./data
    download: bool = False  # only fetch files when asked; offline runs never touch the network
    medmnist_size: int = 28  # MedMNIST resolution: 28, 64, 128 or 224 px
    image_size: int = 0  # folder: sources only; 0 = refuse mixed sizes, N = resize all to N×N


TORCHVISION_SOURCES = {
    # name → (torchvision class name, files whose presence means "available offline")
    "mnist": ("MNIST", "MNIST/raw/train-images-idx3-ubyte"),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw/train-images-idx3-ubyte"),
    "kmnist": ("KMNIST", "KMNIST/raw/train-images-idx3-ubyte"),
    "cifar10": ("CIFAR10", "cifar-10-batches-py"),
    "cifar100": ("CIFAR100", "cifar-100-python"),
    "svhn": ("SVHN", "train_32x32.mat"),
}


def data_root(cfg: DataConfig) -> Path:
    return Path(cfg.root or os.environ.get("SYNTHEQUIV_DATA", "data")).expanduser()


def check_source(source: str) -> None:
    """One error line unless `source` names a known kind of data source (its data may still
    be missing: load_dataset says so)."""
    kind, _, arg = source.partition(":")
    if not ((kind == "digits" or kind in TORCHVISION_SOURCES) and not arg
            or kind in ("medmnist", "folder", "npz") and arg):
        raise SynthequivError(
            f"unknown data source '{source}' (run `synthequiv datasets` for the list)"
        )


def medmnist_file(flag: str, root: Path, size: int) -> Path:
    return root / (f"{flag}.npz" if size == 28 else f"{flag}_{size}.npz")


def medmnist_info() -> dict:
    """medmnist's INFO table ({} without the package), read from its info.py alone: importing
    the package imports torch and its datasets (seconds), the table needs none of that."""
    spec = importlib.util.find_spec("medmnist")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "info.py"
    info_spec = importlib.util.spec_from_file_location("_synthequiv_medmnist_info", path)
    if info_spec is None or info_spec.loader is None:
        return {}
    module = importlib.util.module_from_spec(info_spec)
    try:
        info_spec.loader.exec_module(module)
    except (OSError, ImportError, SyntaxError):  # an unusual medmnist layout: ask the package
        import medmnist  # lazy: heavy, and only on this fallback

        return dict(medmnist.INFO)
    return dict(module.INFO)


def list_sources(cfg: DataConfig) -> list[dict]:
    """Every source kind, whether it is available offline here, and where it looks."""
    root = data_root(cfg)
    rows = [{"source": "digits", "available": True, "where": "scikit-learn (bundled)"}]
    for name, (_, marker) in TORCHVISION_SOURCES.items():
        rows.append({"source": name, "available": (root / marker).exists(),
                     "where": str(root / marker)})
    info = medmnist_info()
    flags = [f for f, i in info.items() if not i["task"].startswith("multi-label")]
    for flag in flags:
        path = medmnist_file(flag, root, cfg.medmnist_size)
        rows.append({"source": f"medmnist:{flag}", "available": path.exists(), "where": str(path)})
    rows.append({"source": "folder:<path>", "available": True, "where": "<path>/<class>/*.png|jpg"})
    rows.append({"source": "npz:<path>", "available": True, "where": "<path> (images, labels)"})
    return rows
