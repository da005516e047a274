"""Synthetic sets for the study's generative arms, cached in the run directory.

closed  one generator per base size n, trained on B(n) only (never reserve or test images)
open    one set shared by every base size:
          kind=pool        the same generator trained on the whole training pool B ∪ R
          kind=source      the same generator trained on another data source
          kind=pretrained  a text-to-image pipeline (openset.py) prompted with class names

The functions take the stage's view (config.SyntheticConfig: generator, sampling, openset,
the grid's arms and amounts) and the runtime's (runtime/config.RuntimeConfig), never the study.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F

from synthequiv.generation.config import SyntheticConfig
from synthequiv.generation.families import (
    generator_key,
    get_family,
    load_generator,
    samples_key,
)
from synthequiv.generation.generator import CHECKPOINT_NAME, GeneratorConfig
from synthequiv.generation.sampling import SampleConfig
from synthequiv.inputs.splits import Splits
from synthequiv.runtime.config import RuntimeConfig
from synthequiv.utils import SynthequivError, atomic_write_json, stable_hash, tensor_digest


@dataclass
class SyntheticSet:
    key: str  # hash of everything that made these samples
    arm: str  # closed | open
    images: torch.Tensor  # uint8 [N, C, H, W], the dataset's shape
    labels: torch.Tensor  # int64 [N]
    path: Path  # samples .npz (a .png grid beside it)
    generator_dir: Path | None  # None for a pretrained pipeline

    def first_per_class(self, m: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first m samples of every class: nested subsets S(10) ⊂ S(40) ⊂ …"""
        idx = []
        for c in torch.unique(self.labels).tolist():
            ids = torch.nonzero(self.labels == c).flatten()
            if len(ids) < m:
                raise SynthequivError(f"synthetic set {self.path.name} has {len(ids)} images "
                                      f"of class {c}, fewer than {m}")
            idx.append(ids[:m])
        idx = torch.cat(idx)
        return self.images[idx], self.labels[idx]


def match_shape(images: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """uint8 [N, C', H', W'] → uint8 [N, C, H, W]: resize (bilinear, antialiased), fix channels."""
    c, h, w = shape
    x = images.float()
    if x.shape[2:] != (h, w):
        x = F.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    if x.shape[1] == 3 and c == 1:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif x.shape[1] == 1 and c == 3:
        x = x.expand(-1, 3, -1, -1)
    return x.round().clamp(0, 255).to(torch.uint8)


# ----------------------------------------------------------------------------- generation


@dataclass
class GenJob:
    """One generator to train on (x, y) and sample n_per_class images/class from."""

    name: str  # e.g. closed-n20, open-pool
    x: torch.Tensor
    y: torch.Tensor
    gen_dir: Path
    path: Path  # samples .npz
    key: str  # samples key
    digest: str  # content hash of the training images + labels
    generator: GeneratorConfig  # what it trains with (a replicate's own seed)
    sampling: SampleConfig  # what its samples are drawn with (part of `key`)

    @property
    def trained(self) -> bool:
        """Finished: trained_on.json is written only after training ends, in a directory keyed
        by the generator config and data, beside its checkpoint (read again when sampling)."""
        return (self.gen_dir / "trained_on.json").exists() and \
            (self.gen_dir / CHECKPOINT_NAME).exists()


def make_job(name, x, y, num_classes, out_shape, n_per_class, generator: GeneratorConfig,
             sampling: SampleConfig, run_dir: Path) -> GenJob:
    """The generator trained on (x, y) with `generator`, sampled with `sampling`: its
    directory and samples file named by their keys."""
    digest = tensor_digest(x, y)
    gen_key = generator_key(generator, digest, num_classes)
    sample_key = samples_key(gen_key, get_family(generator.family), sampling, n_per_class,
                             out_shape)
    return GenJob(name, x, y, run_dir / "generators" / f"{name}-{gen_key}",
                  run_dir / "samples" / f"{name}-{sample_key}.npz", sample_key, digest,
                  generator, sampling)


def _write_trained_on(job: GenJob) -> None:
    # provenance: the exact images this generator saw (tests check it is B(n) only)
    atomic_write_json(job.gen_dir / "trained_on.json",
                      {"name": job.name, "train_digest": job.digest, "n_images": len(job.y)})


def _train_task(job: GenJob, num_classes, rt: RuntimeConfig, device, progress) -> GenJob:
    from synthequiv.generation.distributed import train_distributed

    train_distributed(job.x, job.y, num_classes, job.generator, job.gen_dir, device,
                      rt.generator_nproc, rt.compile, progress)
    _write_trained_on(job)
    return job


def train_group_task(jobs: list[GenJob], num_classes, rt: RuntimeConfig, device,
                      progress) -> list[GenJob]:
    """One group of compatible generators (gengroup.py); a group of one trains as before."""
    if len(jobs) == 1:
        return [_train_task(jobs[0], num_classes, rt, device, progress)]
    family = get_family(jobs[0].generator.family)  # one family per group (group_key)
    family.train_group([(j.x, j.y) for j in jobs], num_classes, [j.generator for j in jobs],
                       [j.gen_dir for j in jobs], device, progress)
    for job in jobs:
        _write_trained_on(job)
    return jobs


def train_groups(jobs: list[GenJob], num_classes, rt: RuntimeConfig, device
                 ) -> list[list[GenJob]]:
    """The executor tasks that train `jobs`: up to `rt.generator_group` compatible generators
    (`gengroup.plan_groups`) at once; under generator_nproc > 1 each alone (with DDP), as is
    every generator of a family that does not group."""
    from synthequiv.generation.gengroup import plan_groups

    keys = [_group_key(j, num_classes) for j in jobs]
    groups = [[jobs[i] for i in idx] for idx in plan_groups(keys, rt.generator_group, device)]
    if rt.generator_nproc > 1 or all(len(g) == 1 for g in groups):
        groups = [[job] for job in jobs]  # one by one, in the order given, as before
    return groups


def train_jobs(jobs: list[GenJob], num_classes, rt: RuntimeConfig, device,
               progress) -> Iterator[GenJob]:
    """Train (or resume, or find finished) every job's generator; yields each job when its
    group (`train_groups`) is done, one executor task per group."""
    from synthequiv.runtime.executor import map_tasks

    shared = {"num_classes": num_classes, "rt": rt, "device": device, "progress": progress}
    for done in map_tasks(train_group_task, train_groups(jobs, num_classes, rt, device), shared,
                          rt, kind="generator"):
        yield from done


def _group_key(job: GenJob, num_classes: int) -> tuple:
    """The family's group key (gengroup.group_key); a key of its own for a family that does
    not group."""
    family = get_family(job.generator.family)
    if not family.grouped:
        return (job.gen_dir.name,)
    return family.group_key(job.x, num_classes, job.generator)


def sample_task(shard: tuple, labels, device, progress, compile):
    target, start, stop = shard
    family, gen = load_generator(target.gen_dir, device, compile=compile)  # the file's family
    name = shard_name(target.name, start, stop, len(labels))
    # index_offset keeps per-sample seeds global: N shards give exactly one call's images
    return target, start, family.sample(gen, labels[start:stop], target.sampling, device,
                                        progress, start, description=f"sampling {name}")


def shard_name(name: str, start: int, stop: int, n: int) -> str:
    """closed-n10-r0, or closed-n10-r0 [0:800] for a part of the set's n images."""
    return name if (start, stop) == (0, n) else f"{name} [{start}:{stop}]"


def shards(n: int, count: int, align: int = 1) -> list[tuple[int, int]]:
    """[start, stop) of up to `count` near-equal parts of range(n), inner edges on multiples of
    `align` (the sampler's network rows per call: a shard of 800 at 256 rows per call pads its
    last call to 1,024 rows, where 768 + 832 computes the 7 blocks one process would)."""
    edges = [min(n, round(i * n / count / align) * align) for i in range(count)] + [n]
    return [(a, b) for a, b in zip(edges, edges[1:]) if b > a]


def run_jobs(jobs: list[GenJob], num_classes, out_shape, n_per_class, rt: RuntimeConfig,
             device, progress) -> dict[str, SyntheticSet]:
    from synthequiv.generation.sampling import load_samples
    from synthequiv.runtime.progress import progress_bar

    out, todo, trained = {}, [], []
    for job in jobs:
        if job.path.exists():
            images, labels, _ = load_samples(job.path, job.key)
            out[job.name] = SyntheticSet(job.key, job.name.split("-")[0], images, labels,
                                         job.path, job.gen_dir)
        elif job.trained:  # e.g. by the study's train-all pass: only sampling is left
            trained.append(job)
        else:
            todo.append(job)
    with progress_bar("generators", total=len(todo), enabled=progress and len(todo) > 1) as bar:
        for job in train_jobs(todo, num_classes, rt, device, progress):
            trained.append(job)
            bar.advance(1, job.name)
    samples = sample_to_files([job_target(job) for job in trained], n_per_class,
                              num_classes, out_shape, rt, device, progress)
    for job in trained:
        images, labels = samples[job.path]
        out[job.name] = SyntheticSet(job.key, job.name.split("-")[0], images, labels, job.path,
                                     job.gen_dir)
    return out


class SampleTarget(NamedTuple):
    """One synthetic set to sample: from the generator in gen_dir, with `sampling` (a
    replicate's config: its seed), into the samples file `path` with `meta` beside it."""

    gen_dir: Path
    path: Path
    meta: dict
    sampling: SampleConfig
    resolution: int = 0  # the generator's model resolution (0 = unknown): aligns the shards

    @property
    def name(self) -> str:  # for log lines: closed-n10-r0
        return self.path.stem.removesuffix(f"-{self.meta.get('key', '')}")


def job_target(job: GenJob) -> SampleTarget:
    """The samples of a trained GenJob, with the sampling config that made its key."""
    resolution = get_family(job.generator.family).resolution(job.generator,
                                                             tuple(job.x.shape[1:]))
    return SampleTarget(job.gen_dir, job.path, {"generator": job.gen_dir.name, "key": job.key},
                        job.sampling, resolution)


def _rows_per_call(target: SampleTarget, device) -> int:
    from synthequiv.generation.sampling import net_block_rows

    if not target.resolution:
        return 1
    return net_block_rows(torch.device(device), target.resolution)


class ShardedSets:
    """The sampling of several sets as shards (per-sample seeds: any sharding gives the same
    images): `items(target)` are a set's executor items (`sample_task`), `add` takes a finished
    shard and, when it completes its set, writes the set (matched to `out_shape`) to its
    samples path with a .png grid beside it, so a killed pass keeps every finished set."""

    def __init__(self, n_per_class: int, num_classes: int, out_shape, count: int, device):
        from synthequiv.generation.sampling import class_quota_labels

        self.labels = class_quota_labels(n_per_class, num_classes)
        self.num_classes, self.out_shape, self.count, self.device = (num_classes, out_shape,
                                                                     count, device)
        self.n_parts: dict[Path, int] = {}  # shards per set
        self.parts: dict[Path, dict[int, torch.Tensor]] = {}

    def items(self, target: SampleTarget) -> list[tuple]:
        edges = shards(len(self.labels), self.count, _rows_per_call(target, self.device))
        self.n_parts[target.path] = len(edges)
        return [(target, a, b) for a, b in edges]

    def shared(self, progress: bool, compile: bool) -> dict:
        """`sample_task`'s shared inputs."""
        return {"labels": self.labels, "device": self.device, "progress": progress,
                "compile": compile}

    def name(self, target: SampleTarget, start: int, images: torch.Tensor) -> str:
        return shard_name(target.name, start, start + len(images), len(self.labels))

    def add(self, target: SampleTarget, start: int, images: torch.Tensor
            ) -> torch.Tensor | None:
        """The whole set, saved, once this shard completes it; else None."""
        from synthequiv.generation.sampling import save_grid_png, save_samples

        chunks = self.parts.setdefault(target.path, {})
        chunks[start] = images
        if len(chunks) < self.n_parts[target.path]:
            return None
        del self.parts[target.path]  # the set is complete: save it, free its shards
        whole = match_shape(torch.cat([chunks[k] for k in sorted(chunks)]), self.out_shape)
        save_samples(target.path, whole, self.labels, target.meta)
        save_grid_png(target.path.with_suffix(".png"), whole, self.labels, self.num_classes)
        return whole


def sample_to_files(targets: list[SampleTarget], n_per_class: int, num_classes: int,
                    out_shape, rt: RuntimeConfig, device, progress, keep: bool = True) -> dict[
                        Path, tuple[torch.Tensor, torch.Tensor]]:
    """Sample n_per_class images/class for every target, all sharded over the executor in one
    pass (`ShardedSets`), each set saved as soon as its last shard lands. {samples path:
    (images, labels)}; empty with keep=False (the study's all-replicates pass: only the files
    are wanted, not all sets in memory at once)."""
    from synthequiv.runtime.executor import local_workers, map_tasks, runs_elsewhere
    from synthequiv.runtime.progress import progress_bar

    if not targets:
        return {}
    count = rt.ray.sample_shards if rt.executor == "ray" else local_workers(rt)
    sets = ShardedSets(n_per_class, num_classes, out_shape, count, device)
    items = [item for t in targets for item in sets.items(t)]
    out = {}
    with progress_bar("sampling", total=len(items),
                      enabled=progress and runs_elsewhere(rt, len(items), "sample")) as bar:
        for t, start, images in map_tasks(sample_task, items, sets.shared(progress, rt.compile),
                                          rt, kind="sample"):
            bar.advance(1, sets.name(t, start, images))
            whole = sets.add(t, start, images)
            if whole is not None and keep:
                out[t.path] = (whole, sets.labels)
    return out


def _pretrained(openset, sp: Splits, n_per_class, run_dir, device, progress) -> SyntheticSet:
    from synthequiv.generation.openset import load_text_to_image, sample_pretrained
    from synthequiv.generation.sampling import (
        class_quota_labels,
        load_samples,
        save_grid_png,
        save_samples,
    )

    ds = sp.dataset
    key = stable_hash("pretrained", openset, ds.class_names, n_per_class, ds.shape)
    path = run_dir / "samples" / f"open-pretrained-{key}.npz"
    if path.exists():
        images, labels, _ = load_samples(path, key)
        return SyntheticSet(key, "open", images, labels, path, None)
    pipe = load_text_to_image(openset.model, device)
    labels = class_quota_labels(n_per_class, ds.num_classes)
    images = sample_pretrained(pipe, ds.class_names, labels, openset, ds.shape, device,
                               progress)
    save_samples(path, images, labels, {"model": openset.model, "key": key})
    save_grid_png(path.with_suffix(".png"), images, labels, ds.num_classes)
    return SyntheticSet(key, "open", images, labels, path, None)


def image_hashes(x: torch.Tensor) -> set[bytes]:
    """One hash per image of uint8 [N, C, H, W]: sets of images compared by exact pixels."""
    import hashlib

    flat = x.reshape(len(x), -1).numpy()
    return {hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in flat}


def check_no_test_images(images: torch.Tensor, sp: Splits, what: str) -> None:
    """Refuse open-set training data that contains any of the study's test images (compared
    by exact pixel content): a generator trained on them would leak the test set."""
    if images.shape[1:] != sp.test_images.shape[1:]:
        return  # another shape: no image can be identical
    shared = image_hashes(images) & image_hashes(sp.test_images)
    if shared:
        raise SynthequivError(
            f"{what} contains {len(shared)} of the study's {len(sp.test_images)} test images: an "
            "open-set generator trained on it would see the test set; use a source without them "
            "(or openset.kind=pool)")


def _open_job(syn: SyntheticConfig, sp: Splits, run_dir, tag: str = "") -> GenJob:
    ds, kind, source = sp.dataset, syn.openset.kind, syn.openset.source
    if kind == "pool":
        idx = sp.pool_indices()  # B ∪ R: never the test split
        x, y = ds.images[idx], ds.labels[idx]
    elif kind == "source":
        from dataclasses import replace

        from synthequiv.inputs.data import load_dataset

        other = load_dataset(replace(syn.data, source=source))
        if other.num_classes != ds.num_classes:
            raise SynthequivError(f"openset.source {source} has {other.num_classes} "
                                  f"classes, the study's data has {ds.num_classes}")
        x, y = other.images, other.labels
        check_no_test_images(x, sp, f"openset.source {source}")
    else:
        raise SynthequivError(f"unknown openset.kind '{kind}' (use pool, source or pretrained)")
    return make_job(f"open-{kind}{tag}", x, y, ds.num_classes, ds.shape, syn.n_per_class,
                    syn.generator, syn.sampling, run_dir)


def _generated_arms(syn: SyntheticConfig, given) -> list[str]:
    """The generative arms this study makes itself: not fully given by provided arms."""
    if not syn.n_per_class:
        return []
    return [a for a in syn.arms if not all((a, n) in given for n in syn.base_per_class)]


def generator_jobs(syn: SyntheticConfig, sp: Splits, run_dir: Path, tag: str = "",
                   given=()) -> list[GenJob]:
    """The generators `prepare_synthetic` trains for one replicate (syn carries its seeds):
    closed per base size, and the open one (pool or source); `given` holds the (arm, n_base)
    keys of provided arms, which need none. The study collects every replicate's jobs first
    and trains them in groups (gengroup.py)."""
    arms, ds = _generated_arms(syn, given), sp.dataset
    if not arms:
        return []
    run_dir = Path(run_dir)
    jobs = []
    for n in syn.base_per_class:
        if "closed" in arms and ("closed", n) not in given:
            x, y = sp.base(n)  # B(n) only: never reserve or test images
            jobs.append(make_job(f"closed-n{n}{tag}", x, y, ds.num_classes, ds.shape,
                                 syn.n_per_class, syn.generator, syn.sampling, run_dir))
    if "open" in arms and syn.openset.kind != "pretrained":
        jobs.append(_open_job(syn, sp, run_dir, tag))
    return jobs


def prepare_synthetic(syn: SyntheticConfig, rt: RuntimeConfig, sp: Splits, run_dir: Path,
                      device, progress: bool = True, tag: str = "", given: dict | None = None
                      ) -> dict[tuple[str, int], SyntheticSet]:
    """{(arm, n_base): SyntheticSet} for the generative arms in the grid; `tag` (e.g. "-r1")
    names one replicate's generators and samples (syn then carries that replicate's seeds).
    `given`: the provided arms' sets (provided.provided_sets), which replace generated ones."""
    given = given or {}
    arms = _generated_arms(syn, given)
    if not arms:
        return given
    n_per_class, run_dir, ds = syn.n_per_class, Path(run_dir), sp.dataset
    jobs = generator_jobs(syn, sp, run_dir, tag, given)
    sets = run_jobs(jobs, ds.num_classes, ds.shape, n_per_class, rt, device, progress)
    pretrained = "open" in arms and syn.openset.kind == "pretrained"
    if pretrained:
        sets["open"] = _pretrained(syn.openset, sp, n_per_class, run_dir, device, progress)
    closed = [n for n in syn.base_per_class if "closed" in arms and ("closed", n) not in given]
    out = {("closed", n): sets[f"closed-n{n}{tag}"] for n in closed}
    if "open" in arms:
        shared = sets["open"] if pretrained else sets[f"open-{syn.openset.kind}{tag}"]
        out.update({("open", n): shared for n in syn.base_per_class})
    return {**out, **given}
