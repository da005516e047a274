"""Wall time of a whole study (default: `make study`'s `quick` preset), split by stage.

    .venv/bin/python benchmarks/study.py                  # quick preset, fresh temp run dir
    .venv/bin/python benchmarks/study.py --preset mnist --set grid.seeds=[0]

Prints each stage's seconds and share, the mean seconds per classifier cell and per generator,
and the target (≤ 600 s on 2 CPU cores for `quick`) as a ratio.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

from synthequiv import config as C
from synthequiv.orchestration.study import run_study


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--target-s", type=float, default=600.0)
    args = ap.parse_args()
    cfg = C.resolve(args.preset, None, args.overrides)
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / cfg.name
        t0 = time.time()
        out = run_study(cfg, run_dir, progress=False)
        total = time.time() - t0
        with sqlite3.connect(run_dir / "results.sqlite") as db:
            n_cells, cell_s = db.execute("SELECT COUNT(*), AVG(wall_s) FROM cells").fetchone()
        n_gen = len(list(run_dir.glob("generators/*/checkpoint.pt")))
    print(f"study '{cfg.name}' ({cfg.data.source}), device {cfg.device}, executor {cfg.executor}")
    print(f"{'stage':32s} {'seconds':>9s} {'share':>7s}")
    for stage, s in out["timings"].items():
        print(f"{stage:32s} {s:9.1f} {100 * s / total:6.1f}%")
    print(f"{'total (incl. data loading)':32s} {total:9.1f}")
    print(f"classifier cells: {n_cells}, mean {cell_s:.2f} s/cell; generators trained: {n_gen}")
    print(f"target {args.target_s:.0f} s → total/target = {total / args.target_s:.2f}")
    print(f"headline: {out['headline']}")


if __name__ == "__main__":
    main()
