"""The study plan: what a config will train and sample, the data it needs, and what it costs.

`study_plan(cfg, ds)` counts generators, sample sets and classifier cells from the config
alone; the dataset (when it could be read) gives the class count, image shape and per-class
availability. The cost is an ESTIMATE: images each stage processes ÷ a default throughput
from the table below (measured on the project's code, PERF.md / README), scaled where no
figure was measured. `benchmarks/throughput.py` measures the device at hand.
"""

from __future__ import annotations

import math

from synthequiv.reporting.power import design_mdes, hours_text, mde_text
from synthequiv.rundir import earlier_rows
from synthequiv.runtime import runlog
from synthequiv.stats.config import AUTO, cell_seeds, first_replicates, parse_target
from synthequiv.utils import SynthequivError

# img/s per stage, measured: cuda = one H200 (bf16), cpu = the 2-core development machine.
# "scaled" entries have no measurement: scaled from the nearest measured preset by
# parameters × pixels, so read them as an order of magnitude.
THROUGHPUT = {
    ("cuda", "generator", "8px"): 1694.0,  # alone (benchmarks/generators.py --device cuda)
    ("cuda", "generator", "16px"): 2000.0,  # scaled
    ("cuda", "generator", "32px-small"): 1475.0,  # mnist preset
    ("cuda", "generator", "32px"): 2642.0,  # cifar10 preset, batch 256, eager (throughput.py)
    ("cuda", "generator", "64px"): 450.0,  # scaled
    ("cuda", "sampling", "8px"): 3064.0,  # quick study: 9 × 1,600 images in 4.7 s
    ("cuda", "sampling", "16px"): 1000.0,  # scaled
    ("cuda", "sampling", "32px-small"): 695.0,
    ("cuda", "sampling", "32px"): 247.0,  # eager; 733 compiled (below)
    ("cuda", "sampling", "64px"): 80.0,  # scaled
    ("cuda", "classifier", "smallcnn"): 45786.0,  # batch 128 microbenchmark
    ("cuda", "classifier", "resnet18"): 9321.0,
    ("cuda", "classifier", "airbench"): 42987.0,  # 16 cells at once (cell_group auto), 20 steps
    ("cpu", "generator", "8px"): 1296.0,
    ("cpu", "generator", "16px"): 30.0,  # scaled
    # mnist preset, bf16 autocast (benchmarks/stages.py; float32: 168, a CPU without bf16)
    ("cpu", "generator", "32px-small"): 271.0,
    ("cpu", "generator", "32px"): 3.8,
    ("cpu", "generator", "64px"): 0.7,  # scaled
    ("cpu", "sampling", "8px"): 198.0,
    ("cpu", "sampling", "16px"): 8.0,  # scaled
    ("cpu", "sampling", "32px-small"): 23.6,  # benchmarks/stages.py --preset mnist
    ("cpu", "sampling", "32px"): 1.0,
    ("cpu", "sampling", "64px"): 0.2,  # scaled
    ("cpu", "classifier", "smallcnn"): 45544.0,
    ("cpu", "classifier", "resnet18"): 84.6,
    ("cpu", "classifier", "airbench"): 599.0,  # throughput.classifier_ips, 32 px, 5 steps
}
# the same stages where the study speeds them up (H200, torch 2.11, this project's benchmarks):
# G generators trained as one group (gengroup.py; the quick study's 9 in one group) and
# `compile: true` (benchmarks/throughput.py --preset cifar10 --set compile=true)
# (and 108 quick cells in 9.8 s, groups of 64: 5.5 M training images at 564k img/s)
GROUPED = {("cuda", "generator", "8px"): 12127.0, ("cuda", "classifier", "smallcnn"): 564000.0}
COMPILED = {("cuda", "generator", "32px"): 3541.0, ("cuda", "sampling", "32px"): 733.0}
REFERENCE_STEPS = 25  # sampling figures are at 25 network evaluations per image
# sources whose class count and image shape are known without reading them
KNOWN = {"digits": (10, (1, 8, 8)), "mnist": (10, (1, 28, 28)),
         "fashion-mnist": (10, (1, 28, 28)), "kmnist": (10, (1, 28, 28)),
         "cifar10": (10, (3, 32, 32)), "cifar100": (100, (3, 32, 32)),
         "svhn": (10, (3, 32, 32))}


def _data_facts(cfg, ds) -> dict:
    if ds is not None:
        counts = ds.labels.bincount(minlength=ds.num_classes).tolist()
        return {"classes": ds.num_classes, "shape": list(ds.shape), "known": "read",
                "official_test": ds.test_images is not None,
                "per_class": dict(zip(ds.class_names, counts))}
    k, shape = KNOWN.get(cfg.data.source, (None, None))
    return {"classes": k, "shape": list(shape) if shape else None,
            "known": "table" if k else "unknown", "official_test": cfg.data.source != "digits",
            "per_class": None}


def _evals(scale: float, steps: int) -> float:
    """Network evaluations per sampled image, in units of the table's REFERENCE_STEPS: a
    guided image (scale not 0 or 1) costs a conditional and an unconditional pass per step."""
    return steps * (1 if scale in (0.0, 1.0) else 2) / REFERENCE_STEPS


def _variant_evals(cfg, v) -> int:
    """Network evaluations per image of a lever variant's sampler: its steps, or 2·steps − 1
    for EDM's heun (a family lever samples with that family's default where the plain sampler
    is not one of its own)."""
    if v.family is None:
        return v.steps
    from synthequiv.generation.levers import family_sampling
    from synthequiv.generation.registry import family_entry

    sampler = family_sampling(cfg, v.family).sampler
    sampler = family_entry(v.family).samplers[0] if sampler == "auto" else sampler
    return 2 * v.steps - 1 if sampler == "heun" else v.steps


def _counts(cfg) -> dict:
    """Generators to train, sample sets to draw (and their cost in reference images per class),
    cells to train: per replicate × replicates. Provided arms (config.provided) train no
    generator; provided image sets are not sampled; a new provided label is one more arm."""
    from synthequiv.generation.filtering import pool_per_class
    from synthequiv.generation.levers import variants
    from synthequiv.generation.provided_entries import provided_entries, study_arms

    g, reps, s = cfg.grid, first_replicates(cfg.grid), cfg.sampling  # auto: its first pass
    bases = list(cfg.splits.base_per_class)
    entries = provided_entries(cfg)
    syn_arms = [a for a in study_arms(cfg) if a != "real"] if g.syn_add_per_class else []
    given = {e.arm for e in entries}
    closed_given = {e.n_base for e in entries if e.arm == "closed"}
    closed = len([n for n in bases if n not in closed_given]) if "closed" in syn_arms else 0
    open_gens = int("open" in syn_arms and "open" not in given
                    and cfg.openset.kind != "pretrained")
    m = max(g.syn_add_per_class or [0])
    # plain sets: own generators' and provided generators' (provided image sets are given)
    sampled = closed + (1 if "open" in syn_arms and "open" not in given else 0) + sum(
        e.kind == "generator" for e in entries)
    work = sampled * m * _evals(s.cfg_scale, s.steps)
    levers = variants(cfg)  # variant arms (closed@cfg2, …): cells, and sets for new settings
    per_arm = {"closed": len(bases), "open": 1}  # sets a lever prepares for its base arm
    resampled = sum(per_arm[v.base] for v in levers if v.keep_top is None)
    work += sum(per_arm[v.base] * m * _evals(v.cfg_scale, _variant_evals(cfg, v))
                for v in levers if v.keep_top is None)
    # a family lever trains its own generators for its base arm (priced at the plain
    # family's img/s: on the quick data edm and dit trained at 0.91× and 0.77× unet's)
    family_gens = sum(per_arm[v.base] for v in levers if v.family is not None)
    pool_sets, extra = 0, 0
    if g.filters:  # one extra pool per base arm and setting, shared by every q
        extra = max(pool_per_class(m, q) for q in g.filters) - m
        pools = {(v.base, v.cfg_scale, v.steps) for v in levers if v.keep_top is not None}
        work += sum(per_arm[b] * extra * _evals(c, st) for b, c, st in pools)
        pool_sets = sum(per_arm[b] for b, _, _ in pools) if extra else 0
    per_base = (1 + (len(g.real_add_per_class) if "real" in g.arms else 0)
                + len(g.syn_add_per_class) * (len(syn_arms) + len(levers)))
    return {"replicates": reps, "generators": (closed + open_gens + family_gens) * reps,
            "sample_sets": (sampled + resampled) * reps,
            "filter_pool_sets": pool_sets * reps, "filter_pool_per_class": extra,
            "sample_work_per_class": work * reps, "cells": (
                (per_base - 1) * len(g.seeds) + len(cell_seeds(g, 0))) * len(bases) * reps,
            "cells_per_base": per_base, "syn_arms": syn_arms,
            # the Holm family "significant" is decided in (per replicate: one unit each)
            "synthetic_cells": len(g.syn_add_per_class) * (len(syn_arms) + len(levers))
            * len(bases)}


def _generator_preset(cfg, shape) -> str:
    from synthequiv.generation.generator import resolve_preset

    if cfg.generator.preset != "auto":
        return cfg.generator.preset  # the dry run prices it before the config is validated
    return resolve_preset("auto", shape or (1, 32, 32))


def _classifier_arch(cfg, shape) -> str:
    """The throughput table's classifier row: smallcnn, airbench, or resnet18 for the rest."""
    from synthequiv.classification.networks import resolve_arch

    arch = cfg.classifier.arch
    if arch == "auto":
        arch = resolve_arch("auto", max(shape[1:]) if shape else 32)
    return arch if arch in ("smallcnn", "airbench") else "resnet18"


def _cell_images(cfg, classes: int) -> float:
    """Training images one classifier cell processes, summed over every cell."""
    c, g = cfg.classifier, cfg.grid
    if c.budget == "steps":
        return c.train_steps * c.batch_size
    adds = [0] + list(g.real_add_per_class) + list(g.syn_add_per_class)
    mean_pool = sum(n + m for n in cfg.splits.base_per_class for m in adds) / (
        len(cfg.splits.base_per_class) * len(adds))
    return c.epochs * mean_pool * classes


def _cost(cfg, counts: dict, classes: int, shape) -> dict:
    from synthequiv.classification.batched import resolve_group as cells_per_group
    from synthequiv.generation.gengroup import resolve_group as generators_per_group
    from synthequiv.utils import device_type

    kind = device_type(cfg.device)
    gp, arch = _generator_preset(cfg, shape), _classifier_arch(cfg, shape)
    work = {"generator": counts["generators"] * cfg.generator.train_kimg * 1000,
            "sampling": counts["sample_work_per_class"] * classes,  # reference images
            "classifier": counts["cells"] * _cell_images(cfg, classes)}
    key = {"generator": gp, "sampling": gp, "classifier": arch}
    rates = {s: THROUGHPUT.get((kind, s, key[s]), math.nan) for s in work}
    if cfg.compile:
        rates |= {s: COMPILED[(kind, s, gp)] for s in ("generator", "sampling")
                  if (kind, s, gp) in COMPILED}
    # the study's group sizes (auto: 1 on a CPU, by preset / architecture on CUDA)
    if counts["generators"] > 1 and generators_per_group(cfg.generator_group, kind, gp) > 1:
        rates["generator"] = GROUPED.get((kind, "generator", gp), rates["generator"])
    size = max(shape[1:]) if shape else 32
    if counts["cells"] > 1 and cells_per_group(cfg.cell_group, arch, size, kind) > 1:
        rates["classifier"] = GROUPED.get((kind, "classifier", arch), rates["classifier"])
    hours = {s: w / rates[s] / 3600 for s, w in work.items()}
    return {"device": kind, "generator_preset": gp, "classifier_arch": arch,
            "images": work, "hours": hours, "total_hours": sum(hours.values())}


def study_plan(cfg, ds=None, run_dir=None) -> dict:
    """Counts, data requirements, an estimated cost and the power of the study `cfg`
    describes; run_dir: where it runs (an earlier run there gives the variance for the power)."""
    from synthequiv.inputs.splits import TEST_ALL

    facts, counts = _data_facts(cfg, ds), _counts(cfg)
    real_reserve = max(cfg.grid.real_add_per_class or [0]) if "real" in cfg.grid.arms else 0
    need = max(cfg.splits.base_per_class) + real_reserve
    test_all = cfg.splits.test_per_class == TEST_ALL
    if not facts["official_test"]:  # a hold-out: "all" needs at least one test image/class
        need += 1 if test_all else cfg.splits.test_per_class
    short = ({c: n for c, n in facts["per_class"].items() if n < need}
             if facts["per_class"] else {})
    classes = facts["classes"] or 10
    return {**counts, "generator_kimg": cfg.generator.train_kimg,
            "samples_per_class": max(cfg.grid.syn_add_per_class or [0]),
            "seeds": len(cfg.grid.seeds), "base_seeds": len(cell_seeds(cfg.grid, 0)),
            "images_needed_per_class": need,
            "test": _test_facts(cfg, facts, need - 1 if test_all else need),
            "data": {k: v for k, v in facts.items() if k != "per_class"},
            "classes_short": short, "cost_estimate": _cost(cfg, counts, classes, facts["shape"]),
            "power": design_power(cfg, ds, run_dir, counts["synthetic_cells"]),
            "auto": _auto_text(cfg)}


def _auto_text(cfg) -> str:
    """The auto-replicates line of the plan ("" for a fixed count)."""
    g = cfg.grid
    if g.replicates != AUTO:
        return ""
    budget = f"the {hours_text(g.budget_s / 3600)} budget" if g.budget_s else "no budget"
    return (f"replicates: auto — {g.min_replicates} first, then one at a time until "
            f"{parse_target(g.target).text()} (judged on the first two thirds of the "
            f"replicates, scaled to all), {budget}, or {g.max_replicates} replicates")


def design_power(cfg, ds, run_dir, cells: int) -> dict:
    """Minimum detectable gain (80 % power, Holm over the synthetic cells) of the planned design
    from the variance components of an earlier run in run_dir (`power.variance_components`;
    one replicate there: a lower bound from its seeds), or why it is unknown. An auto study: at
    its first pass and at its cap."""
    if not cells:
        return {"known": False, "why": "no synthetic cells"}
    rows, why = earlier_rows(run_dir, ds)
    if not rows:
        return {"known": False, "why": why, "cells": cells}
    counts = [first_replicates(cfg.grid)] + ([cfg.grid.max_replicates] if cfg.grid.replicates == AUTO
                                        else [])
    try:
        mdes = design_mdes(rows, counts, len(cfg.grid.seeds), cells, cfg.equivalence,
                           len(cell_seeds(cfg.grid, 0)))
    except SynthequivError as exc:  # e.g. one replicate with one seed: no variance at all
        return {"known": False, "why": f"the earlier run in {run_dir}: {exc}", "cells": cells}
    return {"known": True, "source": str(run_dir), **mdes}


def _power_text(pw: dict, cost_h: float, reps: int) -> str:
    if not pw.get("known"):
        if pw.get("why") == "no synthetic cells":
            return "power: no synthetic cells to test"
        return (f"power: minimum detectable gain unknown — {pw['why']}. A one-replicate pilot "
                f"(this command with --set grid.replicates=1, ≈ {hours_text(cost_h / max(reps, 1))}; the "
                "full study reuses its replicate) gives a lower bound, two replicates the full "
                "variance; then run this dry run again")
    return (f"power: minimum detectable synthetic gain (80 % power; Holm over "
            f"{pw['designs'][0]['cells']} synthetic cells) {mde_text(pw)} — variance from the "
            f"earlier run in {pw['source']} ({pw['source_replicates']} replicate(s); its "
            "test-set size and classifier assumed)")


def _test_facts(cfg, facts: dict, kept: int) -> dict:
    """The test set each replicate scores on: the official split, a fixed hold-out per class,
    or (test_per_class: all) every image outside B(max) ∪ R up to the cap; per-class counts
    when the data were read (kept: the images/class that stay out of the hold-out)."""
    from synthequiv.inputs.splits import TEST_ALL

    s = cfg.splits
    if facts["official_test"]:
        return {"kind": "official"}
    if s.test_per_class != TEST_ALL:
        return {"kind": "fixed", "per_class": s.test_per_class}
    out = {"kind": "all", "cap_per_class": s.test_cap_per_class}
    if facts["per_class"]:
        per = [max(0, min(n - kept, s.test_cap_per_class)) for n in facts["per_class"].values()]
        out.update(min_per_class=min(per), max_per_class=max(per), per_replicate=sum(per))
    return out


def _test_text(t: dict) -> str:
    if t["kind"] == "official":
        return "test: the source's official test split (shared by every replicate)"
    if t["kind"] == "fixed":
        return (f"test: a hold-out of {t['per_class']}/class per replicate "
                "(splits.test_per_class)")
    counts = (f": {t['min_per_class']}–{t['max_per_class']}/class, {t['per_replicate']} images "
              "per replicate" if "per_replicate" in t else "")
    return (f"test: every real image outside the base sets and reserve, at most "
            f"{t['cap_per_class']}/class (splits.test_per_class: all; a new hold-out per "
            f"replicate){counts}")


def plan_lines(p: dict) -> list[str]:
    d, c = p["data"], p["cost_estimate"]
    h = c["hours"]
    shape = "×".join(map(str, d["shape"])) if d["shape"] else "unknown shape"
    classes = (f"{d['classes']} classes" if d["classes"]
               else "class count unknown (10 assumed for the cost)")
    hold = {"fixed": " + hold-out test", "all": " + at least 1 hold-out test image"}
    need = (f"{p['images_needed_per_class']} real images per class (largest base set + real-"
            f"arm reserve{hold.get(p['test']['kind'], '')})")
    short = ("; too few in " + ", ".join(f"'{k}' ({v})" for k, v in p["classes_short"].items())
             if p["classes_short"] else ("; every class has enough" if d["known"] == "read"
                                         else ""))
    return [
        f"data: {classes}, {shape}; needs {need}{short}",
        _test_text(p["test"]),
        f"generators: {p['generators']} × {p['generator_kimg']:g} kimg "
        f"({p['replicates']} replicate(s); preset {c['generator_preset']})",
        f"sample sets: {p['sample_sets']} × {p['samples_per_class']}/class"
        + (f" + {p['filter_pool_sets']} filter pools × {p['filter_pool_per_class']}/class"
           if p["filter_pool_sets"] else ""),
        f"classifier cells: {p['cells']} ({p['cells_per_base']} per base size × "
        f"{p['seeds']} seeds" + (f", the baseline × {p['base_seeds']}"
                                 if p["base_seeds"] != p["seeds"] else "")
        + f"; × {p['replicates']} replicate(s); {c['classifier_arch']})",
        *([p["auto"]] if p.get("auto") else []),
        f"estimated cost on {c['device']} (default throughputs, an estimate): "
        f"{hours_text(c['total_hours'])} — generators {hours_text(h['generator'])}, sampling "
        f"{hours_text(h['sampling'])}, classifiers {hours_text(h['classifier'])}"
        + (" (the first pass)" if p.get("auto") else ""),
        _power_text(p["power"], c["total_hours"], p["replicates"]),
    ]


def log_plan(cfg, ds=None, run_dir=None) -> None:
    """The study plan (generators, sample sets, cells, data needed, cost estimate, power)."""
    p = study_plan(cfg, ds, run_dir)
    for line in plan_lines(p):
        runlog.info(f"plan: {line}")
    runlog.metric("plan", **p)


def analysis_estimate(cfg, shape, n_sets: int, device: str) -> tuple[int, float]:
    """(classifiers, seconds) the analyses of `n_sets` synthetic sets train, ESTIMATED from the
    throughput table: a feature extractor and a real-vs-real domain classifier, then per set a
    domain classifier, a CAS model and (for a set whose reference is not the pool) a real one."""
    c = cfg.classifier
    steps = c.train_steps if c.budget == "steps" else c.epochs * 10  # epochs: a rough count
    images = (steps * (1 + 2 * n_sets) + cfg.analysis.domain_train_steps * (1 + n_sets)
              ) * c.batch_size
    rate = THROUGHPUT.get((device, "classifier", _classifier_arch(cfg, shape)), 1000.0)
    return 2 + 3 * n_sets, images / rate
