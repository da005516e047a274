"""The study: generators → samples → classifier grid → equivalence → analyses → report.

Every artifact in the run directory is keyed by a hash of the inputs that made it, so a rerun
skips what is done, a killed run resumes, and a changed config never reuses a stale artifact.

run_dir/
  config.yaml               resolved config
  results.sqlite            one row per finished grid cell (single writer: this process)
  generators/<key>/         checkpoint.pt (+ meta) per generator
  samples/<key>.npz|.png    synthetic images per generator
  figures/  report.html  report.md  summary.json  analysis.json
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from synthequiv.config import (
    StudyConfig,
    check_run_dir,
    dump_yaml,
    validate,
    validate_data,
)
from synthequiv.generation.levers import prepare_levers, variant_arms
from synthequiv.generation.provided import load_provided, provided_sets
from synthequiv.generation.synthetic import GenJob, prepare_synthetic
from synthequiv.inputs.data import Dataset, load_dataset
from synthequiv.inputs.splits import Splits, make_splits
from synthequiv.orchestration.grid import Replicate, plan_cells, run_cells
from synthequiv.orchestration.pipeline import first_work, pipelines
from synthequiv.orchestration.plan import log_plan
from synthequiv.reporting import figure_pool
from synthequiv.rundir import (
    ResultsTable,
    config_hash,
    note_data_digest,
    read_run_config,
    run_config_hash,
    write_cell_keys,
)
from synthequiv.runtime.executor import set_cpu_threads
from synthequiv.runtime.lock import RunLock
from synthequiv.runtime.progress import progress_bar
from synthequiv.runtime.runlog import Timings, environment, info, run_log
from synthequiv.stats.config import AUTO, first_replicates, parse_target
from synthequiv.stats.sequential import auto_status, stop_reason
from synthequiv.utils import (
    SynthequivError,
    atomic_write_text,
    resolve_device,
    sweep_temp_files,
)


def replicate_config(cfg: StudyConfig, r: int) -> StudyConfig:
    """Replicate r: split, generator, sampling and open-set seeds offset by r (r = 0 is the
    study's own seeds, so a one-replicate study is unchanged)."""
    if r == 0:
        return cfg
    rep = dataclasses.replace
    return rep(cfg, splits=rep(cfg.splits, seed=cfg.splits.seed + r),
               generator=rep(cfg.generator, seed=cfg.generator.seed + r),
               sampling=rep(cfg.sampling, seed=cfg.sampling.seed + r),
               openset=rep(cfg.openset, seed=cfg.openset.seed + r))


# ----------------------------------------------------------------------------- planning


def check_grid(cfg: StudyConfig, sp: Splits) -> None:
    """Fail before any training if the grid asks for data the splits cannot give (the grid's
    own values are checked with the rest of the config, config.validate)."""
    if "real" in cfg.grid.arms and cfg.grid.real_add_per_class:
        sp.reserve_indices(max(cfg.grid.real_add_per_class))


# ----------------------------------------------------------------------------- the study


def replicate_generator_jobs(cfg: StudyConfig, splits: list[Splits], run_dir: Path,
                             provided) -> dict[int, list[GenJob]]:
    """{replicate: its generators whose samples are not on disk yet}, each with its
    replicate's generator and sampling configs (its seeds). Directories, keys and
    trained_on.json are those `prepare_synthetic` makes, which then finds the generators and
    their samples."""
    from synthequiv.generation.provided import provided_keys
    from synthequiv.generation.synthetic import generator_jobs

    given = provided_keys(cfg.splits.base_per_class, provided)
    return {r: [job for job in generator_jobs(replicate_config(cfg, r).synthetic, sp, run_dir,
                                              f"-r{r}", given) if not job.path.exists()]
            for r, sp in enumerate(splits)}


def train_study_generators(jobs: list[GenJob], cfg: StudyConfig, num_classes: int, device,
                           progress: bool = True) -> None:
    """The untrained ones of `jobs`, trained before any sampling so that compatible ones train
    at once (`generator_group`, gengroup.py), one task per group; lever sets reuse these
    generators (they only sample)."""
    from synthequiv.generation.synthetic import train_jobs

    todo = [job for job in jobs if not job.trained]
    with progress_bar("generators", total=len(todo), enabled=progress and len(todo) > 1) as bar:
        for job in train_jobs(todo, num_classes, cfg.runtime, device, progress):
            bar.advance(1, job.name)


def sample_study_sets(jobs: list[GenJob], cfg: StudyConfig,
                      splits: list[Splits], run_dir: Path, device, provided,
                      progress: bool = True) -> None:
    """The trained `jobs` and every replicate's provided generators, not yet sampled, in one
    sampling pass: one worker pool, or every replicate's shards as concurrent Ray tasks
    (replicate by replicate, r's shards would wait for r-1's). Each replicate keeps its own
    sampling seed; `prepare_synthetic` then finds the samples files (the images are those it
    makes: per-sample seeds)."""
    from synthequiv.generation.provided import generator_target
    from synthequiv.generation.synthetic import job_target, sample_to_files

    targets = [job_target(job) for job in jobs]
    targets += [t for r, sp in enumerate(splits) for p in provided
                if p.entry.kind == "generator"
                for t in [generator_target(p, replicate_config(cfg, r).synthetic, sp, run_dir,
                                           f"-r{r}")]
                if not t.path.exists()]
    ds = splits[0].dataset
    sample_to_files(targets, cfg.synthetic.n_per_class, ds.num_classes, ds.shape, cfg.runtime,
                    device, progress, keep=False)


def reserve_per_class(cfg: StudyConfig) -> int:
    """The real arm's largest addition R(m): kept out of a `test_per_class: all` hold-out."""
    return max(cfg.grid.real_add_per_class or [0]) if "real" in cfg.grid.arms else 0


def study_splits(cfg: StudyConfig, ds: Dataset, r: int = 0) -> Splits:
    """Replicate r's splits, checked against the grid."""
    sp = make_splits(ds, replicate_config(cfg, r).splits, reserve_per_class(cfg))
    check_grid(cfg, sp)
    return sp


def load_inputs(cfg: StudyConfig) -> tuple[Dataset, Splits]:
    ds = load_dataset(cfg.data)
    return ds, study_splits(cfg, ds)


def check_inputs(cfg: StudyConfig, ds: Dataset) -> tuple[list[Splits], list]:
    """The checks that need the data, before anything is written or trained (the study and
    its dry run): every replicate's splits, memory for the largest set, a real-vs-real half
    of replicate 0's test split for the analyses, every provided set and generator.
    Returns (splits, provided)."""
    splits = make_replicates(cfg, ds)
    validate_data(cfg, ds)
    if cfg.analysis.enabled:  # found now, not after the whole grid has trained
        from synthequiv.measures.analyses import STUDY_REFERENCE_NEED, check_reference

        check_reference(splits[0].test_labels, STUDY_REFERENCE_NEED)
    return splits, load_provided(cfg, splits)


def make_replicates(cfg: StudyConfig, ds: Dataset) -> list[Splits]:
    """Every replicate's splits, checked before any training (a class too small for one
    replicate's draw fails now, naming the class); an auto study's first pass."""
    return [study_splits(cfg, ds, r) for r in range(first_replicates(cfg.grid))]


def run_study(cfg: StudyConfig, run_dir: Path, progress: bool = True,
              figure_workers: bool = False, track: str | None = None,
              tracking_uri: str | None = None) -> dict:
    """The whole study in run_dir (resumed where it stopped). figure_workers: start the
    figure worker processes (figure_pool.py; on hosts with ≥ 6 cores) — the CLI does; a
    script that calls this needs an `if __name__ == "__main__":` guard for it, as spawned
    processes import the script. grid.replicates: auto runs min_replicates, then adds one at a
    time (`keep_going`). track: "mlflow" mirrors the finished run into a tracking store
    (reporting/tracking.py; tracking_uri: which, default RUN_DIR/mlruns)."""
    from synthequiv.reporting.tracking import check_tracker, track_run

    check_tracker(track)  # before anything is trained: the extra installed
    validate(cfg)  # every stage's config, then the data (read-only): bad input writes nothing
    check_run_dir(cfg, run_dir)
    ds = load_dataset(cfg.data)
    first = with_replicates(cfg, first_replicates(cfg.grid))
    splits, provided = check_inputs(first, ds)
    run_dir = Path(run_dir)
    with RunLock(run_dir), run_log(run_dir):
        t_start = time.time()  # what a budget counts from
        sweep_temp_files(run_dir)  # what a killed run was writing; its finished files stay
        note_data_digest(run_dir, ds)
        note_config_change(run_dir, cfg)
        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
        device = resolve_device(cfg.device)
        set_cpu_threads(cfg.runtime)
        log_plan(cfg, ds, run_dir)
        if figure_workers:  # many-core hosts: they start beside the training
            figure_pool.prestart()
        timings = Timings()  # each stage's time is logged as it is set
        ctx = GridRun(ds, run_dir, device, provided, progress, timings,
                      previous_replicate_s(run_dir))
        reps: dict[int, Replicate] = {}
        rows = run_replicates(ctx, first, splits, reps)
        stopping = None
        if cfg.grid.replicates == AUTO:
            rows, stopping = keep_going(cfg, ctx, splits, reps, rows, t_start)
        out = finish(cfg, run_dir, rows, reps[0].sp, reps[0].synth, device, timings, progress,
                     stopping, ctx.analysis_models)
        if track:
            track_run(run_dir, track, tracking_uri)
        return out


@dataclass
class GridRun:
    """What every pass over the grid shares (one per run_study)."""

    ds: Dataset
    run_dir: Path
    device: torch.device
    provided: list
    progress: bool
    timings: Timings
    replicate_s: float | None  # wall time of one replicate's work, as last measured
    # the analyses' small trainings made by the queue (pipeline.py): {key: model}
    analysis_models: dict = dataclasses.field(default_factory=dict)


def with_replicates(cfg: StudyConfig, n: int) -> StudyConfig:
    return dataclasses.replace(cfg, grid=dataclasses.replace(cfg.grid, replicates=n))


def replicate_sets(rcfg: StudyConfig, sp: Splits, run_dir: Path, device, progress: bool,
                   tag: str, provided: list) -> dict:
    """One replicate's synthetic sets: provided arms, generated arms (their generators trained
    and sampled before), then lever variants."""
    syn, rt = rcfg.synthetic, rcfg.runtime
    given = provided_sets(syn, rt, sp, run_dir, device, progress, tag, provided)
    synth = prepare_synthetic(syn, rt, sp, run_dir, device, progress, tag=tag, given=given)
    return synth | prepare_levers(rcfg, sp, run_dir, device, progress, tag, synth)


def previous_replicate_s(run_dir: Path) -> float | None:
    """One replicate's wall time as an earlier run of run_dir measured it (summary.json)."""
    try:
        value = json.loads((Path(run_dir) / "summary.json").read_text())["run"]["timings"][
            "per_replicate_s"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def _add_time(timings: Timings, key: str, seconds: float) -> None:
    timings[key] = timings.get(key, 0.0) + seconds  # a later pass adds to the first's


def run_replicates(ctx: GridRun, cfg: StudyConfig, splits: list[Splits],
                   reps: dict[int, Replicate]) -> list[dict]:
    """One pass over the grid of `cfg` (its replicates count): generators, samples and cells
    not done yet, then this config's rows. reps: replicates prepared by an earlier pass (kept;
    the new ones are added). Sets ctx.replicate_s when a replicate had work to do."""
    t0 = time.time()
    by_rep = replicate_generator_jobs(cfg, splits, ctx.run_dir, ctx.provided)
    if any(by_rep.values()) and pipelines(cfg.runtime):  # one queue (pipeline.py)
        rcfgs = [replicate_config(cfg, r) for r in range(len(splits))]

        def sets_of(r: int) -> dict:  # every set on disk: only loaded, no executor work
            return replicate_sets(rcfgs[r], splits[r], ctx.run_dir, ctx.device, ctx.progress,
                                  f"-r{r}", ctx.provided)

        def analysis_of(rep: Replicate) -> dict:  # replicate 0's sets: the analyses' trainings
            from synthequiv.measures.analyses import study_trainings

            return study_trainings(cfg.analysis, cfg.classifier, ctx.run_dir, rep.sp, rep.synth,
                                   data=cfg.data, splits=cfg.splits)

        simple = not ctx.provided and not variant_arms(cfg)
        if first_work(cfg, rcfgs, splits, by_rep, reps, ctx.run_dir, ctx.device, ctx.progress,
                      sets_of if simple else None,
                      analysis_of if cfg.analysis.enabled else None, ctx.analysis_models):
            _add_time(ctx.timings, "generators_samples_cells_s", time.time() - t0)
    # what the queue left (all of them without one)
    jobs = [job for js in by_rep.values() for job in js if not job.path.exists()]
    t1 = time.time()  # the stage-wise stages: what the first work left (all of it elsewhere)
    train_study_generators(jobs, cfg, ctx.ds.num_classes, ctx.device, ctx.progress)
    _add_time(ctx.timings, "generators_s", time.time() - t1)  # training alone
    sample_study_sets(jobs, cfg, splits, ctx.run_dir, ctx.device, ctx.provided, ctx.progress)
    for r, sp in enumerate(splits):  # generators trained: samples (and lever sets)
        if r in reps:
            continue
        rcfg = replicate_config(cfg, r)
        synth = replicate_sets(rcfg, sp, ctx.run_dir, ctx.device, ctx.progress, f"-r{r}",
                               ctx.provided)
        reps[r] = Replicate(r, rcfg, sp, synth)
    _add_time(ctx.timings, "generators_and_sampling_s", time.time() - t1)
    cells = plan_cells(cfg, [reps[r] for r in range(len(splits))], ctx.ds.digest)
    # the keys of this config's cells: what report, plan and export read from the table
    write_cell_keys(ctx.run_dir, (c.key for c in cells))
    table = ResultsTable(ctx.run_dir / "results.sqlite")
    done = table.done_keys()
    worked = {c.replicate for c in cells if c.key not in done} | {r for r, js in by_rep.items()
                                                                  if js}
    t1 = time.time()
    run_cells(cfg, cells, reps, table, ctx.device, config_hash(cfg, ctx.ds.digest), ctx.progress)
    _add_time(ctx.timings, "classifier_grid_s", time.time() - t1)
    rows = table.rows({c.key for c in cells})
    table.close()
    if worked:  # the time per replicate that the budget and the report's estimates use
        ctx.replicate_s = (time.time() - t0) / len(worked)
    if ctx.replicate_s:
        ctx.timings["per_replicate_s"] = ctx.replicate_s
    return rows


def keep_going(cfg: StudyConfig, ctx: GridRun, splits: list[Splits],
               reps: dict[int, Replicate], rows: list[dict], t_start: float):
    """grid.replicates: auto — after each pass, the headline's intervals against grid.target
    (stats/sequential.auto_status: judged on the first two thirds of the replicates); one more
    replicate while it is not met, the budget allows one more (at the last measured time per
    replicate) and max_replicates is not reached. Replicate r is the one a fixed study with
    more than r replicates has (same keys: nothing is retrained on a rerun).
    Returns (rows, what the stopping rule did, for the report)."""
    g, target = cfg.grid, parse_target(cfg.grid.target)
    n = len(splits)
    while True:
        status = auto_status(rows, target, cfg.equivalence.ci, cfg.equivalence.variance)
        elapsed = time.time() - t_start
        reason = stop_reason(status, n, g.max_replicates, elapsed, g.budget_s,
                             ctx.replicate_s or 0.0)
        widest = "open or none" if status["widest"] == float("inf") else f"{status['widest']:.3g}"
        info(f"auto replicates: {n} done, widest interval {widest} ({status['where']}), target "
             f"{target.text()}: " + (f"stop — {reason}" if reason else
                                     f"adding replicate {n + 1}"))
        if reason:
            break
        splits.append(study_splits(cfg, ctx.ds, n))
        n += 1
        ncfg = with_replicates(cfg, n)
        ctx.provided = load_provided(ncfg, splits)  # checked against the new test set too
        rows = run_replicates(ctx, ncfg, splits, reps)
    return rows, {"mode": AUTO, "target": g.target, "target_text": target.text(),
                  "replicates": n, "reason": reason, "met": status["met"],
                  "widest": status["widest"], "where": status["where"],
                  "budget_s": g.budget_s, "elapsed_s": time.time() - t_start,
                  "min_replicates": g.min_replicates, "max_replicates": g.max_replicates}


def finish(cfg, run_dir, rows, sp, synth, device, timings, progress, stopping=None,
           trained: dict | None = None) -> dict:
    from synthequiv.reporting.report import write_report
    from synthequiv.stats.equivalence import analyse

    t0 = time.time()
    equivalence = analyse(rows, cfg.equivalence)
    timings["equivalence_s"] = time.time() - t0
    analysis = None
    if cfg.analysis.enabled:
        t0 = time.time()
        from synthequiv.measures.analyses import analyse_study

        analysis = analyse_study(cfg.analysis, cfg.classifier, run_dir, sp, synth, device,
                                 progress, data=cfg.data, splits=cfg.splits,
                                 cell_group=cfg.cell_group, trained=trained)
        timings["analyses_s"] = time.time() - t0
    t0 = time.time()
    out = write_report(cfg, run_dir, rows, equivalence, analysis, sp, synth,
                       run_info={"timings": timings, "environment": environment(device),
                                 **({"stopping": stopping} if stopping else {})})
    timings["report_s"] = time.time() - t0
    out["timings"] = timings
    return out


def note_config_change(run_dir: Path, cfg: StudyConfig) -> None:
    """One log line when a run directory's config.yaml differs from `cfg`: which sections
    changed, and that cells of the old config stay in results.sqlite but are not used."""
    from synthequiv import config as C

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        return
    try:
        old = C.read_yaml(path)
    except SynthequivError:
        old = {}
    new = yaml.safe_load(dump_yaml(cfg))
    changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if changed:
        info(f"config changed since this run directory's last run ({', '.join(changed)}): "
             "what it changes is computed again; earlier cells stay in results.sqlite but are "
             "no longer reported or exported")


def rebuild_report(run_dir: Path) -> Path:
    """The report from a run directory's files alone: no training, no data, no run lock (it
    works while the study runs; results.sqlite is read read-only)."""
    from synthequiv.reporting.rebuild import rebuild_run_report

    cfg = read_run_config(run_dir)
    return rebuild_run_report(Path(run_dir), cfg, run_config_hash(run_dir, cfg))


def analyse_run(run_dir: Path, out_dir: Path | None = None, progress: bool = True,
                announce=print) -> dict:
    """The analyses of a run directory's synthetic sets: its analysis.json when the study
    wrote one; else computed under the run lock — written to `out_dir` (the run itself only
    when out_dir is the run), after `announce` has said what it trains and for how long."""
    from synthequiv.measures.analyses import analyse_study, distinct_sets, read_analysis
    from synthequiv.orchestration.plan import analysis_estimate

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    cached = read_analysis(run_dir)
    if cached is not None:
        return cached
    if out_dir is None:
        why = ("analysis.enabled was false" if not cfg.analysis.enabled
               else "the study has not written them yet")
        raise SynthequivError(
            f"{run_dir} has no analyses ({why}): computing them trains classifiers; pass "
            "--out DIR to write them there, or --into-run to add them to the run")
    with RunLock(run_dir):
        device = resolve_device(cfg.device)
        _, sp = load_inputs(cfg)  # replicate 0: the analyses describe its synthetic sets
        synth = replicate_sets(cfg, sp, run_dir, device, progress, "-r0",
                               load_provided(cfg, [sp]))
        n_sets = len(distinct_sets(sp, synth))
        k, secs = analysis_estimate(cfg, sp.dataset.shape, n_sets, device.type)
        announce(f"analyses of {n_sets} synthetic set(s) of {run_dir}: training {k} small "
                 f"classifiers, about {secs / 60:.1f} min on this {device.type} (estimated); "
                 f"writing to {out_dir}")
        return analyse_study(cfg.analysis, cfg.classifier, Path(out_dir), sp, synth, device,
                             progress, data=cfg.data, splits=cfg.splits,
                             cell_group=cfg.cell_group)
