"""Sampling stage: per-sample seeding, guidance, input checks, sample files, grids.

Runs on an untrained tiny generator (seeded init, 20 training timesteps so the 'ddpm'
reference sampler stays fast): seeding and shapes do not need a trained model.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import synthequiv.generation.sampling as S
from synthequiv.generation.generator import (
    BackbonePreset,
    Generator,
    build_backbone,
    make_generator,
)
from synthequiv.generation.sampling import (
    BlockNet,
    SampleConfig,
    class_quota_labels,
    load_samples,
    net_block_rows,
    sample_images,
    save_grid_png,
    save_samples,
)
from synthequiv.utils import SynthequivError

TINY = BackbonePreset(8, (16, 32), (False, False), layers_per_block=1, mid_attention=False,
                      norm_num_groups=4, attention_head_dim=16)


def tiny_generator(num_classes: int = 10, shape=(1, 8, 8), prediction="v_prediction"):
    torch.manual_seed(0)
    return Generator(build_backbone(TINY, shape[0], num_classes), num_classes, shape, 8,
                     prediction, num_train_timesteps=20).eval()


@pytest.fixture(scope="module")
def gen() -> Generator:
    return tiny_generator()


@pytest.fixture(scope="module")
def labels() -> torch.Tensor:
    return torch.arange(100) % 10


def _sample(gen, labels, offset=0, **kw):
    return sample_images(gen, labels, SampleConfig(**{"steps": 4, **kw}), progress=False,
                         index_offset=offset)


# ----------------------------------------------------------------------------- seeding


@pytest.mark.parametrize("block", [None, 16])  # None: the CPU default (256 rows at 8 px)
@pytest.mark.parametrize("sampler", ["dpmpp", "ddim", "ddpm"])
def test_batch_size_and_sharding_do_not_change_images(gen, labels, sampler, block, monkeypatch):
    if block:  # small blocks: several network calls per batch, batches of 16, 64 and 112
        monkeypatch.setattr(S, "net_block_rows", lambda device, resolution: block)
    whole = _sample(gen, labels, sampler=sampler, batch_size=64)
    assert whole.dtype == torch.uint8 and whole.shape == (100, 1, 8, 8)
    assert torch.equal(whole, _sample(gen, labels, sampler=sampler, batch_size=7))
    assert torch.equal(whole, _sample(gen, labels, sampler=sampler, batch_size=100))
    # shard boundaries off the block grid: image 13 is row 0 of its call instead of row 13
    shards = torch.cat([_sample(gen, labels[:13], 0, sampler=sampler),
                        _sample(gen, labels[13:50], 13, sampler=sampler),
                        _sample(gen, labels[50:], 50, sampler=sampler)])
    assert torch.equal(whole, shards)


def test_seed_and_offset_change_images(gen, labels):
    a = _sample(gen, labels[:20])
    assert not torch.equal(a, _sample(gen, labels[:20], seed=1))
    assert not torch.equal(a, _sample(gen, labels[:20], offset=1))
    assert torch.equal(a[1:], _sample(gen, labels[1:20], offset=1))


def test_network_rows_are_independent_at_a_fixed_shape(gen):
    """The premise of BlockNet: at one shape, row i's output ignores the other rows."""
    block = net_block_rows(torch.device("cpu"), 8)
    x, y, t = torch.randn(block + 5, 1, 8, 8), torch.arange(block + 5) % 10, torch.tensor(7)
    net = BlockNet(gen, 1.0, block, torch.device("cpu"))
    full = net(x, t, y)
    assert torch.equal(full[:5], net(x[:5], t, y[:5]))
    assert torch.equal(full[block:], net(x[block:], t, y[block:]))
    assert torch.equal(full[:5], BlockNet(gen, 1.0, block, torch.device("cpu"))(x[:5], t, y[:5]))


# ----------------------------------------------------------------------------- guidance


def test_guidance_returns_one_type_and_changes_images(gen, labels):
    x, t, y = torch.randn(6, 1, 8, 8), torch.full((6,), 10), labels[:6]
    outs = [gen.guided(x, t, y, s) for s in (0.0, 1.0, 2.5)]
    assert all(isinstance(o, torch.Tensor) and o.shape == x.shape for o in outs)
    assert torch.allclose(outs[1], gen(x, t, y)) and not torch.allclose(outs[0], outs[1])
    # s = 2.5 is the extrapolation uncond + 2.5·(cond − uncond)
    assert torch.allclose(outs[2], outs[0] + 2.5 * (outs[1] - outs[0]), atol=1e-5)
    imgs = [_sample(gen, labels[:10], cfg_scale=s) for s in (0.0, 1.0, 3.0)]
    assert not torch.equal(imgs[0], imgs[1]) and not torch.equal(imgs[1], imgs[2])


def test_28px_images_come_back_at_28px():
    g = make_generator("32px", 3, (1, 28, 28), "v_prediction").eval()
    x = torch.randint(0, 256, (5, 1, 28, 28), dtype=torch.uint8)
    z = g.encode(x)
    assert z.shape == (5, 1, 32, 32) and torch.all(z[:, :, :2] == -1.0)  # black 2-px border
    assert torch.equal(g.decode(z), x)
    out = sample_images(g, torch.tensor([0, 2]), SampleConfig(steps=1), progress=False)
    assert out.shape == (2, 1, 28, 28) and out.dtype == torch.uint8


def test_larger_images_are_resized_and_back():
    g = Generator(build_backbone(TINY, 3, 2), 2, (3, 12, 20), 8, "epsilon").eval()
    assert g.encode(torch.zeros(2, 3, 12, 20, dtype=torch.uint8)).shape == (2, 3, 8, 8)
    out = sample_images(g, torch.tensor([0, 1, 1]), SampleConfig(steps=2), progress=False)
    assert out.shape == (3, 3, 12, 20)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("kw, match", [
    ({"cfg_scale": -0.5}, "cfg_scale"),
    ({"steps": 0}, "steps"),
    ({"batch_size": 0}, "batch_size"),
    ({"sampler": "euler"}, "sampler"),
])
def test_bad_sample_config(gen, kw, match):
    with pytest.raises(SynthequivError, match=match):
        _sample(gen, torch.tensor([0, 1]), **kw)


@pytest.mark.parametrize("bad", [torch.tensor([0, 10]), torch.tensor([-1]),
                                 torch.tensor([0.0, 1.0]), torch.zeros(2, 2, dtype=torch.long)])
def test_bad_labels(gen, bad):
    with pytest.raises(SynthequivError):
        _sample(gen, bad)


def test_negative_offset(gen):
    with pytest.raises(SynthequivError, match="index_offset"):
        _sample(gen, torch.tensor([0]), offset=-1)


def test_class_quota_labels():
    assert class_quota_labels(2, 3).tolist() == [0, 0, 1, 1, 2, 2]
    assert class_quota_labels([1, 0, 2], 3).tolist() == [0, 2, 2]
    assert class_quota_labels(1, 2).dtype == torch.int64
    for per_class, n in [(0, 3), (-2, 3), ([1, 2], 3), ([1, -1, 1], 3), ([0, 0], 2), (1, 0)]:
        with pytest.raises(SynthequivError):
            class_quota_labels(per_class, n)


# ----------------------------------------------------------------------------- files


def test_samples_file_roundtrip(tmp_path):
    images = torch.randint(0, 256, (12, 3, 5, 7), dtype=torch.uint8)
    labels = class_quota_labels(4, 3)
    path = tmp_path / "s.npz"
    save_samples(path, images, labels, {"sampler": "dpmpp", "steps": 25, "path": tmp_path})
    x, y, meta = load_samples(path)
    assert torch.equal(x, images) and torch.equal(y, labels) and y.dtype == torch.int64
    assert meta == {"sampler": "dpmpp", "steps": 25, "path": str(tmp_path)}
    with np.load(path, allow_pickle=False) as f:  # plain arrays, no pickled objects
        assert json.loads(str(f["meta_json"]))["steps"] == 25
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]  # no temp file left behind


def test_samples_file_errors(tmp_path):
    with pytest.raises(SynthequivError):
        load_samples(tmp_path / "missing.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(3))
    with pytest.raises(SynthequivError, match="samples file"):
        load_samples(tmp_path / "other.npz")
    with pytest.raises(SynthequivError):
        save_samples(tmp_path / "s.npz", torch.zeros(2, 1, 8, 8), torch.zeros(2).long(), {})


def test_grid_png(tmp_path):
    from PIL import Image

    images = torch.randint(0, 256, (7, 1, 8, 8), dtype=torch.uint8)
    labels = torch.tensor([0, 0, 0, 1, 2, 2, 2])
    save_grid_png(tmp_path / "g.png", images, labels, num_classes=3, per_row=4)
    with Image.open(tmp_path / "g.png") as im:
        # 3 rows × 4 columns of 32-px cells (8 px upscaled ×4) with 2-px padding
        assert im.size == (4 * 34 + 2, 3 * 34 + 2)
    with pytest.raises(SynthequivError):
        save_grid_png(tmp_path / "h.png", images, labels, num_classes=2)
