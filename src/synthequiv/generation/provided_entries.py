"""Provided synthetic arms (issue: bring your own images or generators): their config section,
the parsing of each `ARM[:N]=SOURCE` entry, and the arms a study measures with them. Light (no
torch): config.validate and the plan read it; generation/provided.py loads what it names."""

from __future__ import annotations

import re
from dataclasses import dataclass

from synthequiv.utils import SynthequivError


@dataclass(frozen=True)
class ProvidedConfig:
    # synthetic arms made outside the study, each entry "ARM[:N]=SOURCE". ARM is closed, open or
    # a new label (e.g. sd15) that becomes its own synthetic arm; N a base size (images/class)
    # of splits.base_per_class, left out = one set shared by every base size (not for closed)
    sets: tuple[str, ...] = ()  # SOURCE: npz:PATH or folder:PATH, classes matched by name
    generators: tuple[str, ...] = ()  # SOURCE: a directory of `synthequiv generator train`


@dataclass(frozen=True)
class ProvidedEntry:
    """One parsed `provided.sets` / `provided.generators` entry."""

    text: str  # the entry as written, for messages
    kind: str  # set | generator
    arm: str
    n_base: int | None  # None = shared by every base size
    source: str  # npz:PATH / folder:PATH (sets) or a generator directory


ARM_LABEL = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}")  # file-name safe: no '-', '/', '.'


def parse_provided(text: str, kind: str) -> ProvidedEntry:
    """'sd15:10=folder:/imgs' → ProvidedEntry; a malformed entry is one line naming it."""
    where = f"provided.{kind}s entry '{text}'"
    form = "ARM[:N]=npz:PATH or ARM[:N]=folder:PATH" if kind == "set" else "ARM[:N]=DIRECTORY"
    left, sep, source = text.partition("=")
    arm, colon, n_text = left.strip().partition(":")
    if not sep or not source.strip() or not arm:
        raise SynthequivError(f"{where}: expected {form}")
    if not ARM_LABEL.fullmatch(arm):
        raise SynthequivError(f"{where}: arm '{arm}' must be a letter then letters, digits or _ "
                              "(at most 32)")
    if arm in ("real", "baseline"):
        raise SynthequivError(f"{where}: '{arm}' is the real-data reference, not a synthetic arm")
    n = None
    if colon:
        if not n_text.isdigit() or int(n_text) <= 0:
            raise SynthequivError(f"{where}: base size '{n_text}' must be a positive integer "
                                  f"(expected {form})")
        n = int(n_text)
    elif arm == "closed":
        raise SynthequivError(f"{where}: the closed arm is per base size; write closed:N=...")
    source = source.strip()
    if kind == "set":
        prefix, _, path = source.partition(":")
        if prefix not in ("npz", "folder") or not path:
            raise SynthequivError(f"{where}: source must be npz:PATH or folder:PATH")
    return ProvidedEntry(text, kind, arm, n, source)


def provided_entries(cfg) -> list[ProvidedEntry]:
    """Every provided entry, checked against each other and the base sizes."""
    p = cfg.provided
    entries = ([parse_provided(t, "set") for t in p.sets]
               + [parse_provided(t, "generator") for t in p.generators])
    bases = cfg.splits.base_per_class
    seen: dict[tuple[str, int | None], ProvidedEntry] = {}
    for e in entries:
        where = f"provided.{e.kind}s entry '{e.text}'"
        if e.n_base is not None and e.n_base not in bases:
            raise SynthequivError(f"{where}: base size {e.n_base} is not in "
                                  f"splits.base_per_class {list(bases)}")
        clash = seen.get((e.arm, e.n_base)) or (
            seen.get((e.arm, None)) if e.n_base is not None else
            next((o for (a, _), o in seen.items() if a == e.arm), None))
        if clash is not None:
            raise SynthequivError(f"{where}: arm {e.arm} is already given by '{clash.text}' "
                                  "(one source per arm and base size)")
        seen[(e.arm, e.n_base)] = e
    return entries


def study_arms(cfg) -> tuple[str, ...]:
    """grid.arms plus every provided arm not listed there: providing an arm puts it in the
    grid (e.g. a new label sd15 becomes a synthetic arm beside closed and open)."""
    extra = [e.arm for e in provided_entries(cfg) if e.arm not in cfg.grid.arms]
    return tuple(cfg.grid.arms) + tuple(dict.fromkeys(extra))


def provided_note(cfg) -> str | None:
    """What provided arms leave out of the intervals (a line for the report), or None."""
    p = getattr(cfg, "provided", None)  # configs rebuilt from older runs have none
    if p is None or not (p.sets or p.generators):
        return None
    text = []
    if p.sets:
        text.append(f"Provided synthetic sets ({', '.join(p.sets)}): provided sets are fixed "
                    "across replicates: their intervals do not include generator variance.")
    if p.generators:
        text.append(f"Provided generators ({', '.join(p.generators)}) are trained once, "
                    "elsewhere, and sampled with a new seed in every replicate: their intervals "
                    "include sampling but not generator-training variance.")
    return " ".join(text)
