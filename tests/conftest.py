"""Shared fixtures: the offline data folder, tiny datasets built in tmp_path, CLI runners.

Nothing here writes into ../shared/data; tests that need to change a file copy it first.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# one torch thread: on the 2-vCPU CI machine two threads made small convolutions ~10× slower
torch.set_num_threads(1)


# one CPU per test process (each xdist worker): `workers: 0` (one worker process per core, the
# default) then runs a study's tasks in the test's own process, where its monkeypatches and
# in-process checks apply, and the CLI subprocesses a test starts inherit it (runtime/cpu.py
# cpu_budget). Tests of the worker pool name `workers=2` themselves.
os.environ["SLURM_CPUS_PER_TASK"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- precision


def float32_generator_training():
    """Generator training in float32 also on CPUs with native bf16 (utils.generator_autocast),
    for tests whose tolerances are float32's (DDP vs one process, group vs alone): bf16 turns
    summation-order differences into 1e-2-sized weight differences. The variable reaches
    worker and torchrun processes too. Use as a module-scoped autouse fixture's body:
    `yield from float32_generator_training()`."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SYNTHEQUIV_CPU_BF16", "0")
        yield


# ----------------------------------------------------------------------------- offline data


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data next to the repo; a fresh clone has none, so those tests skip."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"offline data folder {SHARED_DATA} not present (fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def mnist10k(shared_data: Path) -> Path:
    path = shared_data / "mnist10k.npz"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


@pytest.fixture(scope="session")
def pneumonia_root(shared_data: Path) -> Path:
    """Folder holding pneumoniamnist.npz (the `root` of a medmnist:pneumoniamnist source)."""
    if not (shared_data / "pneumoniamnist.npz").is_file():
        pytest.skip(f"{shared_data / 'pneumoniamnist.npz'} not present")
    pytest.importorskip("medmnist", reason="medmnist sources need the medmnist package")
    return shared_data


@pytest.fixture(scope="session")
def digits():
    from synthequiv.inputs.data import DataConfig, load_dataset

    return load_dataset(DataConfig(source="digits"))


# ----------------------------------------------------------------------------- tiny datasets


def indexed_dataset(counts: list[int], test_counts: list[int] | None = None):
    """Dataset whose image i encodes i in its pixels (uint8 [N, 1, 2, 2]): lets tests compare
    image sets, e.g. a hold-out test split against the pool. Labels: `counts[c]` images of
    class c, interleaved so indices of one class are not contiguous."""
    from synthequiv.inputs.data import Dataset

    labels = torch.tensor(
        [c for c, n in enumerate(counts) for _ in range(n)], dtype=torch.int64
    )[torch.randperm(sum(counts), generator=torch.Generator().manual_seed(123))]
    ds = Dataset("indexed", encode_indices(len(labels)), labels, [str(c) for c in range(len(counts))])
    if test_counts is not None:
        ds.test_labels = torch.tensor(
            [c for c, n in enumerate(test_counts) for _ in range(n)], dtype=torch.int64
        )
        ds.test_images = encode_indices(len(ds.test_labels), offset=100_000)
    return ds


def encode_indices(n: int, offset: int = 0) -> torch.Tensor:
    """uint8 [n, 1, 2, 2]: base-256 digits of offset + i, so every image is distinct."""
    v = torch.arange(n, dtype=torch.int64) + offset
    digits = torch.stack([(v >> (8 * k)) & 255 for k in range(4)], dim=1)
    return digits.to(torch.uint8).view(n, 1, 2, 2)


def decode_indices(images: torch.Tensor) -> set[int]:
    d = images.view(len(images), 4).to(torch.int64)
    return set((d[:, 0] + (d[:, 1] << 8) + (d[:, 2] << 16) + (d[:, 3] << 24)).tolist())


@pytest.fixture
def make_indexed():
    return indexed_dataset


@pytest.fixture
def decode():
    return decode_indices


def write_png(path: Path, array: np.ndarray) -> Path:
    """uint8 [H, W] (grayscale) or [H, W, 3] (RGB) → PNG file."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def png():
    return write_png


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """3 classes (written out of order: cat, ant, bee), grayscale 6 wide × 5 high; image j of
    class folder k (sorted) is filled with the value 10·k + j."""
    root = tmp_path / "imgs"
    for name, n in [("cat", 2), ("ant", 3), ("bee", 2)]:
        k = sorted(["ant", "bee", "cat"]).index(name)
        for j in range(n):
            write_png(root / name / f"img{j}.png", np.full((5, 6), 10 * k + j, np.uint8))
    return root


# ----------------------------------------------------------------------------- torchvision IDX


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file as LeCun's MNIST: magic 0x0000_08_<ndim> (uint8), big-endian int32 dims."""
    a = np.asarray(array, dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    magic = 0x0800 | a.ndim  # 2051 for [N, H, W] images, 2049 for [N] labels
    path.write_bytes(struct.pack(f">{1 + a.ndim}i", magic, *a.shape) + a.tobytes())


@pytest.fixture
def mnist_idx_root(tmp_path: Path):
    """<tmp>/MNIST/raw with 6 train and 3 test 4×4 images; pixel values = 10·i + row."""
    raw = tmp_path / "tv" / "MNIST" / "raw"
    arrays = {}
    for split, n, labels in [("train", 6, [3, 1, 4, 1, 5, 9]), ("t10k", 3, [2, 7, 0])]:
        x = (np.arange(n)[:, None, None] * 10 + np.arange(4)[None, :, None]) * np.ones(
            (1, 1, 4), np.int64
        )
        write_idx(raw / f"{split}-images-idx3-ubyte", x)
        write_idx(raw / f"{split}-labels-idx1-ubyte", np.array(labels))
        arrays[split] = (x.astype(np.uint8), np.array(labels))
    return tmp_path / "tv", arrays


# ----------------------------------------------------------------------------- CLI runners


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run `synthequiv ARGS…` in-process through `main()` (the real error handling):
    returns (exit code, stdout, stderr)."""
    from synthequiv import cli as cli_module

    monkeypatch.setenv("COLUMNS", "250")  # rich reads it per print: no truncated paths

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["synthequiv", *map(str, args)])
        capsys.readouterr()
        try:
            cli_module.main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


def run_script(*args: str, console_script: bool = False) -> subprocess.CompletedProcess:
    """`python -m synthequiv.cli ARGS…` (or the installed `synthequiv` console script) in a
    fresh interpreter, from the repo root, with a wide terminal so rich does not truncate."""
    if console_script:
        exe = Path(sys.executable).parent / "synthequiv"
        if not exe.exists():
            pytest.skip(f"console script {exe} not installed (pip install -e .)")
        cmd = [str(exe)]
    else:
        cmd = [sys.executable, "-m", "synthequiv.cli"]
    env = dict(os.environ, COLUMNS="250", NO_COLOR="1")
    return subprocess.run(cmd + [str(a) for a in args], check=False, capture_output=True,
                          text=True, cwd=REPO, env=env, timeout=300)


@pytest.fixture
def script():
    return run_script
