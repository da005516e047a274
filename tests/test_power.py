"""Power of a planned design: components recovered from simulated results, and the minimum
detectable gain equal to what a simulation of the same t-test detects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from synthequiv.stats.intervals import unit_table
from synthequiv.stats.power import (
    VarianceComponents,
    lower_bound_components,
    min_detectable_gain,
    power_at,
    replicates_for,
    seed_counts,
    variance_components,
)
from synthequiv.stats.simulate import Design, Truth, simulate_rows
from synthequiv.utils import SynthequivError


def test_variance_components_are_recovered_from_many_replicates():
    design = Design(arms=("closed", "open"), replicates=150, seeds=3, sd_base=0.006,
                    sd_gen=0.008, sd_cell=0.003, sd_seed=0.004)
    vc = variance_components(simulate_rows(Truth(), design, np.random.default_rng(0)))
    assert vc.seed == pytest.approx(0.004, rel=0.05)
    assert vc.cell == pytest.approx(0.003, rel=0.2)
    assert vc.generator == pytest.approx(0.008, rel=0.15)
    assert vc.base == pytest.approx(0.006, rel=0.2)


def test_a_baseline_with_more_seeds_is_priced_in_the_gain_and_the_components():
    """The baseline trains 6 seeds, its cells 2 (grid.base_seed_factor 3): the estimator
    recovers the components, and the synthetic gains' variance over replicates is the model's
    cell² + cell² + seed²/2 + seed²/6 — not the 2·seed²/2 of equal seeds."""
    design = Design(arms=("closed", "open"), replicates=200, seeds=2, base_seeds=6,
                    sd_base=0.006, sd_gen=0.0, sd_cell=0.003, sd_seed=0.006)
    rows = simulate_rows(Truth(), design, np.random.default_rng(3))
    assert seed_counts(rows) == pytest.approx((2.0, 6.0))
    vc = variance_components(rows)
    assert vc.seed == pytest.approx(0.006, rel=0.05)
    assert vc.cell == pytest.approx(0.003, rel=0.2)
    t = unit_table(rows)
    var = np.mean([np.var(v - t.values[(k[0], "real", 0)], ddof=1)
                   for k, v in t.values.items() if k[1] != "real"])
    truth = VarianceComponents(base=0.006, generator=0.0, cell=0.003, seed=0.006)
    assert math.sqrt(var) == pytest.approx(truth.gain_sd(2, base_seeds=6), rel=0.05)
    assert truth.gain_sd(2, base_seeds=6) < 0.9 * truth.gain_sd(2)
    # the plan's detectable gain follows: the baseline's seeds shrink it
    assert min_detectable_gain(truth, 3, 2, base_seeds=6) < min_detectable_gain(truth, 3, 2)


def test_per_cell_power_equals_a_simulated_t_test():
    """The per-cell t is exact: power_at must match 20,000 simulated t-tests at level α/m."""
    sd, u, gain, m = 0.01, 4, 0.02, 8
    rng = np.random.default_rng(1)
    d = rng.normal(gain, sd, size=(20_000, u))
    p = stats.ttest_1samp(d, 0.0, axis=1).pvalue
    simulated = float(np.mean(p < 0.05 / m))
    assert power_at(gain, sd, u, family_size=m, variance="per_cell") == pytest.approx(
        simulated, abs=0.01)


def test_min_detectable_gain_has_the_asked_power_and_shrinks_with_replicates():
    vc = VarianceComponents(base=0.006, generator=0.004, cell=0.002, seed=0.004)
    sd = vc.gain_sd(2)
    assert sd == pytest.approx(math.sqrt(0.004**2 + 2 * 0.002**2 + 2 * 0.004**2 / 2))
    mdg = [min_detectable_gain(vc, u, 2) for u in (2, 3, 5, 10)]
    assert all(a > b for a, b in zip(mdg, mdg[1:]))
    assert power_at(mdg[1], sd, 3, family_size=8) == pytest.approx(0.8, abs=1e-6)
    per_cell = min_detectable_gain(vc, 3, 2, variance="per_cell")
    assert per_cell > 3 * mdg[1]  # 2 df and a 0.6 % level: t = 12.6 instead of ≈ 2.7
    u = replicates_for(mdg[1], vc, 2)
    assert u == 3 and min_detectable_gain(vc, 1, 2) == math.inf
    with pytest.raises(SynthequivError, match="power"):
        min_detectable_gain(vc, 3, 2, power=1.0)
    with pytest.raises(SynthequivError, match="2 replicates"):
        variance_components([{"n_base": 10, "arm": "real", "n_add": 0, "seed": s,
                              "accuracy": 0.9} for s in range(3)])


def test_a_one_replicate_pilot_gives_the_seed_component_and_a_lower_bound():
    design = Design(replicates=1, seeds=4, sd_seed=0.004, sd_gen=0.01)
    rows = simulate_rows(Truth(), design, np.random.default_rng(2))
    lb = lower_bound_components(rows)
    assert (lb.base, lb.generator, lb.cell) == (0.0, 0.0, 0.0)
    assert lb.seed == pytest.approx(0.004, rel=0.3)
    full = VarianceComponents(base=0.006, generator=0.01, cell=0.002, seed=lb.seed)
    assert min_detectable_gain(lb, 3, 4) < min_detectable_gain(full, 3, 4)
    one_seed = lower_bound_components([r for r in rows if r["seed"] == 0])
    assert one_seed.seed == 0.0 and min_detectable_gain(one_seed, 3, 1) == 0.0  # trivial bound
