"""Data stage: every source → uint8 [N, C, H, W], int64 labels, class names; bad input → one error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from synthequiv.inputs.data import DataConfig, load_dataset
from synthequiv.utils import SynthequivError

DIGITS_COUNTS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]  # sklearn load_digits


def load(source: str, **kw):
    return load_dataset(DataConfig(source=source, **kw))


# ----------------------------------------------------------------------------- bundled / offline


def test_digits_is_uint8_nchw_with_ten_classes(digits):
    assert digits.images.shape == (1797, 1, 8, 8)
    assert digits.images.dtype == torch.uint8
    assert int(digits.images.max()) == 255 and int(digits.images.min()) == 0
    assert digits.labels.dtype == torch.int64
    assert digits.labels.bincount().tolist() == DIGITS_COUNTS
    assert digits.class_names == [str(i) for i in range(10)]
    assert digits.test_images is None and digits.test_labels is None


def test_npz_mnist10k(mnist10k):
    ds = load(f"npz:{mnist10k}")
    raw = np.load(mnist10k)
    assert ds.images.shape == (10000, 1, 28, 28) and ds.images.dtype == torch.uint8
    counts = ds.labels.bincount(minlength=10)
    assert int(counts.sum()) == 10000 and len(counts) == 10 and int(counts.min()) > 0
    assert counts.tolist() == np.bincount(raw["labels"]).tolist()
    assert ds.class_names == [str(i) for i in range(10)]
    assert torch.equal(ds.images[123, 0], torch.from_numpy(raw["images"][123]))
    assert ds.test_images is None


def test_medmnist_pneumonia_uses_official_splits(pneumonia_root):
    ds = load("medmnist:pneumoniamnist", root=str(pneumonia_root))
    assert ds.images.shape == (4708, 1, 28, 28)
    assert ds.labels.bincount().tolist() == [1214, 3494]
    assert ds.test_images.shape == (624, 1, 28, 28)
    assert ds.test_labels.bincount().tolist() == [234, 390]
    assert ds.class_names == ["normal", "pneumonia"]


def test_medmnist_missing_file_names_path_and_download(tmp_path):
    pytest.importorskip("medmnist")
    with pytest.raises(SynthequivError, match="--download") as exc:
        load("medmnist:breastmnist", root=str(tmp_path))
    assert str(tmp_path / "breastmnist.npz") in str(exc.value)


@pytest.mark.parametrize("flag, match", [("nosuchmnist", "unknown MedMNIST flag"),
                                         ("chestmnist", "multi-label")])
def test_medmnist_unsupported_flags(tmp_path, flag, match):
    pytest.importorskip("medmnist")
    with pytest.raises(SynthequivError, match=match):
        load(f"medmnist:{flag}", root=str(tmp_path))


# ----------------------------------------------------------------------------- npz layouts


def test_medmnist_style_npz_grayscale(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {f"{s}_images": rng.integers(0, 256, (n, 5, 5), dtype=np.uint8)
              for s, n in [("train", 6), ("val", 2), ("test", 4)]}
    arrays |= {"train_labels": np.array([[0], [1], [2], [0], [1], [2]]),
               "val_labels": np.array([[0], [1]]), "test_labels": np.array([[2], [1], [0], [0]])}
    np.savez(tmp_path / "m.npz", **arrays)
    ds = load(f"npz:{tmp_path / 'm.npz'}")
    assert ds.images.shape == (6, 1, 5, 5) and ds.test_images.shape == (4, 1, 5, 5)
    assert ds.labels.tolist() == [0, 1, 2, 0, 1, 2]  # [N, 1] flattened
    assert ds.test_labels.tolist() == [2, 1, 0, 0]
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train_images"]))
    assert ds.class_names == ["0", "1", "2"]


def test_npz_rgb_channels_last_becomes_nchw(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (4, 6, 7, 3), dtype=np.uint8)  # [N, H, W, 3]
    xt = rng.integers(0, 256, (2, 6, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "rgb.npz", train_images=x, train_labels=np.array([[0], [1], [1], [0]]),
             test_images=xt, test_labels=np.array([[1], [0]]))
    ds = load(f"npz:{tmp_path / 'rgb.npz'}")
    assert ds.images.shape == (4, 3, 6, 7) and ds.test_images.shape == (2, 3, 6, 7)
    assert torch.equal(ds.images, torch.from_numpy(x).permute(0, 3, 1, 2))
    assert ds.shape == (3, 6, 7)


def test_npz_float_images_in_unit_range_are_scaled(tmp_path):
    x = np.array([[[0.0, 0.5], [1.0, 0.25]]] * 2, dtype=np.float32)  # [2, 2, 2]
    np.savez(tmp_path / "f.npz", images=x, labels=np.array([0, 1]))
    ds = load(f"npz:{tmp_path / 'f.npz'}")
    assert ds.images.dtype == torch.uint8
    assert ds.images[0, 0].tolist() == [[0, 128], [255, 64]]


@pytest.mark.parametrize("images, match", [
    (np.linspace(-1, 1, 6 * 64).reshape(6, 8, 8).astype(np.float32), "range -1 to 1"),
    (np.linspace(0, 4095, 6 * 64).reshape(6, 8, 8).astype(np.uint16), "range 0 to 4095"),
    (np.full((6, 8, 8), -3, np.int16), "range -3 to -3"),
])
def test_npz_images_outside_the_uint8_range_are_refused_not_clipped(tmp_path, images, match):
    """A [-1, 1] float set lost its negative half to clipping (48.9 % → 70.7 % zero pixels)
    and 12-bit data was binarised at 255, both without a word."""
    np.savez(tmp_path / "x.npz", images=images, labels=np.arange(6) % 2)
    with pytest.raises(SynthequivError, match=match):
        load_dataset(DataConfig(source=f"npz:{tmp_path / 'x.npz'}"))


def test_npz_floats_on_the_0_255_scale_are_kept(tmp_path):
    x = np.linspace(0, 255, 6 * 64).reshape(6, 8, 8)
    np.savez(tmp_path / "x.npz", images=x.astype(np.float32), labels=np.arange(6) % 2)
    ds = load_dataset(DataConfig(source=f"npz:{tmp_path / 'x.npz'}"))
    assert ds.images.flatten().tolist() == np.rint(x).astype(np.uint8).flatten().tolist()


def test_npz_class_names_key(tmp_path):
    np.savez(tmp_path / "c.npz", images=np.zeros((3, 4, 4), np.uint8), labels=np.array([0, 1, 1]),
             class_names=np.array(["cat", "dog"]))
    assert load(f"npz:{tmp_path / 'c.npz'}").class_names == ["cat", "dog"]


# ----------------------------------------------------------------------------- folder source


def test_folder_labels_follow_sorted_folder_names(image_folder):
    ds = load(f"folder:{image_folder}")
    assert ds.class_names == ["ant", "bee", "cat"]
    assert ds.images.shape == (7, 1, 5, 6)  # PIL size 6×5 → H=5, W=6
    assert ds.labels.tolist() == [0, 0, 0, 1, 1, 2, 2]
    # image j of class k was filled with 10·k + j
    assert ds.images[:, 0, 0, 0].tolist() == [0, 1, 2, 10, 11, 20, 21]
    assert ds.test_images is None


def test_folder_mixed_rgb_and_gray_become_rgb(tmp_path, png):
    png(tmp_path / "a" / "gray.png", np.full((4, 4), 77, np.uint8))
    png(tmp_path / "b" / "rgb.png", np.dstack([np.full((4, 4), v, np.uint8) for v in (1, 2, 3)]))
    ds = load(f"folder:{tmp_path}")
    assert ds.images.shape == (2, 3, 4, 4)
    assert ds.images[0, :, 0, 0].tolist() == [77, 77, 77]
    assert ds.images[1, :, 0, 0].tolist() == [1, 2, 3]


def test_folder_mixed_sizes_is_an_error_naming_the_file(tmp_path, png):
    png(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    odd = png(tmp_path / "b" / "odd.png", np.zeros((6, 5), np.uint8))
    with pytest.raises(SynthequivError, match="--image-size") as exc:
        load(f"folder:{tmp_path}")
    assert str(odd) in str(exc.value)


def test_folder_image_size_resizes_all(tmp_path, png):
    png(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    png(tmp_path / "b" / "odd.png", np.full((6, 5), 200, np.uint8))
    ds = load(f"folder:{tmp_path}", image_size=3)
    assert ds.images.shape == (2, 1, 3, 3)
    assert ds.images[1].unique().tolist() == [200]  # a constant image stays constant


def _truncated_png(path: Path, png) -> None:
    full = png(path.parent.parent / "full.png",
               np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8))
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("kind", ["random_bytes", "truncated", "text"])
def test_folder_unreadable_file_is_an_error_naming_it(tmp_path, png, kind):
    png(tmp_path / "a" / "ok.png", np.zeros((4, 4), np.uint8))
    png(tmp_path / "b" / "ok.png", np.zeros((4, 4), np.uint8))
    bad = tmp_path / "b" / ("notes.txt" if kind == "text" else "bad.png")
    if kind == "random_bytes":
        bad.write_bytes(np.random.default_rng(300).bytes(300))
    elif kind == "truncated":
        _truncated_png(bad, png)
    else:
        bad.write_text("not an image\n")
    with pytest.raises(SynthequivError, match="cannot read image") as exc:
        load(f"folder:{tmp_path}")
    assert str(bad) in str(exc.value)


def test_folder_empty_class_is_an_error(tmp_path, png):
    png(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "empty").mkdir()
    with pytest.raises(SynthequivError, match="empty") as exc:
        load(f"folder:{tmp_path}")
    assert str(tmp_path / "empty") in str(exc.value)


def test_folder_hidden_files_and_folders_are_ignored(tmp_path, png):
    png(tmp_path / "a" / "x.png", np.zeros((4, 4), np.uint8))
    png(tmp_path / "b" / "y.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "a" / ".DS_Store").write_bytes(np.random.default_rng(64).bytes(64))
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "junk.bin").write_bytes(np.random.default_rng(64).bytes(64))
    ds = load(f"folder:{tmp_path}")
    assert ds.class_names == ["a", "b"] and len(ds.images) == 2


@pytest.mark.parametrize("layout", ["missing", "no_subfolders"])
def test_folder_without_class_folders_is_an_error(tmp_path, png, layout):
    root = tmp_path / "nothing"
    if layout == "no_subfolders":
        png(root / "loose.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(SynthequivError, match=str(root)):
        load(f"folder:{root}")


# ----------------------------------------------------------------------------- torchvision


def test_torchvision_mnist_reads_idx_files(mnist_idx_root):
    root, arrays = mnist_idx_root
    ds = load("mnist", root=str(root))
    assert ds.images.shape == (6, 1, 4, 4) and ds.test_images.shape == (3, 1, 4, 4)
    assert ds.labels.tolist() == [3, 1, 4, 1, 5, 9]
    assert ds.test_labels.tolist() == [2, 7, 0]
    assert torch.equal(ds.images[:, 0], torch.from_numpy(arrays["train"][0]))
    assert torch.equal(ds.test_images[:, 0], torch.from_numpy(arrays["t10k"][0]))
    assert len(ds.class_names) == 10 and ds.class_names[0].startswith("0")


@pytest.mark.parametrize("source, marker", [("mnist", "MNIST/raw/train-images-idx3-ubyte"),
                                            ("cifar10", "cifar-10-batches-py")])
def test_torchvision_missing_files_offline(tmp_path, source, marker):
    with pytest.raises(SynthequivError, match="--download") as exc:
        load(source, root=str(tmp_path))
    assert str(tmp_path / marker) in str(exc.value)
    assert not any(tmp_path.iterdir())  # nothing fetched or created without --download


@pytest.mark.parametrize("damage", ["truncated", "zeroed"])
def test_torchvision_corrupt_files_are_one_error(mnist_idx_root, damage):
    root, _ = mnist_idx_root
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = f.read_bytes()
    f.write_bytes(data[:-10] if damage == "truncated" else bytes(len(data)))
    with pytest.raises(SynthequivError, match="--download") as exc:
        load("mnist", root=str(root))
    assert str(root) in str(exc.value) and "\n" not in str(exc.value)


def test_torchvision_root_defaults_to_env(mnist_idx_root, monkeypatch):
    root, _ = mnist_idx_root
    monkeypatch.setenv("SYNTHEQUIV_DATA", str(root))
    assert len(load("mnist").images) == 6


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("source", ["imagenet", "digits:extra", "npz:", "folder:", "medmnist:",
                                    "mnist:x"])
def test_unknown_source(source):
    with pytest.raises(SynthequivError, match="unknown data source"):
        load(source)


def test_npz_missing_path(tmp_path):
    with pytest.raises(SynthequivError, match="not found") as exc:
        load(f"npz:{tmp_path / 'nope.npz'}")
    assert str(tmp_path / "nope.npz") in str(exc.value)


@pytest.mark.parametrize("arrays, match", [
    ({"images": np.zeros((2, 4, 4), np.uint8)}, "needs keys"),
    ({"x": np.zeros(2)}, "found x"),
    ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.zeros(2, int),
      "test_images": np.zeros((2, 4, 4), np.uint8)}, "missing key.*test_labels"),
])
def test_npz_missing_keys(tmp_path, arrays, match):
    np.savez(tmp_path / "k.npz", **arrays)
    with pytest.raises(SynthequivError, match=match):
        load(f"npz:{tmp_path / 'k.npz'}")


@pytest.mark.parametrize("arrays, match", [
    ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.array([0, 1])},
     "3 images but 2 labels"),
    ({"images": np.zeros((3, 4, 4), np.uint8), "labels": np.array([0, -1, 1])},
     "label -1 is negative"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0, 2]),
      "class_names": np.array(["a", "b"])}, r"label 2 out of range \[0, 2\)"),
    ({"images": np.zeros((2, 4, 4), np.uint8), "labels": np.array([0.0, 1.5])},
     "must be integers"),
    ({"images": np.zeros((2, 4), np.uint8), "labels": np.array([0, 1])}, "images must be"),
    ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([0, 1]),
      "test_images": np.zeros((2, 5, 5), np.uint8), "test_labels": np.array([0, 1])},
     "differ in shape"),
    ({"train_images": np.zeros((2, 4, 4), np.uint8), "train_labels": np.array([0, 1]),
      "test_images": np.zeros((3, 4, 4), np.uint8), "test_labels": np.array([0, 1])},
     "test has 3 images but 2 labels"),
])
def test_npz_inconsistent_contents(tmp_path, arrays, match):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(SynthequivError, match=match):
        load(f"npz:{tmp_path / 'bad.npz'}")


@pytest.mark.parametrize("kind", ["truncated", "random_bytes", "npy"])
def test_npz_unreadable_file(tmp_path, kind):
    path = tmp_path / "broken.npz"
    if kind == "truncated":
        np.savez_compressed(path, images=np.zeros((50, 8, 8), np.uint8), labels=np.zeros(50, int))
        path.write_bytes(path.read_bytes()[:200])
    elif kind == "random_bytes":
        path.write_bytes(np.random.default_rng(500).bytes(500))
    else:
        with open(path, "wb") as f:
            np.save(f, np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(SynthequivError, match="cannot read") as exc:
        load(f"npz:{path}")
    assert str(path) in str(exc.value)
