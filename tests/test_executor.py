"""Executors: Ray gives the local results table (same seeds); DDP-trained generators (two
gloo processes each) give the single-process samples up to rounding."""

from __future__ import annotations

import json
import re
import sqlite3

import pytest

from conftest import float32_generator_training
from synthequiv import config as C
from synthequiv.generation.synthetic import shards
from synthequiv.orchestration.study import run_study


@pytest.fixture(scope="module", autouse=True)
def float32_generators():
    """Float32 generator training (conftest.float32_generator_training): DDP/worker processes
    are compared with one process to float32 tolerance."""
    yield from float32_generator_training()

SMALL = [
    "splits.base_per_class=[5,10]",
    "grid.arms=[real,closed]",
    "grid.seeds=[0,1]",
    "grid.replicates=1",
    "grid.real_add_per_class=[5]",
    "grid.syn_add_per_class=[5]",
    "generator.train_kimg=1.0",
    "generator.warmup_kimg=0.25",
    "sampling.steps=4",
    "classifier.train_steps=20",
    "equivalence.bootstrap=20",
    "analysis.domain_train_steps=20",
    "device=cpu",
    "ray.num_cpus=2",
    "ray.sample_shards=3",
]


def _table(run_dir):
    with sqlite3.connect(run_dir / "results.sqlite") as db:
        return sorted(db.execute("SELECT key, arm, n_base, n_add, seed, accuracy FROM cells"))


def test_shards_cover_range_exactly():
    assert shards(10, 3) == [(0, 3), (3, 7), (7, 10)]
    assert shards(2, 4) == [(0, 1), (1, 2)]
    assert sum(b - a for a, b in shards(1000, 7)) == 1000
    # inner edges on whole network calls (rows per call): one process's 7 calls of 256 rows
    # for 1,600 images stay 7 however many shards, where 2 × 800 would pad to 2 × 4 calls
    assert shards(1600, 2, 256) == [(0, 768), (768, 1600)]
    for count in range(1, 9):
        parts = shards(1600, count, 256)
        assert parts[0][0] == 0 and parts[-1][1] == 1600
        assert all(a % 256 == 0 and b > a for a, b in parts)
        assert sum(-(-(b - a) // 256) for a, b in parts) == 7
    assert shards(1600, 4, 4096) == [(0, 1600)]  # less than one call: one shard


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("local")
    run_study(C.resolve("quick", None, SMALL + ["executor=local"]), run_dir, progress=False)
    return run_dir


@pytest.mark.slow  # a tiny study on a local Ray cluster (~50–150 s)
def test_ray_matches_local(local, tmp_path):
    ray = pytest.importorskip("ray", reason="Ray not installed (pip install synthequiv[ray])")
    remote = tmp_path / "ray"
    try:
        run_study(C.resolve("quick", None, SMALL + ["executor=ray"]), remote, progress=False)
    finally:
        ray.shutdown()
    a, b = _table(local), _table(remote)
    assert len(a) == 2 * ((1 + 1) * 2 + 6)  # bases × (cells × seeds + the baseline's 6)
    assert a == b
    # sampling sharded over 3 Ray tasks gives exactly the single-call images
    import numpy as np

    for pa in sorted(local.glob("samples/*.npz")):
        pb = remote / "samples" / pa.name
        np.testing.assert_array_equal(np.load(pa)["images"], np.load(pb)["images"])


@pytest.mark.slow  # a tiny study with 2-rank DDP generators (~30–70 s)
def test_ddp_generators_give_the_local_samples(local, tmp_path):
    import numpy as np
    import torch

    ddp = tmp_path / "ddp"
    run_study(C.resolve("quick", None, SMALL + ["generator_nproc=2"]), ddp, progress=False)
    assert len(_table(ddp)) == len(_table(local))
    names = sorted(p.name for p in local.glob("samples/*.npz"))
    assert names == sorted(p.name for p in ddp.glob("samples/*.npz")) and len(names) == 2
    for name in names:  # same cache keys: how a generator trains is not what it is
        a, b = (np.load(d / "samples" / name)["images"].astype(int) for d in (local, ddp))
        # weights equal up to float summation order → pixels equal up to a rounding step
        assert (a == b).mean() > 0.99 and np.abs(a - b).max() <= 8, name
    for gen_dir in ddp.glob("generators/*"):
        assert torch.load(gen_dir / "checkpoint.pt", weights_only=True)["finished"]
        assert not (gen_dir / "ddp_job.pt").exists()


@pytest.mark.slow  # a tiny study in 2 worker processes against 1 (~40–100 s); the default
# suite keeps the workers-leave-with-a-killed-study check
def test_two_local_workers_give_the_one_process_table(local, tmp_path):
    """The spawn process pool (cells, generator trainings, sampling shards): same seeds, same
    rows and the same images as running everything in the driver."""
    import numpy as np

    pooled = tmp_path / "pooled"
    run_study(C.resolve("quick", None, SMALL + ["workers=2", "cpu_threads=1"]), pooled,
              progress=False)
    assert _table(pooled) == _table(local)
    for pa in sorted(local.glob("samples/*.npz")):
        np.testing.assert_array_equal(np.load(pa)["images"],
                                      np.load(pooled / "samples" / pa.name)["images"])
    # one queue (orchestration/pipeline.py): the driver counts each generator, each sampling
    # shard as it lands and each cell; the shards' own lines come from the workers (50 images
    # per set, less than one 256-row network call: one shard each)
    log = (pooled / "log.txt").read_text()
    counted = re.findall(r"generators, samples and cells (\d+)/\d+: (\S+) (\S+)", log)
    sets = {p.stem.rsplit("-", 1)[0] for p in local.glob("samples/*.npz")}
    assert sorted(int(i) for i, *_ in counted) == list(range(1, 2 * len(sets)
                                                             + len(_table(local)) + 8 + 1))
    lines = [(what, name) for _, what, name in counted]
    for n in sets:  # sampled after it is trained
        assert lines.index(("generator", n)) < lines.index(("sampled", n))
    first_closed = min(i for i, (what, _) in enumerate(lines) if what == "closed")
    assert all(lines.index(("sampled", n)) < first_closed for n in sets)  # one replicate
    assert "stage generators_samples_cells" in log
    # the analyses' small trainings joined the queue (after the cells) and gave the analyses
    # the one process made: extractor, real-vs-real and 2 sets' domain + CAS classifiers
    queued = re.findall(r"generators, samples and cells \d+/\d+: analysis classifier "
                        r"(.+?) \(elapsed", log)
    assert len(queued) == 2 + 2 * 3 and "extractor" in queued
    assert re.search(r"analyses \d+/\d+: 8 of 8 classifiers trained beside the grid", log)
    a, b = (_numbers(json.loads((d / "analysis.json").read_text())) for d in (local, pooled))
    assert a["key"] == b["key"] and a["sets"] == b["sets"] and a["baseline"] == b["baseline"]
    assert a["extractor"] == b["extractor"]


def _numbers(x):
    """An analysis without its run's own paths and wall times."""
    if isinstance(x, dict):
        return {k: _numbers(v) for k, v in x.items() if k not in ("figure", "wall_s")}
    return x


def test_worker_pool_starts_the_most_urgent_ready_task_with_its_kinds_inputs():
    """WorkerPool (the study's one queue): a freed worker takes the most urgent ready task,
    tasks made ready by a finished one included; each kind's shared inputs reach its tasks."""
    from synthequiv.runtime.executor import Task, WorkerPool

    rt = C.resolve("quick", None, ["workers=1", "cpu_threads=1", "device=cpu"]).runtime
    results = []

    def on_done(task, result):  # dict(item, **shared) runs in the worker: item + inputs
        results.append(result)
        return [Task(-1, "b", dict, {"i": 9})] if result["i"] == 0 else []

    with WorkerPool(rt, 1) as pool:
        pool.share("a", {"kind": "a"})
        pool.share("b", {"kind": "b"})
        pool.run([Task(2, "a", dict, {"i": 2}), Task(0, "a", dict, {"i": 0}),
                  Task(1, "a", dict, {"i": 1})], on_done)
    assert [r["i"] for r in results] == [0, 9, 1, 2]
    assert [r["kind"] for r in results] == ["a", "b", "a", "a"]


def test_local_workers_take_one_gpu_each(monkeypatch):
    import torch

    from synthequiv.runtime.executor import local_workers, worker_gpus

    cfg = C.resolve("quick", None, ["workers=0"]).runtime
    assert worker_gpus(cfg, 3) == [None] * 3  # CPU: no GPU to take
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_workers(cfg) == 2  # one process per GPU
    assert worker_gpus(cfg, 4) == [0, 1, 0, 1]
    assert worker_gpus(C.resolve("quick", None, ["device=cuda:1"]).runtime, 2) == [None, None]
    assert worker_gpus(C.resolve("quick", None, ["device=cpu"]).runtime, 2) == [None, None]


def _gone_within(pgid: int, seconds: float) -> bool:
    """No process of the group is left (zombies count as gone) within `seconds`."""
    import os
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        alive = [pid for pid in os.listdir("/proc") if pid.isdigit()
                 and _pgid(int(pid)) == pgid and "State:\tZ" not in _status(int(pid))]
        if not alive:
            return True
        time.sleep(0.2)
    return False


def _pgid(pid: int) -> int | None:
    import os

    try:
        return os.getpgid(pid)
    except OSError:
        return None


def _status(pid: int) -> str:
    from pathlib import Path

    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "State:\tZ"  # gone meanwhile


@pytest.mark.skipif(not __import__("os").path.isdir("/proc"), reason="reads /proc (Linux)")
def test_local_workers_leave_with_a_killed_study(tmp_path):
    """A study killed outright (SIGKILL, the OOM killer) takes its local worker processes
    along: before, they idled on forever, waiting on a pipe nobody closed."""
    import os
    import signal
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "study.py"
    script.write_text(
        "import time\n"
        "from synthequiv import config as C\n"
        "from synthequiv.runtime.executor import map_tasks\n"
        "def task(i):\n    time.sleep(60)\n"
        "if __name__ == '__main__':\n"
        "    cfg = C.resolve('quick', None, ['workers=2', 'cpu_threads=1', 'device=cpu'])\n"
        "    next(map_tasks(task, [0, 1], {}, cfg.runtime))\n")
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    p = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, start_new_session=True)
    import time

    for _ in range(100):  # map_tasks starts its 2 workers; they sleep in their tasks
        time.sleep(0.2)
        if len([pid for pid in os.listdir("/proc") if pid.isdigit()
                and _pgid(int(pid)) == p.pid]) >= 3:
            break
    else:
        pytest.fail("the study never started its 2 workers")
    time.sleep(1)
    p.kill()
    p.wait()
    try:
        assert _gone_within(p.pid, 20), "local workers outlived the killed study"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
