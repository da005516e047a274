"""The report's plain-language findings follow the measured gains and fits, case by case."""

from __future__ import annotations

import re

import numpy as np
import pytest

from synthequiv import config as C
from synthequiv.reporting.findings import findings
from synthequiv.stats import equivalence as eq
from test_equivalence import rows_known

# the real cells' differences from the baseline vary over the seeds (equal differences in every
# unit have no spread to test against: no interval, never significant)
REAL = {0: (0.90, 0.91, 0.92), 10: (0.945, 0.965, 0.97), 40: (0.965, 0.985, 0.99)}


def _rows(closed: dict[int, tuple[float, ...]], real=REAL) -> list[dict]:
    """One base size (10/class), one replicate, three seeds: the real arm above, closed cells
    as given (the units are then the seeds, paired across cells)."""
    rows = []
    for arm, cells in (("real", real), ("closed", closed)):
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
    # no rate from noise: the bound the data support (issue 26, item 6)
    assert headline == ("closed-set at 10 images/class: no significant gain; +160 synthetic/class "
                        "is worth at most +7.6 real/class (95 %), i.e. 1 real image ≈ at least 21 "
                        "synthetic (best +40/class: +0.0 pts, simultaneous 95 % CI -6.2 to +6.2). No synthetic "
                        "gain is significant (Holm, 2 cells).")
    assert lines[0].startswith("Recommendation: no synthetic cell's gain is significant after "
                               "Holm adjustment across 2 cells")
    assert "does not show that synthetic data is useless" in lines[0]
    assert "prefer collecting real" not in " ".join(lines)
    assert "Real images did help significantly (up to +7.0 pts at +40/class" in lines[0]
    assert lines[1] == headline.split(". No synthetic")[0]


def test_a_gain_called_not_significant_is_printed_with_an_interval_holding_zero():
    """'No significant gain' is Holm across the synthetic cells; the interval printed beside
    it is the simultaneous one, which then always holds 0 (an unadjusted 95 % CI of the same
    cell excluded 0 in some of these studies: the reader saw a contradiction)."""
    import numpy as np

    from synthequiv.stats.simulate import QUICK_NOISE, QUICK_TRUTH, quick_designs, simulate_rows

    # the quick design before 2026-12-06: small gains at 20/class, often not significant
    design = quick_designs(QUICK_NOISE, bases=(10, 20), real_add=(5, 10, 20, 40))["default"]
    cfg = C.resolve("quick", None, ["splits.base_per_class=[10,20]",
                                    "grid.real_add_per_class=[5,10,20,40]"])
    rng, seen, unadjusted_excluded_zero = np.random.default_rng(3), 0, 0
    for _ in range(40):
        rows = simulate_rows(QUICK_TRUTH, design, rng)
        equivalence = eq.analyse(rows, eq.EquivalenceConfig())
        _, lines = findings(cfg, equivalence)
        for line in lines:
            m = re.search(r"no significant gain.*best \+(\d+)/class: .*simultaneous 95 % CI "
                          r"([-+][\d.]+) to ([-+][\d.]+)\)", line)
            if not m:
                continue
            seen += 1
            assert float(m[2]) <= 0 <= float(m[3]), line
            where = re.match(r"(closed|open)-set at (\d+) images", line)
            g = next(g for g in equivalence["gains"] if g["arm"] == where[1]
                     and g["n_base"] == int(where[2]) and g["n_add"] == int(m[1]))
            unadjusted_excluded_zero += g["lo"] > 0
    assert seen >= 10 and unadjusted_excluded_zero >= 1  # the case the wording is for occurs


def test_headline_states_the_measured_rate_and_why_no_fit():
    rows = _rows({40: (0.93, 0.94, 0.95), 160: (0.945, 0.95, 0.955)})
    headline, lines = _findings(rows)
    # +160 synthetic (mean 0.95) sits on the real curve between +0 (0.91) and +10 (0.96): on
    # the chord in log(10 + n) at 10·2^(0.04/0.05) − 10 = 7.41 real/class; on the power law
    # a − b·N^(−α) through the three knots (0.91, 0.96, 0.98 at N = 10, 20, 50: α = 1.528,
    # solved by hand), which the curve follows exactly between knots, at N − 10 = 6.22:
    # 160 / 6.22 = 25.7 (a monotone cubic in log N gave 6.30)
    assert headline.startswith("closed-set at 10 images/class: 1 real image ≈ 26 synthetic "
                               "images (95 % CI ")
    assert "measured: +160 synthetic matched +6.2 real/class" in headline
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
    assert len(rates) == 6 and all("(model-based point estimate, no interval)" in ln
                                   for ln in rates)
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
    assert not any(ln.startswith("closed-set, 40 images/class (fitted") for ln in lines)
    assert "closed-set at 40 images/class: synthetic images hurt at every amount (best " \
        "+237/class: -21.3 pts" in headline


def test_one_unit_says_there_are_no_intervals_and_keeps_the_point_estimates(tmp_path):
    """One replicate with one seed (this crashed in the jackknife): the measured rates stand,
    and the headline, the rate lines and the interval note say that there are no intervals."""
    from synthequiv.reporting.findings import interval_text
    from synthequiv.reporting.rebuild import fit_results

    rows = rows_known(reps=1, seeds=1, noise=0.0005)
    equivalence = eq.analyse(rows, eq.EquivalenceConfig())
    headline, lines = _findings(rows, (10, 20, 40))
    # a cell measured in one unit is never headlined (issue 26, item 6)
    assert headline == ("No intervals: the results have one unit (one replicate with one "
                        "seed), so no gain is tested for significance and every number is "
                        "a point estimate.")
    assert lines[0].startswith("Recommendation: none possible — no synthetic gain could be "
                               "tested (no interval (one unit))")
    assert all("not tested (one unit) — point estimate only: +" in ln for ln in lines[1:4])
    assert interval_text(equivalence).startswith("Intervals: none. The results table has one "
                                                 "unit")
    path = tmp_path / "one.csv"  # `synthequiv fit` on a one-replicate, one-seed CSV
    cols = ["n_base", "arm", "n_add", "seed", "replicate", "accuracy"]
    path.write_text("\n".join([",".join(cols)] + [",".join(str(r[c]) for c in cols)
                                                   for r in rows]) + "\n")
    fit_results(path, tmp_path / "fit")
    md = (tmp_path / "fit" / "report.md").read_text()
    assert "No intervals: the results have one unit" in md and "| no interval (one unit) |" in md


def test_equal_differences_in_every_unit_are_never_called_significant():
    """The real arm gains exactly +5 and +7 pts over every seed (a discrete metric does that):
    before, p = 0 and 'Real images did help significantly'."""
    flat = {0: (0.90, 0.91, 0.92), 10: (0.95, 0.96, 0.97), 40: (0.97, 0.98, 0.99)}
    headline, lines = _findings(_rows({40: (0.92, 0.90, 0.91), 160: (0.91, 0.92, 0.90)}, flat))
    assert "Real images did help" not in lines[0]
    headline, lines = _findings(_rows({40: (0.95, 0.96, 0.97), 160: (0.96, 0.97, 0.98)}, flat))
    assert headline.endswith("no measurable gain (best +160/class: +6.0 pts, no spread over "
                             "units: interval undetermined). No synthetic gain could be tested; "
                             "2 without an interval (no spread over units: interval "
                             "undetermined).")
    assert lines[0].startswith("Recommendation: none possible — no synthetic gain could be "
                               "tested (no spread over units: interval undetermined)")


def _replicates(cells: dict[tuple[str, int], tuple[float, ...]]) -> list[dict]:
    return [{"n_base": 10, "arm": arm, "n_add": n, "seed": 0, "replicate": u, "accuracy": a}
            for (arm, n), accs in cells.items() for u, a in enumerate(accs)]


def test_headline_claims_no_win_from_a_cell_marginally_above_a_flat_real_curve():
    """Real +10 and +20 at or below the baseline, +20 synthetic 0.08 pts above it (p ≈ 0.8):
    before, '+20 synthetic/class beat even the largest real amount, so 1 real image ≈ at most
    1.0 synthetic', no interval, while the stored interval excluded its own point."""
    rows = _replicates({("real", 0): (0.6200, 0.6300, 0.6274),
                        ("real", 10): (0.6250, 0.6240, 0.6260),
                        ("real", 20): (0.6240, 0.6250, 0.6260),
                        ("closed", 20): (0.6256, 0.6267, 0.6275)})
    headline, lines = _findings(rows)
    assert headline == ("closed-set at 10 images/class: no measurable gain (best +20/class: "
                        "+0.1 pts, simultaneous 95 % CI -1.0 to +1.2). No synthetic gain is "
                        "significant "
                        "(Holm, 1 cells).")
    assert "beat even" not in " ".join(lines)


def test_a_significant_cell_beyond_the_real_curve_is_a_bound_with_its_interval():
    rows = _replicates({("real", 0): (0.60, 0.61, 0.62), ("real", 10): (0.63, 0.645, 0.65),
                        ("real", 20): (0.66, 0.665, 0.68), ("closed", 40): (0.75, 0.77, 0.76)})
    headline, _ = _findings(rows)
    assert headline.startswith(
        "closed-set at 10 images/class: +40 synthetic/class beat even the largest real amount "
        "(+20/class; significant gain +15.0 pts), so 1 real image ≈ at most 2.0 synthetic "
        "(95 % CI 0–2.0); measure more real amounts")


def test_recommendation_words_match_a_loss_and_a_gain_lost_to_the_adjustment():
    _, lines = _findings(_rows({40: (0.65, 0.89, 0.79), 160: (0.60, 0.85, 0.70)}))
    assert "cannot resolve" not in lines[0]
    # +9.0: the interval's end clipped to what a gain over the baseline's 0.91 can be
    assert ("every synthetic cell was below the baseline (the best was -13.3 pts, 95 % CI -41.9 "
            "to +9.0): the synthetic data did not help here, and the loss is not significant."
            ) in lines[0]
    _, lines = _findings(_rows({40: (1.00, 0.96, 1.00), 160: (0.93, 0.90, 0.95)}))
    assert "cannot resolve" not in lines[0]
    assert ("the largest was +7.7 pts (unadjusted 95 % CI +1.4 to +9.0), which is not "
            "significant after the multiplicity adjustment (Holm-adjusted p = 0.068)") in lines[0]


def test_accuracy_intervals_stay_within_0_and_1():
    from synthequiv.reporting.report import _accuracy_rows

    rows = _replicates({("real", 0): (0.1, 0.9), ("real", 10): (0.2, 0.95),
                        ("closed", 20): (0.9, 0.1)})
    cells = _accuracy_rows(eq.analyse(rows, eq.EquivalenceConfig())["cells"])
    assert [c[4] for c in cells] == ["0.0000–1.0000"] * 3


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
    from synthequiv.reporting.findings import _exchange_lines

    eqv = {"cells": [{"arm": "closed", "n_base": 10, "n_add": 160}],
           "arms": {"closed": {"fit": {"status": "ok"}, "exchange": [
               {"n_base": 10, "frac": 0.5, "n_real_plus": 5, "n_syn": 400.0, "rate": 80.0,
                "lo": 20.0, "hi": 1e9, "supported": True},
               {"n_base": 10, "frac": 1.0, "n_real_plus": 10, "n_syn": 1.1e6, "rate": 1.1e5,
                "lo": 0.0, "hi": 1e37, "supported": True}]}}}
    first, second = _exchange_lines(eqv)
    assert "1 real ≈ 80 synthetic (model-based point estimate, no interval) [extrapolated" \
        in first
    assert "not reported" in second and "1 real ≈" not in second


# ----------------------------------------------------------------------------- figure workers


def _die_in_a_worker():
    """Unpickled in a figure worker: kills it (as an OOM kill would); harmless elsewhere."""
    import multiprocessing as mp
    import os

    if mp.parent_process() is not None:
        os._exit(3)
    return "unpickled here"


class _Bomb:
    def __reduce__(self):
        return (_die_in_a_worker, ())


def _figure(title: str, bomb: bool = False):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.plot([0, 1, 2], [0, 1, 4], label=title)
    ax.scatter(np.arange(50) % 7, np.arange(50) % 5, s=4)
    ax.set_title(title)
    ax.legend()
    if bomb:
        fig.bomb = _Bomb()
    return fig


@pytest.fixture
def figure_pool(monkeypatch):
    """figure_pool with 2 workers and fresh state; the pool is shut down afterwards."""
    from synthequiv.reporting import figure_pool as FP

    monkeypatch.setenv(FP.WORKERS_ENV, "2")
    monkeypatch.setattr(FP, "_POOL", None)
    monkeypatch.setattr(FP, "_BROKEN", False)
    yield FP
    if FP._POOL is not None:
        FP._POOL.shutdown(wait=True, cancel_futures=True)


def test_figures_written_by_workers_equal_those_written_here(tmp_path, figure_pool, capsys):
    """Inside collect() the renders go to the pool and the block ends once the files are
    there; the PNG bytes equal those of the figure written in this process."""
    from synthequiv.reporting import figures

    for i in range(3):
        figures._save(_figure(f"panel {i}"), tmp_path / f"here{i}.png")
    figure_pool.prestart()
    assert "figures: drawn by 2 worker processes" in capsys.readouterr().out
    with figure_pool.collect():
        for i in range(3):
            assert figures._save(_figure(f"panel {i}"), tmp_path / f"pool{i}.png") == \
                tmp_path / f"pool{i}.png"
        assert len(figure_pool._COLLECTING[-1]) == 3  # handed to the workers, not drawn here
    assert figure_pool._POOL is not None
    odd = _figure("lambda ticks")  # a figure pickle refuses is written here, at once
    from matplotlib.ticker import FuncFormatter

    odd.axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.1f}!"))
    with figure_pool.collect():
        figures._save(odd, tmp_path / "odd.png")
        assert figure_pool._COLLECTING[-1] == [] and (tmp_path / "odd.png").is_file()
    for i in range(3):
        assert (tmp_path / f"pool{i}.png").read_bytes() == (tmp_path / f"here{i}.png").read_bytes()
        assert (tmp_path / f"pool{i}.svg").stat().st_size > 1000
    assert not list(tmp_path.glob(".sqtmp-*"))


def test_a_figure_failing_in_a_worker_fails_the_block_and_a_dead_worker_is_survived(
        tmp_path, figure_pool):
    from synthequiv.reporting import figures

    with figure_pool.collect():  # no pool started (e.g. `synthequiv report`): drawn here
        figures._save(_figure("plain"), tmp_path / "plain.png")
        assert figure_pool._COLLECTING[-1] == [] and figure_pool._POOL is None
    figure_pool.prestart()
    bad = _figure("ok")
    bad.axes[0].set_xlabel(r"$\frac{$")  # mathtext that fails when drawn, in the worker
    with pytest.raises(ValueError), figure_pool.collect():
        figures._save(_figure("fine"), tmp_path / "fine.png")
        figures._save(bad, tmp_path / "bad.png")
    assert (tmp_path / "fine.png").is_file() and not (tmp_path / "bad.png").exists()
    assert not list(tmp_path.glob(".sqtmp-*"))  # nothing half-written left behind
    # a worker killed mid-figure (here: by unpickling the figure): the figure is drawn here
    # instead, and later figures are drawn here without a pool
    with figure_pool.collect():
        figures._save(_figure("killer", bomb=True), tmp_path / "killer.png")
    assert (tmp_path / "killer.png").is_file() and figure_pool._BROKEN
    with figure_pool.collect():
        figures._save(_figure("after"), tmp_path / "after.png")
        assert figure_pool._COLLECTING[-1] == []  # written at once, in this process
    assert (tmp_path / "after.png").is_file()


def _gone_within(pid: int, seconds: float) -> bool:
    """The process has exited (reaped, or a zombie) within `seconds`."""
    import os
    import time
    from pathlib import Path

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        status = Path(f"/proc/{pid}/status")
        if status.exists() and "State:\tZ" in status.read_text():
            return True
        time.sleep(0.1)
    return False


def test_an_error_or_a_ctrl_c_in_a_collect_block_leaves_nothing_running(tmp_path, figure_pool):
    """An error inside the block: figures already with a worker are finished before it goes
    on, the rest cancelled, and no file appears afterwards. A Ctrl-C goes on at once: the
    pool is given up, its workers leave after the figure in hand."""
    import time

    from synthequiv.reporting import figures

    figure_pool.prestart()
    with pytest.raises(RuntimeError, match="stage failed"), figure_pool.collect():
        for i in range(6):
            figures._save(_figure(f"f{i}"), tmp_path / f"f{i}.png")
        raise RuntimeError("stage failed")
    after = sorted(p.name for p in tmp_path.iterdir())
    time.sleep(2)
    assert sorted(p.name for p in tmp_path.iterdir()) == after  # nothing written later
    assert not any(n.startswith(".sqtmp-") for n in after)
    procs = list(figure_pool._POOL._processes.values())
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt), figure_pool.collect():
        for i in range(6):
            figures._save(_figure(f"k{i}"), tmp_path / f"k{i}.png")
        raise KeyboardInterrupt
    assert time.perf_counter() - t0 < 5 and figure_pool._POOL is None and figure_pool._BROKEN
    for pid in [proc.pid for proc in procs]:  # (the executor's thread reaps them itself)
        assert _gone_within(pid, 10), f"figure worker {pid} still running"


def test_figure_workers_setting(monkeypatch):
    from synthequiv.runtime import cpu as FP  # the worker-count policy lives there
    from synthequiv.utils import SynthequivError

    monkeypatch.setattr(FP.os, "sched_getaffinity", lambda pid: set(range(2)))
    monkeypatch.delenv(FP.WORKERS_ENV, raising=False)
    assert FP.figure_workers() == 0  # 2 cores: figures drawn in the study's process
    monkeypatch.setattr(FP.os, "sched_getaffinity", lambda pid: set(range(16)))
    assert FP.figure_workers() == 4
    monkeypatch.setenv(FP.WORKERS_ENV, "0")
    assert FP.figure_workers() == 0
    monkeypatch.setenv(FP.WORKERS_ENV, "many")
    with pytest.raises(SynthequivError, match="SYNTHEQUIV_FIGURE_WORKERS must be auto or"):
        FP.figure_workers()
    with pytest.raises(SynthequivError, match="SYNTHEQUIV_FIGURE_WORKERS"):  # before any work
        C.validate(C.resolve("quick", None, []))


@pytest.mark.parametrize("after_s,how", [(0.0, "ctrl-c"), (0.6, "ctrl-c"), (3.0, "ctrl-c"),
                                         (3.0, "kill")])  # workers starting, importing, idle
def test_ctrl_c_stops_the_figure_workers_quietly(tmp_path, after_s, how):
    """A Ctrl-C reaches the study's whole process group: its figure workers leave with the
    study, at once and without a traceback each, whenever it comes. A study killed outright
    (SIGKILL) takes its workers with it too."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    script = tmp_path / "study.py"
    script.write_text("import time\nfrom synthequiv.reporting import figure_pool\n"
                      "if __name__ == '__main__':\n    figure_pool.prestart()\n"
                      "    print(len(figure_pool._POOL._processes) if figure_pool._POOL else 0,"
                      " flush=True)\n    time.sleep(60)\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "SYNTHEQUIV_FIGURE_WORKERS": "2",
           "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, text=True)
    assert "figures: drawn by 2 worker processes" in p.stdout.readline()  # the log line
    assert p.stdout.readline().strip() == "2"  # two workers spawned
    time.sleep(after_s)
    if how == "kill":
        p.kill()  # the study's process only: its workers must notice by themselves
    else:
        os.killpg(p.pid, signal.SIGINT)
    # the exit waits for the workers' warm-up imports in hand (seconds; tens of seconds on a
    # loaded 2-vCPU machine, where 30 s ran out once)
    _, err = p.communicate(timeout=120)
    if how == "ctrl-c":
        assert err.count("Traceback") == 1 and "KeyboardInterrupt" in err, err  # its own
    for _ in range(60):  # a worker still starting leaves when its pipe closes
        time.sleep(0.5)
        try:
            os.killpg(p.pid, 0)
        except ProcessLookupError:
            break  # nothing of the group is left
    else:
        os.killpg(p.pid, signal.SIGKILL)
        pytest.fail("figure workers outlived the study by 30 s")


def test_summary_json_tells_an_open_interval_end_from_a_number_not_estimable(tmp_path):
    """Issue 26, item 7: both were null. An open end is "inf", a NaN (not estimable) null."""
    import json

    from synthequiv.reporting.report import write_report

    rows = _rows({40: (0.92, 0.90, 0.91), 160: (0.91, 0.92, 0.90)})
    cfg = C.resolve("quick", None, ["splits.base_per_class=[10]", "grid.arms=[real,closed]"])
    equivalence = eq.analyse(rows, eq.EquivalenceConfig())
    i, p = next((i, p) for i, p in enumerate(equivalence["arms"]["closed"]["points"])
                if p["rate_hi"] == float("inf"))
    assert p["n_real_eq_lo"] == 0.0 and p["rate"] != p["rate"]  # open end; NaN rate
    write_report(cfg, tmp_path, rows, equivalence, None)
    stored = json.loads((tmp_path / "summary.json").read_text())
    q = stored["equivalence"]["arms"]["closed"]["points"][i]
    assert q["rate_hi"] == "inf" and q["n_real_eq_lo"] == 0.0 and q["rate"] is None
