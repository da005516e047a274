"""MLflow tracking (reporting/tracking.py) with the real library on a tiny study: what the
store holds is read back through MLflow's own client."""

from __future__ import annotations

import json
import sys

import pytest

from synthequiv.orchestration.study import run_study
from synthequiv.reporting.tracking import EXPERIMENT, check_tracker, flat_params, run_metrics
from synthequiv.utils import SynthequivError
from test_study import tiny_cfg

mlflow = pytest.importorskip("mlflow", reason="the [mlflow] extra (in [dev]) is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402


def store_uri(path) -> str:
    return f"sqlite:///{path}"


def only_run(uri: str):
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([exp.experiment_id])  # active runs only
    assert len(runs) == 1, [r.info.run_id for r in runs]
    return client, runs[0]


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny study run with --track mlflow into its default store (RUN_DIR/mlruns)."""
    run_dir = tmp_path_factory.mktemp("runs") / "tiny"
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        run_study(tiny_cfg(), run_dir, progress=False, track="mlflow")
    return run_dir


@pytest.mark.slow  # a tracked study (~35 s); the default suite keeps the fail-fast checks
def test_study_mirrors_params_metrics_and_report(tracked):
    run_dir = tracked
    db = run_dir / "mlruns" / "mlflow.db"
    assert db.is_file()
    client, run = only_run(store_uri(db))
    summary = json.loads((run_dir / "summary.json").read_text())
    params = run.data.params
    assert params["generator.train_kimg"] == "2.0"
    assert json.loads(params["grid.seeds"]) == [0, 1]
    assert params == flat_params(summary["config"])
    metrics = run.data.metrics
    # test_study's tiny design: 2 × 2 × (6 cells × 2 seeds + the baseline × 6 seeds)
    assert metrics["n_cells"] == summary["n_cells"] == 72
    for stage, seconds in summary["run"]["timings"].items():
        assert metrics[f"time_s/{stage.removesuffix('_s')}"] == pytest.approx(seconds)
    base = next(c for c in summary["accuracy"] if c["arm"] == "real" and c["n_add"] == 0)
    assert metrics[f"accuracy/n{base['n_base']}/real/add0"] == pytest.approx(base["mean"])
    assert any(k.startswith("closed/") for k in metrics)
    assert run.data.tags["synthequiv.headline"] == summary["headline"][:5000]
    assert run.info.run_name == summary["name"] and run.info.status == "FINISHED"
    names = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert {f"report/{f}" for f in ("report.html", "report.md", "summary.json",
                                    "config.yaml")} <= names
    figures = {a.path.rsplit("/", 1)[1]
               for a in client.list_artifacts(run.info.run_id, "report/figures")}
    assert figures == {p.name for p in (run_dir / "figures").iterdir()} and figures
    # artifacts live beside the database, inside the run directory
    assert (run_dir / "mlruns" / "artifacts").is_dir()


@pytest.mark.slow  # a tracked study (~35 s); the default suite keeps the fail-fast checks
def test_report_track_replaces_the_run_of_that_directory(tracked, cli, tmp_path, monkeypatch):
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)  # MLflow's default artifact root would be ./mlruns here
    uri = store_uri(tmp_path / "store" / "other.db")
    for _ in range(2):
        code, out, err = cli("report", tracked, "--track", "mlflow", "--tracking-uri", uri)
        assert code == 0, err
    client, run = only_run(uri)  # the first one is marked deleted, not listed
    assert run.data.tags["synthequiv.run_dir"] == str(tracked.resolve())
    assert "tracked in MLflow" in out and run.info.run_id in out
    # the artifacts sit beside the given database, not in the working directory
    assert (tmp_path / "store" / "artifacts").is_dir()
    assert not (work / "mlruns").exists()


@pytest.mark.slow  # a tracked study (~35 s); the default suite keeps the fail-fast checks
def test_unknown_tracker_is_one_error_line(tracked, cli):
    code, out, err = cli("report", tracked, "--track", "wandb")
    assert code == 2 and "error: unknown tracker 'wandb' (use mlflow)" in err


def test_missing_mlflow_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow → ImportError
    with pytest.raises(SynthequivError, match=r"pip install 'synthequiv\[mlflow\]'"):
        check_tracker("mlflow")
    with pytest.raises(SynthequivError, match="needs MLflow"):
        run_study(tiny_cfg(), tmp_path / "never", progress=False, track="mlflow")
    assert not (tmp_path / "never").exists()


def test_run_metrics_keep_finite_numbers_only():
    summary = {"n_cells": 4, "run": {"timings": {"generators_s": 1.5}},
               "accuracy": [{"n_base": 5, "arm": "real", "n_add": 0, "mean": float("nan")}],
               "equivalence": {"arms": {"closed": {"points": [
                   {"n_base": 5, "n_syn": 20, "rate": 4.0, "n_real_eq": 5.0}],
                   "fit": {"c1": float("inf"), "c2": 1.2}}}}}
    assert run_metrics(summary) == {"n_cells": 4.0, "time_s/generators": 1.5,
                                    "closed/measured_rate/n5/add20": 4.0,
                                    "closed/real_equivalent/n5/add20": 5.0,
                                    "closed/fit/c2": 1.2}
