"""Coverage, power and informativeness of the report's intervals: per-cell t vs moderated.

    python benchmarks/coverage.py [--studies 500] [--seed 0] [--run RUN_DIR] [--replicates 3]
                                  [--seeds 2] [--base-seeds 6] [--only DESIGN] [--json OUT]
                                  [--bases 10,20 --real-add 5,10,20,40]

Simulates studies of the quick design with a known truth (synthequiv/stats/simulate.py: real
curve of the digits calibration, a synthetic image worth 1/20 (closed) and 1/8 (open) of a real
one, as in issue 26's independent simulator) and analyses each one with both variance methods
(equivalence.variance: per_cell and moderated). Noise components: estimated from a real run's
results with power.variance_components (--run; default: simulate.QUICK_NOISE, measured so). Prints
one row per design and method: coverage of the gain and of the exchange rate (all intervals,
and among those finite at both ends), the share of rate intervals finite at both ends, power
(Holm-significant) for the cells whose true gain is +1.5 to +2.5 pts, and the share of
synthetic cells called significant (under "null", synthetic data worth nothing, that is the
false-positive rate per cell).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sqlite3
import time
from pathlib import Path

from synthequiv.stats.config import GridConfig
from synthequiv.stats.power import VarianceComponents, variance_components
from synthequiv.stats.simulate import (
    QUICK_NOISE,
    QUICK_NOISE_1020,
    QUICK_NOISE_SOURCE,
    QUICK_TRUTH,
    Design,
    Truth,
    coverage,
    quick_designs,
)


def run_components(run_dir: Path) -> VarianceComponents:
    """Variance components of a run directory's results table (its current config's cells)."""
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        db.row_factory = sqlite3.Row
        rows = [dict(r) for r in db.execute("SELECT * FROM cells")]
    return variance_components(rows)


COLUMNS = (("gain", "gain cov"), ("n_real_eq", "rate cov"), ("n_real_eq_finite", "cov|finite"),
           ("finite", "finite"), ("power", "power@2pt"), ("significant", "sig. share"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--replicates", type=int, default=Design.replicates)
    ap.add_argument("--seeds", type=int, default=Design.seeds, help="classifier seeds (the "
                    "quick study's)")
    ap.add_argument("--base-seeds", type=int, default=None, help="the baseline cells' seeds "
                    "(default: the quick study's, grid.base_seed_factor × --seeds)")
    ap.add_argument("--only", default=None, help="run only this design (e.g. default)")
    ap.add_argument("--bases", default=None, help="base sizes instead of the quick study's, "
                    "e.g. 10,20 (the quick design before 2026-12-06)")
    ap.add_argument("--real-add", default=None, help="real amounts, e.g. 5,10,20,40")
    ap.add_argument("--previous", action="store_true", help="the quick design before "
                    "2026-12-06 at its own measured noise: --bases 10,20 --real-add 5,10,20,40, 2 seeds")
    ap.add_argument("--run", type=Path, default=None, help="run directory to take noise from")
    ap.add_argument("--json", type=Path, default=None, help="also write the table here")
    args = ap.parse_args()
    if args.previous:
        args.bases, args.real_add = args.bases or "10,20", args.real_add or "5,10,20,40"
        args.seeds, args.base_seeds = 2, 2
    if args.base_seeds is None:
        args.base_seeds = args.seeds * GridConfig().base_seed_factor
    vc = run_components(args.run) if args.run else QUICK_NOISE_1020 if args.previous \
        else QUICK_NOISE
    print(f"noise (sd, accuracy): {dataclasses.asdict(vc)} — "
          f"{args.run or ('4-replicate run of it' if args.previous else QUICK_NOISE_SOURCE)}; gain sd "
          f"{vc.gain_sd(args.seeds, base_seeds=args.base_seeds):.4f}; design "
          f"{args.replicates} replicates × {args.seeds} seeds ({args.base_seeds} for the "
          f"baseline), bases "
          f"{args.bases or 'quick'}, real amounts {args.real_add or 'quick'}, "
          f"{args.studies} studies")
    print(f"{'design':<20} {'method':<10}" + "".join(f" {h:>10}" for _, h in COLUMNS) + "      s")
    table = {}
    amounts = {k: tuple(int(x) for x in v.split(",")) for k, v in
               (("bases", args.bases), ("real_add", args.real_add)) if v}
    runs = [(n, QUICK_TRUTH, d)
            for n, d in quick_designs(vc, args.replicates, args.seeds, args.base_seeds,
                                                 **amounts).items()]
    runs.append(("null (worth 0)", Truth(worth=(("closed", 0.0), ("open", 0.0))),
                 runs[0][2]))
    runs = [r for r in runs if args.only in (None, r[0])]
    for name, truth, design in runs:
        t0 = time.time()
        res = coverage(truth, design, studies=args.studies, seed=args.seed,
                       variances=("per_cell", "moderated"))
        for method, r in res.items():
            print(f"{name:<20} {method:<10}" + "".join(f" {r[k]:>10.3f}" for k, _ in COLUMNS)
                  + f" {time.time() - t0:>6.1f}")
        table[name] = res
    if args.json:
        args.json.write_text(json.dumps({"components": dataclasses.asdict(vc), "table": table},
                                        indent=1))


if __name__ == "__main__":
    main()
