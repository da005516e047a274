"""Report stage: report.html (self-contained) + report.md with figures, and summary.json
with every number. The page answers first: a headline box, then the findings, each figure in
the section that discusses it, and the setting last."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from scipy import stats as sstats

from . import __version__, figures
from .config import to_dict
from .document import Doc
from .utils import atomic_write_json, atomic_write_text

# ----------------------------------------------------------------------------- numbers


def cell_stats(rows: list[dict], metric: str = "accuracy", ci: float = 0.95) -> list[dict]:
    """Mean and t-interval over seeds for every (n_base, arm, n_add)."""
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        if r.get(metric) is not None:
            groups.setdefault((r["n_base"], r["arm"], r["n_add"]), []).append(r[metric])
    out = []
    for (n, arm, m), vals in sorted(groups.items()):
        v = np.asarray(vals, float)
        half = (sstats.t.ppf(0.5 + ci / 2, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
                if len(v) > 1 else float("nan"))
        out.append({"n_base": n, "arm": arm, "n_add": m, "mean": float(v.mean()),
                    "std": float(v.std(ddof=1)) if len(v) > 1 else float("nan"),
                    "n_seeds": len(v), "lo": float(v.mean() - half), "hi": float(v.mean() + half)})
    return out


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def findings(cfg, equivalence: dict) -> tuple[str, list[str]]:
    """Plain-language headline and recommendation lines, from measured gains and fits only."""
    lines = []
    gains = equivalence.get("gains", [])
    for n in cfg.splits.base_per_class:
        parts = []
        for arm in ("real", "closed", "open"):
            gs = [g for g in gains if g["n_base"] == n and g["arm"] == arm]
            if not gs:
                continue
            best = max(gs, key=lambda g: g["gain"])
            sig = [g for g in gs if g["significant"] and g["gain"] > 0]
            hurt = [g for g in gs if g["significant"] and g["gain"] < 0]
            verdict = (f"significant gain up to {_pct(max(g['gain'] for g in sig))} pts"
                       if sig else "no significant gain")
            if hurt:
                verdict += f"; significantly worse at +{', +'.join(str(g['n_add']) for g in hurt)}"
            parts.append(f"{arm} (+{best['n_add']}/class: {_pct(best['gain'])} pts, "
                         f"95 % CI {_pct(best['lo'])} to {_pct(best['hi'])}) — {verdict}")
        if parts:
            lines.append(f"With {n} images/class: " + "; ".join(parts) + ".")
    syn_sig = [g for g in gains if g["arm"] != "real" and g["significant"] and g["gain"] > 0]
    exchange = _exchange_lines(equivalence)
    if exchange and not syn_sig:
        exchange.insert(0, "Caution: no synthetic cell's gain is significant, so the exchange "
                           "rates below rest on accuracy differences within seed noise; read "
                           "their confidence intervals, not the point estimates.")
    lines += exchange
    lines.insert(0, _recommendation(gains, syn_sig, equivalence))
    headline = _headline(cfg, gains, equivalence)
    return headline, lines


def _recommendation(gains: list[dict], syn_sig: list[dict], equivalence: dict) -> str:
    real_sig = [g for g in gains if g["arm"] == "real" and g["significant"] and g["gain"] > 0]
    if not syn_sig:
        tail = (" Real images did help significantly." if real_sig else
                " Neither did more real images at these amounts: the task may be saturated or "
                "the grid too small to resolve the effect; add seeds before concluding.")
        return ("Recommendation: on this data, synthetic images gave no significant gain at any "
                "measured amount; prefer collecting real images." + tail)
    arms = sorted({g["arm"] for g in syn_sig})
    bases = sorted({g["n_base"] for g in syn_sig})
    fitted = [a for a, eq in equivalence.get("arms", {}).items()
              if eq.get("fit", {}).get("status") == "ok"]
    tail = ("see the exchange rates below for how many synthetic images one real image is "
            "worth." if fitted else
            "no exchange rate could be fitted (too few synthetic cells within the real arm's "
            "range), so the gains above are the measured effect; more synthetic amounts or "
            "seeds would let one be fitted.")
    return (f"Recommendation: {' and '.join(arms)}-set synthetic data helped significantly at "
            f"base size(s) {bases} images/class; " + tail)


def _exchange_lines(equivalence: dict) -> list[str]:
    """One line per fitted exchange rate; amounts beyond the largest synthetic amount measured
    for that arm and base size (in this table, which may be a partial run's) are flagged."""
    measured: dict[tuple[str, int], int] = {}
    for c in equivalence.get("cells", []):
        key = (c["arm"], c["n_base"])
        measured[key] = max(measured.get(key, 0), c["n_add"])
    out = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit = eq.get("fit", {})
        if fit.get("status") != "ok":
            out.append(f"{arm}-set: the equivalence formula could not be fitted "
                       f"({fit.get('status', 'no data')}): too few cells where synthetic data "
                       "matched a measured real-data gain.")
            continue
        for x in eq.get("exchange", []):
            max_syn = measured.get((arm, x["n_base"]), 0)
            beyond = (f" [extrapolated: beyond the largest measured {max_syn}/class]"
                      if x["n_syn"] > max_syn else "")
            out.append(
                f"{arm}-set, {x['n_base']} images/class: matching +{x['n_real_plus']:g} real/class "
                f"takes ≈ {x['n_syn']:.0f} synthetic/class — {_fmt(x['rate'], 1)} synthetic per "
                f"real image (95 % CI {_fmt(x.get('lo'), 1)}–{_fmt(x.get('hi'), 1)}){beyond}.")
    return out


def _headline(cfg, gains: list[dict], equivalence: dict) -> str:
    syn = [g for g in gains if g["arm"] in ("closed", "open")]
    sig = [g for g in syn if g["significant"] and g["gain"] > 0]
    real_sig = [g for g in gains if g["arm"] == "real" and g["significant"] and g["gain"] > 0]
    if not syn:
        return "No synthetic arm was run."
    if not sig:
        head = ("Synthetic data gave no significant gain in any cell "
                f"({len(syn)} synthetic cells, {len(cfg.grid.seeds)} seeds each)")
    else:
        best = max(sig, key=lambda g: g["gain"])
        head = (f"Best synthetic gain: {best['arm']}-set +{best['n_add']}/class at base "
                f"{best['n_base']}/class, {_pct(best['gain'])} pts (95 % CI {_pct(best['lo'])} "
                f"to {_pct(best['hi'])})")
    if real_sig:
        best = max(real_sig, key=lambda g: g["gain"])
        head += (f"; real data: +{best['n_add']}/class at base {best['n_base']}/class gave "
                 f"{_pct(best['gain'])} pts")
    return head + "."


# ----------------------------------------------------------------------------- tables


def _accuracy_rows(stats: list[dict]) -> list[list[str]]:
    return [[str(s["n_base"]), s["arm"], str(s["n_add"]), f"{s['mean']:.4f}",
             f"{_fmt(s['lo'], 4)}–{_fmt(s['hi'], 4)}", str(s["n_seeds"])] for s in stats]


def _coef_rows(equivalence: dict) -> list[list[str]]:
    rows = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit, ci = eq.get("fit", {}), eq.get("ci", {})
        for name in ("c2", "ln_c1_over_k", "c1"):
            lo, hi = ci.get(name, (None, None))
            rows.append([arm, name, _fmt(fit.get(name), 3), f"{_fmt(lo, 3)}–{_fmt(hi, 3)}",
                         str(fit.get("n_points", 0)), fit.get("status", "")])
        alt = eq.get("comparison", {})
        if alt:
            rows.append([arm, "held-out RMSE paper / effective-data",
                         f"{_fmt(alt.get('paper_formula_rmse'), 4)} / "
                         f"{_fmt(alt.get('effective_data_rmse'), 4)}", "", str(alt.get('n_cells', '')),
                         f"better: {alt.get('better', 'n/a')}"])
        r = eq.get("effective_data", {})
        if r:
            lo, hi = ci.get("r", (None, None))
            rows.append([arm, "effective-data r (real images per synthetic)", _fmt(r.get("r"), 3),
                         f"{_fmt(lo, 3)}–{_fmt(hi, 3)}", "", ""])
    return rows


# ----------------------------------------------------------------------------- figures


def _figures(cfg, run_dir: Path, stats, equivalence, sp, synth, metric) -> dict[str, Path]:
    """Draw the report's figures; sample grids need the data (sp, synth) and are kept from
    an earlier drawing when it is absent (a rebuild from files)."""
    figdir = run_dir / "figures"
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
    p = Path(path)
    return str(p.relative_to(root)) if p.is_absolute() and p.is_relative_to(root) else str(p)


# ----------------------------------------------------------------------------- report


def write_report(cfg, run_dir: Path, rows: list[dict], equivalence: dict, analysis: dict | None,
                 sp=None, synth=None, run_info: dict | None = None,
                 metric: str = "accuracy") -> dict:
    """report.html, report.md, summary.json and figures/ in run_dir. sp/synth (the splits and
    synthetic sets) draw the sample grids; run_info (timings, environment) goes to summary.json.
    Every path in summary.json is relative to run_dir."""
    run_dir = Path(run_dir)
    stats = cell_stats(rows, metric)
    figs = _figures(cfg, run_dir, stats, equivalence, sp, synth, metric)
    stored = analysis
    if analysis:  # absolute paths for drawing the page, relative ones in summary.json
        analysis = {**analysis, "figures": {k: run_dir / v
                                            for k, v in analysis.get("figures", {}).items()}}
        figs.update(analysis["figures"])
        stored = {**analysis, "figures": {k: _relative(v, run_dir)
                                          for k, v in analysis["figures"].items()}}
    headline, lines = findings(cfg, equivalence)
    summary = {
        "version": __version__, "name": cfg.name, "headline": headline, "recommendation": lines,
        "budget": _budget_text(cfg), "metric": metric, "n_cells": len(rows), "accuracy": stats,
        "equivalence": equivalence, "analysis": stored, "config": to_dict(cfg),
        "figures": {k: _relative(v, run_dir) for k, v in figs.items()},
        "run": run_info or {},
    }
    atomic_write_json(run_dir / "summary.json", summary)
    md, page = _documents(cfg, run_dir, summary, stats, equivalence, analysis, figs)
    atomic_write_text(run_dir / "report.md", md)
    atomic_write_text(run_dir / "report.html", page)
    return {"report": str(run_dir / "report.html"), "headline": headline, "summary": summary}


def _budget_text(cfg) -> str:
    c = cfg.classifier
    if c.budget == "steps":
        return (f"fixed {c.train_steps} optimizer steps of batch {c.batch_size} per cell "
                "(arms compared at equal compute)")
    return f"fixed {c.epochs} epochs per cell (more data → more steps, as in the paper)"


def _fit_notes(equivalence: dict) -> list[str]:
    out = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit = eq.get("fit", {})
        if fit.get("status") == "ok":
            out.append(f"{arm}-set: fitted on {fit.get('n_points', 0)} matched points.")
        else:
            out.append(f"{arm}-set: the fit FAILED ({fit.get('status', 'no data')}): too few "
                       "synthetic cells matched a measured real-data gain, so no exchange rate is "
                       "given; the measured gains above are the result.")
    return out


def _documents(cfg, run_dir, summary, stats, equivalence, analysis, figs) -> tuple[str, str]:
    doc = Doc(f"synthequiv report — {cfg.name}", run_dir)
    doc.box(summary["headline"])
    doc.h2("What this means")
    doc.bullets(summary["recommendation"])
    doc.h2("Accuracy")
    doc.p("Test accuracy of every classifier configuration, mean over seeds with 95 % "
          "t-intervals; each arm starts from the shared baseline (the base set alone).")
    doc.figure(figs.get("accuracy"), "Accuracy vs images added per class, per arm (bands: "
               "95 % CI); one panel per base size, shared y axis")
    doc.figure(figs.get("gains"), "Gain over the baseline in percentage points (bars: 95 % "
               "Welch CI; filled = significant, the interval excludes 0)")
    doc.table(["base/class", "arm", "added/class", summary["metric"], "95 % CI", "seeds"],
              _accuracy_rows(stats))
    _equivalence_section(doc, cfg, equivalence, figs)
    if analysis:
        from .analysis_report import add_section

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
          "image is worth.")
    for note in _fit_notes(equivalence):
        doc.p(note)
    for arm in equivalence.get("arms", {}):
        doc.figure(figs.get(f"equivalence_{arm}"), f"{arm}-set: synthetic images per class "
                   "that matched a real-data gain, with the fitted formula (squares: exchange "
                   "rates with 95 % bootstrap CIs)")
    doc.table(["arm", "coefficient", "estimate", "95 % CI", "points", "status"],
              _coef_rows(equivalence))


def _setting_section(doc: Doc, cfg, summary: dict) -> None:
    doc.h2("Setting")
    reps = getattr(cfg.grid, "replicates", 1)
    doc.p(f"Data: {cfg.data.source}; base sizes {list(cfg.splits.base_per_class)} images/class; "
          f"seeds {list(cfg.grid.seeds)}; replicates {reps}; classifier budget: "
          f"{summary['budget']}; mixing: {cfg.classifier.mixing}; open-set arm: "
          f"{cfg.openset.kind}. Confidence intervals are 95 % t-intervals over seeds; a gain is "
          "called significant only when its interval excludes zero.")
    run = summary.get("run") or {}
    if run.get("timings"):
        doc.p("Stage times: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s"
                                          for k, v in run["timings"].items()), small=True)
    env = run.get("environment") or {}
    if env:
        doc.p("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if v), small=True)
