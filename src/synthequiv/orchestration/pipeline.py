"""A pass's generators, their samples and the real arm's cells as one queue on the local
worker pool (`runtime.executor.WorkerPool`), instead of three stages that each wait for their
slowest task.

Stage by stage, a core idles at every boundary: 9 quick generators on 2 workers leave one
worker idle through the whole last round (~33 s), the sampling stage waits for the last
generator, and each stage starts its own pool (~4 s). Here a generator's sampling shards are
queued the moment it is trained, and the real arm's cells — which need no synthetic image —
fill any worker nothing more urgent wants. Order among ready tasks: generators, then sampling
shards, then cells (longest first, so the last task to start is a short one).

What it writes is exactly what the stage-wise code writes (checkpoints, samples files, result
rows under the same keys), so `run_replicates` then finds that work done and goes on with the
synthetic sets, levers and the remaining cells as before. Used for the local executor with
more than one worker process; Ray, one process, or DDP generators run stage by stage.
"""

from __future__ import annotations

from pathlib import Path

import torch

from synthequiv.config import StudyConfig
from synthequiv.generation.synthetic import (
    GenJob,
    ShardedSets,
    job_target,
    sample_task,
    train_group_task,
    train_groups,
)
from synthequiv.inputs.splits import Splits
from synthequiv.orchestration.grid import (
    Replicate,
    cell_groups,
    cell_status,
    cell_task,
    plan_cells,
)
from synthequiv.rundir import ResultsTable, config_hash
from synthequiv.runtime.config import RuntimeConfig
from synthequiv.runtime.executor import Task, WorkerPool, local_workers
from synthequiv.runtime.progress import progress_bar

GENERATOR, SAMPLE, CELL = 0, 1, 2  # task priorities: lower runs first


def pipelines(rt: RuntimeConfig) -> bool:
    """Whether a pass's first work runs as one queue: the local executor with more than one
    worker process, each generator trained by one of them (no DDP)."""
    return rt.executor == "local" and rt.generator_nproc <= 1 and local_workers(rt) > 1


def first_work(cfg: StudyConfig, rcfgs: list[StudyConfig], splits: list[Splits],
               jobs: list[GenJob], run_dir: Path, device: torch.device, progress: bool) -> int:
    """Train the untrained `jobs`, sample every one of them and train the real arm's cells of
    every replicate (`rcfgs[r]`: replicate r's config) not in the results table yet, as one
    queue (module docstring). Returns how many tasks ran."""
    rt, ds = cfg.runtime, splits[0].dataset
    reps = {r: Replicate(r, rcfg, sp, {}) for r, (rcfg, sp) in enumerate(zip(rcfgs, splits))}
    # with no synthetic sets, plan_cells plans the real arm alone (baseline included), under
    # the keys the full plan gives them
    table = ResultsTable(Path(run_dir) / "results.sqlite")
    try:
        done = table.done_keys()
        cells = [c for c in plan_cells(cfg, list(reps.values()), ds.digest) if c.key not in done]
        sets = ShardedSets(cfg.synthetic.n_per_class, ds.num_classes, ds.shape,
                           local_workers(rt), device)
        shards = {job.path: sets.items(job_target(job)) for job in jobs}
        untrained = [job for job in jobs if not job.trained]
        tasks = [Task(GENERATOR, "generator", train_group_task, group)
                 for group in train_groups(untrained, ds.num_classes, rt, device)]
        tasks += [Task(SAMPLE, "sample", sample_task, item)
                  for job in jobs if job.trained for item in shards[job.path]]
        tasks += [Task(CELL, "cell", cell_task, group)
                  for group in cell_groups(cfg, cells, reps, device)]
        if not tasks:
            return 0
        chash = config_hash(cfg, ds.digest)
        total = len(untrained) + sum(len(v) for v in shards.values()) + len(cells)

        def on_done(task: Task, result) -> list[Task]:
            if task.kind == "generator":  # trained: its samples are ready to draw
                for job in result:
                    bar.advance(1, f"generator {job.name}")
                return [Task(SAMPLE, "sample", sample_task, item)
                        for job in result for item in shards[job.path]]
            if task.kind == "sample":
                target, start, images = result
                sets.add(target, start, images)
                bar.advance(1, f"sampled {sets.name(target, start, images)}")
                return []
            for row in result:
                row["config_hash"] = chash
                table.add(row)  # the driver is the single writer
                bar.advance(1, cell_status(row))
            return []

        with WorkerPool(rt, min(local_workers(rt), len(tasks))) as pool, \
                progress_bar("generators, samples and real cells", total=total,
                             enabled=progress) as bar:
            pool.share("generator", {"num_classes": ds.num_classes, "rt": rt, "device": device,
                                     "progress": progress})
            pool.share("sample", sets.shared(progress, rt.compile))
            pool.share("cell", {"reps": reps, "ccfg": cfg.classifier, "device": device})
            pool.run(tasks, on_done)
        return len(tasks)
    finally:
        table.close()
