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

import time
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import StudyConfig, dump_yaml, validate, validate_data
from .data import Dataset, data_digest, load_dataset, note_data_digest
from .executor import set_cpu_threads
from .lock import RunLock
from .progress import progress_bar
from .results import ResultsTable
from .splits import Splits, make_splits
from .synthetic import SyntheticSet, prepare_synthetic
from .utils import SynthequivError, atomic_write_text, resolve_device, stable_hash, sweep_temp_files


@dataclass(frozen=True)
class Cell:
    n_base: int  # base images per class
    arm: str  # real | closed | open
    n_add: int  # added images per class (0 = the shared baseline, stored under arm "real")
    seed: int
    key: str


# ----------------------------------------------------------------------------- planning


def check_grid(cfg: StudyConfig, sp: Splits) -> None:
    """Fail before any training if the grid asks for data the splits cannot give."""
    bad = [a for a in cfg.grid.arms if a not in ("real", "closed", "open")]
    if bad:
        raise SynthequivError(f"unknown arm '{bad[0]}' (use real, closed, open)")
    if len(cfg.grid.seeds) < 1:
        raise SynthequivError("grid.seeds is empty")
    for m in cfg.grid.real_add_per_class + cfg.grid.syn_add_per_class:
        if m <= 0:
            raise SynthequivError(f"grid added amounts must be > 0, got {m}")
    if "real" in cfg.grid.arms and cfg.grid.real_add_per_class:
        sp.reserve_indices(max(cfg.grid.real_add_per_class))


def config_hash(cfg: StudyConfig) -> str:
    """What every cell depends on: data, splits and the classifier recipe."""
    return stable_hash(cfg.data, data_digest(cfg.data), cfg.splits, cfg.classifier)


def plan_cells(cfg: StudyConfig, synth: dict[tuple[str, int], SyntheticSet]) -> list[Cell]:
    base = config_hash(cfg)
    cells = []
    for n in cfg.splits.base_per_class:
        amounts = [("real", 0)]
        for arm in cfg.grid.arms:
            adds = cfg.grid.real_add_per_class if arm == "real" else cfg.grid.syn_add_per_class
            amounts += [(arm, m) for m in adds]
        for arm, m in amounts:
            samples_key = synth[(arm, n)].key if arm != "real" else ""
            for seed in cfg.grid.seeds:
                key = stable_hash(base, samples_key, n, arm, m, seed)
                cells.append(Cell(n, arm, m, seed, key))
    return cells


def cell_data(cell: Cell, sp: Splits, synth: dict[tuple[str, int], SyntheticSet]):
    """(real_x, real_y, syn_x, syn_y) for one cell; syn_* are None for the real arm."""
    idx = sp.base_indices(cell.n_base)
    if cell.arm == "real" and cell.n_add:
        idx = torch.cat([idx, sp.reserve_indices(cell.n_add)])
    x, y = sp.dataset.images[idx], sp.dataset.labels[idx]
    if cell.arm == "real" or cell.n_add == 0:
        return x, y, None, None
    sx, sy = synth[(cell.arm, cell.n_base)].first_per_class(cell.n_add)
    return x, y, sx, sy


# ----------------------------------------------------------------------------- one cell


def train_cell(cell: Cell, data, test_x, test_y, num_classes: int, ccfg, device) -> dict:
    """Train and evaluate one classifier; return its results row. Pure: safe as a Ray task."""
    from .classifier import evaluate, train_classifier

    t0 = time.time()
    x, y, sx, sy = data
    model = train_classifier(x, y, num_classes, ccfg, cell.seed, sx, sy, device=device)
    metrics = evaluate(model, test_x, test_y, num_classes, device=device)
    return {
        "key": cell.key, "n_base": cell.n_base, "arm": cell.arm, "n_add": cell.n_add,
        "seed": cell.seed, "accuracy": metrics["accuracy"],
        "balanced_accuracy": metrics.get("balanced_accuracy"), "auc": metrics.get("auc"),
        "n_train": len(y) + (0 if sy is None else len(sy)), "wall_s": time.time() - t0,
        "version": __version__, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }


def run_cells(cfg: StudyConfig, cells: list[Cell], sp: Splits, synth, table: ResultsTable,
              device: torch.device, progress: bool = True) -> None:
    from .executor import map_tasks

    todo = [c for c in cells if c.key not in table.done_keys()]
    chash = config_hash(cfg)
    # big inputs travel once (Ray puts them in the object store); each task gets a Cell
    shared = {"sp": sp, "synth": synth, "ccfg": cfg.classifier, "device": device}
    with progress_bar("classifier grid", total=len(cells), enabled=progress) as bar:
        bar.advance(len(cells) - len(todo))
        for row in map_tasks(_cell_task, todo, shared, cfg, kind="cell"):
            row["config_hash"] = chash
            table.add(row)  # the driver is the single writer
            bar.advance(1, f"{row['arm']} n={row['n_base']}+{row['n_add']} s={row['seed']}: "
                           f"acc {row['accuracy']:.3f}")


def _cell_task(cell: Cell, sp: Splits, synth, ccfg, device) -> dict:
    data = cell_data(cell, sp, synth)
    return train_cell(cell, data, sp.test_images, sp.test_labels, sp.dataset.num_classes,
                      ccfg, device)


# ----------------------------------------------------------------------------- the study


def load_inputs(cfg: StudyConfig) -> tuple[Dataset, Splits]:
    ds = load_dataset(cfg.data)
    sp = make_splits(ds, cfg.splits)
    check_grid(cfg, sp)
    return ds, sp


def run_study(cfg: StudyConfig, run_dir: Path, progress: bool = True) -> dict:
    validate(cfg)  # every stage's config, then the data (read-only): bad input writes nothing
    ds, sp = load_inputs(cfg)
    validate_data(cfg, ds)
    run_dir = Path(run_dir)
    with RunLock(run_dir):
        sweep_temp_files(run_dir)  # what a killed run was writing; its finished files stay
        note_data_digest(run_dir, ds)
        atomic_write_text(run_dir / "config.yaml", dump_yaml(cfg))
        device = resolve_device(cfg.device)
        set_cpu_threads(cfg)
        timings = {}
        t0 = time.time()
        synth = prepare_synthetic(cfg, sp, run_dir, device, progress)
        timings["generators_and_sampling_s"] = time.time() - t0
        cells = plan_cells(cfg, synth)
        table = ResultsTable(run_dir / "results.sqlite")
        t0 = time.time()
        run_cells(cfg, cells, sp, synth, table, device, progress)
        timings["classifier_grid_s"] = time.time() - t0
        rows = table.rows({c.key for c in cells})
        table.close()
        return finish(cfg, run_dir, rows, sp, synth, device, timings, progress)


def finish(cfg, run_dir, rows, sp, synth, device, timings, progress) -> dict:
    from .equivalence import analyse
    from .report import write_report

    t0 = time.time()
    equivalence = analyse(rows, cfg.equivalence)
    timings["equivalence_s"] = time.time() - t0
    analysis = None
    if cfg.analysis.enabled:
        t0 = time.time()
        from .analyses import analyse_study

        analysis = analyse_study(cfg, run_dir, sp, synth, device, progress)
        timings["analyses_s"] = time.time() - t0
    t0 = time.time()
    out = write_report(cfg, run_dir, rows, equivalence, analysis, sp, synth)
    timings["report_s"] = time.time() - t0
    out["timings"] = timings
    return out


def read_run_config(run_dir: Path) -> StudyConfig:
    from . import config as C

    if not (Path(run_dir) / "config.yaml").exists():
        raise SynthequivError(f"{run_dir} is not a run directory (no config.yaml)")
    return C.build(C.StudyConfig, C.read_yaml(Path(run_dir) / "config.yaml"))


def rebuild_report(run_dir: Path) -> Path:
    """Report from the files of a run directory; finishes whatever the run had left to do."""
    return Path(run_study(read_run_config(run_dir), Path(run_dir))["report"])


def analyse_run(run_dir: Path, progress: bool = True) -> dict:
    """The analyses of a run directory's synthetic sets (cached in its analysis.json)."""
    from .analyses import analyse_study

    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    with RunLock(run_dir):
        device = resolve_device(cfg.device)
        _, sp = load_inputs(cfg)
        synth = prepare_synthetic(cfg, sp, run_dir, device, progress)
        return analyse_study(cfg, run_dir, sp, synth, device, progress)
