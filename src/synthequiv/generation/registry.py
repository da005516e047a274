"""The registry of generator families: name → where its family object lives, plus the
sampler names it accepts. Light (no torch), so config.validate refuses an unknown
generator.family or sampling.sampler at once; a family's module (torch, its networks) is
imported only when the family is used (families.get_family).

Adding a family is one module defining a `family.GeneratorFamily` and one line in FAMILIES
(tests/test_families.py registers a toy family that way and runs a study with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from synthequiv.generation.config import EDM_SAMPLER_NAMES, SAMPLERS, SampleConfig, check_sampler
from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class FamilyEntry:
    """One registry line. `samplers` and `churn` repeat the family's own `SamplerSet` (a test
    checks they agree), so its sampler names are checked without importing it."""

    where: str  # "module:attribute" of the GeneratorFamily object
    samplers: tuple[str, ...]  # sampling.sampler names; the first is what auto means
    churn: bool = False  # whether sampling.churn means anything to these samplers


FAMILIES: dict[str, FamilyEntry] = {
    "unet": FamilyEntry("synthequiv.generation.family:UNET_FAMILY", SAMPLERS),  # unet.py
    "edm": FamilyEntry("synthequiv.generation.edm:FAMILY", EDM_SAMPLER_NAMES, churn=True),
    "dit": FamilyEntry("synthequiv.generation.dit:FAMILY", SAMPLERS),
}


def family_entry(name: str) -> FamilyEntry:
    if name not in FAMILIES:
        raise SynthequivError(f"unknown generator family '{name}' (use {', '.join(FAMILIES)})")
    return FAMILIES[name]


def check_family_names(family: str, sampling: SampleConfig) -> None:
    """generator.family is registered and sampling.sampler is one of its samplers (no torch)."""
    entry = family_entry(family)
    check_sampler(sampling, entry.samplers, entry.churn)
