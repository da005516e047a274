"""Report stage: report.html (self-contained) + report.md with figures, and summary.json
with every number. The page answers first: a headline box, then the findings, each figure in
the section that discusses it, and the setting last."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from synthequiv import __version__
from synthequiv.config import to_dict
from synthequiv.generation.levers import is_variant, lever_rows
from synthequiv.generation.provided_entries import provided_note
from synthequiv.reporting import figure_pool, figures
from synthequiv.reporting.document import Doc
from synthequiv.stats.equivalence import MAX_EXTRAPOLATION
from synthequiv.stats.planner import heldout_check, heldout_text
from synthequiv.utils import SynthequivError, atomic_write_json, atomic_write_text

# ----------------------------------------------------------------------------- numbers


def _pct(x: float) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{100 * x:+.1f}"


def _fmt(x, digits: int = 2) -> str:
    return "n/a" if x is None or not np.isfinite(x) else f"{x:.{digits}f}"


def _rate(x: float) -> str:
    if x is None or x != x:
        return "n/a"
    if x == math.inf:
        return "∞"
    if x >= 1e5:
        return f"{x:.0e}"
    return f"{x:.0f}" if x >= 10 or x == 0 else f"{x:.1f}"


def _no_interval(n_units: int, why: str = "") -> str:
    """Why an interval is missing: 'no interval (one unit)' or t_interval's reason."""
    if n_units < 2:
        return "no interval (one unit)"
    return why if why.startswith("no ") else f"no interval ({why or 'not estimable'})"


def _gain_ci(g: dict) -> str:
    """'95 % CI a to b' of a gain, or why it has none (one unit, no spread over units)."""
    if g["lo"] == g["lo"] and g["hi"] == g["hi"]:
        return f"95 % CI {_pct(g['lo'])} to {_pct(g['hi'])}"
    return _no_interval(g.get("n_units", 0), g.get("no_interval", ""))


def _rate_ci(lo: float, hi: float, n_units: int) -> str:
    """'95 % CI a–b' of an exchange rate (ends may be 0 or ∞), or why it has none."""
    if lo == lo and hi == hi:
        return f"95 % CI {_rate(lo)}–{_rate(hi)}"
    return _no_interval(n_units)


def _sig_rate_ci(p: dict) -> str:
    """The interval of a significant measured rate: both ends, or 'at most' where the real
    amount it matched is open above (beyond the largest real amount measured)."""
    if p["rate_lo"] > 0:
        return f"95 % CI {_rate(p['rate_lo'])}–{_rate(p['rate_hi'])}"
    return f"95 % CI: at most {_rate(p['rate_hi'])}"


def _arm_base_line(arm: str, n: int, points: list[dict], gains: list[dict]) -> str:
    """One arm and base size, with no rate from noise (issue 26): '1 real ≈ N synthetic' only
    for a cell whose gain is significant after Holm and measured in ≥ 2 units; elsewhere the
    bound the data support ('worth at most +x real/class') or 'no measurable gain'."""
    where = f"{arm}-set at {n} images/class"
    g = [x for x in gains if x["arm"] == arm and x["n_base"] == n]
    if not g:
        return f"{where}: no rate — no synthetic cell was measured"
    sig = {x["n_add"]: x for x in g
           if x["significant"] and x["gain"] > 0 and x.get("n_units", 0) >= 2}
    rated = [p for p in points if p["usable"] and p["n_syn"] in sig and p["n_units"] >= 2]
    if rated:
        p = max(rated, key=lambda p: p["n_syn"])
        return (f"{where}: 1 real image ≈ {_rate(p['rate'])} synthetic images "
                f"({_sig_rate_ci(p)}; measured: +{p['n_syn']} synthetic matched "
                f"+{p['n_real_eq']:.1f} real/class, significant gain "
                f"{_pct(sig[p['n_syn']]['gain'])} pts)")
    above = [p for p in points if p["flag"] == "above_range" and p["n_syn"] in sig]
    if above:
        p = min(above, key=lambda p: p["n_syn"])
        beyond = p["n_real_eq_lo"] >= p["largest_real"]  # the unit-level test puts it there
        what = ("beat even the largest real amount" if beyond else
                "reached at least the accuracy of the largest real amount")
        return (f"{where}: +{p['n_syn']} synthetic/class {what} "
                f"(+{p['largest_real']:g}/class; significant gain "
                f"{_pct(sig[p['n_syn']]['gain'])} pts), so 1 real image ≈ at most "
                f"{_rate(p['n_syn'] / p['largest_real'])} synthetic "
                f"({_rate_ci(p['rate_lo'], p['rate_hi'], p['n_units'])}); measure more real "
                "amounts to pin it down")
    return _unresolved_line(where, points, g)


def _unresolved_line(where: str, points: list[dict], g: list[dict]) -> str:
    """No significant gain at this arm and base size: the strongest bound on a synthetic
    image's worth that a measured interval supports, else 'no measurable gain'."""
    best = max(g, key=lambda x: x["gain"])
    best_text = f"best +{best['n_add']}/class: {_pct(best['gain'])} pts, {_gain_ci(best)}"
    if max(x.get("n_units", 0) for x in g) < 2:
        usable = [p for p in points if p["usable"]]
        if usable:
            p = max(usable, key=lambda p: p["n_syn"])
            return (f"{where}: not tested (one unit) — point estimate only: +{p['n_syn']} "
                    f"synthetic matched +{p['n_real_eq']:.1f} real/class")
        return f"{where}: no measurable gain ({best_text})"
    if best["gain"] < 0 and best["significant"]:  # even the best amount is a significant loss
        return f"{where}: synthetic images hurt at every amount ({best_text}, significant)"
    bounded = [p for p in points if p["n_units"] >= 2 and p["flag"] != "above_range"
               and 0 < p["n_real_eq_hi"] < math.inf]
    if bounded:  # the strongest bound: the fewest real images per synthetic image
        p = max(bounded, key=lambda p: p["n_syn"] / p["n_real_eq_hi"])
        return (f"{where}: no significant gain; +{p['n_syn']} synthetic/class is worth at "
                f"most +{p['n_real_eq_hi']:.1f} real/class (95 %), i.e. 1 real image ≈ at least "
                f"{_rate(p['n_syn'] / p['n_real_eq_hi'])} synthetic ({best_text})")
    return f"{where}: no measurable gain ({best_text})"


def rate_lines(equivalence: dict, plain_only: bool = False) -> list[str]:
    """One line per generative arm and base size (the report's headline box); `plain_only`
    leaves out the lever variants (closed@cfg2, closed+top0.8)."""
    out = []
    for arm, eq in sorted(equivalence.get("arms", {}).items()):
        if plain_only and is_variant(arm):
            continue
        for n in sorted({p["n_base"] for p in eq.get("points", [])}):
            pts = [p for p in eq["points"] if p["n_base"] == n]
            out.append(_arm_base_line(arm, n, pts, equivalence.get("gains", [])))
    return out


def interval_text(equivalence: dict) -> str:
    """What every interval in the report is, and what it is conditional on."""
    unit, u = equivalence.get("unit", "seed"), equivalence.get("n_units", 0)
    cov = equivalence.get("coverage", {})
    if u < 2:
        return ("Intervals: none. The results table has one unit (one replicate with one "
                "classifier seed), and every interval here is over units (replicates, or with "
                "one replicate its seeds), so no interval, p-value or significance can be "
                "given: the numbers are point estimates only. Run grid.replicates ≥ 3.")
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
            f"{what}. {_variance_text(equivalence.get('variance', {}))} 'Significant' means Holm-adjusted p < 0.05 across the grid's synthetic "
            "cells (real-arm cells form their own family); the headline's best gain carries a "
            "Bonferroni-simultaneous interval. An exchange-rate interval is every real amount "
            "the synthetic cell is not significantly different from (paired t-test inversion); "
            "∞ means the data cannot exclude that synthetic images are worth nothing. "
            "A difference equal in every unit (common with a discrete metric) has no interval "
            "(no spread over units: undetermined) and is never called significant; it still "
            "counts in its Holm family, as p = 1. Accuracy intervals are clipped to [0, 1]. "
            "Formula coefficients, fitted rates and r are model-based point estimates without "
            "an interval (a jackknife over 3 replicates covered only 74–92 % in simulation)."
            + measured)


def _variance_text(v: dict) -> str:
    """How each contrast's variance was estimated (equivalence.variance)."""
    if v.get("method") == "per_cell":
        return "Each contrast's variance is its own, over units (equivalence.variance: per_cell)."
    syn = v.get("synthetic") or {}
    pooled = (f" (synthetic family: prior {syn['prior_df']:.0f} df from "
              f"{syn['n_contrasts']} contrasts)" if syn.get("prior_df") else
              " (synthetic family: too few varying contrasts to pool, each keeps its own)")
    return ("Each contrast's variance is moderated across the cells of its family (empirical "
            "Bayes, Smyth 2004, as in limma): its own variance shrunk toward the family's, on "
            f"the degrees of freedom of both{pooled}.")


def findings(cfg, equivalence: dict) -> tuple[str, list[str]]:
    """Plain-language headline and lines, from measured gains and points only."""
    gains = equivalence.get("gains", [])
    lines = rate_lines(equivalence)
    fitted = _exchange_lines(equivalence)
    lines.insert(0, _recommendation(gains))
    note = provided_note(cfg)  # what provided arms' intervals leave out
    # the headline answers for the plain arms; lever variants are listed below it and
    # compared in the levers table
    plain = rate_lines(equivalence, plain_only=True)
    n_units = equivalence.get("n_units", 2)
    return _headline(gains, plain, n_units), lines + fitted + ([note] if note else [])


def _best(gains: list[dict]) -> dict:
    return max(gains, key=lambda g: g["gain"] if g["gain"] == g["gain"] else -math.inf)


def _recommendation(gains: list[dict]) -> str:
    syn = [g for g in gains if g["arm"] != "real"]
    sig = [g for g in syn if g["significant"] and g["gain"] > 0]
    hurt = [g for g in syn if g["significant"] and g["gain"] < 0]
    real_sig = [g for g in gains if g["arm"] == "real" and g["significant"] and g["gain"] > 0]
    m = syn[0]["family_size"] if syn else 0  # Holm's family (untestable cells count as p = 1)
    tested = sum(g["p"] == g["p"] for g in syn)
    if sig:
        arms = sorted({g["arm"] for g in sig})
        bases = sorted({g["n_base"] for g in sig})
        text = (f"Recommendation: {' and '.join(arms)}-set synthetic data gave a significant "
                f"gain (Holm-adjusted across {m} synthetic cells) at base size(s) {bases} "
                "images/class; weigh the exchange rates below against the cost of real images.")
    elif syn and tested == 0:  # nothing could be tested: one unit, or no spread in any cell
        best = _best(syn)
        text = (f"Recommendation: none possible — no synthetic gain could be tested "
                f"({_gain_ci(best)}); the largest was {_pct(best['gain'])} pts. "
                + ("With one unit (one replicate, one seed) there are no intervals: run "
                   "grid.replicates ≥ 3." if best.get("n_units", 0) < 2 else
                   "More replicates give the differences a spread to test against."))
    elif syn:
        best = _best(syn)
        text = (f"Recommendation: no synthetic cell's gain is significant after Holm adjustment "
                f"across {m} cells; " + _not_significant(best, hurt))
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


def _not_significant(best: dict, hurt: list[dict]) -> str:
    """What the largest synthetic gain says when none is significant after Holm: a loss, a large
    effect the multiplicity adjustment removed, or an effect too small to resolve."""
    size = f"{_pct(best['gain'])} pts ({_gain_ci(best)})"
    if round(100 * best["gain"], 1) < 0:  # below the baseline as printed
        return (f"every synthetic cell was below the baseline (the best was "
                f"{_pct(best['gain'])} pts, {_gain_ci(best)}): the "
                "synthetic data did not help here" + ("." if hurt else
                                                       ", and the loss is not significant."))
    if best["lo"] > 0:  # the unadjusted interval excludes 0; the adjusted test does not
        return (f"the largest was {_pct(best['gain'])} pts (unadjusted {_gain_ci(best)}), "
                "which is not significant after the multiplicity adjustment (Holm-adjusted "
                f"p = {best['p_holm']:.2g}). More "
                "replicates narrow the intervals (about as 1/√replicates).")
    return (f"the largest was {size}. This does not show that synthetic data is useless: the "
            "study cannot resolve a gain this small. More replicates narrow the intervals "
            "(about as 1/√replicates).")


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
            out.append(f"{arm}-set: the paper's formula was not fitted ({_fit_why(fit)}); the "
                       "rates above are the measured ones.")
            continue
        for x in eq.get("exchange", []):
            if not x.get("supported"):
                continue
            max_syn = measured.get((arm, x["n_base"]), 0)
            if not x["n_syn"] <= MAX_EXTRAPOLATION * max_syn:
                out.append(f"{arm}-set, {x['n_base']} images/class (fitted formula): matching "
                           f"+{x['n_real_plus']:g} real/class would take more than "
                           f"{MAX_EXTRAPOLATION:g}× the largest measured {max_syn}/class — "
                           "not reported (an extrapolation the data do not constrain).")
                continue
            beyond = (f" [extrapolated: beyond the largest measured {max_syn}/class]"
                      if x["n_syn"] > max_syn else "")
            out.append(
                f"{arm}-set, {x['n_base']} images/class (fitted formula): matching "
                f"+{x['n_real_plus']:g} real/class takes ≈ {x['n_syn']:.0f} synthetic/class — "
                f"1 real ≈ {_rate(x['rate'])} synthetic (model-based point estimate, no "
                f"interval){beyond}.")
    return out


def _fit_why(fit: dict) -> str:
    """Why the formula has no fit: a degenerate optimum's reason, or too few cells."""
    if fit.get("reason"):
        return f"{fit.get('status')}: {fit['reason']}"
    return (f"{fit.get('status', 'no data')}: it needs ≥ 3 synthetic cells inside the real "
            f"curve's range, had {fit.get('n_inside', 0)}")


def _headline(gains: list[dict], rate_texts: list[str], n_units: int = 2) -> str:
    syn = [g for g in gains if g["arm"] != "real"]  # closed, open and provided arms
    if not syn:
        return "No synthetic arm was run."
    if n_units < 2:  # a cell measured in one unit is never headlined
        return ("No intervals: the results have one unit (one replicate with one seed), so no "
                "gain is tested for significance and every number is a point estimate.")
    # every arm and base size: a significant rate, a bound, or "no measurable gain"
    head = "; ".join(rate_texts) if rate_texts else "No synthetic arm was compared"
    sig = [g for g in syn if g["significant"] and g["gain"] > 0]
    if sig:
        best = max(sig, key=lambda g: g["gain"])
        head += (f". Best significant synthetic gain: {best['arm']}-set +{best['n_add']}/class "
                 f"at base {best['n_base']}/class, {_pct(best['gain'])} pts (simultaneous 95 % "
                 f"CI {_pct(best['sim_lo'])} to {_pct(best['sim_hi'])})")
    else:
        m = syn[0]["family_size"]
        tested = any(g["p"] == g["p"] for g in syn)
        head += (f". No synthetic gain is significant (Holm, {m} cells)" if tested else
                 ". No synthetic gain could be tested")
        untested = [g for g in syn if not g["p"] == g["p"]]
        if untested:  # one unit in a partly finished run, or no spread over units
            why = sorted({g.get("no_interval") or "not estimable" for g in untested})
            head += f"; {len(untested)} without an interval ({'; '.join(why)})"
    return head + "."


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
    if power.get("resolve_text"):  # nothing significant: what would resolve it, and the command
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
          f"seeds {list(cfg.grid.seeds)}; replicates {reps}; classifier budget: "
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
