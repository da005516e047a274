"""The study's configuration: one frozen dataclass per stage, composed; presets; YAML I/O.

Loading is strict: an unknown key is an error naming the key (e.g. `grid.sedes`), a value of
the wrong type is an error naming the key and the expected type.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .classifier import ClassifierConfig
from .data import DataConfig
from .equivalence import EquivalenceConfig
from .generator import GeneratorConfig
from .openset import OpenSetConfig
from .sampling import SampleConfig
from .splits import SplitConfig
from .utils import SynthequivError, to_jsonable

ARMS = ("real", "closed", "open")


@dataclass(frozen=True)
class GridConfig:
    # defaults = the quick digits study. Replicates are the units of every interval: each draws
    # its own base sets, reserve and hold-out test set and trains its own generators, so the CIs
    # include the generator's variance (intervals.py); seeds are nested inside a replicate
    arms: tuple[str, ...] = ARMS
    # ≥ 4 real amounts per base size: the real curve is what synthetic cells are read off
    real_add_per_class: tuple[int, ...] = (5, 10, 20, 40)  # extra real images/class (R(m))
    syn_add_per_class: tuple[int, ...] = (40, 160)  # synthetic images/class per generative arm
    replicates: int = 3  # independent draws of the design (base sets, generators, test set)
    seeds: tuple[int, ...] = (0, 1)  # classifier seeds per cell within each replicate
    # levers (levers.py): each setting is its own synthetic arm, e.g. closed@cfg2, closed+top0.5;
    # off in the quick study (cost), on in the `levers` preset. A filtered arm keeps the top q
    # per class of a pool of ceil(max syn_add_per_class / q) images/class (filtering.py)
    filters: tuple[float, ...] = ()  # keep-top fractions q in (0, 1] by base-set classifier score
    guidance: tuple[float, ...] = ()  # CFG scales; () = only sampling.cfg_scale
    sampler_steps: tuple[int, ...] = ()  # sampler steps; () = only sampling.steps
    lever_arms: tuple[str, ...] = ("closed",)  # generative arms that get the variants
    cross_levers: bool = False  # every combination; False = one lever at a time around plain


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
    # local executor: parallel worker processes (0 = one per CPU core, 1 on a GPU). Default 1:
    # on the 2-vCPU reference machine two processes ran no faster than one (measured)
    workers: int = 1
    # torch threads per process on CPU; 0 = torch's default (all cores). On a quiet 2-vCPU
    # machine 2 threads were 1.5–1.75× faster than 1 (measured); on a machine shared with
    # other jobs set 1: oversubscribed threads were up to 10× slower
    cpu_threads: int = 0
    # processes (one per GPU) for each generator training, DDP launched with torchrun; on a
    # CPU they are gloo processes. 1 = train in the worker itself
    generator_nproc: int = 1
    compile: bool = False  # torch.compile the generator for training and sampling (GPU runs)
    # classifier cells trained at once as one batched computation (src/synthequiv/batched.py);
    # 0 = auto: 1 on CPU (there batching measured slower), by architecture on CUDA
    cell_group: int = 0
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


# ----------------------------------------------------------------------------- presets

# Each preset is a set of overrides on the defaults (which are the `quick` digits study).
PRESETS: dict[str, dict[str, Any]] = {
    # 3 replicates × 2 base sizes × (1 + 4 real + 2 closed + 2 open amounts) × 2 seeds = 108
    # cells and 9 generators: the design whose interval coverage benchmarks/coverage.py measured
    "quick": {"splits": {"base_per_class": [10, 20]}},
    # quick + the levers (issue 15) on the closed arm: a 3-value guidance sweep and the paper's
    # filter (drop the bottom 20 %, q = 0.8: its pool needs only 40 extra images/class; q = 0.5
    # needs 160). Measured generator+sampling time of one replicate, one thread on the shared
    # 2-vCPU machine: quick 102 s / 106 s, levers' extra 107 s / 132 s (guidance 97 s / 121 s:
    # every guided image costs 2 network evaluations per step; filter 10 s), i.e. 2.05–2.24×
    "levers": {"name": "levers", "splits": {"base_per_class": [10, 20]},
               "grid": {"filters": [0.8], "guidance": [1.0, 2.0, 4.0]}},
    "mnist": {
        "name": "mnist",
        "data": {"source": "npz:../shared/data/mnist10k.npz"},
        "splits": {"base_per_class": [10, 20, 50], "test_per_class": 100},
        # the 36M-parameter 32px net trains at ~2 img/s on CPU; the 1.1M one fits a CPU run.
        # Conditional fidelity on B(20) (benchmarks/generator.py --study mnist): 0.700 at
        # 25.6 kimg, 0.844 at 51.2 kimg (judge ceiling 0.898); ~7 min per generator on 2 cores
        "generator": {"preset": "32px-small", "train_kimg": 51.2},
        "grid": {"real_add_per_class": [10, 25, 50, 100],
                 "syn_add_per_class": [25, 100, 400]},
        # CPU-sized: auto picked ResNet-18 (~90 img/s here, ~20 min per 1,000-step cell); a
        # width-8 SmallCNN (28 → 14 → 7 → 4 px) ran ~800 img/s on a loaded 2-core machine.
        # On a GPU, --set classifier.arch=resnet18 --set classifier.train_steps=1000
        "classifier": {"arch": "smallcnn", "width": 8, "train_steps": 200},
    },
    "pneumonia": {
        "name": "pneumonia",
        "data": {"source": "medmnist:pneumoniamnist"},
        "splits": {"base_per_class": [25, 50, 100]},
        # B(25) fidelity 0.990 at the default 25.6 kimg (judge ceiling 0.845 on real test
        # images; benchmarks/generator.py --study pneumonia --set data.root=DIR)
        "generator": {"preset": "32px-small"},
        "grid": {"real_add_per_class": [25, 50, 100, 200],
                 "syn_add_per_class": [50, 200, 800], "seeds": [0, 1, 2]},
        "classifier": {"arch": "smallcnn", "width": 8, "train_steps": 200},  # as mnist
    },
    # GPU-sized: the paper's CIFAR-10 setting, shrunk toward a one-GPU-day grid (the aim; its
    # GPU cost is unmeasured: benchmarks/throughput.py projects it on the device at hand)
    "cifar10": {
        "name": "cifar10",
        "device": "cuda",
        "data": {"source": "cifar10"},
        "splits": {"base_per_class": [100, 250, 500, 1000]},
        # DDPM-CIFAR-like 36M net: lr and EMA as in DDPM/EDM, not the digits defaults
        "generator": {"train_kimg": 2000.0, "batch_size": 256, "lr": 2e-4, "warmup_kimg": 200.0,
                      "ema_halflife_kimg": 500.0, "xflip": True},
        "ray": {"gpus_per_task": 0.25, "gpus_per_generator": 1.0, "cpus_per_task": 2.0},
        "grid": {"real_add_per_class": [100, 250, 500, 1000],
                 "syn_add_per_class": [500, 1000, 2500, 5000]},
        # equal optimizer steps in every cell (arms at equal compute; the paper's 100-epochs
        # budget gives a +5,000 synthetic cell ~5× the steps of a +1,000 real one): 4,000
        # steps × 128 is the old epochs grid's mean compute per cell
        "classifier": {"hflip": True, "budget": "steps", "train_steps": 4000},
    },
    "bloodmnist": {
        "name": "bloodmnist",
        "device": "cuda",
        "data": {"source": "medmnist:bloodmnist"},
        "splits": {"base_per_class": [50, 100, 200]},
        "generator": {"train_kimg": 1000.0, "batch_size": 256, "lr": 2e-4, "warmup_kimg": 100.0,
                      "ema_halflife_kimg": 250.0, "xflip": True},
        "ray": {"gpus_per_task": 0.25, "gpus_per_generator": 1.0, "cpus_per_task": 2.0},
        "grid": {"real_add_per_class": [50, 100, 200, 400],
                 "syn_add_per_class": [200, 800, 3200]},
        "classifier": {"hflip": True, "budget": "steps", "train_steps": 3000},  # as cifar10
    },
}


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
        return float(value)
    if typ is float and isinstance(value, str):
        try:  # YAML 1.1 reads `2e-4` (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if typ in (int, str, bool) and type(value) is not typ:
        raise SynthequivError(
            f"config key '{key}' must be {typ.__name__}, got {type(value).__name__} {value!r}"
        )
    if typ is float and not isinstance(value, float):
        raise SynthequivError(f"config key '{key}' must be a number, got {value!r}")
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
        loaded = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError as exc:
        raise SynthequivError(f"config file not found: {path}") from exc
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
    return build(StudyConfig, values)


def check_runtime(cfg: StudyConfig) -> None:
    """One-line errors for the run-time section (how the study runs, not what it measures)."""
    from .distributed import check_split
    from .utils import check_positive

    if cfg.executor not in ("local", "ray"):
        raise SynthequivError(f"unknown executor '{cfg.executor}' (use local or ray)")
    check_positive("workers", cfg.workers, allow_zero=True)
    check_positive("cpu_threads", cfg.cpu_threads, allow_zero=True)
    check_positive("generator_nproc", cfg.generator_nproc)
    check_positive("cell_group", cfg.cell_group, allow_zero=True)
    check_split(cfg.generator.batch_size, cfg.generator_nproc)


def to_dict(cfg: StudyConfig) -> dict[str, Any]:
    return to_jsonable(cfg)


def dump_yaml(cfg: StudyConfig) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)
