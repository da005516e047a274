"""Train a group of diffusion generators as one batched computation on one device.

A study trains many small generators of one backbone preset (per base size, per replicate, the
open-set one). On a GPU one 8-px UNet at batch 64 is launch-bound, so G of them run as one,
as batched.py does for classifier cells: the G networks' parameters are stacked along a new
leading dim ([G, ...]) and `torch.func.vmap(functional_call)` runs all G forward and backward
passes as single kernels (convolutions become grouped convolutions).

Each generator is the one `generator.train_generator` trains alone, to float tolerance:
  - weights: `generator.init_generator` (its own seed), or its checkpoint when resuming;
  - step draws: `generator.draw_step` with its own config (seed) and data size, so batch rows,
    flips, timesteps, noise and label drops are the same tensors as alone;
  - loss: the network's own `loss` (its family's objective, e.g. `unet.diffusion_loss`),
    vmapped; the sum of the G per-generator losses is backpropagated, so each generator's
    parameters get exactly the gradient of its own loss;
  - gradient clipping: each generator's global norm over its slice of every stacked gradient;
  - Adam is elementwise, so one Adam over the stacked tensors takes every generator's own step
    (its state unstacks to torch.optim.Adam's state_dict layout); lr (`lr_at`) and EMA decay
    (`ema_beta`) depend on the step and the config except the seed, hence shared;
  - autocast: `utils.generator_autocast`, as in `generator._train_loop`, on the CPU; float32
    on CUDA (`_group_autocast`), so there a group equals bf16 generators to bf16 tolerance.
Not equal alone: backbones with dropout > 0 (vmap draws its own masks: same distribution,
other draws); on CUDA the group runs NCHW (a 5-D stacked weight has no channels_last), with
the math attention kernel (`_vmap_safe_attention`) and without torch.compile (the study's
`compile` applies to generators trained alone).

On CUDA the step's forward, backward and per-generator clipping replay as one CUDA graph
(`stepgraph.StepGraph`; the draws are copied into its input tensors, Adam and the EMA stay
eager), the same numbers as the eager loop (tests/test_stepgraph.py).

Checkpoints are `train_generator`'s files (`run_meta` + unstacked model, EMA and Adam state
via `save_checkpoint`): `train_generator` resumes or reuses them, `load_generator` loads them,
and a group resumes what either wrote. Finished generators are skipped; unfinished ones are
grouped by the step they resume from. On the CPU a group measured no faster than one after
another (benchmarks/generators.py), so the study's `generator_group: 0` (auto) is 1 there,
and AUTO_GROUP_CUDA on CUDA (there 9 quick-study generators in one group ran 3.51× faster
than one by one, H200).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from synthequiv.generation.generator import (
    CHECKPOINT_NAME,
    LOSS_READ_STEPS,
    UNET,
    Builder,
    GeneratorConfig,
    StepDraws,
    _progress_bar,
    _save_checkpoint,
    check_config,
    check_data,
    draw_step,
    ema_beta,
    existing_checkpoint,
    init_generator,
    lr_at,
    make_adam,
    num_train_steps,
    run_meta,
)
from synthequiv.generation.ranks import current
from synthequiv.stepgraph import StepGraph
from synthequiv.utils import SynthequivError, check_positive, device_type, generator_autocast

# generators per group on CUDA when generator_group is 0 (auto), by backbone preset: the small
# nets are launch-bound alone; the 32/64-px ones at the GPU presets' batch 256 already fill
# much of a GPU and G of them need G× the activation memory. Measured for 8px only (H200: 9
# quick generators as one group 3.51× one by one, benchmarks/generators.py); the rest chosen
AUTO_GROUP_CUDA = {"8px": 16, "16px": 8, "32px-small": 8, "32px": 1, "64px": 1}


def resolve_group(generator_group: int, device, preset: str = "8px") -> int:
    """Generators per group: generator_group if > 0; auto (0) = 1 on CPU, AUTO_GROUP_CUDA on
    CUDA (by the resolved preset)."""
    check_positive("generator_group", generator_group, allow_zero=True)
    if generator_group > 0:
        return generator_group
    return AUTO_GROUP_CUDA.get(preset, 1) if device_type(device) == "cuda" else 1


def plan_groups(keys: Sequence[tuple], generator_group: int, device) -> list[list[int]]:
    """Indices of generators grouped by equal `group_key`, at most `resolve_group` of the
    key's preset per group, in the order given."""
    from synthequiv.classification.batched import plan_groups as chunk

    out = []
    for preset in dict.fromkeys(k[0] for k in keys):
        idx = [i for i, k in enumerate(keys) if k[0] == preset]
        size = resolve_group(generator_group, device, preset)
        out += [[idx[i] for i in g] for g in chunk([keys[i] for i in idx], size)]
    return out


def group_key(images: torch.Tensor, num_classes: int, cfg: GeneratorConfig,
              builder: Builder = UNET) -> tuple:
    """Generators with equal keys can train in one group: same family (in the config), preset,
    image shape, classes and config except the seed (data and its size may differ)."""
    shape = tuple(int(s) for s in images.shape[1:])
    return (builder.resolve_preset(cfg.preset, shape), shape, int(num_classes),
            dataclasses.replace(cfg, seed=0))


@dataclass
class _Run:
    """One generator of a group: its data, config, checkpoint path, run_meta and state."""

    images: torch.Tensor
    labels: torch.Tensor
    cfg: GeneratorConfig
    path: Path
    meta: dict
    state: dict | None  # the existing checkpoint, None for a fresh start

    @property
    def start(self) -> int:
        return 0 if self.state is None else int(self.state["step"])


def train_generators(jobs: Sequence[tuple[torch.Tensor, torch.Tensor]], num_classes: int,
                     cfg: GeneratorConfig | Sequence[GeneratorConfig],
                     out_dirs: Sequence[Path], device: torch.device | str = "cpu",
                     progress: bool = True, builder: Builder = UNET) -> list[Path]:
    """Train (or resume) len(jobs) generators at once; generator i equals
    `train_generator(*jobs[i], num_classes, cfgs[i], out_dirs[i], device)` to float tolerance.
    Returns each out_dir/checkpoint.pt.

    jobs[i] = (images uint8 [N_i, C, H, W], labels int64 [N_i]); `cfg` is one config or one per
    job, equal except the seed; every job has the same image shape (`group_key`). `builder`
    makes the family's network (families.py passes it for the families that group).
    """
    cfgs = list(cfg) if isinstance(cfg, (list, tuple)) else [cfg] * len(jobs)
    if not jobs or len(cfgs) != len(jobs) or len(out_dirs) != len(jobs):
        raise SynthequivError(f"train_generators: {len(jobs)} jobs, {len(cfgs)} configs, "
                              f"{len(out_dirs)} output directories")
    if current().world > 1:
        raise SynthequivError("train_generators runs in one process; under DDP train each "
                              "generator with train_generator")
    for (x, y), c in zip(jobs, cfgs):
        check_config(c)
        check_data(x, y, num_classes)
    keys = {group_key(x, num_classes, c, builder) for (x, _), c in zip(jobs, cfgs)}
    if len(keys) > 1:
        raise SynthequivError("generators of one group need one preset, image shape, class "
                              "count and config except the seed")
    runs = []
    for (x, y), c, out in zip(jobs, cfgs, out_dirs):
        path = Path(out) / CHECKPOINT_NAME
        meta = run_meta(x, y, num_classes, c, builder)
        runs.append(_Run(x, y, c, path, meta, existing_checkpoint(path, meta, "cpu", mmap=True)))
    todo = [r for r in runs if r.state is None or not r.state["finished"]]
    device = torch.device(device)
    for start in sorted({r.start for r in todo}):  # one optimizer step count per group
        _train_group([r for r in todo if r.start == start], device, progress, builder)
    return [r.path for r in runs]


# ----------------------------------------------------------------------------- stacking


def _stack(modules: list[nn.Module], device: torch.device, grad: bool) -> tuple[dict, dict]:
    """({name: [G, ...]} parameters, {name: [G, ...]} buffers) of G equal-architecture modules."""
    params, buffers = torch.func.stack_module_state(modules)
    params = {k: v.detach().to(device).requires_grad_(grad) for k, v in params.items()}
    return params, {k: v.to(device) for k, v in buffers.items()}


def _unstack_into(module: nn.Module, params: dict, buffers: dict, g: int) -> nn.Module:
    """Copy generator g's slice of the stacked tensors into `module` (on its own device)."""
    stacked = {**params, **buffers}
    with torch.no_grad():
        for name, t in [*module.named_parameters(), *module.named_buffers()]:
            t.copy_(stacked[name][g])
    return module


def _stack_adam(states: list[dict]) -> dict:
    """G torch.optim.Adam state_dicts (same step, same architecture) → one over [G, ...]."""
    first = states[0]
    return {"param_groups": first["param_groups"],
            "state": {i: {k: v.clone() if k == "step"  # a copy: the checkpoint may be mapped
                          else torch.stack([s["state"][i][k] for s in states])
                          for k, v in entry.items()} for i, entry in first["state"].items()}}


def _unstack_adam(state: dict, g: int) -> dict:
    """Generator g's torch.optim.Adam state_dict from the stacked optimizer's, on the CPU
    (`_host_adam`): copies, since a saved view would drag the whole [G, ...] storage into the
    file."""
    return {"param_groups": copy.deepcopy(state["param_groups"]),
            "state": {i: {k: v.clone() if k == "step" else v[g].clone()
                          for k, v in entry.items()} for i, entry in state["state"].items()}}


def _host(tensors: dict) -> dict:
    """{name: the stacked tensor on the CPU}: one transfer per stacked tensor. A checkpoint
    reads every generator's slice of every tensor; slicing on the GPU first moved each slice
    alone, a host sync each (G × 4 per parameter: model, EMA, Adam's two moments — ~8,300
    per quick study's 36 saves, ~1.3 s of a profiled run on an H100)."""
    return {k: v.detach().to("cpu") for k, v in tensors.items()}


def _host_adam(state: dict) -> dict:
    """A stacked torch.optim.Adam state_dict with its tensors on the CPU (`_host`)."""
    return {"param_groups": state["param_groups"],
            "state": {i: _host(entry) for i, entry in state["state"].items()}}


class _AdamView:
    """What `_save_checkpoint` reads from an optimizer: generator g's state_dict, from the
    stacked optimizer's state (on the CPU: `_host_adam`)."""

    def __init__(self, stacked_state: dict, g: int):
        self.stacked, self.g = stacked_state, g

    def state_dict(self) -> dict:
        return _unstack_adam(self.stacked, self.g)


# ----------------------------------------------------------------------------- training


def _train_group(runs: list[_Run], device: torch.device, progress: bool,
                 builder: Builder) -> None:
    """The batched loop over runs that all resume from one step; tensors carry G first."""
    cfg, start = runs[0].cfg, runs[0].start  # shared except the seed (group_key)
    gens = [init_generator(r.meta, r.cfg, builder) for r in runs]  # CPU: the checkpoint writers' modules
    emas = [copy.deepcopy(g).requires_grad_(False) for g in gens]
    for r, gen, ema in zip(runs, gens, emas):
        if r.state is not None:
            gen.load_state_dict(r.state["model"])
            ema.load_state_dict(r.state["ema"])
    params, buffers = _stack(gens, device, grad=True)
    ema_params, ema_buffers = _stack(emas, device, grad=False)
    opt = make_adam(list(params.values()), cfg.lr, device)  # = gen.parameters() order
    if start:
        opt.load_state_dict(_stack_adam([r.state["optimizer"] for r in runs]))
    base = copy.deepcopy(gens[0]).to("meta").train()  # the architecture; weights come stacked
    # data of every generator in one pool: float [ΣN_i, C, R, R], rows of run i at offsets[i]
    data = torch.cat([base.encode(r.images.to(device)) for r in runs])
    labels = torch.cat([r.labels for r in runs]).to(device)
    sizes = [len(r.labels) for r in runs]
    offsets = torch.tensor([sum(sizes[:i]) for i in range(len(runs))], device=device)

    def save(step: int, finished: bool) -> None:
        host = [_host(t) for t in (params, buffers, ema_params, ema_buffers)]
        adam = _host_adam(opt.state_dict())
        for g, (r, gen, ema) in enumerate(zip(runs, gens, emas)):
            _unstack_into(gen, host[0], host[1], g)
            _unstack_into(ema, host[2], host[3], g)
            _save_checkpoint(r.path, r.meta, gen, ema, _AdamView(adam, g), step, finished,
                             current())

    state = (params, buffers, ema_params, ema_buffers, opt)
    with warnings.catch_warnings(), _vmap_safe_attention(device):
        warnings.filterwarnings("ignore", message="There is a performance drop")
        _group_loop(runs, base, state, data, labels, offsets, start, device, save, progress)


def _group_autocast(device: torch.device):
    """generator._train_loop's autocast (`generator_autocast`) on the CPU; none on CUDA: under
    vmap a bf16 attention's softmax backward fails there ("expected input and grad types to
    match", H200, torch 2.11) and the small nets a group trains are launch-bound, not bound by
    float32 arithmetic."""
    return contextlib.nullcontext() if device.type == "cuda" else generator_autocast(device)


def _vmap_safe_attention(device: torch.device):
    """On CUDA the fused attention kernels fail under vmap (flash/efficient backward: "LSE is
    not correctly aligned (strideH)", seen on an H200 with torch 2.11): the group runs the math
    kernel there (the small nets' attention is a few percent of a step). On the CPU, vmap
    already falls back to a loop over the group (the warning filtered above)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    if device.type != "cuda":
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _clip_per_generator(grads: list[torch.Tensor], max_norm: float) -> None:
    """nn.utils.clip_grad_norm_ for each generator: its global norm over its slices [g]."""
    norms = torch.stack([torch.linalg.vector_norm(t.flatten(1), dim=1) for t in grads])  # [P, G]
    coef = (max_norm / (torch.linalg.vector_norm(norms, dim=0) + 1e-6)).clamp(max=1.0)  # [G]
    for t in grads:
        t.mul_(coef.view(-1, *[1] * (t.ndim - 1)))


def _group_draws(runs, base, step, data, labels, offsets, xflip, device) -> dict:
    """Step `step`'s inputs of every generator, drawn as each draws them alone
    (`generator.draw_step` with its own seed and data size), stacked [G, ...]."""
    ds = [draw_step(base, r.cfg, step, len(r.labels), device) for r in runs]
    idx = torch.stack([d.idx for d in ds]) + offsets[:, None]  # [G, B] into the pool
    x0 = data[idx]  # [G, B, C, R, R]
    if xflip:
        x0 = torch.where(torch.stack([d.flip for d in ds]), x0.flip(-1), x0)
    return {"x0": x0, "y": labels[idx],
            **{k: torch.stack([getattr(d, k) for d in ds]) for k in ("t", "eps", "drop")}}


def _fill(static: dict, values: dict) -> None:
    """Copy this step's tensors into the static ones (made on the first call)."""
    for k, v in values.items():
        if k in static:
            static[k].copy_(v)
        else:
            static[k] = v.clone()


def _group_loop(runs, base, state, data, labels, offsets, start, device, save, progress):
    params, buffers, ema_params, ema_buffers, opt = state
    cfg, n_gen = runs[0].cfg, len(runs)
    total, bsz = num_train_steps(cfg), cfg.batch_size
    ckpt_every = max(1, round(cfg.checkpoint_every_kimg * 1000 / bsz))
    autocast = _group_autocast(device)

    def loss_one(p, b, x0, y, t, eps, drop):  # one generator's loss (its family's), vmapped
        net = lambda *args: torch.func.functional_call(base, (p, b), args)  # noqa: E731
        return base.loss(x0, y, StepDraws(None, None, t, eps, drop), net)

    losses = torch.func.vmap(loss_one, randomness="different")  # dropout: own masks
    # the step's draws, refilled in place every step (StepGraph's static inputs):
    # x0 [G, B, C, R, R], y [G, B], t [G, B], eps [G, B, C, R, R], drop [G, B]
    ins: dict[str, torch.Tensor] = {}
    loss_sum = torch.zeros(n_gen, device=device)  # losses summed on the device

    def forward_backward() -> None:  # StepGraph's fn: no host reads, tensors in and out
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = losses(params, buffers, ins["x0"], ins["y"], ins["t"], ins["eps"],
                          ins["drop"])  # [G]
        loss.sum().backward()  # generator g's parameters get the gradient of loss[g] only
        if cfg.grad_clip > 0:
            _clip_per_generator([p.grad for p in params.values() if p.grad is not None],
                                cfg.grad_clip)
        loss_sum.add_(loss.detach())

    step_fn = StepGraph(forward_backward, device, "generator groups")
    kimg = n_gen * bsz / 1000
    with _progress_bar(progress) as bar:
        task = bar.add_task(f"{n_gen} generators", total=total * kimg, completed=start * kimg,
                            loss=float("nan"), ips=0.0)
        t0 = time.perf_counter()
        since = 0
        for step in range(start, total):
            _fill(ins, _group_draws(runs, base, step, data, labels, offsets, cfg.xflip, device))
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, step)
            step_fn()  # forward, backward, per-generator clipping, loss_sum += loss
            opt.step()
            with torch.no_grad():  # EMA, as generator.ema_update: one β for the whole group
                torch._foreach_lerp_(list(ema_params.values()), list(params.values()),
                                     1.0 - ema_beta(cfg, step))
                for k, b in ema_buffers.items():
                    b.copy_(buffers[k])
            since += 1
            # host reads as in generator._train_loop: every LOSS_READ_STEPS and before saving
            if since == LOSS_READ_STEPS or (step + 1) % ckpt_every == 0 or step + 1 == total:
                values = (loss_sum / since).tolist()
                for r, v in zip(runs, values):
                    if not math.isfinite(v):
                        raise SynthequivError(f"generator loss became {v} at step {step}; lower "
                                              f"generator.lr (now {cfg.lr:g}) ({r.path.parent})")
                loss_sum.zero_()
                since = 0
                ips = (step + 1 - start) * bsz * n_gen / (time.perf_counter() - t0)
                bar.update(task, completed=(step + 1) * kimg, loss=sum(values) / n_gen, ips=ips)
            if (step + 1) % ckpt_every == 0 and step + 1 < total:
                save(step + 1, finished=False)
    save(total, finished=True)
