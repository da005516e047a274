"""Thin CLI: parse, build the config, call library functions. Errors → one line, exit 2.

Over 500 lines for a current reason: every command's options and help live here, each command
a thin parse-and-call; split by command they would share the option objects and error
handling through a module of their own for little gain. Heavy imports stay inside the
commands, so `--help` and usage errors load no torch."""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from synthequiv.utils import SynthequivError

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="How many synthetic images are worth one real image?")
data_app = typer.Typer(no_args_is_help=True, help="Inspect data sources.")
gen_app = typer.Typer(no_args_is_help=True, help="Train and sample generators.")
app.add_typer(data_app, name="data")
app.add_typer(gen_app, name="generator")
console = Console()

ROOT_OPT = typer.Option("", "--root", help="Data root ($SYNTHEQUIV_DATA or ./data).")
FORCE_OPT = typer.Option(False, "--force", help="Replace an existing output that is not this "
                         "command's own kind (never one inside a study's run directory).")


def _data_cfg(source: str, root: str, download: bool = False, image_size: int = 0):
    from synthequiv.inputs.sources import DataConfig

    return DataConfig(source=source, root=root, download=download, image_size=image_size)


@app.command()
def datasets(
    root: str = ROOT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Print a JSON list instead of a table."),
) -> None:
    """Every data source, whether it is available offline here, and where it looks."""
    import json

    from synthequiv.inputs.sources import list_sources

    # MedMNIST's 3D volumes (…3d flags) are not images the loader accepts: not listed
    rows = [r for r in list_sources(_data_cfg("digits", root))
            if not (r["source"].startswith("medmnist:") and r["source"].endswith("3d"))]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table("source", "available", "where")
    for row in rows:
        table.add_row(row["source"], "yes" if row["available"] else "no", row["where"])
    # piped, rich assumes 80 columns and would cut the paths: size the table to its content
    width = max(len(r["source"]) for r in rows) + max(len(r["where"]) for r in rows) + 22
    out = console if console.is_terminal else Console(width=max(console.width, width))
    out.print(table)


@data_app.command("show")
def data_show(
    source: str,
    root: str = ROOT_OPT,
    download: bool = typer.Option(False, "--download", help="Fetch missing files."),
    image_size: int = typer.Option(0, "--image-size", help="folder: resize all images to N×N."),
    test_per_class: int = typer.Option(50, help="Hold-out size when there is no test split."),
    seed: int = typer.Option(0, help="Split seed."),
    out: Path | None = typer.Option(None, "--out", help="PNG grid of examples."),
    force: bool = FORCE_OPT,
) -> None:
    """Per-class counts per split, image size/channels, and a PNG grid of examples."""
    from synthequiv.config import check_outside_inputs
    from synthequiv.inputs.sources import check_source

    check_source(source)  # before the data code (torch) loads: a typo answers at once
    from synthequiv.generation.sampling import save_grid_png
    from synthequiv.inputs.data import load_dataset
    from synthequiv.inputs.splits import SplitConfig, make_splits
    from synthequiv.runtime.outputs import guard_output
    from synthequiv.utils import check_positive, check_seed

    check_seed("--seed", seed)
    check_positive("--image-size", image_size, allow_zero=True)
    if out is not None:  # before loading anything
        guard_output(out, "png", force=force)
        check_outside_inputs(_study_cfg("quick", None, [], [f"data.source={source}"]), out)
    ds = load_dataset(_data_cfg(source, root, download, image_size))
    sp = make_splits(ds, SplitConfig(base_per_class=(1,), test_per_class=test_per_class,
                                     seed=seed))
    c, h, w = ds.shape
    console.print(f"[bold]{ds.name}[/]: {ds.num_classes} classes, {h}×{w} px, {c} channel(s); "
                  f"test split: {'official' if ds.test_images is not None else 'hold-out'}")
    table = Table("class", "name", "train pool", "test")
    test_counts = sp.test_labels.bincount(minlength=ds.num_classes)
    for k, name in enumerate(ds.class_names):
        table.add_row(str(k), name, str(len(sp.order[k])), str(int(test_counts[k])))
    console.print(table)
    out = out or Path(f"{ds.name.replace(':', '_').replace('/', '_')}_examples.png")
    guard_output(out, "png", force=force)
    idx = sp.base_indices(min(10, min(len(o) for o in sp.order)))
    save_grid_png(out, ds.images[idx], ds.labels[idx], ds.num_classes)
    console.print(f"examples: {out}")


TRACK_HELP = ("mlflow: mirror the run's config, stage timings, headline numbers and report into "
              "an MLflow store (needs the extra: pip install 'synthequiv\\[mlflow]').")
TRACKING_URI_HELP = ("The tracking store (default: $MLFLOW_TRACKING_URI, else a SQLite store in "
                     "RUN_DIR/mlruns).")


@app.command()
def study(
    preset: str = typer.Option("quick", help="Preset: quick, mnist, pneumonia, cifar10, ..."),
    config: Path | None = typer.Option(None, "--config", help="YAML overrides."),
    set_: list[str] = typer.Option([], "--set", help="KEY=VALUE override, e.g. grid.seeds=[0,1]"),
    name: str | None = typer.Option(None, help="Run name (default: the preset's)."),
    runs_dir: Path = typer.Option(Path("runs"), help="Parent of run directories."),
    executor: str | None = typer.Option(None, help="local | ray"),
    device: str | None = typer.Option(None, help="auto | cpu | cuda"),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved config and stop."),
    budget: str | None = typer.Option(
        None, "--budget", help="grid.replicates=auto: wall-clock budget, e.g. 2h, 20m, 1h30m "
        "(sets grid.budget_s)"),
    track: str | None = typer.Option(None, "--track", help=TRACK_HELP),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Run the whole study: generators, samples, classifier grid, equivalence fit, report."""
    import dataclasses

    from synthequiv import config as C
    from synthequiv.stats.config import parse_duration

    extra = [f"grid.budget_s={parse_duration(budget)}"] if budget is not None else []
    cfg = C.resolve(preset, config, list(set_) + extra)
    # taken as given, never parsed as YAML ("run #1" stays "run #1", "2024" a string)
    given = {"name": name, "executor": executor, "device": device}
    cfg = dataclasses.replace(cfg, **{k: v for k, v in given.items() if v is not None})
    if dry_run:  # the same checks as a real run's, before the plan is printed
        C.validate(cfg, plan_only=True)
        C.check_run_dir(cfg, runs_dir.expanduser() / cfg.name)
        # checks the data and provided inputs: before any output
        plan = _plan_text(cfg, runs_dir.expanduser() / cfg.name)
        typer.echo(C.dump_yaml(cfg))
        typer.echo(plan)
        return
    C.check_values(cfg)  # a bad value is one line at once, before the study loads torch
    from synthequiv.orchestration.study import run_study

    # run_study validates the whole config (the name too: runs_dir / cfg.name never leaves
    # runs_dir) and the tracker before it writes anything
    result = run_study(cfg, runs_dir.expanduser() / cfg.name, figure_workers=True,
                       track=track, tracking_uri=tracking_uri)
    console.print(f"\n[bold]report:[/] {result['report']}")
    console.print(f"[bold]headline:[/] {result['headline']}")


def _plan_text(cfg, run_dir: Path | None = None) -> str:
    """The plan as YAML comments, so the dry run's output stays a usable --config file;
    run_dir: an earlier run there gives the plan's power."""
    from synthequiv.inputs.data import load_dataset
    from synthequiv.orchestration.plan import plan_lines, study_plan

    try:
        ds = load_dataset(cfg.data)
    except SynthequivError as exc:  # plan from the config alone; say why, also on stderr
        ds, note = None, [f"data not readable here ({exc}): counts from the config alone"]
        print(f"warning: {note[0]}; the study itself would stop with this error",
              file=sys.stderr)
    else:
        note = []
        _check_inputs(cfg, ds)
    lines = plan_lines(study_plan(cfg, ds, run_dir))
    return "\n".join(f"# plan: {line}" for line in note + lines)


def _check_inputs(cfg, ds) -> None:
    """The real run's checks that need the data (the provided inputs' log lines are not the
    plan's)."""
    import io

    from synthequiv.orchestration.study import check_inputs

    with contextlib.redirect_stdout(io.StringIO()):
        check_inputs(cfg, ds)


@app.command()
def report(
    run_dir: Path,
    track: str | None = typer.Option(None, "--track", help=TRACK_HELP),
    tracking_uri: str | None = typer.Option(None, "--tracking-uri", help=TRACKING_URI_HELP),
) -> None:
    """Rebuild the report of a run from its files (results.sqlite, config.yaml,
    analysis.json, figures): no training, no data, works while the study runs."""
    from synthequiv.orchestration.study import rebuild_report
    from synthequiv.reporting.tracking import check_tracker, track_run

    check_tracker(track)
    console.print(f"report: {rebuild_report(run_dir)}")
    if track:
        track_run(run_dir, track, tracking_uri)



@app.command()
def analyze(
    target: Path = typer.Argument(..., help="A run directory, or a real-images .npz."),
    synthetic: Path | None = typer.Argument(None, help="Synthetic .npz (with a real .npz)."),
    out: Path | None = typer.Option(None, "--out", help="Output dir (two .npz sets: default "
                                    "./analysis; a run without analyses: where to write them)."),
    into_run: bool = typer.Option(False, "--into-run", help="A run without analyses: write "
                                  "them into the run directory (its report then shows them)."),
    force: bool = FORCE_OPT,
    device: str | None = typer.Option(None, help="auto | cpu | cuda (two sets; default auto)."),
    max_images: int | None = typer.Option(None, help="Cap per set (two sets; default 1000)."),
    domain_steps: int | None = typer.Option(
        None, help="Domain classifier training steps (two sets; default 300)."),
    preset: str | None = typer.Option(
        None, "--preset", help="Two sets: the classifier settings of this study preset (e.g. "
        "pneumonia: a small CNN at 28 px; default: auto, a ResNet-18 from 28 px up)."),
    set_: list[str] = typer.Option([], "--set", help="Two sets: classifier.KEY=VALUE."),
) -> None:
    """Real/synthetic gap: of a run directory's generators, or of any two .npz image sets."""
    from synthequiv.measures.analyses import analyse_dirs
    from synthequiv.runtime.outputs import guard_output
    from synthequiv.utils import resolve_device

    given = {"--device": device, "--max-images": max_images, "--domain-steps": domain_steps,
             "--preset": preset, "--set": set_ or None}
    if synthetic is None and any(v is not None for v in given.values()):
        named = ", ".join(k for k, v in given.items() if v is not None)
        raise SynthequivError(f"{named}: for two .npz sets only; a run directory's analyses "
                              "use its config (analysis.max_images, analysis.domain_train_steps,"
                              " device, classifier)")
    bad = [x for x in set_ if not x.startswith("classifier.")]
    if bad:
        raise SynthequivError(f"--set {bad[0]}: analyze takes classifier.* settings only")
    ccfg = None
    if preset is not None or set_:  # the study's strict config parsing and checks
        from synthequiv.config import validate

        cfg = _study_cfg(preset or "quick", None, set_, [])
        validate(cfg)
        ccfg = cfg.classifier
    device, max_images = device or "auto", 1000 if max_images is None else max_images
    domain_steps = 300 if domain_steps is None else domain_steps
    if synthetic is None:
        from synthequiv.orchestration.study import analyse_run

        if into_run and out is not None:
            raise SynthequivError("--out and --into-run: choose one place to write")
        if out is not None:
            guard_output(out, "analysis", force=force)  # before any training
        analysis = analyse_run(target, target if into_run else out,
                               announce=lambda line: console.print(line))
    else:
        if into_run:
            raise SynthequivError("--into-run: for a run directory only")
        out = out if out is not None else Path("analysis")
        guard_output(out, "analysis", force=force)  # before the work
        analysis = analyse_dirs(target, synthetic, out, resolve_device(device), max_images,
                                domain_steps, ccfg)
    table = Table("set", "domain acc", "domain AUC", "FD", "FD real-vs-real", "precision",
                  "coverage", "fidelity", "CAS", "memorized")
    base_fd = (analysis.get("baseline") or {}).get("overlap", {}).get("fd")
    for name, s in analysis["sets"].items():
        ov, mem = s.get("overlap", {}), s.get("memorization", {}).get("pixel") or {}
        table.add_row(name, *[_f(v) for v in (
            s["domain"].get("accuracy"), s["domain"].get("auc"), ov.get("fd"), base_fd,
            ov.get("precision"), ov.get("coverage"), s.get("fidelity", {}).get("accuracy"),
            s.get("cas", {}).get("accuracy"), mem.get("frac_below"))])
    # piped, rich assumes 80 columns and cut the set names ("clos…" twice): size to content
    width = max([len(n) for n in analysis["sets"]] + [3]) + 120
    (console if console.is_terminal else Console(width=max(console.width, width))).print(table)
    if analysis.get("paper_finding_f4"):
        console.print(analysis["paper_finding_f4"].get("text", ""))


def _f(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


@app.command()
def fit(
    results: Path = typer.Argument(..., help="CSV: n_base, arm, n_add, seed, [replicate,] "
                                   "accuracy; baseline = arm real with n_add 0, or arm baseline."),
    out: Path = typer.Option(Path("fit"), "--out", help="Directory for report + summary.json."),
    metric: str = typer.Option("accuracy", help="Column holding the metric."),
    ci: float = typer.Option(0.95, help="Coverage of every interval."),
    k: float = typer.Option(1.0, help="Fixed scale k of the fitted formula (per-class counts)."),
    run: str | None = typer.Option(None, "--run", help="Of an export of several runs: the "
                                   "run (its `run` column) to fit."),
    variance: str = typer.Option("moderated", help="Variance of each gain: moderated (borrowed "
                                 "across the cells of a family) or per_cell (each cell's own t)."),
    force: bool = FORCE_OPT,
) -> None:
    """Equivalence statistics and report for results from any training pipeline."""
    from synthequiv.reporting.rebuild import fit_results

    result = fit_results(results, out, metric, ci, k, force=force, run=run, variance=variance)
    if result["replaced"]:
        console.print(f"replaced the earlier fit report in {out}")
    console.print(f"report: {result['report']}")
    console.print(f"[bold]headline:[/] {result['headline']}")


@app.command("plan")
def plan_cmd(
    source: Path = typer.Argument(..., help="A run directory, or a results CSV (as for fit)."),
    target_gain: float | None = typer.Option(
        None, "--target-gain", help="Points over each base size's baseline, e.g. 2."),
    target_accuracy: float | None = typer.Option(
        None, "--target-accuracy", help="Absolute level in (0, 1], e.g. 0.97."),
    metric: str = typer.Option("accuracy", help="Column holding the metric."),
    as_json: bool = typer.Option(False, "--json", help="Print the plan and check as JSON."),
) -> None:
    """Per base size: about how many synthetic images/class to generate, or real images/class
    to collect, to reach a target (95 % CI), from the run's fitted curves; flags extrapolation
    and reports how well those curves predicted held-out cells. Trains nothing."""
    import json

    from synthequiv.reporting.rebuild import read_source
    from synthequiv.stats.planner import Target, heldout_check, heldout_text, plan, plan_lines
    from synthequiv.utils import to_jsonable

    target = Target(target_gain, target_accuracy)
    rows, k, ci = read_source(source, metric)
    result, check = plan(rows, target, k, ci, metric), heldout_check(rows, k, ci, metric)
    if as_json:
        typer.echo(json.dumps(to_jsonable({"plan": result, "heldout": check}), indent=2))
        return
    for line in [*plan_lines(result), heldout_text(check)]:
        typer.echo(line)


@app.command()
def export(
    runs: list[Path] = typer.Argument(..., help="Run directories."),
    fmt: str = typer.Option("csv", "--format", help="csv | parquet (needs pyarrow)."),
    out: Path | None = typer.Option(None, "--out", help="Output file (default results.FORMAT)."),
    force: bool = FORCE_OPT,
) -> None:
    """Every results row of the runs, stacked, with run and dataset columns."""
    from synthequiv.reporting.rebuild import export_rows, write_export
    from synthequiv.runtime.outputs import guard_output

    if fmt not in ("csv", "parquet"):
        raise SynthequivError(f"unknown export format '{fmt}' (use csv or parquet)")
    out = out or Path(f"results.{fmt}")
    guard_output(out, fmt, force=force)  # before reading the runs
    rows = export_rows(runs)
    path = write_export(rows, out, fmt, force=force)
    console.print(f"{len(rows)} rows from {len(runs)} run(s): {path}")


def _study_cfg(preset: str, config: Path | None, set_: list[str], extra: list[str]):
    from synthequiv import config as C

    return C.resolve(preset, config, list(set_) + extra)


PRESET_OPT = typer.Option("quick", "--preset", help="Study preset whose settings to use.")
CONFIG_OPT = typer.Option(None, "--config", help="YAML overrides (study config layout).")
SET_OPT = typer.Option([], "--set", help="KEY=VALUE override, e.g. generator.train_kimg=51.2")


@gen_app.command("train")
def generator_train(
    source: str,
    base_per_class: int = typer.Option(..., "--base-per-class", help="Base set B(n) size."),
    out: Path = typer.Option(..., "--out", help="Generator directory."),
    root: str = ROOT_OPT,
    kimg: float | None = typer.Option(None, "--kimg", help="Training length (k images)."),
    test_per_class: int | None = typer.Option(None, help="Hold-out size when there is no test "
                                              "split (default: the preset's, 50)."),
    seed: int | None = typer.Option(None, help="Split and training seed (default: preset's)."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda (default: preset's)."),
    nproc: int | None = typer.Option(None, "--processes",
                                     help="DDP processes (one per GPU), via torchrun."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network."),
    preset: str = PRESET_OPT,
    config: Path | None = CONFIG_OPT,
    set_: list[str] = SET_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Train a class-conditional generator on the base set B(n) of SOURCE only, with the
    generator settings of --preset / --config / --set (e.g. --preset cifar10)."""
    from synthequiv.config import check_outside_inputs, validate
    from synthequiv.generation.distributed import check_split, train_distributed
    from synthequiv.inputs.data import load_dataset
    from synthequiv.inputs.splits import SplitConfig, make_splits
    from synthequiv.runtime.lock import RunLock
    from synthequiv.runtime.outputs import guard_output
    from synthequiv.utils import check_positive, check_seed, resolve_device

    if seed is not None:
        check_seed("--seed", seed)
    extra = [f"data.source={source}"] + ([f"data.root={root}"] if root else [])
    extra += [f"generator.train_kimg={kimg}"] if kimg is not None else []
    extra += [f"splits.test_per_class={test_per_class}"] if test_per_class is not None else []
    extra += [f"splits.seed={seed}", f"generator.seed={seed}"] if seed is not None else []
    extra += [f"device={device}"] if device else []
    extra += [f"generator_nproc={nproc}"] if nproc is not None else []
    cfg = _study_cfg(preset, config, set_, extra)
    validate(cfg)  # before loading data or creating --out: --kimg nan fails at once
    guard_output(out, "generator", force=force)  # an existing generator dir resumes
    check_outside_inputs(cfg, out)
    check_seed("--seed", cfg.generator.seed)
    check_positive("--processes", cfg.generator_nproc)
    check_split(cfg.generator.batch_size, cfg.generator_nproc)
    dev = resolve_device(cfg.device)
    ds = load_dataset(cfg.data)
    sp = make_splits(ds, SplitConfig((base_per_class,), cfg.splits.test_per_class,
                                     cfg.splits.seed))
    x, y = sp.base(base_per_class)
    # two trainings into one --out are refused; under the user's torchrun its ranks share
    # --out, so rank 0 alone holds the lock for the group
    lead = int(os.environ.get("RANK", "0")) == 0
    with RunLock(out, what="generator training") if lead else contextlib.nullcontext():
        ckpt = train_distributed(x, y, ds.num_classes, cfg.generator, out, dev,
                                 cfg.generator_nproc, compile_ or cfg.compile)
    console.print(f"checkpoint: {ckpt}")


@gen_app.command("sample")
def generator_sample(
    gen_dir: Path,
    per_class: int = typer.Option(..., "--per-class"),
    out: Path = typer.Option(..., "--out", help="samples .npz (a .png grid is written beside)."),
    steps: int | None = typer.Option(None, help="Denoising steps (default: preset's, 25)."),
    sampler: str | None = typer.Option(None, help="dpmpp | ddim | ddpm (default: preset's)."),
    cfg_scale: float | None = typer.Option(None, "--cfg-scale", help="Guidance (default 1)."),
    seed: int | None = typer.Option(None, help="Sampling seed (default: preset's, 0)."),
    device: str | None = typer.Option(None, help="auto | cpu | cuda (default: preset's)."),
    compile_: bool = typer.Option(False, "--compile", help="torch.compile the network."),
    preset: str = PRESET_OPT,
    config: Path | None = CONFIG_OPT,
    set_: list[str] = SET_OPT,
    force: bool = FORCE_OPT,
) -> None:
    """Sample PER_CLASS images of every class from a trained generator, with the sampling
    settings of --preset / --config / --set."""
    from synthequiv.config import validate
    from synthequiv.generation.checkpoint import CHECKPOINT_NAME
    from synthequiv.generation.families import family_of, load_generator
    from synthequiv.generation.sampling import (
        check_sample_config,
        class_quota_labels,
        save_grid_png,
        save_samples,
    )
    from synthequiv.runtime.outputs import guard_output
    from synthequiv.utils import check_positive, check_seed, resolve_device

    if seed is not None:
        check_seed("--seed", seed)
    given = {"steps": steps, "sampler": sampler, "cfg_scale": cfg_scale, "seed": seed}
    extra = [f"sampling.{k}={v}" for k, v in given.items() if v is not None]
    # the sampler is checked against the checkpoint's family, not the preset's (--sampler heun
    # on an edm generator was refused as "not a unet sampler"); a missing checkpoint is
    # reported after the output checks, by load_generator
    if (Path(gen_dir) / CHECKPOINT_NAME).is_file():
        extra.append(f"generator.family={family_of(gen_dir).name}")
    cfg = _study_cfg(preset, config, set_, extra + ([f"device={device}"] if device else []))
    validate(cfg)
    scfg = cfg.sampling
    check_sample_config(scfg)
    check_seed("--seed", scfg.seed)
    check_positive("--per-class", per_class)
    if out.suffix != ".npz":  # the grid goes to OUT with .png: a .png OUT would overwrite
        raise SynthequivError(f"--out {out} must end in .npz (the samples file; the PNG grid "
                              "is written beside it)")
    guard_output(out, "samples", force=force)  # refused now, not after sampling
    guard_output(out.with_suffix(".png"), "png", force=force)
    dev = resolve_device(cfg.device)
    family, gen = load_generator(gen_dir, dev, compile=compile_ or cfg.compile)  # any family
    scfg = family.samplers.resolve(scfg)  # auto → the family's sampler; others' names refused
    labels = class_quota_labels(per_class, gen.num_classes)
    images = family.sample(gen, labels, scfg, dev)
    save_samples(out, images, labels, {"generator": str(gen_dir), "sampling": vars(scfg)})
    save_grid_png(out.with_suffix(".png"), images, labels, gen.num_classes)
    console.print(f"samples: {out} ({len(labels)} images)")


def _usage_error_types() -> tuple[type, ...]:
    """Click's exception base, from click itself and from the copy that newer typer vendors
    (typer._click): `except click.ClickException` alone misses the vendored one."""
    types = []
    for module in ("typer._click.exceptions", "click.exceptions"):
        try:
            types.append(importlib.import_module(module).ClickException)
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _usage_error(exc: Exception) -> None:
    """One `error:` line (exit 2) for a click usage error; no-args prints the help first."""
    ctx = getattr(exc, "ctx", None)
    if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
        typer.echo(ctx.get_help())
        message = "missing command"
    else:
        message = " ".join(exc.format_message().split())
    hint = f" (see '{ctx.command_path} --help')" if ctx is not None else ""
    print(f"error: {message}{hint}", file=sys.stderr)
    sys.exit(2)


def _interrupted() -> None:
    print("interrupted; rerun the same command to resume", file=sys.stderr)
    sys.exit(130)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except SynthequivError as exc:
        print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        _interrupted()
    except MemoryError:  # a size no estimate caught: one line, not a traceback
        print("error: out of memory; use smaller images (--image-size, data.image_size) or "
              "fewer of them", file=sys.stderr)
        sys.exit(2)
    except _usage_error_types() as exc:
        _usage_error(exc)
    except typer.Abort:
        print("error: aborted", file=sys.stderr)
        sys.exit(1)
    # not standalone, typer returns the exit code: 130 for Ctrl-C, 0 after --help
    if code == 130:
        _interrupted()
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
