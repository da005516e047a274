"""The study's way to a generator family through the registry (registry.py): the family
object, its config checks, the keys of its generators and sample sets, and loading.

A family implements `family.GeneratorFamily` (train, load, sample with per-image seeds, cost
per kimg, and whether it trains in batched groups / under DDP). Adding one is a module and a
line in registry.FAMILIES (tests/test_families.py registers a toy family and runs a study).

  unet  diffusers UNet2DModel, DDPM objective, DPM-Solver++/DDIM/DDPM     (unet.py, family.py)
  edm   Karras et al. 2022: preconditioned UNet, log-normal σ, Heun       (edm.py)
  dit   Peebles & Xie 2023: pixel-space DiT in the DDPM wrapper           (dit.py)
"""

from __future__ import annotations

import importlib
from pathlib import Path

from synthequiv.generation.checkpoint import CHECKPOINT_NAME, checkpoint_family, read_checkpoint
from synthequiv.generation.family import GeneratorFamily
from synthequiv.generation.generator import GeneratorConfig, check_config, config_view
from synthequiv.generation.registry import family_entry
from synthequiv.generation.sampling import SampleConfig, key_view
from synthequiv.utils import stable_hash


def get_family(name: str) -> GeneratorFamily:
    """The family registered as `name`, its module imported on first use (a registry line
    names it by "module:attribute", so the registry itself needs no torch)."""
    module, _, attribute = family_entry(name).where.partition(":")
    return getattr(importlib.import_module(module), attribute)


def check_family_config(gen: GeneratorConfig, sampling: SampleConfig | None = None) -> None:
    """Every check of a generator config and, given, the sampling config it samples with."""
    check_config(gen)
    family = get_family(gen.family)
    family.check(gen)
    if sampling is not None:
        family.samplers.resolve(sampling)


def generator_key(gen: GeneratorConfig, data_digest: str, num_classes: int) -> str:
    """Key of a generator's directory: its config view (generator.config_view: a unet key is
    the one made before families existed), the exact training data and the class count."""
    return stable_hash("generator", config_view(gen), data_digest, num_classes)


def samples_key(gen_key: str, family: GeneratorFamily, sampling: SampleConfig,
                *rest) -> str:
    """Key of a sample set of the generator `gen_key` (sampling.key_view: auto resolved)."""
    return stable_hash(gen_key, key_view(sampling, family.samplers), *rest)


def family_of(gen_dir: Path) -> GeneratorFamily:
    """The family of the generator trained in gen_dir (read from its checkpoint)."""
    state = read_checkpoint(Path(gen_dir) / CHECKPOINT_NAME, "cpu", mmap=True)
    return get_family(checkpoint_family(state))


def load_generator(gen_dir: Path, device="cpu", allow_unfinished: bool = False,
                   compile: bool = False):
    """(family, the EMA network in eval mode) of the generator in gen_dir, whatever its family."""
    family = family_of(gen_dir)
    return family, family.load(gen_dir, device, allow_unfinished, compile)
