"""The answer in words: the headline, the findings and the exchange-rate lines of a report,
from an equivalence result (stats.equivalence.analyse). A rate is stated only where the
synthetic gain is Holm-significant; elsewhere the bound the data support, or that there was
no measurable gain."""

from __future__ import annotations

import math

import numpy as np

from synthequiv.generation.levers import is_variant
from synthequiv.generation.provided_entries import provided_note
from synthequiv.stats.equivalence import MAX_EXTRAPOLATION

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


def _sim_gain_ci(g: dict) -> str:
    """The Bonferroni-simultaneous 95 % CI of a gain: what "not significant after Holm" is
    consistent with (a cell Holm does not reject has a simultaneous interval that holds 0,
    while its unadjusted interval may exclude 0); the unadjusted one where there is none."""
    lo, hi = g.get("sim_lo", math.nan), g.get("sim_hi", math.nan)
    if lo == lo and hi == hi:
        return f"simultaneous 95 % CI {_pct(lo)} to {_pct(hi)}"
    return _gain_ci(g)


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
    best_text = f"best +{best['n_add']}/class: {_pct(best['gain'])} pts, {_sim_gain_ci(best)}"
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
    rates = v.get("rates") or {}
    rate = (f" The exchange-rate intervals borrow in the same way from contrasts like their "
            f"own, each synthetic cell against each real amount (prior {rates['prior_df']:.0f} "
            f"df from {rates['n_contrasts']} contrasts)." if rates.get("prior_df") else "")
    return ("Each contrast's variance is moderated across the cells of its family (empirical "
            "Bayes, Smyth 2004, as in limma): its own variance shrunk toward the family's, on "
            f"the degrees of freedom of both{pooled}.{rate}")


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
