"""The report's plain-language findings follow the measured gains and fits, case by case."""

from __future__ import annotations

from synthequiv import config as C
from synthequiv import equivalence as eq
from synthequiv.report import findings
from test_equivalence import rows_paper

REAL = {0: (0.90, 0.91, 0.92), 10: (0.95, 0.96, 0.97), 40: (0.97, 0.98, 0.99)}


def _rows(closed: dict[int, tuple[float, ...]]) -> list[dict]:
    """One base size (10/class), three seeds: the real arm above, closed cells as given."""
    rows = []
    for arm, cells in (("real", REAL), ("closed", closed)):
        for n_add, accs in cells.items():
            rows += [{"n_base": 10, "arm": arm, "n_add": n_add, "seed": s, "accuracy": a}
                     for s, a in enumerate(accs)]
    return rows


def _findings(rows, bases=(10,), extra=()):
    cfg = C.resolve("quick", None, [f"splits.base_per_class={list(bases)}",
                                    "grid.arms=[real,closed]", *extra])
    return findings(cfg, eq.analyse(rows, eq.EquivalenceConfig(bootstrap=50)))


def test_no_significant_gain_is_said_plainly():
    headline, lines = _findings(_rows({40: (0.92, 0.90, 0.91), 160: (0.91, 0.92, 0.90)}))
    assert headline.startswith("Synthetic data gave no significant gain in any cell")
    assert "real data: +40/class at base 10/class gave +7.0 pts" in headline
    assert lines[0].startswith("Recommendation: on this data, synthetic images gave no "
                               "significant gain") and "Real images did help" in lines[0]
    assert "closed (+40/class: +0.0 pts" in lines[1] and "no significant gain" in lines[1]


def test_significant_gain_without_a_fit_does_not_point_at_exchange_rates():
    headline, lines = _findings(_rows({40: (0.93, 0.94, 0.95), 160: (0.94, 0.95, 0.96)}))
    assert headline.startswith("Best synthetic gain: closed-set +160/class at base 10/class, "
                               "+4.0 pts")
    assert "no exchange rate could be fitted" in lines[0]
    assert "see the exchange rates" not in lines[0]
    assert any("could not be fitted (too_few_points)" in ln for ln in lines)


def test_fitted_arm_gives_exchange_rates_and_flags_extrapolation():
    # a grid whose largest synthetic amount is 50/class: larger amounts are extrapolations
    _, lines = _findings(rows_paper(), (10, 20, 40), ["grid.syn_add_per_class=[20,50]"])
    assert "see the exchange rates below" in lines[0]
    rates = {float(ln.split("≈ ")[1].split(" ")[0]): ln for ln in lines if "per real image" in ln}
    assert len(rates) == 6 and all("95 % CI" in ln for ln in rates.values())
    assert {n > 50 for n in rates} == {True, False}
    assert all(("[extrapolated" in ln) == (n > 50) for n, ln in rates.items())
