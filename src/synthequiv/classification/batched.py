"""Train a group of classifier cells as one batched computation on one device.

The cells of a grid are independent small trainings of one architecture on images of one
shape. On a GPU one such training is launch-bound (a digits cell leaves the device > 99 %
idle), so G of them run as one: the G models' parameters and BatchNorm buffers are stacked
along a new leading dim ([G, ...]) and `torch.func.vmap(functional_call)` runs all G forward
and backward passes as single kernels (convolutions become grouped convolutions).

Each cell is the cell `train_classifier` trains with its own seed, to float tolerance:
  - weights: initialised from the global RNG after `seed_everything(seed)`, as there;
  - batch order and crop/flip draws: from the cell's own torch.Generator, drawn in the same
    order, so a cell's numbers do not depend on which group it ran in;
  - BatchNorm: running statistics are stacked buffers [G, C] that vmap updates per cell;
  - loss: the sum of the G per-cell mean losses, so each cell's parameters receive exactly the
    gradient of its own loss; SGD/AdamW and weight decay are elementwise, so one optimizer over
    the stacked tensors takes every cell's own step; the LR schedule is shared, hence a group
    needs one step count (`plan_groups` groups cells by it);
  - pools of different sizes (real vs real + synthetic) are concatenated into one device
    tensor with per-cell offsets (identical pools, e.g. the seeds of one cell, stored once).

On CUDA each step's gather, augmentation, forward and backward replay as one CUDA graph
(`stepgraph.StepGraph`; the optimizer and LR schedule stay eager), with the eager numbers.

On the 2-core CPU this is slower than one cell after another (a SmallCNN step there is
compute-bound: batch 2048 trains at the img/s of batch 128), so `cell_group: 0` (auto) runs
cells one by one on CPU and in groups on CUDA (benchmarks/cells.py measures both).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from synthequiv.classification.classifier import (
    ClassifierConfig,
    _check_dataset,
    _check_images,
    _cpu_threads,
    _pool,
    augment_draws,
    build_classifier,
    crop_flip,
    mixed_batch_indices,
    normalize_images,
    num_train_steps,
    optimizer_for,
    resolve_arch,
    train_classifier,
)
from synthequiv.classification.config import check
from synthequiv.classification.metrics import classification_metrics
from synthequiv.stepgraph import StepGraph
from synthequiv.utils import (
    SynthequivError,
    check_positive,
    device_type,
    resolve_device,
    seed_everything,
)

# cells per group on CUDA when cell_group is 0 (auto), by architecture: small nets gain up to
# 64 at once (/work/shared/PERF.md: 64 SmallCNNs via vmap 1.13M img/s vs 45.8k for one);
# wide ones already fill more of the device per cell and need G× the activation memory
AUTO_GROUP_CUDA = {"smallcnn": 64, "airbench": 16, "resnet18": 8, "torchvision-resnet18": 4}


def resolve_group(cell_group: int, arch: str, image_size: int, device) -> int:
    """Cells per group: cell_group if > 0; auto (0) = 1 on CPU, AUTO_GROUP_CUDA on CUDA."""
    check_positive("cell_group", cell_group, allow_zero=True)
    if cell_group > 0:
        return cell_group
    if device_type(device) != "cuda":
        return 1
    return AUTO_GROUP_CUDA[resolve_arch(arch, image_size)]


def plan_groups(num_steps: Sequence[Hashable], group: int) -> list[list[int]]:
    """Indices of cells, grouped: equal step counts only (one LR schedule per group), at most
    `group` per group, in the order given (cells of one grid point stay together). Any equal
    keys group alike (gengroup.group_key for generators)."""
    check_positive("group", group)
    buckets: dict[Hashable, list[int]] = {}
    for i, s in enumerate(num_steps):
        buckets.setdefault(s, []).append(i)
    return [idx[i:i + group] for idx in buckets.values() for i in range(0, len(idx), group)]


# ----------------------------------------------------------------------------- set-up


def _cell_inputs(data, seed: int, num_classes: int, cfg: ClassifierConfig):
    """What `train_classifier` prepares for one cell, in the same RNG order.

    data = (real_x, real_y, syn_x, syn_y) → images [N,C,H,W] uint8, labels [N], schedule
    [S, B], crop offsets [S, 2, B], flips [S, B] | None, and the freshly initialised model.
    """
    images, labels, n_real = _pool(*data, num_classes)
    g = seed_everything(seed)  # global RNG → weight init; g → batch order and augmentation
    num_steps = num_train_steps(cfg, len(images))
    schedule = mixed_batch_indices(n_real, len(images) - n_real, cfg.batch_size, cfg.syn_fraction,
                                   g, num_steps, cfg.mixing)
    _, c, h, w = images.shape
    model = build_classifier(cfg.arch, c, max(h, w), num_classes, cfg.width)
    offsets, flips = augment_draws(g, num_steps, cfg.batch_size, cfg.crop_pad_px, cfg.hflip)
    return images, labels, schedule, offsets, flips, model


def _stack_pools(images: list[torch.Tensor], labels: list[torch.Tensor], cfg: ClassifierConfig,
                 dev: torch.device):
    """One padded device pool for all cells → (pool [M, C, H+2p, W+2p], labels [M],
    start [G], uint8?); a pool equal to an earlier cell's (images and labels) is stored once.

    replicate/reflect padding only copies pixels, so the pool stays uint8 (4× less memory)
    and a batch is normalised after the gather, to the same floats as normalise-then-pad;
    zero padding is a value of the normalised image, so that pool is stored as float.
    """
    p, parts, starts, seen = cfg.crop_pad_px, [], [], []
    total = 0
    for x, y in zip(images, labels):
        same = next((s for x0, y0, s in seen if x0.shape == x.shape and torch.equal(x0, x)
                     and torch.equal(y0, y)), None)
        if same is None:
            same = total
            seen.append((x, y, total))
            parts.append((x, y))
            total += len(x)
        starts.append(same)
    pool = torch.cat([x for x, _ in parts]).to(dev)
    label_pool = torch.cat([y for _, y in parts]).to(dev)
    as_uint8 = cfg.pad_mode != "constant"
    pool = pool.float() if as_uint8 else normalize_images(pool)
    pool = F.pad(pool, (p, p, p, p), mode=cfg.pad_mode)
    pool = pool.to(torch.uint8) if as_uint8 else pool
    return pool, label_pool, torch.tensor(starts), as_uint8


# ----------------------------------------------------------------------------- training


def train_classifiers(
    datas: Sequence[tuple], seeds: Sequence[int], num_classes: int, cfg: ClassifierConfig,
    device: str | torch.device = "cpu",
) -> list[nn.Module]:
    """Train len(datas) classifiers at once; model i equals `train_classifier(*datas[i][:2],
    num_classes, cfg, seeds[i], *datas[i][2:])` to float tolerance. Returned in eval mode.

    datas[i] = (real_x, real_y, syn_x | None, syn_y | None). All cells must share the image
    shape and the step count (`plan_groups`); a mismatch is an error, not a silent fallback.
    """
    check(cfg)
    check_positive("num_classes", num_classes)
    if len(datas) != len(seeds) or not datas:
        raise SynthequivError(f"train_classifiers: {len(datas)} datasets for {len(seeds)} seeds")
    cells = [_cell_inputs(d, s, num_classes, cfg) for d, s in zip(datas, seeds)]
    shapes = {c[0].shape[1:] for c in cells}
    steps = {len(c[2]) for c in cells}
    if len(shapes) > 1 or len(steps) > 1:
        raise SynthequivError(f"cells of one group need one image shape and one step count, "
                              f"got shapes {sorted(map(tuple, shapes))}, steps {sorted(steps)}")
    _, h, w = next(iter(shapes))
    if cfg.pad_mode == "reflect" and cfg.crop_pad_px >= min(h, w):
        raise SynthequivError(f"classifier.crop_pad_px={cfg.crop_pad_px} too large to "
                              f"reflect-pad {h}×{w}")
    dev = resolve_device(str(device))
    with _cpu_threads(cfg.cpu_threads, dev):
        return _fit_group(cells, cfg, dev)


def train_many(specs: Sequence[tuple], group: int, device: str | torch.device = "cpu",
               on_trained=None) -> list[nn.Module]:
    """`train_classifier(x, y, num_classes, cfg, seed, device=device)` for every spec
    (x, y, num_classes, cfg, seed), in the order given. With group > 1, specs of one class
    count, config, image shape and step count train up to `group` at a time
    (`train_classifiers`: the same models to float tolerance); group 1 trains one by one.
    For the analyses' small trainings (domain classifiers, CAS models, feature extractor);
    `on_trained(n)` is called after each group of n (progress)."""
    check_positive("group", group)
    keys = [(k, cfg, tuple(x.shape[1:]), num_train_steps(cfg, len(x)))
            for x, _, k, cfg, _ in specs]
    out: list[nn.Module | None] = [None] * len(specs)
    for idx in plan_groups(keys, group) if specs else []:
        if len(idx) == 1:
            x, y, k, cfg, seed = specs[idx[0]]
            out[idx[0]] = train_classifier(x, y, k, cfg, seed, device=device)
        else:
            _, _, k, cfg, _ = specs[idx[0]]
            models = train_classifiers([(specs[i][0], specs[i][1], None, None) for i in idx],
                                       [specs[i][4] for i in idx], k, cfg, device)
            for i, m in zip(idx, models):
                out[i] = m
        if on_trained is not None:
            on_trained(len(idx))
    return out


def _fit_group(cells: list, cfg: ClassifierConfig, dev: torch.device) -> list[nn.Module]:
    """The batched loop: every tensor below carries the group dim G first."""
    images, labels, schedules, offsets, flips, models = map(list, zip(*cells))
    pool, label_pool, starts, as_uint8 = _stack_pools(images, labels, cfg, dev)
    # [S, G, B] indices into the shared pool; [S, G, 2, B] crop offsets; [S, G, B] flips
    sched = (torch.stack(schedules, 1) + starts[None, :, None]).to(dev)
    offs = torch.stack(offsets, 1).to(dev)
    flip = None if flips[0] is None else torch.stack(flips, 1).to(dev)
    params, buffers = torch.func.stack_module_state(models)  # {name: [G, ...]}
    params = {k: v.to(dev).detach().requires_grad_(True) for k, v in params.items()}
    buffers = {k: v.to(dev) for k, v in buffers.items()}
    base = copy.deepcopy(models[0]).to("meta")  # the architecture only; weights come stacked
    forward = torch.func.vmap(
        lambda p, b, x: torch.func.functional_call(base, (p, b), (x,)))
    decay = [v for v in params.values() if v.ndim > 2]  # conv/linear weights ([G, ...] + ≥ 2D)
    no_decay = [v for v in params.values() if v.ndim <= 2]
    opt, lr_sched = optimizer_for(decay, no_decay, cfg, len(sched))
    g_count, b = sched.shape[1:]
    # the step's draws, refilled in place every step (StepGraph's static inputs)
    ins = {"idx": sched[0].clone(), "offs": offs[0].clone(),
           "flip": None if flip is None else flip[0].clone()}
    last = torch.zeros(g_count, device=dev)  # each cell's latest loss, read once at the end

    def forward_backward() -> None:  # StepGraph's fn: no host reads, tensors in and out
        idx = ins["idx"]  # [G, B]
        x = crop_flip(pool[idx], ins["offs"], ins["flip"], cfg.crop_pad_px)  # [G, B, C, H, W]
        if as_uint8:
            x = normalize_images(x)
        # float32 (TF32 matmuls on CUDA), not bf16 autocast: vmap's batch-norm backward
        # rejects bf16 activations with float32 running statistics (seen on an H100)
        logits = forward(params, buffers, x)  # [G, B, K]
        loss = F.cross_entropy(logits.float().flatten(0, 1), label_pool[idx].flatten(),
                               reduction="none", label_smoothing=cfg.label_smoothing)
        loss = loss.view(g_count, b).mean(1)  # [G]: each cell's own mean loss
        opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        last.copy_(loss.detach())

    step_fn = StepGraph(forward_backward, dev, "classifier groups")
    for step in range(len(sched)):
        ins["idx"].copy_(sched[step])
        ins["offs"].copy_(offs[step])
        if flip is not None:
            ins["flip"].copy_(flip[step])
        step_fn()
        opt.step()
        lr_sched.step()
    last = last.tolist()  # the one host sync of the loop
    if not all(math.isfinite(v) for v in last):
        raise SynthequivError(f"classifier training diverged (losses {last}): lower lr")
    return [_unstack(m, params, buffers, i, dev) for i, m in enumerate(models)]


# ----------------------------------------------------------------------------- evaluation


@torch.inference_mode()
def predict_proba_many(models: Sequence[nn.Module], images: torch.Tensor,
                       device: str | torch.device = "cpu", batch_size: int = 1024
                       ) -> torch.Tensor:
    """Class probabilities [G, N, K] (float32, CPU) of G equal-architecture models on one
    image set: their stacked weights run as one vmapped forward per batch, one host transfer
    at the end, where `classifier.predict_proba` per model runs G forwards and G transfers.
    A batch holds batch_size // G images, so G models need the activation memory one does."""
    _check_images("evaluation", images)
    check_positive("batch_size", batch_size)
    dev = resolve_device(str(device))
    params, buffers = torch.func.stack_module_state(list(models))  # {name: [G, ...]}
    params = {k: v.to(dev) for k, v in params.items()}
    buffers = {k: v.to(dev) for k, v in buffers.items()}
    base = copy.deepcopy(models[0]).to("meta").eval()  # BatchNorm reads the running stats
    forward = torch.func.vmap(lambda p, b, x: torch.func.functional_call(base, (p, b), (x,)),
                              in_dims=(0, 0, None))  # every model sees the same batch
    rows = max(1, batch_size // len(models))
    outs = [forward(params, buffers, normalize_images(images[i:i + rows].to(dev)))
            .float().softmax(-1) for i in range(0, len(images), rows)]  # [G, rows, K] each
    return torch.cat(outs, 1).cpu()


def evaluate_many(models: Sequence[nn.Module], images: torch.Tensor, labels: torch.Tensor,
                  num_classes: int, device: str | torch.device = "cpu", batch_size: int = 1024
                  ) -> list[dict[str, float]]:
    """`classifier.evaluate` of every model (equal architectures, e.g. a group's cells): the
    same metrics, from one batched inference (`predict_proba_many`) and one metrics call
    (`metrics.classification_metrics`); probabilities equal per-model ones to float rounding."""
    _check_dataset("evaluation", images, labels, num_classes)
    probs = predict_proba_many(models, images, device, batch_size).double()
    if probs.shape[-1] != num_classes:
        raise SynthequivError(f"models predict {probs.shape[-1]} classes, expected {num_classes}")
    return classification_metrics(probs.numpy(), labels.cpu().numpy(), num_classes)


def _unstack(model: nn.Module, params: dict, buffers: dict, i: int,
             dev: torch.device) -> nn.Module:
    state = {k: v[i].detach() for k, v in {**params, **buffers}.items()}
    model.load_state_dict(state)
    return model.to(dev).eval()
