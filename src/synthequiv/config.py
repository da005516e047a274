"""The study's configuration: one frozen dataclass per stage, composed; presets; YAML I/O.

Loading is strict: an unknown key is an error naming the key (e.g. `grid.sedes`), a value of
the wrong type is an error naming the key and the expected type.

Each stage's config and its check live with the stage (runtime/, inputs/, generation/,
classification/, stats/ and measures/ config.py); this module composes them into StudyConfig,
resolves presets, loads YAML strictly and validates every stage in one place before anything
runs.
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
from synthequiv.generation.config import (
    GeneratorConfig,
    OpenSetConfig,
    SampleConfig,
    SyntheticConfig,
)
from synthequiv.generation.provided_entries import ProvidedConfig, provided_entries
from synthequiv.generation.registry import check_family_names, family_entry
from synthequiv.inputs.config import TEST_ALL, SplitConfig, check_split_config
from synthequiv.inputs.sources import DataConfig
from synthequiv.measures.config import AnalysisConfig
from synthequiv.measures.config import check as check_analysis
from synthequiv.presets import PRESETS
from synthequiv.runtime.config import RayConfig, RuntimeConfig
from synthequiv.runtime.config import check as check_ray
from synthequiv.stats.config import EquivalenceConfig, GridConfig, check_grid
from synthequiv.utils import SynthequivError, check_counts, to_jsonable


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

    @property
    def runtime(self) -> RuntimeConfig:
        """How the study runs, the view the executors and the stages' executor calls take
        (its fields are this config's of the same names)."""
        return RuntimeConfig(**{f.name: getattr(self, f.name)
                                for f in dataclasses.fields(RuntimeConfig)})

    @property
    def synthetic(self) -> SyntheticConfig:
        """The generation stage's view (synthetic.py, provided.py): its configs, the grid's
        generative arms and amounts."""
        g = self.grid
        return SyntheticConfig(self.generator, self.sampling, self.openset, self.data,
                               tuple(a for a in g.arms if a in ("closed", "open")),
                               self.splits.base_per_class, max(g.syn_add_per_class, default=0))


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
    check_ray(cfg.ray, cfg.executor == "ray")
    d = cfg.data
    if not d.source:
        raise SynthequivError("data.source is empty")
    check_source(d.source)
    if d.medmnist_size not in MEDMNIST_SIZES:
        raise SynthequivError(f"data.medmnist_size must be one of {MEDMNIST_SIZES}, got "
                              f"{d.medmnist_size}")
    check_positive("data.image_size", d.image_size, allow_zero=True)
    check_counts("splits.base_per_class", cfg.splits.base_per_class)
    check_split_config(cfg.splits)  # test_per_class: a count or "all"
    if cfg.splits.test_per_class != TEST_ALL:
        check_counts("splits.test_per_class", (cfg.splits.test_per_class,))
    check_counts("splits.test_cap_per_class", (cfg.splits.test_cap_per_class,))
    check_config(cfg.generator)
    check_sample_config(cfg.sampling)
    check_classifier(cfg.classifier)
    check_grid(cfg.grid)
    check_analysis(cfg.analysis)
    check_family_names(cfg.generator.family, cfg.sampling)  # the family's own checks: below
    for name in cfg.grid.generator_families:  # the family levers' names, before torch loads
        try:
            family_entry(name)
        except SynthequivError as exc:
            raise SynthequivError(f"grid.generator_families: {exc}") from exc


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
