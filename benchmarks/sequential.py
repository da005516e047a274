"""Coverage of the intervals when `grid.replicates: auto` decides when to stop.

    python benchmarks/sequential.py [--studies 500] [--seed 0] [--max-replicates 20]
                                    [--noise quick]

Simulated studies with a known truth (synthequiv/stats/simulate.py, closed and open arms; the
quick design: bases 5 and 10, real +2/+5/+15/+40, synthetic +40/+160, 2 seeds (6 for the
baseline), the simulator's default noise) run with the stopping rule (stats/sequential.py's auto_status, as a study runs
it: min 3 replicates, one more until the first two thirds of n replicates predict the target
met with n, or the cap), no budget. For each target and design it prints the coverage of the nominal-95 %
gain and n_real_eq intervals at the replicate the rule stopped at, beside the same studies
stopped at a fixed count (the mean stopping point, rounded), the stopping points (mean; 10th,
50th, 90th percentile), the share that met the target before the cap, and, of those, the
widest interval at the stop over the target (median, 90th percentile; the last third of the
replicates does not decide, so it may widen them). README quotes it.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from synthequiv.stats.config import parse_target
from synthequiv.stats.sequential import sequential_coverage
from synthequiv.stats.simulate import QUICK_NOISE, Design, Truth, quick_designs

# the gain targets on the simulator's default truth (the paper's formula); the rate target on
# issue 26's independent check (a synthetic image worth 1/20 of a real one closed, 1/8 open), where
# every arm and base size has a finite rate (an arm without one never meets a rate target)
ISSUE_TRUTH = Truth(worth=(("closed", 1 / 20), ("open", 1 / 8)))
TARGETS = (("gain_halfwidth=1.0", Truth()), ("gain_halfwidth=0.5", Truth()),
           ("rate_halfwidth=1.0", ISSUE_TRUTH))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--studies", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-replicates", type=int, default=20)
    ap.add_argument("--variance", default="moderated", choices=("moderated", "per_cell"))
    ap.add_argument("--noise", default="default", choices=("default", "quick"),
                    help="quick: the quick study's measured noise (simulate.QUICK_NOISE), its "
                         "default and heteroscedastic designs, and the README command's "
                         "gain_halfwidth=1.5 target too")
    args = ap.parse_args()
    targets = TARGETS
    if args.noise == "quick":
        quick = quick_designs(QUICK_NOISE)
        designs = {name: quick[name] for name in ("default", "heteroscedastic ×3")}
        targets = (("gain_halfwidth=1.5", Truth()), *TARGETS)
    else:
        d = Design(arms=("closed", "open"))
        designs = {"default": d, "generator sd ×3": dataclasses.replace(d, sd_gen=3 * d.sd_gen),
                   "heteroscedastic ×3": dataclasses.replace(d, hetero=3.0)}
    print(f"variance: {args.variance}; {args.studies} studies each; min 3, max "
          f"{args.max_replicates} replicates")
    print(f"{'target':<20} {'design':<20} {'gain cov':>9} {'n_eq cov':>9} {'fixed R':>8} "
          f"{'fixed gain':>11} {'fixed n_eq':>11} {'mean R':>7} {'R 10/50/90':>11} "
          f"{'met':>5} {'widest/target':>13} {'s':>6}")
    for text, truth in targets:
        for name, design in designs.items():
            t0 = time.time()
            c = sequential_coverage(truth, design, parse_target(text), 3,
                                    args.max_replicates, args.studies,
                                    variance=args.variance, seed=args.seed)
            q = "/".join(map(str, c["replicates_quantiles"]))
            w = "/".join(f"{v:.2f}" for v in c["widest_over_target"])
            print(f"{text:<20} {name:<20} {c['coverage_gain']:>9.3f} "
                  f"{c['coverage_n_real_eq']:>9.3f} {c['fixed_replicates']:>8} "
                  f"{c['fixed_coverage_gain']:>11.3f} {c['fixed_coverage_n_real_eq']:>11.3f} "
                  f"{c['mean_replicates']:>7.2f} {q:>11} {c['share_target_met']:>5.2f} {w:>13} "
                  f"{time.time() - t0:>6.1f}", flush=True)


if __name__ == "__main__":
    main()
