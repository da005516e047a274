"""A pass's generators, their samples and its cells as one queue on the local worker pool
(`runtime.executor.WorkerPool`), instead of stages that each wait for their slowest task.

Stage by stage, a core idles at every boundary: 9 quick generators on 2 workers leave one
worker idle through the whole last round (~33 s), sampling waits for the last generator, the
cells for the last sample, and each stage starts its own pool (~4 s). Here a generator's
sampling shards are queued the moment it is trained; the real arm's cells, which need no
synthetic image, fill any worker nothing more urgent wants; and a replicate's synthetic cells
are queued as soon as its last set is saved (in a study without levers or provided arms:
their sets need executor work of their own, so their cells wait for the stage-wise pass).
Among ready tasks: generators, then sampling shards, then cells (longest first, so the last
task to start is a short one), then the analyses' small trainings of replicate 0's sets
(measures/trainings.py; with `analysis_of`), which would otherwise train one by one in the
driver after the queue, one core idle.

What it writes is exactly what the stage-wise code writes (checkpoints, samples files, result
rows under the same keys), so `run_replicates` then finds that work done and goes on with
what is left (levers, provided arms, their cells) as before. Used for the local executor with
more than one worker process; Ray, one process, or DDP generators run stage by stage.
"""

from __future__ import annotations

from collections.abc import Callable
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
from synthequiv.measures.trainings import train_spec_task
from synthequiv.orchestration.grid import (
    Replicate,
    cell_groups,
    cell_task,
    plan_cells,
    record_rows,
)
from synthequiv.rundir import ResultsTable, config_hash
from synthequiv.runtime.config import RuntimeConfig
from synthequiv.runtime.executor import Task, WorkerPool, local_workers
from synthequiv.runtime.progress import progress_bar

GENERATOR, SAMPLE, CELL, ANALYSIS = 0, 1, 2, 3  # task priorities: lower runs first


def pipelines(rt: RuntimeConfig) -> bool:
    """Whether a pass's first work runs as one queue: the local executor with more than one
    worker process, each generator trained by one of them (no DDP)."""
    return rt.executor == "local" and rt.generator_nproc <= 1 and local_workers(rt) > 1


def first_work(cfg: StudyConfig, rcfgs: list[StudyConfig], splits: list[Splits],
               jobs: dict[int, list[GenJob]], reps: dict[int, Replicate], run_dir: Path,
               device: torch.device, progress: bool,
               sets_of: Callable[[int], dict] | None = None,
               analysis_of: Callable[[Replicate], dict] | None = None,
               trained: dict | None = None) -> bool:
    """Train the untrained `jobs` (replicate r's in jobs[r]), sample every one of them and
    train every replicate's real-arm cells not in the results table yet, as one queue (module
    docstring); `rcfgs[r]` is replicate r's config. With `sets_of(r)` (replicate r's synthetic
    sets, built in this process once its samples are on disk: a study without levers or
    provided arms, whose sets need no more executor work), replicate r's remaining cells join
    the queue as soon as its last set is saved, and r is added to `reps` (replicates already
    there are taken as they are). With `analysis_of(replicate 0)` ({key: spec}, the analyses'
    trainings still to make), those join the queue then too; their models go into `trained`.
    Returns whether there was anything to do."""
    rt, ds = cfg.runtime, splits[0].dataset
    plain = {r: reps.get(r) or Replicate(r, rcfg, sp, {})
             for r, (rcfg, sp) in enumerate(zip(rcfgs, splits))}
    table = ResultsTable(Path(run_dir) / "results.sqlite")
    try:
        done = table.done_keys()

        def cells_of(group: dict[int, Replicate]) -> list:
            # with no synthetic sets, plan_cells plans the real arm alone (baseline included),
            # under the keys the full plan gives them
            return [c for c in plan_cells(cfg, list(group.values()), ds.digest)
                    if c.key not in done]

        sets = ShardedSets(cfg.synthetic.n_per_class, ds.num_classes, ds.shape,
                           local_workers(rt), device)
        all_jobs = [job for r in sorted(jobs) for job in jobs[r]]
        shards = {job.path: sets.items(job_target(job)) for job in all_jobs}
        owner = {job.path: r for r, js in jobs.items() for job in js}
        pending = {r: {job.path for job in jobs.get(r, [])} for r in plain}
        untrained = [job for job in all_jobs if not job.trained]
        cells = cells_of(plain)
        tasks = [Task(GENERATOR, "generator", train_group_task, group)
                 for group in train_groups(untrained, ds.num_classes, rt, device)]
        tasks += [Task(SAMPLE, "sample", sample_task, item)
                  for job in all_jobs if job.trained for item in shards[job.path]]
        tasks += [Task(CELL, "cell", cell_task, group)
                  for group in cell_groups(cfg, cells, plain, device)]
        total = len(untrained) + sum(len(v) for v in shards.values()) + len(cells)
        if not tasks:
            return False
        chash = config_hash(cfg, ds.digest)

        def sets_ready(r: int) -> list[Task]:
            """Replicate r's sets are all on disk: its remaining cells (sets_of given), and
            for replicate 0 the analyses' trainings (analysis_of given)."""
            if sets_of is None or r in reps:
                return []
            reps[r] = Replicate(r, rcfgs[r], splits[r], sets_of(r))
            todo = [c for c in cells_of({r: reps[r]}) if c.arm != "real"]
            bar.extend(len(todo))
            pool.share(f"cell-r{r}", {"reps": {r: reps[r]}, "ccfg": cfg.classifier,
                                      "device": device})
            more = [Task(CELL, f"cell-r{r}", cell_task, group)
                    for group in cell_groups(cfg, todo, reps, device)]
            specs = analysis_of(reps[r]) if analysis_of is not None and r == 0 else {}
            bar.extend(len(specs))
            return more + [Task(ANALYSIS, "analysis", train_spec_task, item)
                           for item in specs.items()]

        def on_done(task: Task, result) -> list[Task]:
            if task.kind == "generator":  # trained: its samples are ready to draw
                for job in result:
                    bar.advance(1, f"generator {job.name}")
                return [Task(SAMPLE, "sample", sample_task, item)
                        for job in result for item in shards[job.path]]
            if task.kind == "sample":
                target, start, images = result
                whole = sets.add(target, start, images)
                bar.advance(1, f"sampled {sets.name(target, start, images)}")
                if whole is None:
                    return []
                r = owner[target.path]
                pending[r].discard(target.path)
                return sets_ready(r) if not pending[r] else []
            if task.kind == "analysis":
                key, model = result
                trained[key] = model
                name = key if isinstance(key, str) else " ".join(key)
                bar.advance(1, f"analysis classifier {name}")
                return []
            record_rows(result, table, chash, bar)
            return []

        with WorkerPool(rt, local_workers(rt)) as pool, \
                progress_bar("generators, samples and cells", total=total,
                             enabled=progress) as bar:
            pool.share("generator", {"num_classes": ds.num_classes, "rt": rt, "device": device,
                                     "progress": progress})
            pool.share("sample", sets.shared(progress, rt.compile))
            pool.share("cell", {"reps": plain, "ccfg": cfg.classifier, "device": device})
            pool.share("analysis", {"device": device})
            for r in plain:  # replicates with every set on disk already
                if not pending[r]:
                    tasks += sets_ready(r)
            pool.run(tasks, on_done)
        return True
    finally:
        table.close()
