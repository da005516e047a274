"""From files alone: rebuild a run's report, fit results from any pipeline, export results.

None of these trains, loads data or takes the run lock: results.sqlite is opened read-only,
so they work on a finished run, a partial one, and one whose study is still running.

Results CSV (`synthequiv fit`), one row per trained classifier:
  n_base    base (real) images per class the classifier was trained on
  arm       real | closed | open — or baseline (= real with n_add 0)
  n_add     images added per class (real for arm real, synthetic otherwise; 0 for the baseline)
  seed      classifier seed (each (n_base, arm, n_add[, replicate]) cell needs ≥ 2 for a CI)
  replicate optional: which base-set draw (default 0)
  accuracy  test accuracy in [0, 1] (another column with --metric)
"""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from synthequiv.rundir import current_rows, read_run_config, run_config_hash
from synthequiv.runtime.outputs import guard_output
from synthequiv.stats.config import ARMS, EquivalenceConfig, GridConfig
from synthequiv.utils import SynthequivError, atomic_path

REQUIRED = ("n_base", "arm", "n_add", "seed")
# baseline: True for the base-set-alone cells (stored as arm real, n_add 0)
EXPORT_FRONT = ("run", "dataset", "n_base", "arm", "n_add", "baseline", "replicate", "seed")


# ----------------------------------------------------------------------------- reading


def _previous_run_info(run_dir: Path) -> dict:
    try:
        old = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: old["run"][k] for k in ("timings", "environment", "stopping")
            if isinstance(old.get("run"), dict) and k in old["run"]}


def rebuild_run_report(run_dir: Path, cfg, config_hash: str) -> Path:
    """report.html/.md, summary.json and figures of run_dir from config.yaml, results.sqlite,
    analysis.json and the figures the study drew; rows of another config are left out."""
    import time

    from synthequiv.measures.analyses import read_analysis
    from synthequiv.reporting.report import write_report
    from synthequiv.stats.equivalence import analyse

    rows = current_rows(run_dir, config_hash)
    equivalence = analyse(rows, cfg.equivalence)
    # also when the study ran without analyses: `synthequiv analyze RUN` writes the file later
    analysis = read_analysis(run_dir)
    info = {**_previous_run_info(run_dir), "rebuilt_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    out = write_report(cfg, run_dir, rows, equivalence, analysis, None, None, run_info=info)
    return Path(out["report"])


# ----------------------------------------------------------------------------- fit


def _cell(row: dict, i: int, col: str, kind):
    try:
        return kind(row[col])
    except (TypeError, ValueError):
        raise SynthequivError(f"row {i}: column {col} must be {kind.__name__}, got "
                              f"{row[col]!r}") from None


def _one_run(path: Path, header: list[str], raw: list[dict], run: str | None) -> list[dict]:
    """The rows of one run of an `export` of several (its `run` column): each run is a study
    of its own, so their cells are never pooled."""
    if run is not None and "run" not in header:
        raise SynthequivError(f"--run {run}: {path} has no run column (it is not an export of "
                              "several runs)")
    if "run" not in header:
        return raw
    runs = sorted({r["run"] for r in raw})
    if run is None and len(runs) > 1:
        raise SynthequivError(f"{path} holds {len(runs)} runs ({', '.join(runs[:6])}"
                              f"{', …' if len(runs) > 6 else ''}): each is a study of its own; "
                              f"pass --run NAME to fit one (e.g. --run {runs[0]})")
    if run is not None and run not in runs:
        raise SynthequivError(f"--run {run}: not in {path} (its runs: {', '.join(runs[:6])})")
    return [r for r in raw if run is None or r["run"] == run]


def _is_variant(arm: str) -> bool:
    from synthequiv.generation.levers import is_variant  # lazy: the families load torch

    return is_variant(arm)


def read_results_csv(path: Path, metric: str = "accuracy", run: str | None = None) -> list[dict]:
    """Rows of a results CSV (module docstring), checked; arm baseline → real, n_add 0; of an
    export of several runs, the rows of `run`."""
    path = Path(path)
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            header, raw = reader.fieldnames or [], list(reader)
    except FileNotFoundError:
        raise SynthequivError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise SynthequivError(f"cannot read {path} as CSV: {exc}") from exc
    missing = [c for c in (*REQUIRED, metric) if c not in header]
    if missing:
        raise SynthequivError(f"{path}: missing column(s) {', '.join(missing)} (has: "
                              f"{', '.join(header) or 'none'}; needs n_base, arm, n_add, seed, "
                              f"{metric}, optional replicate)")
    raw = _one_run(path, header, raw, run)
    rows = []
    for i, r in enumerate(raw, start=2):  # line 1 is the header
        value = _cell(r, i, metric, float)
        if not 0.0 <= value <= 1.0:  # NaN fails too
            raise SynthequivError(
                f"{path} line {i}: {metric} {r[metric]!r} is not in [0, 1]: the report reads "
                "the metric as an accuracy-like fraction (percentages: divide by 100)")
        arm = str(r["arm"]).strip()
        if arm not in (*ARMS, "baseline") and not _is_variant(arm):
            raise SynthequivError(f"{path} line {i}: arm '{arm}' (use real, closed, open, "
                                  "baseline or a lever variant such as closed@cfg2+top0.5)")
        row = {"n_base": _cell(r, i, "n_base", int), "arm": "real" if arm == "baseline" else arm,
               "n_add": 0 if arm == "baseline" else _cell(r, i, "n_add", int),
               "seed": _cell(r, i, "seed", int), metric: value}
        if r.get("replicate") not in (None, ""):
            row["replicate"] = _cell(r, i, "replicate", int)
        rows.append(row)
    if not rows:
        raise SynthequivError(f"{path}: no rows")
    bases = sorted({r["n_base"] for r in rows})
    lacking = [b for b in bases if not any(r["n_base"] == b and r["arm"] == "real"
                                           and r["n_add"] == 0 for r in rows)]
    if lacking:  # every gain and equivalence is measured against that base size's baseline
        raise SynthequivError(
            f"{path}: base size(s) {', '.join(map(str, lacking))} have no baseline rows (arm "
            "baseline, or arm real with n_add 0): gains are measured against them")
    return rows


def fit_config(rows: list[dict], name: str, ci: float, k: float, variance: str = "moderated"):
    """A StudyConfig describing the grid the rows cover (for the report's wording)."""
    from synthequiv import config as C

    arms = tuple(a for a in ARMS if any(r["arm"] == a and r["n_add"] > 0 for r in rows))
    grid = dict(arms=arms or ("real",),
                real_add_per_class=tuple(sorted({r["n_add"] for r in rows
                                                 if r["arm"] == "real" and r["n_add"]})),
                syn_add_per_class=tuple(sorted({r["n_add"] for r in rows if r["arm"] != "real"})),
                seeds=tuple(sorted({r["seed"] for r in rows})),
                replicates=len({r.get("replicate", 0) for r in rows}))
    base = C.StudyConfig()
    return dataclasses.replace(
        base, name=name, data=dataclasses.replace(base.data, source=f"results file {name}"),
        splits=dataclasses.replace(base.splits,
                                   base_per_class=tuple(sorted({r["n_base"] for r in rows}))),
        grid=GridConfig(**grid), equivalence=EquivalenceConfig(k=k, ci=ci, variance=variance),
        analysis=dataclasses.replace(base.analysis, enabled=False))


def fit_results(csv_path: Path, out_dir: Path, metric: str = "accuracy", ci: float = 0.95,
                k: float = 1.0, force: bool = False, run: str | None = None,
                variance: str = "moderated") -> dict:
    """The equivalence statistics and report sections of a results CSV, written to out_dir
    (never inside a run directory; an earlier fit report there is replaced: "replaced");
    variance: EquivalenceConfig.variance."""
    from synthequiv.stats.config import EquivalenceConfig

    EquivalenceConfig(variance=variance)  # a bad name: one line, before anything is written
    replaced = guard_output(out_dir, "fit", force=force)
    rows = read_results_csv(csv_path, metric, run)  # a bad file: one line, before torch loads
    from synthequiv.reporting.report import write_report
    from synthequiv.stats.equivalence import analyse

    cfg = fit_config(rows, run or Path(csv_path).stem, ci, k, variance)
    equivalence = analyse(rows, cfg.equivalence, metric)
    out = write_report(cfg, Path(out_dir), rows, equivalence, None, None, None,
                       run_info={"source": str(csv_path)}, metric=metric)
    return {**out, "replaced": replaced}


# ----------------------------------------------------------------------------- export


def export_rows(run_dirs: list[Path]) -> list[dict]:
    """Every results row of every run's current config, with run (directory name) and
    dataset columns."""
    out = []
    for d in map(Path, run_dirs):
        cfg = read_run_config(d)  # refuses a directory without config.yaml
        for r in current_rows(d, run_config_hash(d, cfg)):
            out.append({"run": d.name, "dataset": cfg.data.source, **r,
                        "baseline": r["arm"] == "real" and r["n_add"] == 0})
    return out


def write_export(rows: list[dict], out: Path, fmt: str, force: bool = False) -> Path:
    if fmt not in ("csv", "parquet"):
        raise SynthequivError(f"unknown export format '{fmt}' (use csv or parquet)")
    guard_output(out, fmt, force=force)
    cols = list(EXPORT_FRONT) + sorted({k for r in rows for k in r} - set(EXPORT_FRONT))
    if fmt == "csv":
        with atomic_path(out) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=cols)
            w.writeheader()
            w.writerows(rows)
        return out
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SynthequivError("--format parquet needs pyarrow (pip install pyarrow); "
                              "--format csv needs nothing") from None
    table = pa.Table.from_pylist(rows, schema=None).select(cols) if rows else pa.table(
        {c: [] for c in cols})
    with atomic_path(out, suffix=".parquet") as tmp:
        pq.write_table(table, tmp)
    return out


# ----------------------------------------------------------------------------- plan's input


def read_source(source: Path, metric: str = "accuracy") -> tuple[list[dict], float, float]:
    """(rows, k, ci) of a run directory (config.yaml + results.sqlite, read-only: works while
    the study runs; only the current config's cells, `rundir.current_rows`) or of a results
    CSV (k 1, ci 0.95)."""
    source = Path(source)
    if source.is_dir():
        cfg = read_run_config(source)
        rows = current_rows(source, run_config_hash(source, cfg))
        if any(r.get(metric) is None for r in rows):
            raise SynthequivError(f"{source}: metric '{metric}' is missing from some results rows")
        return rows, cfg.equivalence.k, cfg.equivalence.ci
    if source.is_file():
        return read_results_csv(source, metric), 1.0, 0.95
    raise SynthequivError(f"{source} not found (give a run directory or a results CSV)")
