"""Report stage: report.html + report.md with figures, and summary.json with every number."""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np
from scipy import stats as sstats

from . import __version__, figures
from .config import to_dict
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


def _rate(x: float) -> str:
    if x is None or x != x:
        return "n/a"
    if x == math.inf:
        return "∞"
    return f"{x:.0f}" if x >= 10 else f"{x:.1f}"


def _arm_base_line(arm: str, n: int, points: list[dict], gains: list[dict]) -> str:
    """'1 real ≈ N synthetic (CI)' from the measured points of one arm and base size, or why
    there is none."""
    usable = [p for p in points if p["usable"]]
    where = f"{arm}-set at {n} images/class"
    if usable:
        p = max(usable, key=lambda p: p["n_syn"])
        return (f"{where}: 1 real image ≈ {_rate(p['rate'])} synthetic images (95 % CI "
                f"{_rate(p['rate_lo'])}–{_rate(p['rate_hi'])}; measured: +{p['n_syn']} synthetic "
                f"matched +{p['n_real_eq']:.1f} real/class)")
    above = [p for p in points if p["flag"] == "above_range"]
    if above:
        p = min(above, key=lambda p: p["n_syn"])
        return (f"{where}: +{p['n_syn']} synthetic/class beat even the largest real amount "
                f"(+{p['largest_real']:g}/class), so 1 real image ≈ at most "
                f"{_rate(p['n_syn'] / p['largest_real'])} synthetic; measure more real amounts "
                "to pin it down")
    g = [x for x in gains if x["arm"] == arm and x["n_base"] == n]
    if g:
        best = max(g, key=lambda x: x["gain"])
        return (f"{where}: no rate — synthetic images did not beat the baseline at any amount "
                f"(best +{best['n_add']}/class: {_pct(best['gain'])} pts, 95 % CI "
                f"{_pct(best['lo'])} to {_pct(best['hi'])})")
    return f"{where}: no rate — no synthetic cell was measured"


def rate_lines(equivalence: dict) -> list[str]:
    """One line per generative arm and base size (the report's headline box)."""
    out = []
    for arm, eq in sorted(equivalence.get("arms", {}).items()):
        for n in sorted({p["n_base"] for p in eq.get("points", [])}):
            pts = [p for p in eq["points"] if p["n_base"] == n]
            out.append(_arm_base_line(arm, n, pts, equivalence.get("gains", [])))
    return out


def interval_text(equivalence: dict) -> str:
    """What every interval in the report is, and what it is conditional on."""
    unit, u = equivalence.get("unit", "seed"), equivalence.get("n_units", 0)
    cov = equivalence.get("coverage", {})
    what = (f"each of the {u} replicates draws its own base sets, reserve and test set and trains "
            "its own generators, so the intervals include that variability"
            if unit == "replicate" else
            f"with one replicate the units are the {u} classifier seeds: the intervals are "
            "conditional on ONE base-set draw, ONE generator per base size and ONE test set, "
            "and are too narrow for the question the study asks; run grid.replicates ≥ 3")
    measured = ""
    if cov.get("gain") == cov.get("gain"):  # measured, not NaN
        measured = (f" Measured coverage of nominal 95 % intervals in simulated studies with a "
                    f"known truth ({cov.get('design', '')}): gain {cov['gain']:.2f}, exchange "
                    f"rate {cov['n_real_eq']:.2f} (`{cov.get('command', '')}`).")
    return ("Intervals: gains are Student-t intervals over units of the paired difference "
            "(cell − baseline), each unit averaged over its seeds; "
            f"{what}. 'Significant' means Holm-adjusted p < 0.05 across the grid's synthetic "
            "cells (real-arm cells form their own family); the headline's best gain carries a "
            "Bonferroni-simultaneous interval. An exchange-rate interval is every real amount "
            "the synthetic cell is not significantly different from (paired t-test inversion); "
            "∞ means the data cannot exclude that synthetic images are worth nothing. "
            "Formula coefficients and r: jackknife over units." + measured)


def findings(cfg, equivalence: dict) -> tuple[str, list[str]]:
    """Plain-language headline and lines, from measured gains and points only."""
    gains = equivalence.get("gains", [])
    lines = rate_lines(equivalence)
    fitted = _exchange_lines(equivalence)
    lines.insert(0, _recommendation(gains))
    return _headline(gains, lines[1:]), lines + fitted


def _recommendation(gains: list[dict]) -> str:
    syn = [g for g in gains if g["arm"] != "real"]
    sig = [g for g in syn if g["significant"] and g["gain"] > 0]
    hurt = [g for g in syn if g["significant"] and g["gain"] < 0]
    real_sig = [g for g in gains if g["arm"] == "real" and g["significant"] and g["gain"] > 0]
    m = syn[0]["family_size"] if syn else 0
    if sig:
        arms = sorted({g["arm"] for g in sig})
        bases = sorted({g["n_base"] for g in sig})
        text = (f"Recommendation: {' and '.join(arms)}-set synthetic data gave a significant "
                f"gain (Holm-adjusted across {m} synthetic cells) at base size(s) {bases} "
                "images/class; weigh the exchange rates below against the cost of real images.")
    elif syn:
        best = max(syn, key=lambda g: g["gain"])
        text = (f"Recommendation: no synthetic cell's gain is significant after Holm adjustment "
                f"across {m} cells; the largest was {_pct(best['gain'])} pts (95 % CI "
                f"{_pct(best['lo'])} to {_pct(best['hi'])}). This does not show that synthetic "
                "data is useless: the study cannot resolve a gain this small. More replicates "
                "narrow the intervals (about as 1/√replicates).")
    else:
        return "Recommendation: no synthetic arm was run."
    if hurt:
        text += (" Synthetic data significantly hurt at " + ", ".join(
            f"{g['arm']} +{g['n_add']} (base {g['n_base']})" for g in hurt) + ".")
    if real_sig:
        best = max(real_sig, key=lambda g: g["gain"])
        text += (f" Real images did help significantly (up to {_pct(best['gain'])} pts at "
                 f"+{best['n_add']}/class, base {best['n_base']}/class).")
    return text


def _exchange_lines(equivalence: dict) -> list[str]:
    """Fitted-formula rates, only where a measured point supports the arm and base size; rates
    beyond the largest synthetic amount measured there are flagged as extrapolated."""
    measured: dict[tuple[str, int], int] = {}
    for c in equivalence.get("cells", []):
        key = (c["arm"], c["n_base"])
        measured[key] = max(measured.get(key, 0), c["n_add"])
    out = []
    for arm, eq in sorted(equivalence.get("arms", {}).items()):
        fit = eq.get("fit", {})
        if fit.get("status") != "ok":
            out.append(f"{arm}-set: the paper's formula was not fitted ({fit.get('status')}: it "
                       f"needs ≥ 3 synthetic cells inside the real curve's range, had "
                       f"{fit.get('n_inside', 0)}); the rates above are the measured ones.")
            continue
        for x in eq.get("exchange", []):
            if not x.get("supported"):
                continue
            max_syn = measured.get((arm, x["n_base"]), 0)
            beyond = (f" [extrapolated: beyond the largest measured {max_syn}/class]"
                      if x["n_syn"] > max_syn else "")
            out.append(
                f"{arm}-set, {x['n_base']} images/class (fitted formula): matching "
                f"+{x['n_real_plus']:g} real/class takes ≈ {x['n_syn']:.0f} synthetic/class — "
                f"1 real ≈ {_rate(x['rate'])} synthetic (95 % CI {_rate(x.get('lo'))}–"
                f"{_rate(x.get('hi'))}){beyond}.")
    return out


def _headline(gains: list[dict], rate_texts: list[str]) -> str:
    syn = [g for g in gains if g["arm"] in ("closed", "open")]
    if not syn:
        return "No synthetic arm was run."
    rated = [t for t in rate_texts if "1 real image ≈" in t]
    head = "; ".join(rated) if rated else "No synthetic amount matched a real-data gain"
    sig = [g for g in syn if g["significant"] and g["gain"] > 0]
    if sig:
        best = max(sig, key=lambda g: g["gain"])
        head += (f". Best significant synthetic gain: {best['arm']}-set +{best['n_add']}/class "
                 f"at base {best['n_base']}/class, {_pct(best['gain'])} pts (simultaneous 95 % "
                 f"CI {_pct(best['sim_lo'])} to {_pct(best['sim_hi'])})")
    else:
        head += f". No synthetic gain is significant (Holm, {len(syn)} cells)"
    return head + "."


# ----------------------------------------------------------------------------- documents


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def _table_html(header: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                  for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def _accuracy_rows(stats: list[dict]) -> list[list[str]]:
    return [[str(s["n_base"]), s["arm"], str(s["n_add"]), f"{s['mean']:.4f}",
             f"{_fmt(s['lo'], 4)}–{_fmt(s['hi'], 4)}", str(s.get("n_units", s.get("n_seeds"))),
             str(s.get("n_runs", s.get("n_seeds")))] for s in stats]


def _coef_rows(equivalence: dict) -> list[list[str]]:
    rows = []
    for arm, eq in equivalence.get("arms", {}).items():
        fit, ci = eq.get("fit", {}), eq.get("ci", {})
        for name in ("c2", "ln_c1_over_k", "c1"):
            lo, hi = ci.get(name, (None, None))
            rows.append([arm, name, _fmt(fit.get(name), 3), f"{_fmt(lo, 3)}–{_fmt(hi, 3)}",
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
                         f"{_fmt(lo, 3)}–{_fmt(hi, 3)}", str(r.get("n_cells", "")),
                         r.get("status", "")])
    return rows


def write_report(cfg, run_dir: Path, rows: list[dict], equivalence: dict, analysis: dict | None,
                 sp, synth) -> dict:
    run_dir = Path(run_dir)
    figdir = run_dir / "figures"
    stats = equivalence.get("cells") or cell_stats(rows)
    figs = {"accuracy": figures.accuracy_curves(stats, figdir / "accuracy.png")}
    for n in cfg.splits.base_per_class:
        sets = [(f"real B({n})", *sp.base(n))]
        sets += [(f"{arm}-set samples", s.images, s.labels) for (arm, m), s in synth.items()
                 if m == n]
        figs[f"samples_n{n}"] = figures.sample_grid(sets, sp.dataset.num_classes,
                                                    figdir / f"samples_n{n}.png")
    for arm, eq in equivalence.get("arms", {}).items():
        figs[f"equivalence_{arm}"] = figures.equivalence_curves(
            eq, arm, cfg.equivalence.k, figdir / f"equivalence_{arm}.png")
    if analysis:
        figs.update(analysis.get("figures", {}))
    headline, lines = findings(cfg, equivalence)
    summary = {
        "version": __version__, "name": cfg.name, "headline": headline, "recommendation": lines,
        "budget": _budget_text(cfg), "n_cells": len(rows), "accuracy": stats,
        "equivalence": equivalence, "analysis": analysis, "config": to_dict(cfg),
        "figures": {k: str(Path(v).relative_to(run_dir)) for k, v in figs.items()},
    }
    atomic_write_json(run_dir / "summary.json", summary)
    md, page = _documents(cfg, summary, stats, equivalence, analysis)
    atomic_write_text(run_dir / "report.md", md)
    atomic_write_text(run_dir / "report.html", page)
    return {"report": str(run_dir / "report.html"), "headline": headline, "summary": summary}


def _budget_text(cfg) -> str:
    c = cfg.classifier
    if c.budget == "steps":
        return (f"fixed {c.train_steps} optimizer steps of batch {c.batch_size} per cell "
                "(arms compared at equal compute)")
    return f"fixed {c.epochs} epochs per cell (more data → more steps, as in the paper)"


def _documents(cfg, summary, stats, equivalence, analysis) -> tuple[str, str]:
    sections = [
        ("Setting", [f"Data: {cfg.data.source}; base sizes {list(cfg.splits.base_per_class)} "
                     f"images/class; seeds {list(cfg.grid.seeds)} per replicate; classifier budget: "
                     f"{summary['budget']}; mixing: {cfg.classifier.mixing}; open-set arm: "
                     f"{cfg.openset.kind}; {getattr(cfg.grid, 'replicates', 1)} replicate(s).",
                     interval_text(equivalence)]),
        ("Finding", [summary["headline"]] + summary["recommendation"]),
    ]
    acc_table = (["base/class", "arm", "added/class", "accuracy", "95 % CI", "units",
                  "classifiers"],
                 _accuracy_rows(stats))
    coef_table = (["arm", "coefficient", "estimate", "95 % CI", "points", "status"],
                  _coef_rows(equivalence))
    fig_lines = [(k, v) for k, v in summary["figures"].items()]
    formula = ("Fitted form: n_syn / n_base ≈ c₁^(n_base/k) · (c₂^(n_real⁺/n_base) − 1) with "
               f"k = {cfg.equivalence.k:g} fixed (only ln c₁ / k is identifiable).")
    md = [f"# synthequiv report — {cfg.name}", ""]
    h = [f"<!doctype html><html><head><meta charset='utf-8'><title>synthequiv — "
         f"{html.escape(cfg.name)}</title><style>body{{font-family:sans-serif;max-width:1100px;"
         "margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 6px;"
         "font-size:13px}img{max-width:100%}</style></head><body>",
         f"<h1>synthequiv report — {html.escape(cfg.name)}</h1>"]
    for title, paras in sections:
        md += [f"## {title}", ""] + [p + "\n" for p in paras]
        h += [f"<h2>{title}</h2>"] + [f"<p>{html.escape(p)}</p>" for p in paras]
    md += ["## Accuracy", "", _table_md(*acc_table), ""]
    h += ["<h2>Accuracy</h2>", _table_html(*acc_table)]
    md += ["## Equivalence", "", formula, "", _table_md(*coef_table), ""]
    h += ["<h2>Equivalence</h2>", f"<p>{html.escape(formula)}</p>", _table_html(*coef_table)]
    if analysis:
        from .analyses import report_section

        amd, ahtml = report_section(analysis)
        md.append(amd)
        h.append(ahtml)
    md += ["## Figures", ""] + [f"![{k}]({v})\n" for k, v in fig_lines]
    h += ["<h2>Figures</h2>"] + [f"<h3>{html.escape(k)}</h3><img src='{html.escape(v)}'>"
                                  for k, v in fig_lines]
    h.append(f"<p><small>synthequiv {__version__}</small></p></body></html>")
    return "\n".join(md) + "\n", "\n".join(h)
