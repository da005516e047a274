"""Levers: what a practitioner can do about synthetic data, as grid dimensions.

Each variant of a generative arm is its own synthetic arm, labelled from the base arm:
  closed@edm           generators of another family (grid.generator_families; families.py),
                       trained on the same data with the same seed, sampled at the plain
                       setting (sampler auto where the plain one is not the family's)
  closed@cfg2          classifier-free guidance 2 (sampling.cfg_scale is the plain arm's)
  closed@s10           10 sampler steps (sampling.steps is the plain arm's)
  closed+top0.5        the plain arm's samples filtered to the top 50 % per class (filtering.py)
  closed@cfg2+top0.5   both (only with grid.cross_levers)
The plain arm keeps its label (`closed`); study.py adds the variants to each replicate's plain
sets (prepare_levers). A guidance or steps variant is a new sample set from the SAME generator
(no retraining), keyed by its sampling config; a family variant trains its own generators
(keyed by generator.family). The equivalence stage then
analyses every variant as an arm (same intervals; the Holm family is every synthetic cell), so
gains and exchange rates of the settings sit side by side.

Levers are varied one at a time around the sampling config by default (cost: each guided
setting samples every image twice per step); grid.cross_levers=true runs every combination.
They apply to the arms in grid.lever_arms (default closed); a pretrained text-to-image open arm
takes filters only (its guidance is openset's own). Family variants are never crossed with the
other levers: "would another generator change the answer?" is asked at the plain setting.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import time
from dataclasses import dataclass
from pathlib import Path

from synthequiv.generation.families import check_family_config
from synthequiv.generation.registry import FAMILIES, family_entry
from synthequiv.runtime.runlog import info, metric
from synthequiv.utils import SynthequivError, check_positive

GENERATIVE = ("closed", "open")
EXTRA_SEED_OFFSET = 1_000_003  # the filter pool's extra draw: far from every replicate's seed
# base, then a family (letters: closed@edm; never cfg<N> or s<N>, the sampling levers'), ...
_LABEL = re.compile(r"^(?P<base>[a-z]+)(@(?!cfg[0-9.]|s[0-9])(?P<family>[a-z]+))?"
                    r"(@cfg(?P<cfg>[0-9.]+))?(@s(?P<steps>[0-9]+))?(\+top(?P<top>[0-9.]+))?$")


@dataclass(frozen=True)
class Variant:
    base: str  # closed | open
    cfg_scale: float  # the sampling setting this variant's images come from
    steps: int
    keep_top: float | None = None  # keep-top fraction, None = unfiltered
    family: str | None = None  # another generator family (None = generator.family's)


def base_arm(label: str) -> str:
    """'closed@cfg2+top0.5' → 'closed' (any other label is returned unchanged)."""
    return label.split("+")[0].split("@")[0]


def arm_label(v: Variant, plain_cfg: float, plain_steps: int) -> str:
    out = v.base
    if v.family is not None:
        out += f"@{v.family}"
    if v.cfg_scale != plain_cfg:
        out += f"@cfg{v.cfg_scale:g}"
    if v.steps != plain_steps:
        out += f"@s{v.steps}"
    if v.keep_top is not None:
        out += f"+top{v.keep_top:g}"
    return out


def is_variant(label: str) -> bool:
    """A lever variant's label (closed@cfg2, open+top0.5), not a plain arm's."""
    return base_arm(label) != label and parse_label(label, 1.0, 1) is not None


def parse_label(label: str, plain_cfg: float, plain_steps: int) -> Variant | None:
    """The Variant an arm label names (None for a label that is not a generative arm's)."""
    m = _LABEL.match(label)
    if not m or m["base"] not in GENERATIVE or (m["family"] and m["family"] not in FAMILIES):
        return None
    return Variant(m["base"], float(m["cfg"]) if m["cfg"] else plain_cfg,
                   int(m["steps"]) if m["steps"] else plain_steps,
                   float(m["top"]) if m["top"] else None, m["family"])


# ----------------------------------------------------------------------------- planning


def check_levers(cfg) -> None:
    """One-line errors for the lever dimensions of the grid."""
    from synthequiv.generation.filtering import check_fraction

    g = cfg.grid
    for q in g.filters:
        check_fraction(q)
    for s in g.guidance:
        if not math.isfinite(s) or s < 0:
            raise SynthequivError(f"grid.guidance: CFG scales must be >= 0, got {s}")
    for s in g.sampler_steps:
        check_positive("grid.sampler_steps", s)
    bad = [a for a in g.lever_arms if a not in GENERATIVE]
    if bad:
        raise SynthequivError(f"grid.lever_arms: unknown arm '{bad[0]}' (use closed, open)")
    for name, vals in (("filters", g.filters), ("guidance", g.guidance),
                       ("sampler_steps", g.sampler_steps),
                       ("generator_families", g.generator_families)):
        if len(set(vals)) != len(vals):
            raise SynthequivError(f"grid.{name} has a repeated value: {list(vals)}")
    _check_families(cfg)
    _check_provided_sets(cfg)


def _check_families(cfg) -> None:
    """Each family lever is a known family other than the plain arm's, and can sample at the
    plain setting (its generator config and the sampling config a variant uses)."""
    for name in cfg.grid.generator_families:
        if name == cfg.generator.family:
            raise SynthequivError(f"grid.generator_families: {name} is generator.family "
                                  "already (the plain arms)")
        try:
            check_family_config(_family_cfg(cfg.generator, name), family_sampling(cfg, name))
        except SynthequivError as exc:
            raise SynthequivError(f"grid.generator_families: {exc}") from exc
    if not cfg.grid.generator_families:
        return
    from synthequiv.generation.provided_entries import provided_entries

    for e in provided_entries(cfg):  # a provided arm is not trained here: no family to swap
        if e.arm in cfg.grid.lever_arms and e.arm in cfg.grid.arms:
            raise SynthequivError(f"provided.{e.kind}s entry '{e.text}': grid.generator_"
                                  f"families trains the {e.arm} arm's generators, which this "
                                  f"study does not; drop {e.arm} from grid.lever_arms")


def _check_provided_sets(cfg) -> None:
    """A lever needs the arm's generator: another guidance or step count samples new images
    from it, and a filter scores a pool drawn beyond the plain set. A provided image set has
    neither — its 'variants' were the plain set relabelled, and a filter pool repeated its
    images — so levers on an arm given as images are refused."""
    from synthequiv.generation.provided_entries import provided_entries

    g = cfg.grid
    levers = g.filters or g.guidance or g.sampler_steps or g.generator_families
    if not levers or not g.syn_add_per_class:
        return
    for e in provided_entries(cfg):
        if e.kind == "set" and e.arm in g.lever_arms and e.arm in g.arms:
            raise SynthequivError(
                f"provided.sets entry '{e.text}': the {e.arm} arm's levers (grid.filters, "
                "guidance, sampler_steps, generator_families) need its generator, and a "
                "provided image set has "
                f"none; drop {e.arm} from grid.lever_arms, or provide a generator "
                "(provided.generators)")


def _sampling_settings(cfg) -> list[tuple[float, int]]:
    """(cfg_scale, steps) of every setting, the plain one first."""
    plain = (cfg.sampling.cfg_scale, cfg.sampling.steps)
    scales = list(dict.fromkeys([plain[0], *cfg.grid.guidance]))
    steps = list(dict.fromkeys([plain[1], *cfg.grid.sampler_steps]))
    if cfg.grid.cross_levers:
        return list(itertools.product(scales, steps))
    return [plain] + [(s, plain[1]) for s in scales[1:]] + [(plain[0], t) for t in steps[1:]]


def variants(cfg) -> list[Variant]:
    """Every variant arm of the grid (the plain arms excluded), in a fixed order."""
    g = cfg.grid
    bases = [a for a in GENERATIVE if a in g.arms and a in g.lever_arms]
    if not bases or not g.syn_add_per_class:
        return []
    settings = _sampling_settings(cfg)
    plain = settings[0]
    out = []
    for base in bases:
        resample = not (base == "open" and cfg.openset.kind == "pretrained")
        mine = settings if resample else [plain]
        if resample:  # a pretrained pipeline has no family to swap
            out += [Variant(base, *plain, family=f) for f in g.generator_families]
        out += [Variant(base, *s) for s in mine[1:]]
        filtered = mine if g.cross_levers else [plain]
        out += [Variant(base, *s, q) for s in filtered for q in g.filters]
    return out


def variant_arms(cfg) -> list[str]:
    return [arm_label(v, cfg.sampling.cfg_scale, cfg.sampling.steps) for v in variants(cfg)]


def _family_cfg(gen, family: str):
    """The generator config of a family variant: the plain one with another family."""
    return dataclasses.replace(gen, family=family)


def family_sampling(cfg, family: str):
    """The plain sampling config for a family variant; sampler auto (the family's default)
    where the plain sampler is not one of the family's (dpmpp for edm, heun for unet)."""
    s = cfg.sampling
    if s.sampler != "auto" and s.sampler not in family_entry(family).samplers:
        return dataclasses.replace(s, sampler="auto")
    return s


def _plain_cfg(cfg, arms: tuple[str, ...], scale: float, steps: int, seed_offset: int = 0,
               per_class: int | None = None, family: str | None = None):
    """cfg for synthetic.prepare_synthetic of `arms` at one sampling setting (levers off: a
    plain preparation); seed_offset draws other images from the same generators; `family`
    trains the arms' generators with another family."""
    rep = dataclasses.replace
    s = cfg.sampling if family is None else family_sampling(cfg, family)
    gen = cfg.generator if family is None else _family_cfg(cfg.generator, family)
    grid = rep(cfg.grid, arms=arms, filters=(), guidance=(), sampler_steps=(),
               generator_families=(),
               syn_add_per_class=(per_class,) if per_class else cfg.grid.syn_add_per_class)
    return rep(cfg, grid=grid, generator=gen,
               sampling=rep(s, cfg_scale=scale, steps=steps, seed=s.seed + seed_offset),
               openset=rep(cfg.openset, seed=cfg.openset.seed + seed_offset))


# ----------------------------------------------------------------------------- sets


def prepare_levers(cfg, sp, run_dir: Path, device, progress: bool, tag: str,
                   plain: dict) -> dict:
    """{(variant label, n_base): SyntheticSet} for every variant arm; `plain` is the plain
    arms' {(arm, n_base): SyntheticSet} at the sampling config."""
    from synthequiv.generation.filtering import filtered_set, pool_per_class
    from synthequiv.generation.provided import load_provided, provided_sets
    from synthequiv.generation.synthetic import prepare_synthetic

    todo = variants(cfg)
    if not todo or not plain:
        return {}
    p_cfg, p_steps = cfg.sampling.cfg_scale, cfg.sampling.steps
    max_add = max(cfg.grid.syn_add_per_class)
    extra_n = max(pool_per_class(max_add, q) for q in cfg.grid.filters) - max_add \
        if cfg.grid.filters else 0

    def sets_at(v: Variant, offset: int = 0, per_class: int | None = None) -> dict:
        if (v.cfg_scale, v.steps, v.family) == (p_cfg, p_steps, None) and not offset:
            return plain
        vcfg = _plain_cfg(cfg, (v.base,), v.cfg_scale, v.steps, offset, per_class, v.family)
        syn, rt = vcfg.synthetic, cfg.runtime
        given = provided_sets(syn, rt, sp, run_dir, device, progress, tag,
                              load_provided(vcfg, [sp]))
        return prepare_synthetic(syn, rt, sp, run_dir, device, progress, tag, given)

    out = {}
    for v in todo:
        t0, label = time.time(), arm_label(v, p_cfg, p_steps)
        own = {n: s for (a, n), s in sets_at(v).items() if a == v.base}
        if v.keep_top is None:
            out.update({(label, n): dataclasses.replace(s, arm=label) for n, s in own.items()})
        else:
            extra = ({n: s for (a, n), s in sets_at(v, EXTRA_SEED_OFFSET, extra_n).items()
                      if a == v.base} if extra_n else {})
            for n, s in own.items():  # the scorer sees B(n) only: never reserve or test images
                out[(label, n)] = filtered_set(
                    s, extra.get(n), v.keep_top, max_add, sp.base(n), label,
                    f"{label}-n{n}{tag}", sp.dataset.num_classes, cfg.classifier, run_dir,
                    device)
        info(f"lever {label}{tag}: {len(own)} set(s) ready in {time.time() - t0:.1f} s",
             echo="plain")
        metric("lever", arm=label, tag=tag, seconds=time.time() - t0)
    return out


# ----------------------------------------------------------------------------- report


def lever_rows(cfg, equivalence: dict, analysis: dict | None) -> list[dict]:
    """Per generative arm setting (plain arms included when variants exist) and base size:
    fidelity, recall, coverage, memorization (replicate 0's sets) and the gain and measured
    exchange rate at the largest synthetic amount (over every replicate)."""
    p_cfg, p_steps = cfg.sampling.cfg_scale, cfg.sampling.steps
    arms = sorted(equivalence.get("arms", {}))
    if not any(base_arm(a) != a for a in arms):
        return []
    sets = (analysis or {}).get("sets", {})
    rows = []
    for arm in arms:
        v = parse_label(arm, p_cfg, p_steps)
        if v is None:
            continue
        pts = equivalence["arms"][arm].get("points", [])
        for n in sorted({p["n_base"] for p in pts}):
            gains = [g for g in equivalence.get("gains", [])
                     if g["arm"] == arm and g["n_base"] == n]
            top = max(gains, key=lambda g: g["n_add"], default=None)
            point = next((p for p in pts if p["n_base"] == n and top
                          and p["n_syn"] == top["n_add"]), None)
            a = sets.get(f"{arm}-n{n}") or sets.get(arm) or {}
            rows.append({
                "arm": arm, "base": v.base, "family": v.family or cfg.generator.family,
                "n_base": n, "cfg_scale": v.cfg_scale,
                "steps": v.steps, "keep_top": v.keep_top,
                "fidelity": a.get("fidelity", {}).get("accuracy"),
                "recall": a.get("overlap", {}).get("recall"),
                "coverage": a.get("overlap", {}).get("coverage"),
                "memorized": a.get("memorization", {}).get("pixel", {}).get("frac_below"),
                "n_add": top["n_add"] if top else None,
                "gain": top["gain"] if top else None, "gain_lo": top["lo"] if top else None,
                "gain_hi": top["hi"] if top else None,
                "significant": top["significant"] if top else None,
                "rate": point.get("rate") if point and point.get("usable") else None,
                "rate_lo": point.get("rate_lo") if point and point.get("usable") else None,
                "rate_hi": point.get("rate_hi") if point and point.get("usable") else None,
                "rate_flag": point.get("flag") if point else None})
    return sorted(rows, key=lambda r: (r["base"], r["n_base"], r["family"] != cfg.generator.family,
                                       r["family"], r["keep_top"] or 0.0, r["cfg_scale"],
                                       r["steps"]))
