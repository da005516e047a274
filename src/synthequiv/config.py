"""The study's configuration: one frozen dataclass per stage, composed; presets; YAML I/O.

Loading is strict: an unknown key is an error naming the key (e.g. `grid.sedes`), a value of
the wrong type is an error naming the key and the expected type.

Length (~550 lines): one dataclass per stage lives with its stage; this module holds the
composition, the presets, strict YAML loading and the up-front validation of every stage, which
belong together so that a config is checked in one place before anything runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from synthequiv.classification.config import ClassifierConfig
from synthequiv.classification.config import check as check_classifier
from synthequiv.generation.config import GeneratorConfig, OpenSetConfig, SampleConfig
from synthequiv.generation.provided_entries import ProvidedConfig, provided_entries
from synthequiv.generation.registry import check_family_names
from synthequiv.inputs.config import TEST_ALL, SplitConfig, check_split_config
from synthequiv.inputs.sources import DataConfig
from synthequiv.presets import PRESETS
from synthequiv.stats.config import EquivalenceConfig
from synthequiv.utils import SynthequivError, to_jsonable

ARMS = ("real", "closed", "open")


@dataclass(frozen=True)
class GridConfig:
    # defaults = the quick digits study. Replicates are the units of every interval: each draws
    # its own base sets, reserve and hold-out test set and trains its own generators, so the CIs
    # include the generator's variance (intervals.py); seeds are nested inside a replicate
    arms: tuple[str, ...] = ARMS
    # ≥ 4 real amounts per base size: the real curve is what synthetic cells are read off.
    # The smallest is near a synthetic cell's worth (a cell between knots is read off a line in
    # log n: with +5 first, a cell worth +2 at 5/class was covered 78 % of the time)
    real_add_per_class: tuple[int, ...] = (2, 5, 15, 40)  # extra real images/class (R(m))
    syn_add_per_class: tuple[int, ...] = (40, 160)  # synthetic images/class per generative arm
    replicates: int | str = 3  # independent draws of the design (base sets, generators, test set)
    # replicates: auto — start with min_replicates, then add one at a time (nothing is
    # retrained) until `target` is met, `budget_s` is spent or max_replicates is reached
    # (stats/sequential.py). target: "gain_halfwidth=1.0" (pts) or "rate_halfwidth=0.5" (×rate)
    target: str = ""
    budget_s: float = 0.0  # wall-clock budget of an auto study (0 = none); study --budget 2h
    min_replicates: int = 3
    max_replicates: int = 20
    seeds: tuple[int, ...] = (0, 1)  # classifier seeds per cell within each replicate
    # levers (levers.py): each setting is its own synthetic arm, e.g. closed@cfg2, closed+top0.5;
    # off in the quick study (cost), on in the `levers` preset. A filtered arm keeps the top q
    # per class of a pool of ceil(max syn_add_per_class / q) images/class (filtering.py)
    filters: tuple[float, ...] = ()  # keep-top fractions q in (0, 1] by base-set classifier score
    guidance: tuple[float, ...] = ()  # CFG scales; () = only sampling.cfg_scale
    sampler_steps: tuple[int, ...] = ()  # sampler steps; () = only sampling.steps
    lever_arms: tuple[str, ...] = ("closed",)  # generative arms that get the variants
    cross_levers: bool = False  # every combination; False = one lever at a time around plain
    # generator families (families.py) for variant arms, e.g. [edm, dit] → closed@edm,
    # closed@dit: the same arm's generators trained with that family (plain sampling, unfiltered)
    generator_families: tuple[str, ...] = ()


@dataclass(frozen=True)
class AnalysisConfig:
    enabled: bool = True
    max_images: int = 1000  # per set, for feature metrics and the domain classifier
    domain_train_steps: int = 300


@dataclass(frozen=True)
class RayConfig:
    address: str = ""  # "" = start Ray on this machine; "auto" or host:port = join a cluster
    num_cpus: int = 0  # local start only: CPUs Ray may use (0 = all)
    cpus_per_task: float = 1.0  # per classifier cell / sampling shard / generator
    gpus_per_task: float = 0.0  # per classifier cell or sampling shard, e.g. 0.25 = 4 per GPU
    gpus_per_generator: float = 0.0  # per generator training (1.0 on a GPU cluster)
    sample_shards: int = 4  # sampling of one synthetic set is split into this many seed ranges


@dataclass(frozen=True)
class StudyConfig:
    name: str = "quick"
    device: str = "auto"  # auto | cpu | cuda[:N], decided once
    executor: str = "local"  # local | ray
    # local executor: parallel worker processes; 0 = one per CPU core (a GPU: one per GPU).
    # With cpu_threads 1 this is the default on CPU: small convolutions scale better across
    # processes than across one process's threads, and beside other jobs each single-thread
    # process loses only its share of the cores (benchmarks/contention.py: a 2-thread process
    # waits for its descheduled partner at every barrier; README "A machine shared ...")
    workers: int = 0
    # torch threads per task process on CPU: N > 0 pins N; 0 = torch's default (one per core).
    # Default 1: the numbers then do not depend on the machine's core count or its load (a
    # thread count changes float summation order), and the cores go to `workers`
    cpu_threads: int = 1
    # with cpu_threads 0: lower torch's threads to the cores other processes leave free,
    # measured at the start and between tasks; the numbers then depend on the load
    cpu_adapt: bool = False
    # processes (one per GPU) for each generator training, DDP launched with torchrun; on a
    # CPU they are gloo processes. 1 = train in the worker itself
    generator_nproc: int = 1
    compile: bool = False  # torch.compile the generator for training and sampling (GPU runs)
    # classifier cells trained at once as one batched computation
    # (src/synthequiv/classification/batched.py);
    # 0 = auto: 1 on CPU (there batching measured slower), by architecture on CUDA
    cell_group: int = 0
    # diffusion generators trained at once as one batched computation (gengroup.py), over all
    # replicates; 0 = auto: 1 on CPU (compute-bound there), by preset on CUDA (16 for 8px)
    generator_group: int = 0
    ray: RayConfig = field(default_factory=RayConfig)
    data: DataConfig = field(default_factory=DataConfig)
    splits: SplitConfig = field(default_factory=SplitConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    sampling: SampleConfig = field(default_factory=SampleConfig)
    openset: OpenSetConfig = field(default_factory=OpenSetConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    grid: GridConfig = field(default_factory=GridConfig)
    equivalence: EquivalenceConfig = field(default_factory=EquivalenceConfig)
    analysis: AnalysisConfig = field(default_factory=AnalysisConfig)
    provided: ProvidedConfig = field(default_factory=ProvidedConfig)


# ----------------------------------------------------------------------------- build / dump


def _coerce(value: Any, typ: Any, key: str) -> Any:
    origin = typing.get_origin(typ)
    if dataclasses.is_dataclass(typ):
        if not isinstance(value, dict):
            raise SynthequivError(f"config key '{key}' must be a mapping")
        return build(typ, value, key + ".")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SynthequivError(f"config key '{key}' must be a list")
        item = typing.get_args(typ)[0]
        return tuple(_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value))
    if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite(float(value), key)
    if typ is float and isinstance(value, str):
        try:  # YAML 1.1 reads `2e-4` (no dot) as a string
            return _finite(float(value), key)
        except ValueError:
            pass
    if typ in (int, str, bool) and type(value) is not typ:
        raise SynthequivError(
            f"config key '{key}' must be {typ.__name__}, got {type(value).__name__} {value!r}"
        )
    if typ is float and not isinstance(value, float):
        raise SynthequivError(f"config key '{key}' must be a number, got {value!r}")
    return value


def _finite(value: float, key: str) -> float:
    if not math.isfinite(value):
        raise SynthequivError(f"config key '{key}' must be a finite number, got {value}")
    return value


def build(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """Dataclass `cls` from a nested dict; unknown keys raise, naming the key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in values if k not in names]
    if unknown:
        raise SynthequivError(f"unknown config key '{prefix}{unknown[0]}'")
    return cls(**{k: _coerce(v, hints[k], prefix + k) for k, v in values.items()})


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict[str, Any]:
    """'grid.seeds=[0,1]' → {'grid': {'seeds': [0, 1]}} (value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise SynthequivError(f"--set expects KEY=VALUE, got '{text}'")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        raise SynthequivError(f"--set {key}: cannot parse value {raw!r}") from exc
    out: dict[str, Any] = value
    for part in reversed(key.split(".")):
        out = {part: out}
    return out


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise SynthequivError(f"config file not found: {path}") from exc
    except UnicodeDecodeError as exc:
        raise SynthequivError(f"config file {path} is not UTF-8 text (a binary file?)") from exc
    except OSError as exc:  # a directory, no permission, a device…
        raise SynthequivError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise SynthequivError(f"invalid YAML in {path}: {str(exc).splitlines()[0]}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise SynthequivError(f"{path}: top level must be a mapping of config keys")
    return loaded


def resolve(preset: str = "quick", path: Path | None = None,
            overrides: list[str] = ()) -> StudyConfig:
    """Preset, then a YAML file, then `--set` overrides, in that order."""
    if preset not in PRESETS:
        raise SynthequivError(f"unknown preset '{preset}' (known: {', '.join(PRESETS)})")
    values = dict(PRESETS[preset])
    if path is not None:
        values = merge(values, read_yaml(path))
    for text in overrides:
        values = merge(values, parse_override(text))
    cfg = build(StudyConfig, values)
    provided_entries(cfg)  # a bad entry fails here, before any data is read
    return cfg


def check_runtime(cfg: StudyConfig) -> None:
    """One-line errors for the run-time section (how the study runs, not what it measures)."""
    from synthequiv.utils import check_positive

    if cfg.executor not in ("local", "ray"):
        raise SynthequivError(f"unknown executor '{cfg.executor}' (use local or ray)")
    check_positive("workers", cfg.workers, allow_zero=True)
    check_positive("cpu_threads", cfg.cpu_threads, allow_zero=True)
    if cfg.cpu_adapt and cfg.cpu_threads != 0:
        raise SynthequivError(f"cpu_adapt lowers torch's default thread count, but cpu_threads "
                              f"is {cfg.cpu_threads}: add --set cpu_threads=0")
    check_positive("generator_nproc", cfg.generator_nproc)
    check_positive("cell_group", cfg.cell_group, allow_zero=True)
    check_positive("generator_group", cfg.generator_group, allow_zero=True)


# ----------------------------------------------------------------------------- validation

MAX_PER_CLASS = 1_000_000  # any per-class count above this is a typo, not a study
INT_MAX = 2**63 - 1  # every integer ends up in an int64 tensor or sqlite INTEGER
MEDMNIST_SIZES = (28, 64, 128, 224)


def validate(cfg: StudyConfig, plan_only: bool = False) -> None:
    """Every check that needs no data, for every stage: run before anything is written or
    trained, so a bad value is one error line at once, not a failure after hours of training.
    plan_only (the dry run: planning a GPU study on a laptop): a CUDA device need not be
    present, only well named."""
    check_values(cfg)
    _check_with_torch(cfg, plan_only)


def check_values(cfg: StudyConfig) -> None:
    """validate's checks that need no torch: every value of every stage, the names of the
    generator family and its sampler (the CLI runs these before it loads the study)."""
    from synthequiv.generation.config import check_config, check_sample_config
    from synthequiv.inputs.sources import check_source
    from synthequiv.runtime.cpu import figure_workers
    from synthequiv.utils import check_device_name, check_positive, cpu_bf16_choice

    check_run_name(cfg.name)
    _check_numbers(cfg, "")
    check_runtime(cfg)
    check_device_name(cfg.device)  # its presence is checked with torch, below
    cpu_bf16_choice()
    figure_workers()
    _check_ray(cfg.ray, cfg.executor == "ray")
    d = cfg.data
    if not d.source:
        raise SynthequivError("data.source is empty")
    check_source(d.source)
    if d.medmnist_size not in MEDMNIST_SIZES:
        raise SynthequivError(f"data.medmnist_size must be one of {MEDMNIST_SIZES}, got "
                              f"{d.medmnist_size}")
    check_positive("data.image_size", d.image_size, allow_zero=True)
    _check_counts("splits.base_per_class", cfg.splits.base_per_class)
    check_split_config(cfg.splits)  # test_per_class: a count or "all"
    if cfg.splits.test_per_class != TEST_ALL:
        _check_counts("splits.test_per_class", (cfg.splits.test_per_class,))
    _check_counts("splits.test_cap_per_class", (cfg.splits.test_cap_per_class,))
    check_config(cfg.generator)
    check_sample_config(cfg.sampling)
    check_classifier(cfg.classifier)
    _check_grid(cfg.grid)
    check_positive("analysis.max_images", cfg.analysis.max_images)
    if cfg.analysis.enabled and cfg.analysis.max_images < 2:  # found before training, not after
        raise SynthequivError("analysis.max_images must be ≥ 2 (a domain classifier needs 2 "
                              f"images per side), got {cfg.analysis.max_images}")
    check_positive("analysis.domain_train_steps", cfg.analysis.domain_train_steps)
    check_family_names(cfg.generator.family, cfg.sampling)  # the family's own checks: below


def _check_with_torch(cfg: StudyConfig, plan_only: bool) -> None:
    """The checks that load torch: the device, DDP's batch split, CUDA graphs, the generator
    family's own checks (its presets, EDM's σ range), the levers (lazy imports: a config error
    before them is fast)."""
    from synthequiv.generation.families import check_family_config
    from synthequiv.generation.levers import check_levers
    from synthequiv.generation.ranks import check_split
    from synthequiv.stepgraph import graphs_choice
    from synthequiv.utils import resolve_device

    resolve_device("cpu" if plan_only and re.fullmatch(r"cuda(:\d+)?", cfg.device)
                   else cfg.device)
    check_split(cfg.generator.batch_size, cfg.generator_nproc)
    graphs_choice()
    check_family_config(cfg.generator, cfg.sampling)
    check_levers(cfg)


def check_run_name(name: str) -> None:
    """A run name is one plain path component, so runs_dir / name stays inside runs_dir."""
    bad = (not isinstance(name, str) or not name or name.startswith(".") or "/" in name
           or "\\" in name or any(ord(ch) < 32 for ch in name) or len(os.fsencode(name)) > 200)
    if bad:
        raise SynthequivError(f"run name {name!r} must be a plain name: no '/' or '\\', not "
                              "starting with '.', no control characters, at most 200 bytes")


def _check_numbers(obj: Any, prefix: str) -> None:
    """Every float finite, every int within int64, every seed in [0, 2**63) (walks the tree)."""
    from synthequiv.utils import check_seed

    for f in dataclasses.fields(obj):
        key, value = prefix + f.name, getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_numbers(value, key + ".")
            continue
        items = value if isinstance(value, tuple) else (value,)
        for v in items:
            if f.name in ("seed", "seeds"):
                check_seed(f"config key '{key}'", v)
            elif isinstance(v, float) and not math.isfinite(v):
                raise SynthequivError(f"config key '{key}' must be a finite number, got {v}")
            elif isinstance(v, int) and not isinstance(v, bool) and abs(v) > INT_MAX:
                raise SynthequivError(f"config key '{key}' is out of range: {v}")


def _check_counts(key: str, values: tuple[int, ...], allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        raise SynthequivError(f"{key} is empty")
    for v in values:
        if not 0 < v <= MAX_PER_CLASS:
            raise SynthequivError(f"{key} entries must be in [1, {MAX_PER_CLASS}], got {v}")
    if len(set(values)) != len(values):
        raise SynthequivError(f"{key} has duplicate entries: {list(values)}")


def _check_grid(g: GridConfig) -> None:
    if not g.arms:
        raise SynthequivError("grid.arms is empty")
    bad = [a for a in g.arms if a not in ARMS]
    if bad:
        raise SynthequivError(f"unknown arm '{bad[0]}' in grid.arms (use {', '.join(ARMS)})")
    if len(set(g.arms)) != len(g.arms):
        raise SynthequivError(f"grid.arms has duplicate entries: {list(g.arms)}")
    _check_counts("grid.real_add_per_class", g.real_add_per_class, allow_empty=True)
    _check_counts("grid.syn_add_per_class", g.syn_add_per_class, allow_empty=True)
    if not g.seeds:
        raise SynthequivError("grid.seeds is empty")
    check_replicates(g)
    if len(set(g.seeds)) != len(g.seeds):
        raise SynthequivError(f"grid.seeds has duplicate seeds: {list(g.seeds)} (a repeated "
                              "seed repeats the same cell and narrows the CIs falsely)")


def check_replicates(g: GridConfig) -> None:
    """grid.replicates: a count in [1, 1000] or auto, with auto's target, budget and bounds."""
    from synthequiv.stats.config import AUTO, parse_target
    from synthequiv.utils import check_positive

    auto = g.replicates == AUTO
    if not auto and (not isinstance(g.replicates, int) or isinstance(g.replicates, bool)
                     or not 1 <= g.replicates <= 1000):
        raise SynthequivError(f"grid.replicates must be in [1, 1000] or auto, got "
                              f"{g.replicates!r}")
    check_positive("grid.budget_s", g.budget_s, allow_zero=True)
    if not auto:
        if g.target or g.budget_s:
            raise SynthequivError("grid.target and a budget (grid.budget_s, --budget) apply to "
                                  "grid.replicates=auto only")
        return
    if not g.target:
        raise SynthequivError("grid.replicates=auto needs grid.target, e.g. "
                              "'grid.target=gain_halfwidth=1.0' (pts) or 'rate_halfwidth=0.5'")
    parse_target(g.target)
    if not 2 <= g.min_replicates <= g.max_replicates <= 1000:
        raise SynthequivError("grid.replicates=auto needs 2 ≤ grid.min_replicates ≤ "
                              f"grid.max_replicates ≤ 1000, got {g.min_replicates} and "
                              f"{g.max_replicates}")


def _check_ray(r: RayConfig, used: bool) -> None:
    from synthequiv.utils import check_positive

    check_positive("ray.num_cpus", r.num_cpus, allow_zero=True)
    check_positive("ray.cpus_per_task", r.cpus_per_task)
    check_positive("ray.gpus_per_task", r.gpus_per_task, allow_zero=True)
    check_positive("ray.gpus_per_generator", r.gpus_per_generator, allow_zero=True)
    check_positive("ray.sample_shards", r.sample_shards)
    if used and r.address not in ("", "auto"):
        check_reachable(r.address)


def check_reachable(address: str, timeout_s: float = 10.0) -> None:
    """Fail fast on a Ray address nothing answers at (ray.init would wait for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep:
        host, port = hostport, "6379"  # Ray's default head (GCS) port
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except (OSError, ValueError) as exc:
        raise SynthequivError(f"ray.address {address}: nothing answers there ({exc}); start "
                              "the Ray head first or fix the address") from exc


def validate_data(cfg: StudyConfig, ds) -> None:
    """Checks that need the loaded data: the largest synthetic set must fit in memory."""
    if not any(a in cfg.grid.arms for a in ("closed", "open")) or not cfg.grid.syn_add_per_class:
        return
    c, h, w = ds.shape
    # uint8 images plus the float32 copy made while resizing them to the data's shape
    need = max(cfg.grid.syn_add_per_class) * ds.num_classes * c * h * w * 5
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have:
        raise SynthequivError(
            f"grid.syn_add_per_class={max(cfg.grid.syn_add_per_class)} needs about "
            f"{need / 2**30:.0f} GiB for one synthetic set; this machine has {have / 2**30:.0f} GiB")


def to_dict(cfg: StudyConfig) -> dict[str, Any]:
    return to_jsonable(cfg)


def dump_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


# ----------------------------------------------------------------------------- provided arms


def input_folders(cfg: StudyConfig) -> list[tuple[Path, str]]:
    """(folder, what) of every image folder the study reads: the data source's and provided
    sets' `folder:PATH` (outputs must stay out of them: `utils.check_outside`)."""
    out = []
    kind, _, arg = cfg.data.source.partition(":")
    if kind == "folder" and arg:
        out.append((Path(arg), "data folder"))
    for text in cfg.provided.sets:
        prefix, _, path = text.partition("=")[2].strip().partition(":")
        if prefix == "folder" and path:
            out.append((Path(path), "provided images folder"))
    return out


def check_outside_inputs(cfg: StudyConfig, out: Path) -> None:
    """An output path (run directory, --out) outside every image folder the study reads: it
    would become part of that data."""
    from synthequiv.utils import check_outside

    for folder, what in input_folders(cfg):
        check_outside(out, folder, what)


def check_run_dir(cfg: StudyConfig, run_dir: Path) -> None:
    """A run directory is a directory (or not there yet) outside every input folder."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise SynthequivError(f"refusing to use {run_dir} as a run directory: it is a file")
    check_outside_inputs(cfg, run_dir)
