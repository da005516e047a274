"""Classifier stage: train an image classifier on a real (+ synthetic) mix, evaluate it.

Airbench-style data path: the whole training pool lives on the device as one normalised float
tensor, padded once for random crops; each step gathers a batch by index, crops (and optionally
flips) it in one batched op, and takes an optimizer step. No DataLoader, no PIL, no per-item
work: on 8×8 digits that is 8–9× the throughput of a DataLoader + PIL-transform loop
(benchmarks/classifier.py), and a 400-step cell takes ~3 s on one (shared) CPU core.

Images enter every public function as uint8 [N, C, H, W]; models take float input in [-1, 1]
(`normalize_images`). A mix of real and synthetic data is `torch.cat` plus a batch-index
schedule (`mixed_batch_indices`), so `concat` and `ratio` mixing differ only in that schedule.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from synthequiv.classification.config import (  # noqa: F401 (the stage's config, re-exported)
    BUDGETS,
    MIXINGS,
    ClassifierConfig,
    check,
)
from synthequiv.classification.metrics import classification_metrics
from synthequiv.classification.networks import (  # noqa: F401 (re-exported)
    ARCHS,
    AirbenchNet,
    ResNet18,
    SmallCNN,
    build_classifier,
    resolve_arch,
)
from synthequiv.utils import SynthequivError, check_positive, resolve_device, seed_everything

# ----------------------------------------------------------------------------- data path


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, C, H, W] → float32 in [-1, 1]; the one normalisation for training and eval."""
    return images.float().mul_(2.0 / 255.0).sub_(1.0)


def _permutation_stream(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """`count` indices from back-to-back random permutations of range(n) (epoch after epoch)."""
    if count == 0:
        return torch.zeros(0, dtype=torch.long)
    perms = [torch.randperm(n, generator=generator) for _ in range(math.ceil(count / n))]
    return torch.cat(perms)[:count]


def mixed_batch_indices(
    n_real: int,
    n_syn: int,
    batch_size: int,
    syn_fraction: float,
    generator: torch.Generator,
    num_steps: int = 1,
    mixing: str = "ratio",
) -> torch.Tensor:
    """Batch schedule [num_steps, batch_size] of indices into cat(real, synthetic).

    Index i < n_real is real image i, index n_real + j is synthetic image j.
    concat: one shuffled stream over the pooled set (each image seen once per epoch).
    ratio:  every batch holds round(syn_fraction·batch_size) synthetic indices, the rest real,
            each drawn from its own shuffled stream (DM-Improves-AT style).
    """
    if mixing == "concat" or n_syn == 0:
        flat = _permutation_stream(n_real + n_syn, num_steps * batch_size, generator)
        return flat.view(num_steps, batch_size)
    k = round(batch_size * syn_fraction)  # synthetic images per batch
    real = _permutation_stream(n_real, num_steps * (batch_size - k), generator)
    syn = _permutation_stream(n_syn, num_steps * k, generator) + n_real
    return torch.cat([real.view(num_steps, batch_size - k), syn.view(num_steps, k)], dim=1)


def augment_draws(
    generator: torch.Generator, num_steps: int, batch_size: int, pad: int, hflip: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """All steps' crop offsets [S, 2, B] (dy, dx) and flip flags [S, B] (None without hflip).

    Drawn step by step in the order `augment_batch` draws them, so a loop over precomputed
    draws sees the same numbers; done once before training, the draws reach the device in
    one copy instead of one host→device transfer per step.
    """
    offsets, flips = [], []
    for _ in range(num_steps if pad or hflip else 0):
        offsets.append(torch.randint(0, 2 * pad + 1, (2, batch_size), generator=generator))
        if hflip:
            flips.append(torch.rand(batch_size, generator=generator) < 0.5)
    if not offsets:
        return torch.zeros(num_steps, 2, batch_size, dtype=torch.long), None
    return torch.stack(offsets), torch.stack(flips) if hflip else None


def crop_flip(batch: torch.Tensor, offsets: torch.Tensor, flip: torch.Tensor | None,
              pad: int) -> torch.Tensor:
    """Crops of a padded batch [B, C, H+2p, W+2p] at offsets [2, B], flipped where flip [B].

    Leading dims other than B pass through: batch [..., B, C, H+2p, W+2p] with offsets
    [..., 2, B] crops every group at once. Returns [..., B, C, H, W].
    """
    if pad == 0 and flip is None:
        return batch
    *lead, b, _, hp, wp = batch.shape
    h, w = hp - 2 * pad, wp - 2 * pad
    dev = batch.device
    cols = offsets[..., 1, :, None] + torch.arange(w, device=dev)  # [..., B, W]
    if flip is not None:  # reversing the column index of half the batch flips those images
        cols = torch.where(flip[..., None], cols.flip(-1), cols)
    rows = offsets[..., 0, :, None] + torch.arange(h, device=dev)  # [..., B, H]
    flat = batch.reshape(-1, *batch.shape[-3:])  # [G·B, C, H+2p, W+2p]
    n = torch.arange(flat.shape[0], device=dev)[:, None, None, None]
    c = torch.arange(flat.shape[1], device=dev)[None, :, None, None]
    rows, cols = rows.reshape(-1, h), cols.reshape(-1, w)
    out = flat[n, c, rows[:, None, :, None], cols[:, None, None, :]]  # [G·B, C, H, W]
    return out.view(*lead, b, *out.shape[1:])


def augment_batch(
    padded: torch.Tensor, idx: torch.Tensor, pad: int, hflip: bool, generator: torch.Generator
) -> torch.Tensor:
    """Random crops (translations of ±pad px) and optional flips of padded[idx], in one gather.

    padded: [N, C, H+2p, W+2p] float on the device; idx: [B] → returns [B, C, H, W].
    """
    batch = padded[idx.to(padded.device)]  # [B, C, H+2p, W+2p]
    offsets, flips = augment_draws(generator, 1, len(idx), pad, hflip)
    flip = None if flips is None else flips[0].to(batch.device)
    return crop_flip(batch, offsets[0].to(batch.device), flip, pad)


# ----------------------------------------------------------------------------- validation


def _check_images(what: str, images: torch.Tensor, allow_empty: bool = False) -> None:
    if not isinstance(images, torch.Tensor) or images.dtype != torch.uint8 or images.ndim != 4:
        is_tensor = isinstance(images, torch.Tensor)
        got = f"{images.dtype} {tuple(images.shape)}" if is_tensor else type(images).__name__
        raise SynthequivError(f"{what} images must be a uint8 tensor [N, C, H, W], got {got}")
    if images.shape[1] not in (1, 3):
        raise SynthequivError(f"{what} images must have 1 or 3 channels, got {images.shape[1]}")
    if len(images) == 0 and not allow_empty:
        raise SynthequivError(f"{what} set is empty")


def _check_dataset(
    what: str, images: torch.Tensor, labels: torch.Tensor, num_classes: int,
    allow_empty: bool = False,
) -> None:
    """One-line errors for the mistakes a caller can make with an (images, labels) pair."""
    _check_images(what, images, allow_empty)
    if not isinstance(labels, torch.Tensor) or labels.dtype != torch.int64 or labels.ndim != 1:
        raise SynthequivError(f"{what} labels must be an int64 tensor [N]")
    if len(labels) != len(images):
        raise SynthequivError(f"{what}: {len(images)} images but {len(labels)} labels")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise SynthequivError(
            f"{what} labels must lie in [0, {num_classes - 1}], got "
            f"[{int(labels.min())}, {int(labels.max())}]"
        )


def _device(device: str | torch.device) -> torch.device:
    return resolve_device(str(device))


# ----------------------------------------------------------------------------- training


def build_optimizer(
    model: nn.Module, cfg: ClassifierConfig, num_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """Optimizer (weight decay on conv/linear weights only) and its per-step LR schedule."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BN affine, biases
    return optimizer_for(decay, no_decay, cfg, num_steps)


def optimizer_for(
    decay: list[torch.Tensor], no_decay: list[torch.Tensor], cfg: ClassifierConfig,
    num_steps: int,
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """`build_optimizer` on explicit parameter lists (batched training passes stacked ones)."""
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    # the multi-tensor update everywhere (torch's default on CUDA; on a CPU it loops over
    # tensors): bit-identical weights, 1.05× a quick cell on one core (1.61 vs 1.69 s)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9, nesterov=True, foreach=True)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr, foreach=True)
    warm = max(1, round(cfg.warmup_fraction * num_steps))

    def factor(step: int) -> float:  # multiplies cfg.lr before optimizer step `step` (0-based)
        if step < warm:
            return (step + 1) / warm
        t = (step - warm) / max(1, num_steps - warm)  # 0 → 1 over the decay phase
        return 1.0 - t if cfg.schedule == "onecycle" else 0.5 * (1.0 + math.cos(math.pi * t))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, factor)


def num_train_steps(cfg: ClassifierConfig, pool_size: int) -> int:
    """Optimizer steps of one cell: fixed (budget 'steps') or epochs over the pooled set."""
    if cfg.budget == "steps":
        return cfg.train_steps
    return math.ceil(cfg.epochs * pool_size / cfg.batch_size)


def _pool(
    real_images, real_labels, syn_images, syn_labels, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Validate and concatenate real + synthetic → (images [N,C,H,W], labels [N], n_real)."""
    _check_dataset("real", real_images, real_labels, num_classes)
    if (syn_images is None) != (syn_labels is None):
        raise SynthequivError("give both syn_images and syn_labels, or neither")
    if syn_images is None:
        return real_images, real_labels, len(real_images)
    _check_dataset("synthetic", syn_images, syn_labels, num_classes, allow_empty=True)
    if syn_images.shape[1:] != real_images.shape[1:]:
        raise SynthequivError(
            f"synthetic images are {tuple(syn_images.shape[1:])}, real ones "
            f"{tuple(real_images.shape[1:])} (C, H, W must match)"
        )
    images = torch.cat([real_images, syn_images.to(real_images.device)])
    return images, torch.cat([real_labels, syn_labels.to(real_labels.device)]), len(real_images)


def memory_format(model: nn.Module, device: torch.device) -> torch.memory_format:
    """channels_last, which speeds convs on CUDA and on CPU (digits cell: 2.8 s vs 3.7 s), except
    on CPU for models with a strided 1×1 conv on a channel count not a multiple of 16.

    There oneDNN's nhwc 1×1 backward-weights kernel writes past its buffer: a crash with one
    thread, silently wrong weight gradients with more (uxlfoundation/oneDNN#6035; seen with
    torch 2.14.1 on AVX2 for a ResNet-18 of width 4). Default widths never hit it.
    """
    if device.type == "cuda":
        return torch.channels_last
    risky = any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.stride != (1, 1)
                and m.in_channels % 16 for m in model.modules())
    return torch.contiguous_format if risky else torch.channels_last


@contextlib.contextmanager
def _cpu_threads(n: int, dev: torch.device):
    """Temporarily set torch's intra-op thread count on CPU (n = 0 or CUDA: unchanged)."""
    before = torch.get_num_threads()
    if n and dev.type == "cpu":
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _progress(num_steps: int, enabled: bool):
    if not enabled:
        return range(num_steps)
    from rich.progress import track

    return track(range(num_steps), description="classifier", transient=True)


def train_classifier(
    real_images: torch.Tensor,
    real_labels: torch.Tensor,
    num_classes: int,
    cfg: ClassifierConfig,
    seed: int,
    syn_images: torch.Tensor | None = None,
    syn_labels: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
) -> nn.Module:
    """Train one classifier on real (+ synthetic) data; returns it on `device` in eval mode.

    Deterministic on CPU: same inputs + seed → identical weights. Mixing follows cfg.mixing.
    """
    check(cfg)
    check_positive("num_classes", num_classes)
    images, labels, n_real = _pool(real_images, real_labels, syn_images, syn_labels, num_classes)
    _, c, h, w = images.shape
    p = cfg.crop_pad_px
    if cfg.pad_mode == "reflect" and p >= min(h, w):
        raise SynthequivError(f"classifier.crop_pad_px={p} too large to reflect-pad {h}×{w}")
    dev = _device(device)
    g = seed_everything(seed)  # global RNG → weight init; g → batch order and augmentation
    num_steps = num_train_steps(cfg, len(images))
    schedule = mixed_batch_indices(n_real, len(images) - n_real, cfg.batch_size, cfg.syn_fraction,
                                   g, num_steps, cfg.mixing)  # [steps, B] indices into images
    with _cpu_threads(cfg.cpu_threads, dev):
        model = build_classifier(cfg.arch, c, max(h, w), num_classes, cfg.width)
        # normalise and pad the whole pool once: [N, C, H+2p, W+2p] float32 on the device
        pool = F.pad(normalize_images(images.to(dev)), (p, p, p, p), mode=cfg.pad_mode)
        return _fit(model, pool, labels.to(dev), schedule.to(dev), cfg, g, progress)


def _fit(
    model: nn.Module,
    pool: torch.Tensor,
    labels: torch.Tensor,
    schedule: torch.Tensor,
    cfg: ClassifierConfig,
    g: torch.Generator,
    progress: bool,
) -> nn.Module:
    """The loop: AMP and memory format decided once, then a straight-line step per batch."""
    dev = pool.device
    cuda = dev.type == "cuda"  # bf16 autocast on CUDA only
    fmt = memory_format(model, dev)
    model = model.to(dev, memory_format=fmt).train()
    opt, lr_sched = build_optimizer(model, cfg, len(schedule))
    # every step's crop/flip draws up front, on the device: no host work or transfer per step
    offsets, flips = (None if t is None else t.to(dev) for t in augment_draws(
        g, len(schedule), schedule.shape[1], cfg.crop_pad_px, cfg.hflip))
    for step in _progress(len(schedule), progress):
        idx = schedule[step]  # [B]
        x = crop_flip(pool[idx], offsets[step], None if flips is None else flips[step],
                      cfg.crop_pad_px).contiguous(memory_format=fmt)
        with torch.autocast(dev.type, torch.bfloat16, enabled=cuda):
            logits = model(x)  # [B, K]
        loss = F.cross_entropy(logits.float(), labels[idx],
                               label_smoothing=cfg.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        lr_sched.step()
    if not math.isfinite(loss.item()):
        raise SynthequivError(f"classifier training diverged (loss {loss.item()}): lower lr")
    return model.eval()


# ----------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def _batched(model: nn.Module, images: torch.Tensor, fn, device, batch_size: int) -> torch.Tensor:
    """fn(model, x) over uint8 images in batches → float32 CPU tensor (eval mode, then restored).

    float32 even on CUDA (no autocast): features feed distance metrics, where bf16 noise counts.
    """
    _check_images("evaluation", images, allow_empty=True)
    check_positive("batch_size", batch_size)
    dev = _device(device)
    was_training = model.training
    model.to(dev).eval()
    fmt = memory_format(model, dev)
    outs = []
    for i in range(0, max(len(images), 1), batch_size):  # an empty set still gives [0, D]
        x = normalize_images(images[i : i + batch_size].to(dev))
        outs.append(fn(model, x.contiguous(memory_format=fmt)).float().cpu())
    model.train(was_training)
    return torch.cat(outs)


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
) -> torch.Tensor:
    """Penultimate features [N, D] float32 (after global pooling, before the linear head)."""
    return _batched(model, images, lambda m, x: m.features(x), device, batch_size)


def predict_proba(
    model: nn.Module,
    images: torch.Tensor,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
) -> torch.Tensor:
    """Class probabilities [N, K] float32 (softmax in float32; rows sum to 1)."""
    return _batched(model, images, lambda m, x: m(x).float().softmax(dim=1), device, batch_size)


def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    device: str | torch.device = "cpu",
    batch_size: int = 1024,
) -> dict[str, float]:
    """{"accuracy", "balanced_accuracy", "auc"} on a labelled set (`metrics.py`).

    auc: ROC AUC of the class-1 probability for binary sets; macro one-vs-rest ROC AUC for more
    classes (identical to the binary one when K = 2). NaN when a class is absent from `labels`.
    """
    _check_dataset("evaluation", images, labels, num_classes)
    probs = predict_proba(model, images, device, batch_size).double()  # [N, K]
    if probs.shape[1] != num_classes:
        raise SynthequivError(f"model predicts {probs.shape[1]} classes, expected {num_classes}")
    return classification_metrics(probs[None].numpy(), labels.cpu().numpy(), num_classes)[0]
