"""The report's plain-language findings follow the measured gains and fits, case by case."""

from __future__ import annotations

from synthequiv import config as C
from synthequiv.reporting.report import findings
from synthequiv.stats import equivalence as eq
from test_equivalence import rows_known

REAL = {0: (0.90, 0.91, 0.92), 10: (0.95, 0.96, 0.97), 40: (0.97, 0.98, 0.99)}


def _rows(closed: dict[int, tuple[float, ...]]) -> list[dict]:
    """One base size (10/class), one replicate, three seeds: the real arm above, closed cells
    as given (the units are then the seeds, paired across cells)."""
    rows = []
    for arm, cells in (("real", REAL), ("closed", closed)):
        for n_add, accs in cells.items():
            rows += [{"n_base": 10, "arm": arm, "n_add": n_add, "seed": s, "accuracy": a}
                     for s, a in enumerate(accs)]
    return rows


def _findings(rows, bases=(10,), extra=()):
    cfg = C.resolve("quick", None, [f"splits.base_per_class={list(bases)}",
                                    "grid.arms=[real,closed]", *extra])
    return findings(cfg, eq.analyse(rows, eq.EquivalenceConfig()))


def test_no_significant_gain_is_said_plainly_and_never_as_prefer_real():
    headline, lines = _findings(_rows({40: (0.92, 0.90, 0.91), 160: (0.91, 0.92, 0.90)}))
    assert headline == ("No synthetic amount matched a real-data gain. No synthetic gain is "
                        "significant (Holm, 2 cells).")
    assert lines[0].startswith("Recommendation: no synthetic cell's gain is significant after "
                               "Holm adjustment across 2 cells")
    assert "does not show that synthetic data is useless" in lines[0]
    assert "prefer collecting real" not in " ".join(lines)
    assert "Real images did help significantly (up to +7.0 pts at +40/class" in lines[0]
    assert lines[1].startswith("closed-set at 10 images/class: no rate — synthetic images did "
                               "not beat the baseline at any amount (best +")


def test_headline_states_the_measured_rate_and_why_no_fit():
    rows = _rows({40: (0.93, 0.94, 0.95), 160: (0.945, 0.95, 0.955)})
    headline, lines = _findings(rows)
    # +160 synthetic (mean 0.95) sits on the real curve (linear in log(10 + n)) between +0
    # (0.91) and +10 (0.96): 10·2^(0.04/0.05) − 10 = 7.41 real/class, so 160 / 7.41 = 21.6
    assert headline.startswith("closed-set at 10 images/class: 1 real image ≈ 22 synthetic "
                               "images (95 % CI ")
    assert "measured: +160 synthetic matched +7.4 real/class" in headline
    assert "Best significant synthetic gain: closed-set +160/class at base 10/class, +4.0 pts" \
        in headline
    assert any("the paper's formula was not fitted (too_few_points" in ln for ln in lines)


def test_fitted_arm_gives_exchange_rates_and_flags_extrapolation():
    # a partial table: base 40's two largest synthetic cells are not measured yet
    rows = [r for r in rows_known(noise=0.0005) if not (r["arm"] == "closed"
                                                       and r["n_base"] == 40 and r["n_add"] > 100)]
    largest = max(r["n_add"] for r in rows if r["arm"] == "closed" and r["n_base"] == 40)
    _, lines = _findings(rows, (10, 20, 40))
    rates = [ln for ln in lines if "(fitted formula)" in ln]
    assert len(rates) == 6 and all("95 % CI" in ln for ln in rates)
    flagged = [ln for ln in rates if "[extrapolated" in ln]
    # only base 40's +40 real/class needs more synthetic images than were measured there
    assert len(flagged) == 1 and flagged[0].startswith("closed-set, 40 images/class (fitted "
                                                       "formula): matching +40 real/class")
    assert f"beyond the largest measured {largest}/class" in flagged[0]


def test_no_fitted_rate_where_no_measured_point_supports_it():
    rows = rows_known(noise=0.0005)
    for r in rows:  # base 40: every synthetic cell hurts
        if r["arm"] == "closed" and r["n_base"] == 40:
            r["accuracy"] -= 0.3
    headline, lines = _findings(rows, (10, 20, 40))
    assert "closed-set at 40 images/class: no rate" in " ".join(lines)
    assert not any(ln.startswith("closed-set, 40 images/class (fitted") for ln in lines)
    assert "closed-set at 40" not in headline


# ----------------------------------------------------------------------------- analysis words


def _analysis(frac_below: float) -> dict:
    overlap = {"fd": 1.5, "kid": 0.0021, "kid_std": 0.0004, "precision": 0.8, "recall": 0.7,
               "density": 0.9, "coverage": 0.75}
    mem = {"quantile": 0.05, "n_synthetic": 300,
           "pixel": {"frac_below": frac_below, "exact_copies": 0}}
    s = {"reference": "B(10)", "overlap": overlap, "domain": {"accuracy": 0.95, "auc": 0.97},
         "cas": {"accuracy": 0.8, "real_accuracy": 0.85, "per_class": [0.8, 0.8]},
         "fidelity": {"accuracy": 0.9, "per_class": [0.9, 0.9]}, "memorization": mem}
    from synthequiv.measures.domaingap import f4_verdict

    base = {"overlap": {**overlap, "fd": 0.5}, "domain": {"accuracy": 0.5, "auc": 0.52}}
    return {"sets": {"closed-n10": s}, "baseline": base, "class_names": ["a", "b"],
            "settings": {"quantile": 0.05}, "figures": {},
            "paper_finding_f4": f4_verdict({"closed-n10": s}, base)}


def test_memorization_above_its_expected_rate_is_said_in_words():
    from synthequiv.reporting.analysis_report import report_section

    md, html = report_section(_analysis(0.27))
    assert "27 % of synthetic images lie closer to a generator training image than 95 % of " \
           "held-out real images do — 5.4× the 5 % expected" in md
    assert "separable yet overlapping" in md and "F4" not in md + html
    assert "2.100 ± 0.400" in md  # KID ×10³ with its spread
    calm, _ = report_section(_analysis(0.06))  # within 3 binomial SEs of 5 % (n = 300)
    assert "No sign of memorization in closed-n10: 6 %" in calm


def test_fitted_rates_far_beyond_the_measured_amounts_are_not_reported():
    from synthequiv.reporting.report import _exchange_lines

    eqv = {"cells": [{"arm": "closed", "n_base": 10, "n_add": 160}],
           "arms": {"closed": {"fit": {"status": "ok"}, "exchange": [
               {"n_base": 10, "frac": 0.5, "n_real_plus": 5, "n_syn": 400.0, "rate": 80.0,
                "lo": 20.0, "hi": 1e9, "supported": True},
               {"n_base": 10, "frac": 1.0, "n_real_plus": 10, "n_syn": 1.1e6, "rate": 1.1e5,
                "lo": 0.0, "hi": 1e37, "supported": True}]}}}
    first, second = _exchange_lines(eqv)
    assert "1 real ≈ 80 synthetic (95 % CI 20–1e+09) [extrapolated" in first
    assert "not reported" in second and "1 real ≈" not in second
