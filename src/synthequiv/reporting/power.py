"""What the plan and the report say about power: the minimum detectable gain of a design from
results rows (stats.power's variance components), and — when no synthetic gain is significant
— the replicates (and time, and command) that would detect one of the observed size."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from synthequiv.stats.config import AUTO
from synthequiv.stats.power import (
    lower_bound_components,
    min_detectable_gain,
    replicates_for,
    seed_counts,
    variance_components,
)
from synthequiv.utils import SynthequivError


def design_mdes(rows: list[dict], replicates: list[int], seeds: float, cells: int, ecfg,
                base_seeds: float | None = None) -> dict:
    """{"components", "lower_bound", "source_replicates", "designs": [{replicates, seeds,
    base_seeds, cells, mde}]} of designs with these replicate counts and seeds per cell (per
    baseline: base_seeds, default `seeds`), from results rows."""
    n_reps = len({r.get("replicate") or 0 for r in rows})
    comps = variance_components(rows) if n_reps >= 2 else lower_bound_components(rows)
    base_seeds = seeds if base_seeds is None else base_seeds
    designs = [{"replicates": u, "seeds": seeds, "base_seeds": base_seeds, "cells": cells,
                "mde": min_detectable_gain(comps, u, seeds, family_size=cells, ci=ecfg.ci,
                                           variance=ecfg.variance, base_seeds=base_seeds)}
               for u in replicates]
    return {"components": dataclasses.asdict(comps), "lower_bound": n_reps < 2,
            "source_replicates": n_reps, "designs": designs}


def mde_text(pw: dict) -> str:
    """'≈ 2.1 pts with 3 replicate(s) × 2 seed(s)', one per design (≥ for lower bounds)."""
    parts = []
    for d in pw["designs"]:
        v = ("none (fewer than 2 replicates: no test)" if d["mde"] == math.inf else
             f"{'≥' if pw['lower_bound'] else '≈'} {100 * d['mde']:.1f} pts")
        seeds = f"{d['seeds']:g} seed(s)" + (
            f" ({d['base_seeds']:g} for the baseline)"
            if d.get("base_seeds", d["seeds"]) != d["seeds"] else "")
        parts.append(f"{v} with {d['replicates']} replicate(s) × {seeds}")
    bound = (" (from one replicate: only the seed variance is known, so a lower bound)"
             if pw["lower_bound"] else "")
    return "; ".join(parts) + bound


def hours_text(hours: float) -> str:
    """'12 s', '3.5 min' or '2.1 h' (unknown for a non-finite figure)."""
    if not math.isfinite(hours):
        return "unknown"
    if hours * 60 < 1:
        return f"{hours * 3600:.0f} s"
    return f"{hours * 60:.1f} min" if hours < 1 else f"{hours:.1f} h"


def report_power(rows: list[dict], cfg, equivalence: dict, timings: dict, run_dir) -> dict:
    """What the report says about power: the minimum detectable gain of the design that ran
    (variance components of its own rows), and — when a synthetic cell gained without being
    significant (the largest such gain; when none is significant at all, the largest gain) —
    the replicates that would detect a gain of its size, their time at this run's measured
    time per replicate (timings["per_replicate_s"]) and the command."""
    syn = [g for g in equivalence.get("gains", []) if g["arm"] != "real"]
    if not syn or not rows:
        return {}
    n_units = equivalence.get("n_units", 1) if equivalence.get("unit") == "replicate" else 1
    seeds, base_seeds = seed_counts(rows)
    m = syn[0].get("family_size") or len(syn)
    ecfg = cfg.equivalence
    try:
        out = {**design_mdes(rows, [n_units], seeds, m, ecfg, base_seeds), "significant": any(
            g["significant"] and g["gain"] > 0 for g in syn)}
    except SynthequivError as exc:  # one unit, no real arm: no variance to plan with
        return {"unknown": str(exc)}
    out["mde_text"] = (f"Power: the smallest true synthetic gain this design detects with 80 % "
                       f"power (Holm over {m} synthetic cells) is {mde_text(out)}.")
    open_ = [g for g in syn if not (g["significant"] and g["gain"] > 0)]
    best = max(open_ or syn, key=lambda g: g["gain"] if g["gain"] == g["gain"] else -math.inf)
    if not open_ or not best["gain"] == best["gain"] or (out["significant"]
                                                          and best["gain"] <= 0):
        return out  # every synthetic cell that gained is significant
    where = f"{best['arm']} +{best['n_add']} at {best['n_base']}/class"
    if best["gain"] <= 0:
        out["resolve_text"] = (f"No synthetic cell gained on average (best {where}: "
                               f"{100 * best['gain']:+.1f} pts), so more replicates are not "
                               "expected to find a gain.")
        return out
    comps = (variance_components(rows) if not out["lower_bound"] else
             lower_bound_components(rows))
    need = replicates_for(best["gain"], comps, seeds, max_replicates=1000, family_size=m,
                          ci=ecfg.ci, variance=ecfg.variance, base_seeds=base_seeds)
    if need is not None:  # the observed gain may lie above the MDE and still miss by chance
        need = max(need, n_units + 1)
    out.update(resolve_replicates=need, observed_gain=best["gain"], observed_where=where)
    size = f"a gain of the observed size (+{100 * best['gain']:.1f} pts, {where})"
    if out["significant"]:  # others are: this is the largest gain left unresolved
        size = (f"the largest gain left unresolved (+{100 * best['gain']:.1f} pts, {where}, "
                "not significant)")
    if need is None:
        out["resolve_text"] = (f"Detecting {size} with 80 % power would take more than 1000 "
                               "replicates: a gain this small cannot practically be resolved.")
        return out
    per = timings.get("per_replicate_s")
    cost = (f" (≈ {hours_text(max(need - n_units, 0) * per / 3600)} more on this machine at the measured "
            f"{hours_text(per / 3600)} per replicate)" if per else "")
    out["resolve_text"] = (f"What would resolve it: about {'≥ ' if out['lower_bound'] else ''}"
                           f"{need} replicates{cost} to detect {size} with 80 % power"
                           + _resolve_command(cfg, run_dir, need, n_units) + ".")
    return out


def _resolve_command(cfg, run_dir, replicates: int, done: int) -> str:
    """': synthequiv study --config RUN/config.yaml … --set grid.replicates=R' for a run
    directory ("" for results that came from a file)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        return ""
    fixed = " --set 'grid.target=\"\"' --set grid.budget_s=0" if cfg.grid.replicates == AUTO else ""
    return (f": `synthequiv study --config {run_dir / 'config.yaml'} --runs-dir {run_dir.parent}"
            f" --set grid.replicates={replicates}{fixed}` (its {done} replicate(s) are reused)")
