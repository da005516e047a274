"""Experiment tracking: mirror a finished run directory into an MLflow store.

    synthequiv study --track mlflow                      # store: runs/<name>/mlruns
    synthequiv study --track mlflow --tracking-uri sqlite:////data/mlflow.db
    synthequiv report runs/quick --track mlflow          # an existing run, after the fact

One MLflow run per synthequiv run directory (experiment "synthequiv", run name = the study's
name), made from the run's own files, so the study and `report --track` log the same thing:
  params     the resolved config (config.yaml) flattened to dotted keys (`generator.lr`)
  metrics    stage timings (`time_s/<stage>`, summary.json run.timings), the headline numbers of
             summary.json (`n_cells`, each arm's measured and fitted exchange rates and fit
             coefficients) and each cell's mean accuracy
  tags       the headline sentence, synthequiv version, the run directory
  artifacts  report.html, report.md, summary.json, config.yaml, figures/ (under `report/`)
Tracking a directory again replaces its MLflow run (the older one is marked deleted).

The default store is a SQLite database with its artifacts under runs/<name>/mlruns: MLflow 3
refuses its older plain-file store ("./mlruns") unless MLFLOW_ALLOW_FILE_STORE is set.
The extra `synthequiv[mlflow]` installs mlflow-skinny (the tracking client, ~13 MB of new
wheels here) plus SQLAlchemy and Alembic for the SQLite store, not the full `mlflow` (~87 MB of
new wheels: its server, UI and pyarrow); `pip install mlflow` adds the UI for the same store.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from synthequiv.runtime.runlog import info
from synthequiv.utils import SynthequivError

TRACKERS = ("mlflow",)
EXPERIMENT = "synthequiv"
STORE_DIR = "mlruns"  # under the run directory: mlflow.db + artifacts/
REPORT_FILES = ("report.html", "report.md", "summary.json", "config.yaml")
RUN_DIR_TAG = "synthequiv.run_dir"
MAX_PARAM_CHARS = 6000  # MLflow's limit on a param value
MAX_TAG_CHARS = 5000


def check_tracker(kind: str | None) -> None:
    """Before any work: a known tracker whose library is installed (one error line if not)."""
    if kind is None:
        return
    if kind not in TRACKERS:
        raise SynthequivError(f"unknown tracker '{kind}' (use {', '.join(TRACKERS)})")
    _mlflow()


def _mlflow():
    try:  # optional extra: only `--track mlflow` needs it
        import mlflow
    except ImportError:
        raise SynthequivError("--track mlflow needs MLflow: pip install 'synthequiv[mlflow]'") \
            from None
    return mlflow


def default_uri(run_dir: Path) -> str:
    """The store used when no URI is given: $MLFLOW_TRACKING_URI, else run_dir/mlruns."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return "sqlite:///" + str((Path(run_dir) / STORE_DIR / "mlflow.db").resolve())


def track_run(run_dir: Path, kind: str = "mlflow", uri: str | None = None) -> dict:
    """Mirror run_dir into the tracker; returns {"uri", "run_id", "experiment_id"}."""
    check_tracker(kind)
    run_dir = Path(run_dir)
    summary = _read_json(run_dir / "summary.json")
    uri = uri or default_uri(run_dir)
    client, experiment_id = _open_store(uri, run_dir)
    try:
        out = _log_run(client, experiment_id, uri, run_dir, summary)
    except Exception as exc:  # MlflowException, OSError: one line, the run's files stay
        raise SynthequivError(f"tracking in {uri} failed: {_first_line(exc)} (the run's files "
                              f"are complete; `synthequiv report {run_dir} --track {kind}` "
                              "retries)") from None
    info(f"tracked in MLflow: {uri}, experiment '{EXPERIMENT}', run {out['run_id']}")
    return out


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SynthequivError(f"{path.parent} has no readable summary.json ({exc}); "
                              "only a finished study can be tracked") from None


def _open_store(uri: str, run_dir: Path):
    """(client, experiment id): the store is created on first use (SQLite tables; artifacts
    in `artifacts/` beside a SQLite database, not MLflow's default ./mlruns of the working
    directory)."""
    import logging

    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # table-creation notices
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    try:
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is not None:
            return client, exp.experiment_id
        where = (db.parent / "artifacts").resolve().as_uri() if db is not None else None
        return client, client.create_experiment(EXPERIMENT, artifact_location=where)
    except Exception as exc:  # a bad URI, a refused file store, an unreachable server
        raise SynthequivError(f"cannot open the MLflow store {uri}: {_first_line(exc)}") \
            from None


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a sqlite:///PATH URI (absolute with four slashes), else None."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri.removeprefix("sqlite:///")).expanduser()


def _log_run(client, experiment_id: str, uri: str, run_dir: Path, summary: dict) -> dict:
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    where = str(run_dir.resolve())
    for old in client.search_runs([experiment_id], f"tags.`{RUN_DIR_TAG}` = '{where}'"):
        client.delete_run(old.info.run_id)  # one MLflow run per run directory
    name = str(summary.get("name") or run_dir.name)
    tags = {MLFLOW_RUN_NAME: name, RUN_DIR_TAG: where,
            "synthequiv.version": str(summary.get("version", "")),
            "synthequiv.headline": str(summary.get("headline", ""))[:MAX_TAG_CHARS]}
    run = client.create_run(experiment_id, tags=tags, run_name=name)
    rid = run.info.run_id
    params = [Param(k, v) for k, v in flat_params(summary.get("config", {})).items()]
    metrics = [Metric(k, v, 0, 0) for k, v in run_metrics(summary).items()]
    for i in range(0, len(params), 100):  # MLflow takes ≤ 100 params per batch
        client.log_batch(rid, params=params[i:i + 100])
    for i in range(0, len(metrics), 1000):
        client.log_batch(rid, metrics=metrics[i:i + 1000])
    client.log_batch(rid, tags=[RunTag(k, v) for k, v in tags.items()])
    for f in REPORT_FILES:
        if (run_dir / f).is_file():
            client.log_artifact(rid, str(run_dir / f), "report")
    if (run_dir / "figures").is_dir():
        client.log_artifacts(rid, str(run_dir / "figures"), "report/figures")
    client.set_terminated(rid)
    return {"uri": uri, "run_id": rid, "experiment_id": experiment_id}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]


# ----------------------------------------------------------------------------- what is logged
def flat_params(config: dict, prefix: str = "") -> dict[str, str]:
    """{"generator.lr": "0.004", "grid.seeds": "[0, 1]", ...}: nested sections become dotted
    keys, lists JSON, every value a string of at most MLflow's length."""
    out: dict[str, str] = {}
    for k, v in config.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flat_params(v, key + "."))
        else:
            text = v if isinstance(v, str) else json.dumps(v)
            out[key] = text[:MAX_PARAM_CHARS]
    return out


def run_metrics(summary: dict) -> dict[str, float]:
    """Stage timings, headline numbers and cell accuracies of summary.json, finite ones only."""
    out: dict[str, Any] = {"n_cells": summary.get("n_cells")}
    for stage, s in (summary.get("run") or {}).get("timings", {}).items():
        out[f"time_s/{stage.removesuffix('_s')}"] = s
    for arm, eq in (summary.get("equivalence") or {}).get("arms", {}).items():
        out |= _arm_metrics(arm, eq)
    for c in summary.get("accuracy") or []:
        key = f"accuracy/n{c.get('n_base')}/{c.get('arm')}/add{c.get('n_add')}"
        out[key] = c.get("mean")
    return {k: float(v) for k, v in out.items() if _finite(v)}


def _arm_metrics(arm: str, eq: dict) -> dict[str, Any]:
    """A generative arm's numbers: measured exchange rates (synthetic images per real image,
    read off the real curve, one per synthetic cell) and the model-based ones (the paper
    formula's coefficients and fitted rates, the effective-data r)."""
    out: dict[str, Any] = {}
    for p in eq.get("points") or []:
        cell = f"n{p.get('n_base')}/add{p.get('n_syn')}"
        out[f"{arm}/measured_rate/{cell}"] = p.get("rate")
        out[f"{arm}/real_equivalent/{cell}"] = p.get("n_real_eq")
    fit = eq.get("fit") or {}
    for name in ("c1", "c2", "ln_c1_over_k", "residual_rmse", "n_points"):
        out[f"{arm}/fit/{name}"] = fit.get(name)
    for e in eq.get("exchange") or []:
        out[f"{arm}/fitted_rate/n{e.get('n_base')}/frac{e.get('frac')}"] = e.get("rate")
    out[f"{arm}/effective_data/r"] = (eq.get("effective_data") or {}).get("r")
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
