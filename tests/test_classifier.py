"""Classifier stage: digits end-to-end accuracy, determinism, mixing schedules, models, errors."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from synthequiv.classification import classifier as clf
from synthequiv.classification.classifier import (
    ClassifierConfig,
    augment_batch,
    build_classifier,
    evaluate,
    extract_features,
    mixed_batch_indices,
    num_train_steps,
    predict_proba,
    resolve_arch,
    train_classifier,
)
from synthequiv.utils import SynthequivError


@pytest.fixture(scope="module")
def digits():
    """sklearn digits as uint8 [N,1,8,8] (×255/16): 20/class train, held-out 50/class test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = torch.from_numpy(np.rint(d.images * (255.0 / 16.0)).astype(np.uint8))[:, None]
    labels = torch.from_numpy(d.target).long()
    g = torch.Generator().manual_seed(0)
    train, test = [], []
    for c in range(10):
        idx = torch.nonzero(labels == c).flatten()
        idx = idx[torch.randperm(len(idx), generator=g)]
        test.append(idx[:50])
        train.append(idx[50:70])
    train, test = torch.cat(train), torch.cat(test)
    return images[train], labels[train], images[test], labels[test]


def _weights(model: nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


# ----------------------------------------------------------------------------- end to end


def test_digits_smallcnn_reaches_reference_accuracy(digits):
    x, y, xt, yt = digits
    model = train_classifier(x, y, 10, ClassifierConfig(), seed=0)
    assert isinstance(model, clf.SmallCNN) and not model.training
    metrics = evaluate(model, xt, yt, 10)
    assert set(metrics) == {"accuracy", "balanced_accuracy", "auc"}
    assert metrics["accuracy"] >= 0.93, metrics  # reference: 0.977 ± 0.003 at 20/class
    assert metrics["balanced_accuracy"] >= 0.93 and metrics["auc"] > 0.98


def test_same_seed_same_weights_other_seed_differs(digits):
    x, y, xt, yt = digits
    cfg = ClassifierConfig(train_steps=30)
    runs = [train_classifier(x, y, 10, cfg, seed=s) for s in (3, 3, 4)]
    w = [_weights(m) for m in runs]
    assert all(torch.equal(a, b) for a, b in zip(w[0], w[1]))
    assert not all(torch.equal(a, b) for a, b in zip(w[0], w[2]))
    assert evaluate(runs[0], xt, yt, 10) == evaluate(runs[1], xt, yt, 10)


def test_synthetic_only_batches_teach_synthetic_labels(digits):
    """ratio mode, syn_fraction=1: the model learns the synthetic set's (shifted) labels."""
    x, y, xt, yt = digits
    cfg = ClassifierConfig(mixing="ratio", syn_fraction=1.0, train_steps=150)
    model = train_classifier(x, y, 10, cfg, seed=0, syn_images=x, syn_labels=(y + 1) % 10)
    assert evaluate(model, xt, (yt + 1) % 10, 10)["accuracy"] > 0.8


# ----------------------------------------------------------------------------- mixing


@pytest.mark.parametrize("syn_fraction", [0.5, 0.25])
def test_ratio_batches_hold_the_synthetic_share(syn_fraction):
    n_real, n_syn, b, steps = 100, 300, 64, 50
    g = torch.Generator().manual_seed(0)
    idx = mixed_batch_indices(n_real, n_syn, b, syn_fraction, g, num_steps=steps, mixing="ratio")
    assert idx.shape == (steps, b)
    per_batch = (idx >= n_real).sum(1)
    assert (per_batch == round(b * syn_fraction)).all()
    # real indices come in epochs: each real image once per n_real real draws
    real = idx[idx < n_real][:n_real]
    assert torch.equal(real.sort().values, torch.arange(n_real))
    assert int(idx.max()) < n_real + n_syn and int(idx.min()) >= 0


@pytest.mark.parametrize("syn_fraction,n_syn_per_batch", [(0.0, 0), (1.0, 16)])
def test_ratio_extremes_are_all_real_or_all_synthetic(syn_fraction, n_syn_per_batch):
    g = torch.Generator().manual_seed(0)
    idx = mixed_batch_indices(10, 20, 16, syn_fraction, g, num_steps=3, mixing="ratio")
    assert idx.shape == (3, 16) and ((idx >= 10).sum(1) == n_syn_per_batch).all()


def test_concat_pools_real_and_synthetic():
    n_real, n_syn, b = 100, 300, 40
    g = torch.Generator().manual_seed(0)
    idx = mixed_batch_indices(n_real, n_syn, b, 0.5, g, num_steps=10, mixing="concat")
    flat = idx.flatten()  # exactly one epoch over the pooled 400 images
    assert torch.equal(flat.sort().values, torch.arange(n_real + n_syn))
    share = (idx >= n_real).float().mean(1)  # varies per batch: no fixed ratio
    assert share.std() > 0 and abs(share.mean().item() - 0.75) < 1e-6


@pytest.mark.parametrize("mixing", ["ratio", "concat"])
def test_train_classifier_draws_batches_from_the_schedule(digits, monkeypatch, mixing):
    x, y, *_ = digits
    seen = []

    def spy(*args, **kwargs):
        out = mixed_batch_indices(*args, **kwargs)
        seen.append((args, out))
        return out

    monkeypatch.setattr(clf, "mixed_batch_indices", spy)
    cfg = ClassifierConfig(mixing=mixing, syn_fraction=0.5, train_steps=4, batch_size=32)
    train_classifier(x, y, 10, cfg, seed=0, syn_images=x[:50], syn_labels=y[:50])
    (args, idx), = seen
    assert args[:2] == (len(x), 50) and idx.shape == (4, 32)
    if mixing == "ratio":
        assert ((idx >= len(x)).sum(1) == 16).all()


def test_epoch_budget_counts_the_pooled_set():
    cfg = ClassifierConfig(budget="epochs", epochs=2, batch_size=128)
    assert num_train_steps(cfg, 300) == 5
    assert num_train_steps(ClassifierConfig(train_steps=7), 10_000) == 7


def test_augment_batch_crops_and_flips():
    g = torch.Generator().manual_seed(0)
    images = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1), mode="replicate")
    out = augment_batch(padded, torch.tensor([0, 1] * 8), 1, True, g)  # [16, 3, 5, 5]
    assert out.shape == (16, 3, 5, 5)
    for i, o in enumerate(out):
        src = padded[i % 2]
        windows = [src[:, dy:dy + 5, dx:dx + 5] for dy in range(3) for dx in range(3)]
        windows += [w.flip(-1) for w in windows]
        assert any(torch.equal(o, w) for w in windows)
    assert not all(torch.equal(out[i], images[i % 2]) for i in range(16))  # it does augment


# ----------------------------------------------------------------------------- models & eval


def test_features_and_probabilities(digits):
    x, y, xt, _ = digits
    model = train_classifier(x, y, 10, ClassifierConfig(train_steps=5), seed=0)
    feats = extract_features(model, xt, batch_size=64)
    assert feats.shape == (len(xt), model.feature_dim) and feats.dtype == torch.float32
    probs = predict_proba(model, xt)
    assert probs.shape == (len(xt), 10)
    assert torch.allclose(probs.sum(1), torch.ones(len(xt)), atol=1e-5)
    assert extract_features(model, xt[:0]).shape == (0, model.feature_dim)


class _Brightness(nn.Module):
    """Stub classifier: class-1 logit = mean brightness in [-1, 1], class-0 logit = its negative."""

    def features(self, x):
        return x.mean((1, 2, 3))[:, None]

    def forward(self, x):
        s = self.features(x)
        return torch.cat([-s, s], dim=1)


def test_evaluate_binary_auc_and_balanced_accuracy():
    levels = torch.tensor([0, 100, 200, 250, 10, 240], dtype=torch.uint8)
    images = levels.view(-1, 1, 1, 1).expand(-1, 1, 4, 4).contiguous()
    labels = torch.tensor([0, 1, 0, 1, 0, 1])
    m = evaluate(_Brightness(), images, labels, 2)
    probs = predict_proba(_Brightness(), images)[:, 1].numpy()
    assert m["auc"] == pytest.approx(roc_auc_score(labels.numpy(), probs))
    assert m["auc"] == pytest.approx(8 / 9)  # positives 100,250,240 vs negatives 0,200,10
    pred = (levels > 127).long()  # brightness > 0 after normalisation → class 1
    assert m["accuracy"] == pytest.approx((pred == labels).float().mean().item())
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 2 / 3) / 2)


@pytest.mark.parametrize("k,absent,decimals", [(2, None, 2), (3, None, 1), (10, None, 2),
                                                (10, 4, 3), (10, None, 8)])
def test_classification_metrics_equal_sklearn(k, absent, decimals):
    """Many classifiers scored at once (metrics.py) give sklearn's values, with tied
    probabilities (rounded to `decimals`), a class that is predicted but absent from the
    labels (balanced accuracy ignores it, AUC is NaN) and a wrong-way classifier."""
    from sklearn.metrics import balanced_accuracy_score

    from synthequiv.classification.metrics import classification_metrics

    rng = np.random.default_rng(k + decimals)
    n, g = 300, 4
    y = rng.integers(0, k, n)
    if absent is not None:
        y[y == absent] = (absent + 1) % k
    logits = rng.normal(size=(g, n, k)) + np.linspace(-2, 3, g)[:, None, None] * np.eye(k)[y]
    probs = np.round(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), decimals) + 1e-3
    got = classification_metrics(probs, y, k)
    probs = probs / probs.sum(-1, keepdims=True)  # what both score (sklearn needs sums of 1)
    for i, m in enumerate(got):
        pred = probs[i].argmax(1)
        assert m["accuracy"] == pytest.approx((pred == y).mean(), abs=1e-12)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred),
                                                           abs=1e-12)
        if absent is not None:
            assert np.isnan(m["auc"])
            continue
        want = (roc_auc_score(y, probs[i][:, 1]) if k == 2 else
                roc_auc_score(y, probs[i], multi_class="ovr", average="macro",
                              labels=list(range(k))))
        assert m["auc"] == pytest.approx(want, abs=1e-12)
    assert got[0]["auc"] < 0.5 < got[-1]["auc"] or absent is not None  # wrong-way vs right
    with pytest.raises(ValueError, match="do not fit"):
        classification_metrics(probs, y[:-1], k)
    with pytest.raises(ValueError, match="labels must lie in"):
        classification_metrics(probs, np.where(y == 0, -1, y), k)
    probs[2, 5, 0] = np.nan  # a diverged model: an error (sklearn's too), not a chance score
    with pytest.raises(SynthequivError, match=r"not finite \(model \[2\] of 4"):
        classification_metrics(probs, y, k)


@pytest.mark.parametrize("size,channels", [(28, 1), (32, 3)])
def test_cifar_resnet18_runs_forward_backward(size, channels):
    model = build_classifier("auto", channels, size, 10, width=8)
    assert isinstance(model, clf.ResNet18) and isinstance(model.maxpool, nn.Identity)
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    x = torch.randn(4, channels, size, size)
    logits = model(x)
    assert logits.shape == (4, 10) and model.features(x).shape == (4, 64)
    logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_train_resnet18_few_steps_on_28px():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (40, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = torch.randint(0, 3, (40,), generator=g)
    cfg = ClassifierConfig(arch="resnet18", width=8, train_steps=3, batch_size=16, crop_pad_px=3)
    model = train_classifier(images, labels, 3, cfg, seed=0)
    assert predict_proba(model, images).shape == (40, 3)


def test_narrow_resnet_avoids_onednn_channels_last_bug():
    """Width 4: strided 1×1 convs on 4 channels crash oneDNN's nhwc kernel (oneDNN#6035)."""
    cpu = torch.device("cpu")
    assert clf.memory_format(build_classifier("resnet18", 3, 20, 4, 4), cpu) == (
        torch.contiguous_format)
    assert clf.memory_format(build_classifier("resnet18", 3, 32, 4), cpu) == torch.channels_last
    assert clf.memory_format(build_classifier("smallcnn", 1, 8, 4), cpu) == torch.channels_last
    images = torch.randint(0, 256, (16, 3, 20, 20), dtype=torch.uint8)
    cfg = ClassifierConfig(arch="resnet18", width=4, train_steps=2, batch_size=16)
    model = train_classifier(images, torch.arange(16) % 4, 4, cfg, seed=0)  # crashed before
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_imagenet_stem_matches_torchvision_resnet18():
    import torchvision

    ours = build_classifier("torchvision-resnet18", 3, 96, 7).eval()
    ref = torchvision.models.resnet18(num_classes=7).eval()
    ref.load_state_dict(ours.state_dict())  # strict: same module names and shapes
    x = torch.randn(2, 3, 64, 64)
    assert torch.allclose(ours(x), ref(x), atol=1e-5)


def test_auto_arch_by_image_size():
    assert [resolve_arch("auto", s) for s in (8, 16, 28, 64, 96)] == [
        "smallcnn", "smallcnn", "resnet18", "resnet18", "torchvision-resnet18"]
    assert resolve_arch("resnet18", 8) == "resnet18"


# ----------------------------------------------------------------------------- errors


def _bad_calls(x, y):
    cfg = ClassifierConfig(train_steps=2)

    def with_cfg(**kw):
        return dataclasses.replace(cfg, **kw)

    return {
        "length mismatch": lambda: train_classifier(x, y[:-1], 10, cfg, 0),
        "label too large": lambda: train_classifier(x, y, 5, cfg, 0),
        "negative label": lambda: train_classifier(x, y - 1, 10, cfg, 0),
        "empty set": lambda: train_classifier(x[:0], y[:0], 10, cfg, 0),
        "float images": lambda: train_classifier(x.float(), y, 10, cfg, 0),
        "int32 labels": lambda: train_classifier(x, y.int(), 10, cfg, 0),
        "zero steps": lambda: train_classifier(x, y, 10, with_cfg(train_steps=0), 0),
        "zero epochs": lambda: train_classifier(x, y, 10, with_cfg(budget="epochs", epochs=0), 0),
        "zero batch": lambda: train_classifier(x, y, 10, with_cfg(batch_size=0), 0),
        "negative batch": lambda: train_classifier(x, y, 10, with_cfg(batch_size=-4), 0),
        "syn_fraction > 1": lambda: train_classifier(x, y, 10, with_cfg(syn_fraction=1.5), 0),
        "syn_fraction < 0": lambda: train_classifier(x, y, 10, with_cfg(syn_fraction=-0.1), 0),
        "unknown mixing": lambda: train_classifier(x, y, 10, with_cfg(mixing="mix"), 0),
        "unknown arch": lambda: train_classifier(x, y, 10, with_cfg(arch="vgg"), 0),
        "syn without labels": lambda: train_classifier(x, y, 10, cfg, 0, syn_images=x),
        "syn size mismatch": lambda: train_classifier(
            x, y, 10, cfg, 0, syn_images=x[:, :, :4], syn_labels=y),
        "syn label range": lambda: train_classifier(
            x, y, 10, cfg, 0, syn_images=x, syn_labels=y + 10),
        "eval mismatch": lambda: evaluate(_Brightness(), x, y[:3], 10),
        "eval class count": lambda: evaluate(_Brightness(), x, y, 10),
        "bad device": lambda: train_classifier(x, y, 10, cfg, 0, device="tpu"),
    }


BAD_CASES = list(_bad_calls(None, None))


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_inputs_raise_one_line_error(digits, case):
    x, y, *_ = digits
    with pytest.raises(SynthequivError) as err:
        _bad_calls(x, y)[case]()
    assert "\n" not in str(err.value)


def test_airbench_net_at_32_and_28_px_and_refused_below_16():
    for size in (32, 28):
        model = build_classifier("airbench", 3, size, 10, width=8)
        x = torch.randn(4, 3, size, size)
        assert model(x).shape == (4, 10) and model.features(x).shape == (4, 32)
    with pytest.raises(SynthequivError, match="needs images ≥ 16 px"):
        build_classifier("airbench", 1, 8, 10)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=g)
    cfg = ClassifierConfig(arch="airbench", width=8, train_steps=3, batch_size=16, hflip=True)
    model = train_classifier(x, torch.arange(64) % 10, 10, cfg, seed=0)
    assert isinstance(model, clf.AirbenchNet) and not model.training
