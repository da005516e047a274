"""Wall time of a whole study (default: `make study`'s `quick` preset), split by stage.

    .venv/bin/python benchmarks/study.py                  # quick preset, fresh temp run dir
    .venv/bin/python benchmarks/study.py --preset mnist --set grid.seeds=[0]
    python3 benchmarks/study.py --set device=cuda --profile /tmp/quick.prof   # where time goes

Prints each stage's seconds and share, the mean seconds per classifier cell and per generator,
and the target (≤ 600 s on 2 CPU cores for `quick`) as a ratio. `--profile FILE` also prints the
seconds of this process's imports and of the device's first use (CUDA context) and runs the
study under cProfile: FILE gets the stats (`python -m pstats FILE`), the top functions by
cumulative and by own time are printed.
"""

from __future__ import annotations

import time

T_START = time.time()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import pstats  # noqa: E402
import sqlite3  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from synthequiv import config as C  # noqa: E402
from synthequiv.orchestration.study import run_study  # noqa: E402

T_IMPORTS = time.time() - T_START


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", action="append", default=[], dest="overrides")
    ap.add_argument("--target-s", type=float, default=600.0)
    ap.add_argument("--profile", type=Path, default=None, help="cProfile stats file")
    args = ap.parse_args()
    cfg = C.resolve(args.preset, None, args.overrides)
    prof = None
    if args.profile:
        import torch

        from synthequiv.utils import resolve_device

        t0 = time.time()
        device = resolve_device(cfg.device)
        torch.zeros(1, device=device).sum().item()
        print(f"imports {T_IMPORTS:.1f} s (study module and its imports); first use of "
              f"{device}: {time.time() - t0:.1f} s")
        prof = cProfile.Profile()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / cfg.name
        t0 = time.time()
        if prof is not None:
            prof.enable()
        try:
            out = run_study(cfg, run_dir, progress=False)
        finally:
            if prof is not None:
                prof.disable()
                prof.dump_stats(args.profile)
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
    if prof is not None:
        for key in ("cumulative", "tottime"):
            print(f"--- top 35 by {key} (cProfile; {args.profile})")
            pstats.Stats(str(args.profile)).strip_dirs().sort_stats(key).print_stats(35)


if __name__ == "__main__":
    main()
