"""The tool around the study: logs when piped, dry-run plan, report rebuilt from files,
fit on a results CSV, export, datasets --json, generator commands with presets."""

from __future__ import annotations

import ast
import csv
import importlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from synthequiv.stats import equivalence as eq
from synthequiv.utils import to_jsonable
from test_equivalence import rows_known

SRC = Path(__file__).resolve().parents[1] / "src" / "synthequiv"
STAMP = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
# smallest study that has every stage: 1 base size, real + closed arms, 2 seeds (~10 s)
TINY = ["splits.base_per_class=[5]", "grid.seeds=[0,1]", "grid.arms=[real,closed]", "grid.replicates=1",
        "grid.real_add_per_class=[5]", "grid.syn_add_per_class=[5]", "generator.train_kimg=0.64",
        "generator.warmup_kimg=0.1", "sampling.steps=3", "classifier.train_steps=10",
        "equivalence.bootstrap=20", "analysis.enabled=false", "device=cpu", "cpu_threads=1",
        "grid.base_seed_factor=1"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A finished tiny study, run through the CLI with stdout captured (= not a terminal)."""
    import contextlib
    import io

    from synthequiv.cli import app

    runs = tmp_path_factory.mktemp("runs")
    args = ["study", "--name", "tiny", "--runs-dir", str(runs)]
    for s in TINY:
        args += ["--set", s]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        app(args, standalone_mode=False)
    return runs / "tiny", out.getvalue()


# ----------------------------------------------------------------------------- logs


def test_piped_study_prints_timestamped_plan_progress_and_stages(tiny_run):
    run_dir, stdout = tiny_run
    for text in (stdout, (run_dir / "log.txt").read_text()):
        lines = text.splitlines()
        for pattern in (r"plan: generators: 1 × 0.64 kimg", r"plan: classifier cells: 6 ",
                        r"plan: estimated cost on cpu", r"generator \d+\.\d\d/0\.64 kimg, loss ",
                        r"classifier grid 6/6: closed n=5\+5 s=1: acc",
                        r"stage classifier_grid: \d+\.\d s", r"run finished in",
                        r"sampling closed-n5-r0 (\d+)/\1 images \(elapsed ", r"stage generators: "):
            assert any(re.search(STAMP + ".*" + pattern, ln) for ln in lines), pattern
        assert "━" not in text  # no progress bar frames in a pipe or a log file
    events = [json.loads(ln)["event"] for ln in (run_dir / "metrics.jsonl").open()]
    assert events[0] == "start" and events[-1] == "end"
    assert {"plan", "generator", "progress", "stage"} <= set(events)
    run = json.loads((run_dir / "summary.json").read_text())["run"]
    assert set(run["timings"]) >= {"generators_s", "generators_and_sampling_s",
                                   "classifier_grid_s", "equivalence_s"}
    assert run["environment"]["device"] == "cpu" and run["environment"]["torch"]


def test_a_resumed_bar_counts_only_what_is_left(tmp_path, monkeypatch, capsys):
    """A resumed grid says how much was done before, and its eta comes from this run's rate
    only (not from the instantly skipped cells)."""
    from synthequiv.runtime import progress, runlog

    monkeypatch.setattr(runlog, "plain", lambda: True)
    now = [100.0]  # the bar starts at t=100; one cell takes 10 s
    monkeypatch.setattr(progress.time, "time", lambda: now[0])
    with progress.progress_bar("classifier grid", total=108, done=100) as bar:
        now[0] = 110.0
        bar.advance(1, "closed n=10+40 s=0: acc 0.812")
    out = capsys.readouterr().out
    assert "classifier grid: 8 to do (100 of 108 done before)" in out
    assert "classifier grid 101/108: closed n=10+40 s=0: acc 0.812 (elapsed 0:00:10, " \
        "eta 0:01:10)" in out  # 7 cells left at 10 s each; 100 done before would say 0:00:01


def test_dry_run_prints_the_plan_after_a_loadable_config(cli):
    code, out, err = cli("study", "--preset", "quick", "--dry-run")
    assert code == 0, err
    assert yaml.safe_load(out)["grid"]["seeds"] == [0, 1]  # the plan lines are comments
    plan = [ln for ln in out.splitlines() if ln.startswith("# plan: ")]
    assert any("generators: 9 × 25.6 kimg (3 replicate(s)" in ln for ln in plan)
    assert any("classifier cells: 132 (9 per base size × 2 seeds, the baseline × 6; × 3 "
               "replicate(s)" in ln for ln in plan)
    # B(10) + R(40) + ≥ 1 test image (splits.test_per_class: all; the rest are test images)
    assert any("needs 51 real images per class" in ln and "every class has enough" in ln
               for ln in plan)
    assert any("1297 images per replicate" in ln for ln in plan)
    assert any(re.search(r"estimated cost on (cpu|cuda) .*: \d", ln) for ln in plan)


# ----------------------------------------------------------------------------- report / export


def test_report_rebuild_trains_nothing_needs_no_data_and_ignores_the_lock(tiny_run, tmp_path,
                                                                          cli, monkeypatch):
    from synthequiv.classification import classifier
    from synthequiv.generation import distributed, generator, sampling, synthetic
    from synthequiv.inputs import data
    from synthequiv.runtime.lock import RunLock

    run_dir = tmp_path / "copy"
    shutil.copytree(tiny_run[0], run_dir)
    before = json.loads((run_dir / "summary.json").read_text())
    (run_dir / "report.html").unlink()
    calls = []
    for mod, name in [(classifier, "train_classifier"), (generator, "train_generator"),
                      (distributed, "train_distributed"), (data, "load_dataset"),
                      (synthetic, "prepare_synthetic"), (sampling, "sample_images")]:
        monkeypatch.setattr(mod, name, lambda *a, _n=name, **k: calls.append(_n))
    with RunLock(run_dir):  # as if the study were still running
        code, out, err = cli("report", run_dir)
    assert code == 0, err
    assert calls == []
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["headline"] == before["headline"] and after["n_cells"] == before["n_cells"] == 6
    assert after["run"]["timings"] == before["run"]["timings"]
    assert (run_dir / "report.html").is_file() and "samples_n5" in after["figures"]


def test_html_report_is_self_contained(tiny_run):
    page = (tiny_run[0] / "report.html").read_text()
    srcs = re.findall(r"""src=['"]([^'"]*)""", page)
    assert len(srcs) >= 4 and all(s.startswith("data:image/") for s in srcs)
    assert page.index("class='headline'") < page.index("<h2>Accuracy") < page.index(
        "<h2>Setting")
    summary = json.loads((tiny_run[0] / "summary.json").read_text())
    for rel in summary["figures"].values():
        assert not Path(rel).is_absolute()
        assert (tiny_run[0] / rel).with_suffix(".svg").read_text().lstrip().startswith("<?xml")


def test_export_stacks_runs_with_run_and_dataset_columns(tiny_run, tmp_path, cli):
    second = tmp_path / "second"
    shutil.copytree(tiny_run[0], second)
    out = tmp_path / "all.csv"
    code, _, err = cli("export", tiny_run[0], second, "--out", out)
    assert code == 0, err
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:8] == ["run", "dataset", "n_base", "arm", "n_add", "baseline",
                                 "replicate", "seed"]
    assert sum(r["baseline"] == "True" for r in rows) == 4  # 2 seeds × 2 runs
    assert len(rows) == 12 and {r["run"] for r in rows} == {"tiny", "second"}
    assert {r["dataset"] for r in rows} == {"digits"} and {r["replicate"] for r in rows} == {"0"}
    assert {"accuracy", "config_hash", "key"} <= set(rows[0])


@pytest.mark.parametrize("where", ["results.sqlite", "figures/rows.csv", "."])
def test_export_and_fit_refuse_to_write_inside_a_run(tiny_run, tmp_path, cli, where):
    """`export --out RUN/results.sqlite` replaced the run's table with a CSV (data loss)."""
    run_dir = tiny_run[0]
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    code, _, err = cli("export", run_dir, "--out", run_dir / where)
    assert code == 2 and "inside the run directory" in err and err.count("\n") == 1
    csv_path = _write_csv(tmp_path / "mine.csv", rows_known(noise=0.001))
    code, _, err = cli("fit", csv_path, "--out", run_dir / where)
    assert code == 2 and "inside the run directory" in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_rows_of_an_earlier_config_are_not_reported_or_exported(tiny_run, tmp_path, cli,
                                                                  monkeypatch):
    """A rerun with a changed config keeps the old cells in results.sqlite (same config hash
    when only the generator or sampling changed): report, plan and export read the current
    config's cells (cells.json) and never mix the old ones in."""
    import sqlite3

    run_dir = tmp_path / "changed"
    shutil.copytree(tiny_run[0], run_dir)
    keys = json.loads((run_dir / "cells.json").read_text())["keys"]
    db = sqlite3.connect(run_dir / "results.sqlite")
    cols = [r[1] for r in db.execute("PRAGMA table_info(cells)")]
    for row in db.execute("SELECT * FROM cells").fetchall():  # an earlier config's copies
        old = dict(zip(cols, row), key="old" + row[cols.index("key")][3:], accuracy=0.01)
        db.execute(f"INSERT INTO cells ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                   [old[c] for c in cols])
    db.commit()
    db.close()
    code, _, err = cli("export", run_dir, "--out", tmp_path / "x.csv")
    assert code == 0, err
    with open(tmp_path / "x.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["key"] for r in rows) == sorted(keys) and len(rows) == 6
    code, out, err = cli("plan", run_dir, "--target-gain", "1", "--json")
    assert code == 0, err
    monkeypatch.chdir(tmp_path)  # a run directory given relative to the working directory
    code, _, err = cli("report", "changed")
    assert code == 0, err
    after = json.loads((run_dir / "summary.json").read_text())
    assert after["n_cells"] == 6
    assert after["figures"]["accuracy"] == "figures/accuracy.png"  # was changed/figures/…


def test_analyze_run_feeds_the_report_even_when_the_study_ran_without_analyses(
        tiny_run, tmp_path, cli):
    """`analyze RUN` wrote analysis.json, but `report RUN` left it out when the study had
    analyses off; and --domain-steps etc. were silently ignored for a run directory."""
    run_dir = tmp_path / "later"
    shutil.copytree(tiny_run[0], run_dir)
    code, _, err = cli("analyze", run_dir, "--domain-steps", "30")
    assert code == 2 and "--domain-steps: for two .npz sets only" in err
    assert not (run_dir / "analysis.json").exists()
    code, _, err = cli("analyze", run_dir)  # issue 25: it says what it would train, and where
    assert code == 2 and "--into-run" in err and not (run_dir / "analysis.json").exists()
    code, out, err = cli("analyze", run_dir, "--into-run")
    assert code == 0, err
    assert "training 5 small classifiers" in out and "min on this cpu (estimated)" in out
    assert (run_dir / "analysis.json").is_file()
    code, _, err = cli("report", run_dir)
    assert code == 0, err
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary.get("analysis"), sorted(summary)


def test_analyze_two_sets_takes_a_presets_classifier(tmp_path, cli, monkeypatch):
    """Two-set analyze always used the default classifier (a ResNet-18 from 28 px up: > 6 min
    on 2 CPU cores for a pneumonia-sized pair, 6 s with the pneumonia preset's small CNN)."""
    from synthequiv.measures import analyses

    seen = {}

    def fake(real, fake_, out, device, max_images, steps, ccfg=None):
        seen["ccfg"] = ccfg
        return {"sets": {}}

    monkeypatch.setattr(analyses, "analyse_dirs", fake)
    code, _, err = cli("analyze", tmp_path / "r.npz", tmp_path / "s.npz", "--preset",
                       "pneumonia", "--set", "classifier.train_steps=7")
    assert code == 0, err
    assert seen["ccfg"].arch == "smallcnn" and seen["ccfg"].train_steps == 7
    code, _, err = cli("analyze", tmp_path / "r.npz", tmp_path / "s.npz", "--set",
                       "generator.lr=1")
    assert code == 2 and "classifier.* settings only" in err


def test_export_parquet_without_pyarrow_is_one_error(tiny_run, tmp_path, cli):
    code, _, err = cli("export", tiny_run[0], "--format", "parquet", "--out",
                       tmp_path / "x.parquet")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        assert code == 2 and err.strip().startswith("error: ") and "pyarrow" in err
    else:
        assert code == 0 and (tmp_path / "x.parquet").stat().st_size > 0


# ----------------------------------------------------------------------------- fit


def _write_csv(path: Path, rows: list[dict], baseline_arm: str = "baseline") -> Path:
    with open(path, "w", newline="") as f:
        cols = ["n_base", "n_add", "seed", "replicate", "accuracy"]
        w = csv.DictWriter(f, fieldnames=["arm", *cols])
        w.writeheader()
        for r in rows:
            base = r["arm"] == "real" and r["n_add"] == 0
            w.writerow({**{k: r.get(k, 0) for k in cols},
                        "arm": baseline_arm if base else r["arm"]})
    return path


def test_fit_on_a_csv_reproduces_equivalence_analyse(tmp_path, cli):
    rows = rows_known(noise=0.001)
    csv_path = _write_csv(tmp_path / "mine.csv", rows)
    code, out, err = cli("fit", csv_path, "--out", tmp_path / "fit")
    assert code == 0, err
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    expected = eq.analyse(rows, eq.EquivalenceConfig())
    from synthequiv.reporting.report import mark_infinities  # open ends are "inf" there

    assert summary["equivalence"] == json.loads(json.dumps(to_jsonable(
        mark_infinities(expected))))
    assert summary["equivalence"]["arms"]["closed"]["fit"]["status"] == "ok"
    assert (tmp_path / "fit" / "report.html").is_file()
    assert " ".join(summary["headline"].split()) in " ".join(out.split())  # rich wraps lines


def test_fit_uses_the_variance_it_is_given(tmp_path, cli):
    """fit --variance per_cell equals equivalence.analyse with the per-cell t (wider intervals
    than the moderated default on the same rows); a bad name is one line, nothing written."""
    rows = rows_known(noise=0.004)
    csv_path = _write_csv(tmp_path / "mine.csv", rows)
    code, _, err = cli("fit", csv_path, "--out", tmp_path / "fit", "--variance", "per_cell")
    assert code == 0, err
    summary = json.loads((tmp_path / "fit" / "summary.json").read_text())
    per_cell = eq.analyse(rows, eq.EquivalenceConfig(variance="per_cell"))
    moderated = eq.analyse(rows, eq.EquivalenceConfig())
    got = {(g["n_base"], g["arm"], g["n_add"]): g["hi"] - g["lo"]
           for g in summary["equivalence"]["gains"]}
    for want, other in zip(per_cell["gains"], moderated["gains"]):
        key = (want["n_base"], want["arm"], want["n_add"])
        assert got[key] == pytest.approx(want["hi"] - want["lo"])
        assert got[key] != pytest.approx(other["hi"] - other["lo"])
    code, _, err = cli("fit", csv_path, "--out", tmp_path / "bad", "--variance", "pooled")
    assert code == 2 and err.count("\n") == 1 and "variance must be one of" in err
    assert not (tmp_path / "bad").exists()


@pytest.mark.parametrize("change, match", [
    ({"accuracy": 72.8}, "not in [0, 1]"),  # percentages
    ({"accuracy": float("nan")}, "not in [0, 1]"),
    ({"baseline": None}, "no baseline rows"),
])
def test_fit_refuses_rows_the_report_would_misread(tmp_path, cli, change, match):
    rows = rows_known(noise=0.001)
    if "baseline" in change:
        rows = [r for r in rows if not (r["arm"] == "real" and r["n_add"] == 0)]
    else:
        rows[3] = {**rows[3], **change}
    code, _, err = cli("fit", _write_csv(tmp_path / "m.csv", rows), "--out", tmp_path / "f")
    assert code == 2 and match in err and err.count("\n") == 1
    assert not (tmp_path / "f").exists()


def test_fit_names_a_missing_column(tmp_path, cli):
    path = tmp_path / "bad.csv"
    path.write_text("n_base,arm,n_add,accuracy\n10,real,0,0.9\n")
    code, _, err = cli("fit", path)
    assert code == 2 and err.count("\n") == 1 and "missing column(s) seed" in err


# ----------------------------------------------------------------------------- hygiene


def test_datasets_json_and_untruncated_table(cli, tmp_path, monkeypatch):
    root = tmp_path / ("a-rather-long-directory-name-" * 3)
    code, out, _ = cli("datasets", "--root", root, "--json")
    rows = json.loads(out)
    assert code == 0 and rows[0]["source"] == "digits"
    assert not [r for r in rows if r["source"].endswith("3d")]
    monkeypatch.setenv("COLUMNS", "80")  # as when piped
    code, out, _ = cli("datasets", "--root", root)
    assert str(root / "cifar-10-batches-py") in out


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in SRC.rglob("*.py")}


def _walk_runtime(tree):
    """ast.walk, less `if TYPE_CHECKING:` blocks (their imports never run)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue
            stack.append(child)


def _imports(module: str, top_level_only: bool = True) -> set[str]:
    """synthequiv modules `module` imports: at top level, or also inside functions."""
    tree = ast.parse(MODULES[module].read_text())
    out = set()
    for node in tree.body if top_level_only else _walk_runtime(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("synthequiv"):
            for a in node.names:  # `from synthequiv.pkg import module` names a module
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in MODULES else node.module)
        elif isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("synthequiv")}
    return {m for m in out if m in MODULES and m != "synthequiv"}


def test_no_import_circle_counting_every_import():
    """Importing any module never comes back to itself, counting imports inside functions too
    (a depth-first search for a back edge over every module's imports)."""
    graph = {m: _imports(m, top_level_only=False) for m in MODULES}
    assert len(graph) > 40 and graph["synthequiv.orchestration.study"]  # the graph is read
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            assert state.get(n) != 1, "import circle: " + " → ".join(path + [m, n])
            if n not in state:
                visit(n, path + [m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


# the house's floors, bottom up (README "Architecture"): a module imports its own floor or below
FLOORS = {"utils": 0, "runtime": 0, "stepgraph": 0, "inputs": 1, "stats": 1,
          "classification": 2, "generation": 2, "measures": 2, "config": 3, "presets": 3,
          "rundir": 4,
          "reporting": 5, "orchestration": 6, "cli": 7}
# the documented exceptions: the analyses draw their figures with reporting's drawing helpers
UPWARD_OK = {("measures", "reporting.figures"), ("measures", "reporting.figure_pool")}


def _floor(module: str) -> int:
    parts = module.split(".")
    return 0 if len(parts) == 1 else FLOORS[parts[1]]


def test_every_import_runs_downward_but_the_documented_few():
    up = {(m.split(".")[1], n.removeprefix("synthequiv."))
          for m in MODULES for n in _imports(m, top_level_only=False)
          if _floor(n) > _floor(m)}
    assert up <= UPWARD_OK, sorted(up - UPWARD_OK)
    assert len(UPWARD_OK) <= 3
    runtime = {n for m in MODULES if m.startswith("synthequiv.runtime")
               for n in _imports(m, top_level_only=False)}
    assert all(_floor(n) == 0 for n in runtime), runtime  # the ground floor imports no stage


def test_every_stage_is_a_package_with_a_docstring():
    """The layout reads like the pipeline: one subpackage per stage, each saying what it holds."""
    import synthequiv

    stages = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))
    assert stages == ["classification", "generation", "inputs", "measures", "orchestration",
                      "reporting", "runtime", "stats"]
    for stage in stages:
        doc = importlib.import_module(f"synthequiv.{stage}").__doc__ or ""
        modules = {p.stem for p in (SRC / stage).glob("*.py")} - {"__init__"}
        listed = {line.split()[0] for line in doc.splitlines()[1:] if line.startswith("  ")}
        assert listed <= modules, stage  # no stale names
        assert all(re.search(rf"\b{m}\b", doc) for m in modules), stage  # none left out
    assert synthequiv.__doc__


def test_generator_train_takes_preset_settings(tmp_path, cli):
    code, _, err = cli("generator", "train", "digits", "--base-per-class", "2", "--out",
                       tmp_path / "g", "--set", "generator.train_kimg=0.032",
                       "--set", "generator.batch_size=16", "--device", "cpu")
    assert code == 0, err
    import torch

    state = torch.load(tmp_path / "g" / "checkpoint.pt", weights_only=True)
    assert state["config"]["batch_size"] == 16 and state["step"] == 2


# ----------------------------------------------------------------------------- device script


def _gpu_check_plan(steps: str | None) -> list[tuple[str, int]]:
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_CHECK")}
    env.update({"GPU_CHECK_DRY": "1", "OUT_DIR": "/nonexistent/never-written"})
    if steps is not None:
        env["GPU_CHECK_STEPS"] = steps
    out = subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=root, env=env, check=True,
                         capture_output=True, text=True, timeout=60).stdout
    return [(m[0], int(m[1])) for m in re.findall(r"^step (\w) limit_s=(\d+)$", out, flags=re.M)]


def test_gpu_check_measures_both_targets_in_under_five_minutes_by_default():
    """Issue 14: a lent GPU's check measures the quick study (a) and the cifar10 projection (k)
    in under 5 minutes; the diagnostics are a named set of their own."""
    default = _gpu_check_plan(None)
    assert [s for s, _ in default] == ["w", "a", "k"]
    assert sum(t for _, t in default) < 300
    assert [s for s, _ in _gpu_check_plan("diagnose")] == ["h", "s", "t"]
    assert [s for s, _ in _gpu_check_plan("a d")] == ["a", "d"]
    assert len(_gpu_check_plan("all")) == 13


@pytest.mark.slow
@pytest.mark.slow  # ~2 min of shrunk studies and benchmarks
def test_gpu_check_script_runs_every_step_as_a_cpu_smoke_test(tmp_path):
    """benchmarks/gpu_check.sh is what a lent GPU's few minutes run: its shrunk CPU mode must
    run every default step (and the optional f and p) to rc=0, so the script cannot rot
    between GPU sessions (~2 min)."""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "GPU_CHECK_DEVICE": "cpu", "OUT_DIR": str(tmp_path),
           "PYTHON": sys.executable, "GPU_CHECK_STEPS": "w a h s t d f c g p b k"}
    subprocess.run(["bash", "benchmarks/gpu_check.sh"], cwd=root, env=env, check=True,
                   capture_output=True, timeout=900)
    log = (tmp_path / "gpu_check.log").read_text()
    ends = re.findall(r"^=== (\w)\) .*: rc=(\d+) wall_s=", log, flags=re.M)
    assert [s for s, _ in ends] == list("wahstdfcgpbk"), log[-2000:]
    assert all(rc == "0" for _, rc in ends), log[-4000:]
    assert {p.name for p in tmp_path.iterdir()} >= {"quick.json", "quick_eager.json",
                                                    "quick_log.txt", "quick.prof"}
