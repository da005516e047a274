"""Report stage: report.html (self-contained) + report.md with figures, and summary.json
with every number. The page answers first: a headline box, then the findings, each figure in
the section that discusses it, and the setting last."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from synthequiv import __version__
from synthequiv.config import to_dict
from synthequiv.generation.levers import lever_rows
from synthequiv.reporting import figure_pool, figures
from synthequiv.reporting.document import Doc
from synthequiv.reporting.findings import (
    _fit_why,
    _fmt,
    _no_interval,
    _pct,
    _rate,
    findings,
    interval_text,
)
from synthequiv.stats.config import cell_seeds
from synthequiv.stats.planner import heldout_check, heldout_text
from synthequiv.utils import SynthequivError, atomic_write_json, atomic_write_text

# ----------------------------------------------------------------------------- tables


# the arms and which numbers to trust, in plain words, under the headline's findings
READING_GUIDE = (
    "How to read this. The baseline is a classifier trained on the base set alone (n "
    "images/class). The real arm adds more real images of the same kind: the yardstick. The "
    "closed-set arm adds synthetic images from a generator trained on that same base set and "
    "nothing else, so it can only recombine what the classifier already has. The open-set arm "
    "adds synthetic images from a generator that saw more than the base set (the rest of the "
    "real training pool, another data source, or a pretrained text-to-image model: the Setting "
    "section says which), so it can bring in something the base set lacks. Which rate to "
    "trust: a measured rate comes from synthetic cells that were actually trained and tested, "
    "read off the real-data curve, with an interval over replicates — it is the result. A rate "
    "from the fitted formula is model-based: the paper's formula fitted through those cells, "
    "a point estimate without an interval, useful between the measured amounts; where the two "
    "differ, trust the measured one.")


def _table_order(s: dict) -> tuple:
    """Per base size: the baseline first, then the real arm, then the synthetic arms."""
    return (s["n_base"], s["n_add"] != 0, s["arm"] != "real", s["arm"], s["n_add"])


def _accuracy_rows(stats: list[dict]) -> list[list[str]]:
    return [[str(s["n_base"]), s["arm"], str(s["n_add"]), f"{s['mean']:.4f}",
             f"{_fmt(s['lo'], 4)}–{_fmt(s['hi'], 4)}" if s["lo"] == s["lo"] else
             _no_interval(s.get("n_units", 0), s.get("no_interval", "")),
             str(s.get("n_units", s.get("n_seeds"))),
             str(s.get("n_runs", s.get("n_seeds")))] for s in sorted(stats, key=_table_order)]


def _coef_ci(lo, hi) -> str:
    """A fitted coefficient's interval; none: a model-based point estimate (see equivalence)."""
    if lo is None or hi is None or not (np.isfinite(lo) and np.isfinite(hi)):
        return "none (model-based point estimate)"
    return f"{_fmt(lo, 3)}–{_fmt(hi, 3)}"


def _coef_rows(equivalence: dict) -> list[list[str]]:
    rows = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit, ci = eq.get("fit", {}), eq.get("ci", {})
        for name in ("c2", "ln_c1_over_k", "c1"):
            lo, hi = ci.get(name, (None, None))
            rows.append([arm, name, _fmt(fit.get(name), 3), _coef_ci(lo, hi),
                         str(fit.get("n_inside", 0)), fit.get("status", "")])
        alt = eq.get("comparison", {})
        if alt:
            rows.append([arm, "held-out RMSE formula / effective-data",
                         f"{_fmt(alt.get('paper_formula_rmse'), 4)} / "
                         f"{_fmt(alt.get('effective_data_rmse'), 4)}",
                         f"Δ sq. err {_fmt(alt.get('diff_lo'), 6)}–{_fmt(alt.get('diff_hi'), 6)}",
                         str(alt.get("n_cells", "")), f"better: {alt.get('better', 'n/a')}"])
        r = eq.get("effective_data", {})
        if r:
            lo, hi = ci.get("r", (None, None))
            rows.append([arm, "effective-data r (real images per synthetic)", _fmt(r.get("r"), 3),
                         _coef_ci(lo, hi), str(r.get("n_cells", "")),
                         r.get("status", "")])
    return rows


# ----------------------------------------------------------------------------- figures


def _figures(cfg, run_dir: Path, stats, equivalence, sp, synth, metric) -> dict[str, Path]:
    """Draw the report's figures; sample grids need the data (sp, synth) and are kept from
    an earlier drawing when it is absent (a rebuild from files)."""
    with figure_pool.collect():  # written by workers (if any); all on disk after the block
        return _draw_figures(cfg, run_dir / "figures", stats, equivalence, sp, synth, metric)


def _draw_figures(cfg, figdir: Path, stats, equivalence, sp, synth, metric) -> dict[str, Path]:
    figs = {"accuracy": figures.accuracy_curves(stats, figdir / "accuracy.png", metric),
            "gains": figures.gain_curves(equivalence.get("gains", []), figdir / "gains.png")}
    for n in cfg.splits.base_per_class:
        path = figdir / f"samples_n{n}.png"
        if sp is not None and synth is not None:
            sets = [(f"real B({n})", *sp.base(n))]
            sets += [(f"{arm}-set samples", s.images, s.labels) for (arm, m), s in synth.items()
                     if m == n]
            figs[f"samples_n{n}"] = figures.sample_grid(sets, sp.dataset.class_names, path)
        elif path.is_file():
            figs[f"samples_n{n}"] = path
    for arm, eq in equivalence.get("arms", {}).items():
        figs[f"equivalence_{arm}"] = figures.equivalence_curves(
            eq, arm, cfg.equivalence.k, figdir / f"equivalence_{arm}.png")
    return figs


def _relative(path, root: Path) -> str:
    """A figure's path as stored in summary.json: relative to the run directory (also when
    `root` was given relative to the working directory, as in `synthequiv report runs/x`)."""
    p, root = Path(path), Path(root)
    return str(p.relative_to(root)) if p.is_relative_to(root) else str(p)


# ----------------------------------------------------------------------------- report


def write_report(cfg, run_dir: Path, rows: list[dict], equivalence: dict, analysis: dict | None,
                 sp=None, synth=None, run_info: dict | None = None,
                 metric: str = "accuracy") -> dict:
    """report.html, report.md, summary.json and figures/ in run_dir. sp/synth (the splits and
    synthetic sets) draw the sample grids; run_info (timings, environment) goes to summary.json.
    Every path in summary.json is relative to run_dir."""
    run_dir = Path(run_dir)
    stats = equivalence["cells"]  # mean and t-interval over units (replicates) per cell
    figs = _figures(cfg, run_dir, stats, equivalence, sp, synth, metric)
    stored = analysis
    if analysis:  # absolute paths for drawing the page, relative ones in summary.json
        # paths come under run_dir already (read_analysis) or relative to it (analysis.json):
        # joining run_dir again doubled a relative run dir (runs/q/runs/q/…: figures missing)
        analysis = {**analysis, "figures": {k: run_dir / _relative(v, run_dir)
                                            for k, v in analysis.get("figures", {}).items()}}
        figs.update(analysis["figures"])
        stored = {**analysis, "figures": {k: _relative(v, run_dir)
                                          for k, v in analysis["figures"].items()}}
    headline, lines = findings(cfg, equivalence)
    power = _power(rows, cfg, equivalence, run_info, run_dir, metric)
    if power.get("resolve_text"):  # a gain not significant: what would resolve it, the command
        lines.append(power["resolve_text"])
        headline += " " + power["resolve_text"]
    planner = planner_check(rows, cfg, metric)
    summary = {
        "version": __version__, "name": cfg.name, "headline": headline, "recommendation": lines,
        "budget": _budget_text(cfg), "metric": metric, "n_cells": len(rows), "accuracy": stats,
        "equivalence": equivalence, "analysis": stored, "config": to_dict(cfg),
        "figures": {k: _relative(v, run_dir) for k, v in figs.items()},
        "planner": planner, "run": run_info or {}, "test_images": test_images(rows, cfg),
        "power": power,
        "levers": lever_rows(cfg, equivalence, analysis),
    }
    atomic_write_json(run_dir / "summary.json", mark_infinities(summary))
    md, page = _documents(cfg, run_dir, summary, stats, equivalence, analysis, figs)
    atomic_write_text(run_dir / "report.md", md)
    atomic_write_text(run_dir / "report.html", page)
    return {"report": str(run_dir / "report.html"), "headline": headline, "summary": summary}


def mark_infinities(obj):
    """obj with every ±inf float as the string "inf" / "-inf" (dicts, lists and tuples walked):
    in summary.json an open interval end is "inf", while null (NaN) means not estimable."""
    if isinstance(obj, dict):
        return {k: mark_infinities(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [mark_infinities(v) for v in obj]
    if isinstance(obj, float) and math.isinf(obj):
        return "inf" if obj > 0 else "-inf"
    return obj


def _budget_text(cfg) -> str:
    c = cfg.classifier
    if c.budget == "steps":
        return (f"fixed {c.train_steps} optimizer steps of batch {c.batch_size} per cell "
                "(arms compared at equal compute)")
    return (f"fixed {c.epochs} epochs per cell (as in the paper): a cell with more images also "
            "gets more optimizer steps, so data value is confounded with compute — the gain of "
            "a large synthetic cell includes its extra training (use classifier.budget=steps "
            "for arms at equal compute)")


def _fit_notes(equivalence: dict) -> list[str]:
    out = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit = eq.get("fit", {})
        if fit.get("status") == "ok":
            out.append(f"{arm}-set: fitted in accuracy space on {fit.get('n_points', 0)} "
                       f"synthetic cells ({fit.get('n_inside', 0)} inside the real curve's "
                       "range; the others enter as bounds).")
        else:
            out.append(f"{arm}-set: the fit FAILED ({_fit_why(fit)}), so no fitted rate is "
                       "given; the measured rates in the headline are the result.")
    return out


def _documents(cfg, run_dir, summary, stats, equivalence, analysis, figs) -> tuple[str, str]:
    doc = Doc(f"synthequiv report — {cfg.name}", run_dir)
    doc.box(summary["headline"])
    doc.h2("What this means")
    doc.bullets(summary["recommendation"])
    doc.p(READING_GUIDE, small=True)
    doc.h2("Accuracy")
    doc.p("Test accuracy of every classifier configuration: mean over units (replicates, each "
          "averaged over its seeds) with 95 % t-intervals; each arm starts from the shared "
          "baseline (the base set alone).")
    doc.figure(figs.get("accuracy"), "Accuracy vs images added per class, per arm (bands: "
               "95 % CI); one panel per base size, shared y axis")
    doc.figure(figs.get("gains"), "Gain over the baseline in percentage points (bars: 95 % "
               "CI of the paired difference over replicates; filled = significant after Holm "
               "adjustment)")
    doc.table(["base/class", "arm", "added/class", summary["metric"], "95 % CI", "units",
               "classifiers"], _accuracy_rows(stats))
    _equivalence_section(doc, cfg, equivalence, figs)
    _levers_section(doc, summary["levers"])
    _planner_section(doc, summary.get("planner"))
    if analysis:
        from synthequiv.reporting.analysis_report import add_section

        add_section(doc, analysis)
    samples = [k for k in figs if k.startswith("samples_n")]
    if samples:
        doc.h2("Samples")
        for k in samples:
            doc.figure(figs[k], f"Real base-set images beside the synthetic images of each "
                       f"generator, base {k.removeprefix('samples_n')}/class (one row per "
                       "class, first 8 images)")
    _setting_section(doc, cfg, summary)
    return doc.render()


def _equivalence_section(doc: Doc, cfg, equivalence: dict, figs: dict) -> None:
    doc.h2("How many synthetic images is one real image worth?")
    doc.p("Fitted form: n_syn / n_base ≈ c₁^(n_base/k) · (c₂^(n_real⁺/n_base) − 1) with "
          f"k = {cfg.equivalence.k:g} fixed (only ln c₁ / k is identifiable). c₂ sets how fast "
          "the synthetic images needed grow with the real gain to match; c₁ how that need "
          "scales with the base size; r (effective-data model) is the real images one synthetic "
          "image is worth. Counts are per class, so with k = 1 c₁ is per class image; the paper "
          "counts all C classes together, and its c₁ at its k_p equals c₁^(k_p / (C·k)) here. "
          "The fit is in accuracy space: formula → n_real⁺ → real curve → predicted accuracy of "
          "each synthetic cell, weighted by its standard error; cells outside the real curve "
          "enter as bounds.")
    for note in _fit_notes(equivalence):
        doc.p(note)
    for arm in equivalence.get("arms", {}):
        doc.figure(figs.get(f"equivalence_{arm}"), f"{arm}-set: synthetic images per class "
                   "that matched a real-data gain, with the fitted formula (squares: fitted "
                   "exchange rates, model-based point estimates)")
    doc.table(["arm", "coefficient", "estimate", "95 % CI", "points", "status"],
              _coef_rows(equivalence))


def planner_check(rows: list[dict], cfg, metric: str = "accuracy") -> dict:
    """The planner's held-out check (`planner.heldout_check`) for summary.json["planner"]."""
    try:
        return heldout_check(rows, cfg.equivalence.k, cfg.equivalence.ci, metric)
    except SynthequivError as exc:  # rows the check cannot use must not cost the report
        return {"status": "not_possible", "reason": str(exc), "cells": []}


def _planner_section(doc: Doc, check: dict | None) -> None:
    if not check:
        return
    doc.h2("Planner check")
    doc.p("`synthequiv plan RUN --target-gain POINTS` turns the fitted curves into 'generate "
          "about N synthetic or collect about M real images/class'. How far to trust it is "
          "measured here: the largest real and the largest synthetic amount of every base size "
          "were left out, everything was refitted on the rest, and those cells' accuracy was "
          "predicted (real: the power law beyond the rest's curve; synthetic: the fitted "
          "formula, or the effective-data model without one). Interval: prediction ± t·se, se "
          "the jackknife over units of (prediction − observed mean).")
    doc.p(heldout_text(check))
    rows = [[str(c["n_base"]), c["arm"], str(c["n_add"]), c["method"], _fmt(c["predicted"], 4),
             _fmt(c["observed"], 4), _pct(c["error"]), f"{_fmt(c['lo'], 4)}–{_fmt(c['hi'], 4)}",
             {True: "yes", False: "NO", None: "n/a"}[c["covered"]]]
            for c in check.get("cells", [])]
    if rows:
        doc.table(["base/class", "arm", "held out/class", "predicted by", "predicted",
                   "observed", "error (pts)", f"{100 * check.get('ci', 0.95):g} % interval",
                   "covered"], rows)


def _levers_section(doc: Doc, rows: list[dict]) -> None:
    """Per lever setting: what the synthetic images look like (replicate 0's sets) beside what
    they are worth (gain and measured rate at the largest amount, intervals over replicates)."""
    if not rows:
        return
    doc.h2("Levers: guidance, sampler steps and filtering")
    doc.p("Each setting is its own synthetic arm with the same intervals as every other cell "
          "(its cells are in the Holm family). Fidelity: agreement of a real-trained classifier "
          "with the conditioning labels; recall and coverage: how much of the real feature "
          "distribution the set covers (diversity); memorized: share of synthetic images nearer "
          "a training image than 95 % of held-out real images are (5 % expected). Filtered "
          "arms (top q) keep the top fraction q per class of a pool of ⌈largest amount / q⌉ "
          "images/class, ranked by a classifier trained on the base set only. * = significant "
          "after Holm adjustment.")
    doc.table(["base/class", "setting", "guidance", "steps", "filter", "fidelity", "recall",
               "coverage", "memorized", "gain at largest (pts, 95 % CI)",
               "1 real ≈ synthetic (95 % CI)"], [_lever_row(r) for r in rows])


def _lever_row(r: dict) -> list[str]:
    gain = "n/a" if r["gain"] is None else (
        f"+{r['n_add']}: {_pct(r['gain'])} ({_pct(r['gain_lo'])} to {_pct(r['gain_hi'])})"
        + (" *" if r["significant"] else ""))
    why = f" ({r['rate_flag'].replace('_', ' ')})" if r.get("rate_flag") else ""
    rate = f"n/a{why}" if r["rate"] is None else (
        f"{_rate(r['rate'])} ({_rate(r['rate_lo'])}–{_rate(r['rate_hi'])})")
    return [str(r["n_base"]), r["arm"], f"{r['cfg_scale']:g}", str(r["steps"]),
            "none" if r["keep_top"] is None else f"top {r['keep_top']:g}", _fmt(r["fidelity"], 3),
            _fmt(r["recall"], 3), _fmt(r["coverage"], 3), _fmt(r["memorized"], 3), gain, rate]


def test_images(rows: list[dict], cfg) -> dict:
    """Test images each replicate's cells were scored on (rows' n_test; rows of older versions
    have none) and the setting that chose them."""
    per = {}
    for r in rows:
        if r.get("n_test") is not None:
            per[int(r.get("replicate") or 0)] = int(r["n_test"])
    s = cfg.splits
    how = (f"every real image outside the base sets and reserve, at most "
           f"{s.test_cap_per_class}/class" if s.test_per_class == "all" else
           f"a hold-out of {s.test_per_class}/class")
    return {"per_replicate": dict(sorted(per.items())),
            "setting": f"the source's official test split, else per replicate {how}"}


def _test_text(t: dict) -> str:
    """The test images per replicate ("" for rows without them: a results file, an old run)."""
    per = t.get("per_replicate") or {}
    if not per:
        return ""
    sizes = sorted(set(per.values()))
    n = f"{sizes[0]}" if len(sizes) == 1 else f"{sizes[0]}–{sizes[-1]}"
    return f"Test set: {n} images per replicate ({len(per)} replicate(s)): {t['setting']}."


def _power(rows, cfg, equivalence: dict, run_info: dict | None, run_dir, metric: str) -> dict:
    """reporting.power.report_power: the design's minimum detectable gain, and what would
    resolve a study where nothing is significant ({} for another metric than accuracy)."""
    from synthequiv.reporting.power import report_power

    if metric != "accuracy":
        return {}
    return report_power(rows, cfg, equivalence, (run_info or {}).get("timings") or {}, run_dir)


def _stopping_text(stop: dict) -> str:
    """What grid.replicates: auto did (summary.json run.stopping)."""
    widest = stop.get("widest")
    widest = (f"{widest:.3g}" if isinstance(widest, (int, float)) and math.isfinite(widest)
              else "open or none")  # summary.json: inf as "inf", NaN as null
    return (f"Replicates: auto — {stop['replicates']} run, then stopped: {stop['reason']} "
            f"(target: {stop['target_text']}; widest at the end {widest}, {stop['where']}; "
            f"{stop['elapsed_s'] / 60:.1f} min).")


def _setting_section(doc: Doc, cfg, summary: dict) -> None:
    doc.h2("Setting")
    reps = cfg.grid.replicates
    stop = (summary.get("run") or {}).get("stopping")
    if stop:
        reps = f"{stop['replicates']} (auto)"
    doc.p(f"Data: {cfg.data.source}; base sizes {list(cfg.splits.base_per_class)} images/class; "
          f"seeds {list(cfg.grid.seeds)} (the baseline: {len(cell_seeds(cfg.grid, 0))}); "
          f"replicates {reps}; classifier budget: "
          f"{summary['budget']}; mixing: {cfg.classifier.mixing}; open-set arm: "
          f"{cfg.openset.kind}.")
    if _test_text(summary.get("test_images") or {}):
        doc.p(_test_text(summary["test_images"]))
    if stop:
        doc.p(_stopping_text(stop))
    if (summary.get("power") or {}).get("mde_text"):
        doc.p(summary["power"]["mde_text"])
    doc.p(interval_text(summary["equivalence"]))
    run = summary.get("run") or {}
    if run.get("timings"):
        doc.p("Stage times: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s"
                                          for k, v in run["timings"].items()), small=True)
    env = run.get("environment") or {}
    if env:
        doc.p("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if v), small=True)
