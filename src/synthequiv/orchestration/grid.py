"""The classifier grid of a study: its cells (replicate, base size, arm, amount, seed), their
keys, the data each trains on, and the training of groups of them as executor tasks. The
driver (study.py) is the results table's single writer."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from synthequiv import __version__
from synthequiv.config import StudyConfig
from synthequiv.generation.levers import variant_arms
from synthequiv.generation.provided_entries import study_arms
from synthequiv.generation.synthetic import SyntheticSet
from synthequiv.inputs.splits import Splits
from synthequiv.rundir import ResultsTable, config_hash
from synthequiv.runtime.progress import progress_bar
from synthequiv.stats.config import cell_seeds
from synthequiv.utils import stable_hash


@dataclass(frozen=True)
class Cell:
    n_base: int  # base images per class
    arm: str  # real | closed | open
    n_add: int  # added images per class (0 = the shared baseline, stored under arm "real")
    seed: int
    key: str
    replicate: int = 0


@dataclass
class Replicate:
    """One draw of the whole design: its own splits (base sets, reserve, hold-out test set),
    its own generators and samples. Classifier seeds are nested inside it."""

    index: int
    cfg: StudyConfig  # the study's config with this replicate's seeds
    sp: Splits
    synth: dict[tuple[str, int], SyntheticSet]


# ----------------------------------------------------------------------------- cells


def plan_cells(cfg: StudyConfig, reps: list[Replicate], digest: str = "") -> list[Cell]:
    """Every (replicate, base size, arm, amount, seed); keys hash the data (`digest`: its
    content), the classifier recipe, the replicate's splits and the synthetic set a cell uses."""
    base = config_hash(cfg, digest)
    cells = []
    for rep in reps:
        for n in cfg.splits.base_per_class:
            amounts = [("real", 0)]
            for arm in study_arms(cfg) + tuple(variant_arms(cfg)):  # + provided, + levers
                if arm != "real" and (arm, n) not in rep.synth:
                    continue  # a provided arm given for other base sizes only
                adds = cfg.grid.real_add_per_class if arm == "real" else cfg.grid.syn_add_per_class
                amounts += [(arm, m) for m in adds]
            for arm, m in amounts:
                samples_key = rep.synth[(arm, n)].key if arm != "real" else ""
                for seed in cell_seeds(cfg.grid, m):
                    key = stable_hash(base, rep.cfg.splits, samples_key, n, arm, m, seed)
                    cells.append(Cell(n, arm, m, seed, key, rep.index))
    return cells


def cell_data(cell: Cell, reps: dict[int, Replicate]):
    """(real_x, real_y, syn_x, syn_y) for one cell; syn_* are None for the real arm."""
    rep = reps[cell.replicate]
    sp, synth = rep.sp, rep.synth
    idx = sp.base_indices(cell.n_base)
    if cell.arm == "real" and cell.n_add:
        idx = torch.cat([idx, sp.reserve_indices(cell.n_add)])
    x, y = sp.dataset.images[idx], sp.dataset.labels[idx]
    if cell.arm == "real" or cell.n_add == 0:
        return x, y, None, None
    sx, sy = synth[(cell.arm, cell.n_base)].first_per_class(cell.n_add)
    return x, y, sx, sy


# ----------------------------------------------------------------------------- one cell


def train_cell(cells: list[Cell], datas: list, tests: dict, num_classes: int, ccfg,
               device) -> list[dict]:
    """Train and evaluate a group of cells (one: `train_classifier`; several: one batched
    computation, `batched.train_classifiers`); their results rows. tests: {replicate:
    (test_x, test_y)} — a group may span replicates, each cell is scored on its own
    replicate's test split (a group's cells of one replicate together, `evaluate_many`).
    Pure: safe as a Ray task."""
    from synthequiv.classification.batched import evaluate_many, train_classifiers
    from synthequiv.classification.classifier import evaluate, train_classifier

    t0 = time.time()
    if len(cells) == 1:
        (x, y, sx, sy), = datas
        model = train_classifier(x, y, num_classes, ccfg, cells[0].seed, sx, sy, device=device)
        scores = [evaluate(model, *tests[cells[0].replicate], num_classes, device,
                           ccfg.eval_batch_size)]
    else:  # scored together per replicate: one batched inference, one metrics call each
        models = train_classifiers(datas, [c.seed for c in cells], num_classes, ccfg, device)
        scores = [None] * len(cells)
        for r in dict.fromkeys(c.replicate for c in cells):
            idx = [i for i, c in enumerate(cells) if c.replicate == r]
            for i, m in zip(idx, evaluate_many([models[i] for i in idx], *tests[r],
                                               num_classes, device, ccfg.eval_batch_size)):
                scores[i] = m
    rows = []
    for cell, (_, y, _, sy), metrics in zip(cells, datas, scores):
        n_test = len(tests[cell.replicate][1])
        rows.append({
            "key": cell.key, "n_base": cell.n_base, "arm": cell.arm, "n_add": cell.n_add,
            "seed": cell.seed, "replicate": cell.replicate, "accuracy": metrics["accuracy"],
            "balanced_accuracy": metrics.get("balanced_accuracy"), "auc": metrics.get("auc"),
            "n_train": len(y) + (0 if sy is None else len(sy)), "n_test": n_test,
            "version": __version__, "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S"),
        })
    for row in rows:  # a group's wall time, shared equally by its cells
        row["wall_s"] = (time.time() - t0) / len(rows)
    return rows


def cell_groups(cfg: StudyConfig, todo: list[Cell], reps: dict[int, Replicate],
                device: torch.device) -> list[list[Cell]]:
    """`todo` in groups of `cfg.cell_group` (0 = auto: one by one on a CPU) trained at once,
    replicate after replicate (a group may take the end of one replicate and the start of the
    next: cells are scored on their own replicate's test split); each group is one task."""
    from synthequiv.classification.batched import plan_groups, resolve_group
    from synthequiv.classification.classifier import num_train_steps

    if not todo:
        return []
    ccfg = cfg.classifier
    sp0 = reps[todo[0].replicate].sp
    size = resolve_group(cfg.cell_group, ccfg.arch, max(sp0.dataset.images.shape[-2:]), device)
    todo = sorted(todo, key=lambda c: c.replicate)  # stable: each replicate's cells in order
    steps = [ccfg.train_steps] * len(todo)
    if ccfg.budget == "epochs" and size > 1:  # step counts follow pool sizes: group by them
        steps = [num_train_steps(ccfg, sum(len(t) for t in cell_data(c, reps)[1::2]
                                           if t is not None)) for c in todo]
    return [[todo[i] for i in idx] for idx in plan_groups(steps, size)]


def record_rows(rows: list[dict], table: ResultsTable, chash: str, bar) -> None:
    """A finished group's rows into the table, stamped with `chash` (config_hash: what
    report/plan use to pick this config's rows), each counted on `bar`; the driver is the
    table's single writer."""
    for row in rows:
        row["config_hash"] = chash
        table.add(row)
        bar.advance(1, f"{row['arm']} n={row['n_base']}+{row['n_add']} s={row['seed']}: acc "
                       f"{row['accuracy']:.3f}")


def run_cells(cfg: StudyConfig, cells: list[Cell], reps: dict[int, Replicate],
              table: ResultsTable, device: torch.device, chash: str,
              progress: bool = True) -> None:
    """Cells not yet in the table, in groups (`cell_groups`), one executor task per group;
    each group's rows are written as soon as it returns (`record_rows`)."""
    from synthequiv.runtime.executor import map_tasks

    todo = [c for c in cells if c.key not in table.done_keys()]
    groups = cell_groups(cfg, todo, reps, device)
    # big inputs travel once (Ray puts them in the object store); each task gets a group
    shared = {"reps": reps, "ccfg": cfg.classifier, "device": device}
    with progress_bar("classifier grid", total=len(cells), enabled=progress,
                      done=len(cells) - len(todo)) as bar:
        for rows in map_tasks(cell_task, groups, shared, cfg.runtime, kind="cell"):
            record_rows(rows, table, chash, bar)


def cell_task(cells: list[Cell], reps: dict[int, Replicate], ccfg, device) -> list[dict]:
    datas = [cell_data(cell, reps) for cell in cells]
    tests = {c.replicate: (reps[c.replicate].sp.test_images, reps[c.replicate].sp.test_labels)
             for c in cells}
    return train_cell(cells, datas, tests, reps[cells[0].replicate].sp.dataset.num_classes,
                      ccfg, device)
