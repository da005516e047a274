"""Generator stage: tiny end-to-end runs, resume invariants, fidelity on digits, bad inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import synthequiv.generation.generator as G
from synthequiv.generation.generator import (
    GENERATOR_PRESETS,
    GeneratorConfig,
    load_generator,
    resolve_preset,
    train_generator,
)
from synthequiv.generation.sampling import SampleConfig, class_quota_labels, sample_images
from synthequiv.utils import SynthequivError, atomic_torch_save

# 16 steps of 32 images, a checkpoint every 8 steps: enough to exercise every code path
TINY = GeneratorConfig(train_kimg=0.512, batch_size=32, warmup_kimg=0.128,
                       checkpoint_every_kimg=0.256, ema_halflife_kimg=0.1)


@pytest.fixture(scope="module")
def digits():
    """sklearn digits as uint8 [N, 1, 8, 8]; base = 20/class (seeded), rest = the others."""
    from synthequiv.inputs.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig())  # the data stage's digits: uint8 [N, 1, 8, 8], int64 labels
    x, y = ds.images, ds.labels
    perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))
    base = torch.cat([perm[y[perm] == c][:20] for c in range(10)])
    rest = torch.ones(len(y), dtype=torch.bool)
    rest[base] = False
    return x[base], y[base], x[rest], y[rest]


@pytest.fixture(scope="module")
def judge(digits):
    """A real-trained classifier (SVC on pixels of the non-base digits): fidelity referee."""
    from sklearn.svm import SVC

    *_, x_rest, y_rest = digits
    svc = SVC().fit(x_rest.flatten(1).numpy() / 255.0, y_rest.numpy())
    return lambda images: svc.predict(images.flatten(1).numpy() / 255.0)


@pytest.fixture(scope="module")
def tiny_run(digits, tmp_path_factory):
    """TINY trained once on the digits base set; tests only read its directory."""
    x, y, *_ = digits
    return train_generator(x, y, 10, TINY, tmp_path_factory.mktemp("tiny"), progress=False)


def fidelity(judge, gen, per_class: int, **sample_kw) -> float:
    labels = class_quota_labels(per_class, gen.num_classes)
    images = sample_images(gen, labels, SampleConfig(**sample_kw), progress=False)
    return float((judge(images) == labels.numpy()).mean())


# ----------------------------------------------------------------------------- end to end


def test_tiny_end_to_end(digits, tiny_run):
    x, y, *_ = digits
    path, out_dir = tiny_run, tiny_run.parent
    assert path.name == "checkpoint.pt" and path.exists()
    state = torch.load(path, weights_only=True)
    assert state["step"] == 16 and state["finished"] and state["preset"] == "8px"
    assert state["image_shape"] == [1, 8, 8] and state["num_classes"] == 10
    # a unet checkpoint's config is the view without the family fields (keys predate them)
    assert state["config"] == {k: v for k, v in dataclasses.asdict(TINY).items()
                               if k not in G.FAMILY_FIELDS}
    assert {"model", "ema", "optimizer"} <= set(state)
    gen = load_generator(out_dir)
    assert not gen.training and gen.num_classes == 10 and gen.null_class == 10
    ema = state["ema"]
    assert all(torch.equal(v, ema[k]) for k, v in gen.state_dict().items())
    assert not all(torch.equal(v, state["model"][k]) for k, v in ema.items())
    images = sample_images(gen, torch.tensor([3, 1, 4, 1, 5]), SampleConfig(steps=5),
                           progress=False)
    assert images.shape == (5, 1, 8, 8) and images.dtype == torch.uint8
    # a finished checkpoint is returned at once, untouched
    mtime = path.stat().st_mtime_ns
    assert train_generator(x, y, 10, TINY, out_dir, progress=False) == path
    assert path.stat().st_mtime_ns == mtime


def test_checkpoint_describes_its_backbone(tiny_run, monkeypatch):
    monkeypatch.delitem(GENERATOR_PRESETS, "8px")  # the registry may change after training
    gen = load_generator(tiny_run.parent)
    assert gen.resolution == 8 and gen.image_shape == (1, 8, 8)


class _Interrupt(Exception):
    pass


def test_resumed_run_equals_uninterrupted(digits, tiny_run, tmp_path, monkeypatch):
    x, y, *_ = digits
    whole = torch.load(tiny_run, weights_only=True)
    save = G._save_checkpoint

    def save_then_die(*args, **kw):  # killed right after the first (halfway) checkpoint
        save(*args, **kw)
        raise _Interrupt

    monkeypatch.setattr(G, "_save_checkpoint", save_then_die)
    with pytest.raises(_Interrupt):
        train_generator(x, y, 10, TINY, tmp_path / "b", progress=False)
    half = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert half["step"] == 8 and not half["finished"]
    with pytest.raises(SynthequivError, match="not finished"):
        load_generator(tmp_path / "b")
    monkeypatch.setattr(G, "_save_checkpoint", save)
    resumed = torch.load(train_generator(x, y, 10, TINY, tmp_path / "b", progress=False),
                         weights_only=True)
    assert resumed["step"] == whole["step"] == 16 and resumed["finished"]
    for part in ("model", "ema"):
        for k, v in whole[part].items():
            assert torch.equal(v, resumed[part][k]), (part, k)


def test_other_setup_is_refused(digits, tiny_run):
    x, y, *_ = digits
    out_dir = tiny_run.parent
    with pytest.raises(SynthequivError, match="config.lr"):
        train_generator(x, y, 10, dataclasses.replace(TINY, lr=1e-4), out_dir, progress=False)
    with pytest.raises(SynthequivError, match="num_classes"):
        train_generator(x, y, 11, TINY, out_dir, progress=False)
    with pytest.raises(SynthequivError, match="data_digest"):
        train_generator(x[1:], y[1:], 10, TINY, out_dir, progress=False)
    with pytest.raises(SynthequivError, match="image_shape"):
        train_generator(x.expand(-1, 3, -1, -1).contiguous(), y, 10, TINY, out_dir,
                        progress=False)


def test_nan_loss_suggests_lower_lr(digits, tmp_path):
    x, y, *_ = digits
    cfg = dataclasses.replace(TINY, lr=1e30, warmup_kimg=0.0, grad_clip=0.0)
    with pytest.raises(SynthequivError, match="lower generator.lr"):
        train_generator(x, y, 10, cfg, tmp_path, progress=False)


def test_mapped_checkpoint_reads_the_same_and_survives_a_rewrite(tiny_run, tmp_path):
    """Sampling and the finished-checks map the checkpoint (only what is used is read): the
    same entries as a full read, and a mapped state stays valid when the file is replaced
    (checkpoints are written by rename) — its tensors keep the old file's values."""
    import shutil

    full = G.read_checkpoint(tiny_run)
    path = tmp_path / "checkpoint.pt"
    shutil.copy(tiny_run, path)
    mapped = G.read_checkpoint(path, mmap=True)
    assert mapped.keys() == full.keys() and mapped["step"] == full["step"]
    for part in ("model", "ema"):
        for k, v in full[part].items():
            assert torch.equal(v, mapped[part][k]), (part, k)
    k = next(iter(full["ema"]))
    atomic_torch_save({**full, "ema": {**full["ema"], k: full["ema"][k] + 1}}, path)
    assert torch.equal(mapped["ema"][k], full["ema"][k])  # the old file's bytes, still mapped
    assert torch.equal(G.read_checkpoint(path, mmap=True)["ema"][k], full["ema"][k] + 1)
    loaded = load_generator(tiny_run.parent).state_dict()  # mapped: the EMA weights
    assert loaded.keys() == full["ema"].keys()
    assert all(torch.equal(v, full["ema"][k]) for k, v in loaded.items())


def test_corrupt_or_missing_checkpoint(tmp_path, digits):
    with pytest.raises(SynthequivError, match="train one first"):
        load_generator(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(SynthequivError, match="cannot read"):
        load_generator(tmp_path)
    x, y, *_ = digits
    with pytest.raises(SynthequivError, match="cannot read"):
        train_generator(x, y, 10, TINY, tmp_path, progress=False)


@pytest.mark.parametrize("case, match", [
    ("empty", "empty"), ("label_high", "labels must lie"), ("label_neg", "labels must lie"),
    ("float_images", "uint8"), ("two_channels", "channels"), ("label_len", "int64"),
    ("zero_classes", "num_classes"), ("kimg", "train_kimg"), ("batch", "batch_size"),
    ("dropout", "label_dropout"), ("prediction", "prediction"), ("preset", "preset"),
])
def test_bad_inputs(digits, tmp_path, case, match):
    x, y, *_ = digits
    n, cfg = 10, TINY
    if case == "empty":
        x, y = x[:0], y[:0]
    elif case == "label_high":
        y = y.clone()
        y[0] = 10
    elif case == "label_neg":
        y = y - 1
    elif case == "float_images":
        x = x.float()
    elif case == "two_channels":
        x = x.expand(-1, 2, -1, -1)
    elif case == "label_len":
        y = y[:-1]
    elif case == "zero_classes":
        n = 0
    else:
        field, value = {"kimg": ("train_kimg", 0.0), "batch": ("batch_size", -4),
                        "dropout": ("label_dropout", 1.0), "prediction": ("prediction", "x0"),
                        "preset": ("preset", "7px")}[case]
        cfg = dataclasses.replace(TINY, **{field: value})
    with pytest.raises(SynthequivError, match=match):
        train_generator(x, y, n, cfg, tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_auto_preset_by_resolution():
    assert [resolve_preset("auto", (1, s, s)) for s in (8, 12, 16, 28, 32, 64, 96)] == \
        ["8px", "16px", "16px", "32px", "32px", "64px", "64px"]
    assert resolve_preset("auto", (3, 28, 40)) == "64px"
    assert {p.resolution for p in GENERATOR_PRESETS.values()} == {8, 16, 32, 64}
    assert resolve_preset("32px-small", (1, 28, 28)) == "32px-small"


@pytest.fixture
def tiny_32px(monkeypatch):
    """A 32-px preset small enough to train on CPU in a test (the real one is GPU-sized)."""
    small = G.BackbonePreset(32, (16, 32), (False, False), norm_num_groups=4,
                             attention_head_dim=16, mid_attention=False)
    monkeypatch.setitem(GENERATOR_PRESETS, "32px", small)


def test_28px_trains_and_samples_at_28px(tiny_32px, tmp_path):
    x = torch.randint(0, 256, (12, 1, 28, 28), dtype=torch.uint8)
    y = torch.arange(12) % 3
    cfg = dataclasses.replace(TINY, train_kimg=0.016, batch_size=8)
    path = train_generator(x, y, 3, cfg, tmp_path, progress=False)
    state = torch.load(path, weights_only=True)
    assert state["preset"] == "32px" and state["resolution"] == 32
    out = sample_images(load_generator(tmp_path), torch.tensor([0, 1, 2, 2]),
                        SampleConfig(steps=2), progress=False)
    assert out.shape == (4, 1, 28, 28) and out.dtype == torch.uint8


@pytest.mark.slow
def test_real_32px_preset_runs_on_cpu(tmp_path):
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    cfg = dataclasses.replace(TINY, train_kimg=0.004, batch_size=2)
    train_generator(x, torch.tensor([0, 1, 0, 1]), 2, cfg, tmp_path, progress=False)
    out = sample_images(load_generator(tmp_path), torch.tensor([1]), SampleConfig(steps=2),
                        progress=False)
    assert out.shape == (1, 3, 32, 32)


# ----------------------------------------------------------------------------- fidelity


def test_short_training_already_draws_the_right_digits(digits, judge, tmp_path):
    """Fast check: the first 50 default steps (0.83 measured); an untrained model ≈ 0.1."""
    x, y, *_ = digits
    cfg = dataclasses.replace(GeneratorConfig(), train_kimg=3.2)
    gen = load_generator(train_generator(x, y, 10, cfg, tmp_path, progress=False).parent)
    assert fidelity(judge, gen, per_class=20, steps=10) >= 0.6


@pytest.mark.slow
def test_default_generator_fidelity_on_digits(digits, judge, tmp_path):
    """The reference target: default config, 20 digits/class → ≥ 0.90 conditional fidelity."""
    x, y, *_ = digits
    gen = load_generator(train_generator(x, y, 10, GeneratorConfig(), tmp_path, progress=False)
                         .parent)
    assert fidelity(judge, gen, per_class=50) >= 0.90  # 500 images, default sampler


@pytest.mark.slow
def test_compiled_training_and_sampling_match_eager(digits, tiny_run, tmp_path, monkeypatch):
    """torch.compile (inductor; ~40 s to compile on CPU) changes rounding only: the same
    16 steps land on the eager weights, and compiled sampling draws the eager images. In
    float32 (bf16 autocast would turn rounding differences into 1e-2 weight differences)."""
    from synthequiv.utils import BF16_ENV, compile_unavailable

    if compile_unavailable("cpu"):
        pytest.skip(f"torch.compile cannot run here: {compile_unavailable('cpu')}")
    monkeypatch.setenv(BF16_ENV, "0")
    x, y, *_ = digits
    compiled = torch.load(train_generator(x, y, 10, TINY, tmp_path / "c", progress=False,
                                          compile=True), weights_only=True)
    eager = torch.load(train_generator(x, y, 10, TINY, tmp_path / "e", progress=False),
                       weights_only=True)
    assert list(compiled["model"]) == list(eager["model"])  # no "_orig_mod." keys
    for k, v in eager["ema"].items():
        torch.testing.assert_close(compiled["ema"][k], v, atol=1e-4, rtol=1e-4)
    labels = class_quota_labels(3, 10)
    cfg = SampleConfig(steps=5)
    a = sample_images(load_generator(tiny_run.parent), labels, cfg, progress=False).int()
    b = sample_images(load_generator(tiny_run.parent, compile=True), labels, cfg,
                      progress=False).int()
    assert (a == b).float().mean() > 0.99 and (a - b).abs().max() <= 8


def test_compile_where_it_cannot_run_is_eager_with_one_log_line(digits, tmp_path, monkeypatch):
    """A preset that compiles (cifar10, bloodmnist) still runs where torch.compile cannot
    (no C++ compiler on a CPU, no Triton, a pre-Volta GPU): eager, said once in the log."""
    from torch import nn

    from synthequiv import utils
    from synthequiv.runtime.runlog import run_log

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no compiler on the PATH
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in utils.compile_unavailable.__wrapped__("cpu")
    monkeypatch.setattr(G, "compile_unavailable", lambda *a: "no C++ compiler found (test)")
    monkeypatch.setattr(G, "_COMPILE_WARNED", set())
    monkeypatch.setattr(nn.Module, "compile", lambda self, *a, **k: pytest.fail("compiled"))
    x, y, *_ = digits
    short = dataclasses.replace(TINY, train_kimg=0.064)
    with run_log(tmp_path / "run"):
        path = train_generator(x, y, 10, short, tmp_path / "g", progress=False, compile=True)
        G.load_generator(path.parent, compile=True)
    lines = [ln for ln in (tmp_path / "run" / "log.txt").read_text().splitlines()
             if "compile: off" in ln]
    assert len(lines) == 1 and "no C++ compiler found (test)" in lines[0]
    assert not G.use_compile(False, "cpu")


def test_cpu_bf16_autocast_choice(monkeypatch):
    """auto follows the CPU's bf16 instructions; 0/1 force it; anything else is refused by
    config.validate before work starts; CUDA always autocasts."""
    from synthequiv import utils
    from synthequiv.config import StudyConfig, validate

    cpu = torch.device("cpu")
    monkeypatch.setenv(utils.BF16_ENV, "auto")
    assert utils.generator_autocast(cpu)._enabled == utils.cpu_has_native_bf16()
    monkeypatch.setenv(utils.BF16_ENV, "0")
    assert not utils.generator_autocast(cpu)._enabled
    monkeypatch.setenv(utils.BF16_ENV, "1")
    assert utils.generator_autocast(cpu)._enabled
    assert utils.generator_autocast(cpu).fast_dtype == torch.bfloat16
    monkeypatch.setenv(utils.BF16_ENV, "yes")
    with pytest.raises(SynthequivError, match="SYNTHEQUIV_CPU_BF16 must be auto, 0 or 1"):
        validate(StudyConfig())


def test_cpu_bf16_training_is_close_to_float32(digits, tmp_path, monkeypatch):
    """bf16 autocast on the CPU trains the same model up to bf16 rounding: finite, close to
    the float32 weights, not equal to them (so the switch really changes the arithmetic),
    and a resumed bf16 run equals an uninterrupted one exactly."""
    from synthequiv.utils import BF16_ENV

    x, y, *_ = digits
    monkeypatch.setenv(BF16_ENV, "0")
    f32 = torch.load(train_generator(x, y, 10, TINY, tmp_path / "f", progress=False),
                     weights_only=True)["ema"]
    monkeypatch.setenv(BF16_ENV, "1")
    bf = torch.load(train_generator(x, y, 10, TINY, tmp_path / "b", progress=False),
                    weights_only=True)["ema"]
    diff = max(float((bf[k] - v).abs().max()) for k, v in f32.items() if v.is_floating_point())
    scale = max(float(v.abs().max()) for v in f32.values() if v.is_floating_point())
    assert 0 < diff < 0.05 * scale
    half = dataclasses.replace(TINY, train_kimg=TINY.train_kimg / 2)
    train_generator(x, y, 10, half, tmp_path / "r", progress=False)
    state = torch.load(tmp_path / "r" / "checkpoint.pt", weights_only=True)
    state["config"] = dataclasses.asdict(TINY)  # as if killed halfway through the TINY run
    state["finished"] = False
    torch.save(state, tmp_path / "r" / "checkpoint.pt")
    resumed = torch.load(train_generator(x, y, 10, TINY, tmp_path / "r", progress=False),
                         weights_only=True)["ema"]
    for k, v in bf.items():
        assert torch.equal(resumed[k], v), k
