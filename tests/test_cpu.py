"""CPU threads on a shared machine (runtime/cpu.py, executor.set_cpu_threads): the wait policy
set before torch loads, contention measured from /proc/stat, the thread choice and its log line.
The slowdown itself is measured by benchmarks/contention.py."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import replace

import pytest
import torch

from synthequiv import config as C
from synthequiv.runtime import cpu, executor
from synthequiv.runtime.runlog import run_log
from synthequiv.utils import SynthequivError

PROBE = "import os, {first}; import {second}; print(os.environ.get('OMP_WAIT_POLICY'))"


def probe_policy(first: str, second: str, **env: str) -> str:
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    res = subprocess.run([sys.executable, "-c", PROBE.format(first=first, second=second)],
                         env={**base, **env}, capture_output=True, text=True, check=True)
    return res.stdout.strip()


def test_passive_wait_is_set_before_torch_loads_and_never_overrides():
    assert probe_policy("synthequiv", "torch") == "PASSIVE"
    assert probe_policy("synthequiv", "torch", OMP_WAIT_POLICY="ACTIVE") == "ACTIVE"
    # torch first: libgomp has read its environment, so synthequiv leaves it alone
    assert probe_policy("torch", "synthequiv") == "None"


@pytest.mark.parametrize("budget, busy, threads", [
    (2, 0.0, 2), (2, 0.4, 2), (2, 0.6, 1), (2, 1.0, 1), (2, 2.0, 1), (8, 2.2, 6), (1, 0.0, 1)])
def test_auto_threads_take_the_free_cores(budget, busy, threads):
    assert cpu.auto_threads(budget, busy) == threads


def fake_ticks(monkeypatch, *readings):
    """/proc/stat readings (busy, total) returned in turn, over 2 cores."""
    seq = iter(readings)
    monkeypatch.setattr(cpu, "_cpu_ticks", lambda cores: next(seq))
    monkeypatch.setattr(cpu, "_affinity", lambda: {0, 1})
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: None)


def test_contended_machine_gets_one_thread_and_a_log_line(monkeypatch, tmp_path):
    monkeypatch.delenv("SLURM_CPUS_PER_TASK")  # the machine's 2 cores, not the tests' 1
    fake_ticks(monkeypatch, (0, 0), (95, 100), (95, 100))  # 1.9 of 2 cores busy elsewhere
    before = torch.get_num_threads()
    cfg = replace(C.resolve("quick").runtime, device="cpu", cpu_threads=0, cpu_adapt=True)
    try:
        torch.set_num_threads(2)  # torch's default here; conftest sets 1
        with run_log(tmp_path):
            c = executor.set_cpu_threads(cfg)
        assert c.contended and c.threads == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    log = (tmp_path / "log.txt").read_text()
    assert "CPU contended: other processes kept 1.9 of 2 cores busy" in log
    assert '"event": "cpu"' in (tmp_path / "metrics.jsonl").read_text()


def test_by_default_the_thread_count_ignores_the_load(monkeypatch, tmp_path):
    """Same config + seed → same numbers: the default (one thread per task process) and torch's
    count (cpu_threads 0) stay what they are on a contended machine, which the log says."""
    before = torch.get_num_threads()
    cfg = replace(C.resolve("quick").runtime, device="cpu")
    try:
        fake_ticks(monkeypatch, (0, 0), (95, 100), (95, 100))
        with run_log(tmp_path):
            c = executor.set_cpu_threads(cfg)  # the default: cpu_threads 1
        assert c.contended and c.threads == 1 and torch.get_num_threads() == 1
        assert "CPU contended" in (tmp_path / "log.txt").read_text()
        fake_ticks(monkeypatch, (0, 0), (95, 100), (95, 100))
        torch.set_num_threads(2)
        with run_log(tmp_path):
            c = executor.set_cpu_threads(replace(cfg, cpu_threads=0))
        assert c.contended and c.threads == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert "--set cpu_adapt=true" in (tmp_path / "log.txt").read_text()


def test_one_torch_thread_under_auto_is_not_measured_and_a_gpu_never(monkeypatch):
    monkeypatch.setattr(cpu, "_cpu_ticks", lambda cores: pytest.fail("measured"))
    before = torch.get_num_threads()
    cfg = replace(C.resolve("quick").runtime, device="cpu")
    try:
        torch.set_num_threads(1)
        # auto only lowers torch's count: from one thread (the tests' setting) nothing to do
        assert executor.set_cpu_threads(replace(cfg, cpu_threads=0)) is None
        assert torch.get_num_threads() == 1
        monkeypatch.setattr(executor, "_on_gpu", lambda cfg: True)
        assert executor.set_cpu_threads(replace(cfg, cpu_threads=3)) is None
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_cpu_adapt_needs_torch_s_thread_count():
    with pytest.raises(SynthequivError, match="cpu_adapt lowers torch's default thread count, "
                       "but cpu_threads is 1: add --set cpu_threads=0"):
        C.validate(C.resolve("quick", None, ["cpu_adapt=true"]))
    C.check_runtime(C.resolve("quick", None, ["cpu_adapt=true", "cpu_threads=0"]))


def test_adapter_follows_other_jobs_between_tasks(monkeypatch):
    fake_ticks(monkeypatch, (0, 0), (100, 100))
    # this process used no CPU in between (a real reading over microseconds is noise)
    monkeypatch.setattr(cpu.time, "process_time", lambda: 0.0)
    adapter = cpu.ThreadAdapter(cpu.Contention(2, 1.9, 1, "test"))
    assert adapter.check() is None  # too soon to judge
    monkeypatch.setattr(cpu.ThreadAdapter, "MIN_INTERVAL_S", 0.0)
    # both cores 100 % busy over the interval, at most one of them this process: contended
    assert adapter.check() is None
    fake_ticks(monkeypatch, (0, 0), (0, 200))
    adapter = cpu.ThreadAdapter(cpu.Contention(2, 1.9, 1, "test"))
    new = adapter.check()  # the others stopped: both cores again
    assert new is not None and new.threads == 2 and not new.contended


def test_a_real_busy_process_is_seen():
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        c = cpu.measure_contention(0.5)
    finally:
        busy.kill()
        busy.wait()
    assert c.busy_elsewhere >= 0.5 and c.contended
    assert c.threads == max(1, c.budget - 1) or c.busy_elsewhere >= 1.5


@pytest.mark.parametrize("slurm, want", [("1", 1), ("3", 3), ("16", 8), ("", 8), ("x", 8),
                                         ("0", 8)])
def test_the_cpu_budget_honours_a_slurm_allocation(monkeypatch, slurm, want):
    """One worker process per core of the budget: 8 cores of affinity, no cgroup quota,
    capped by SLURM_CPUS_PER_TASK where it is a positive integer."""
    monkeypatch.setattr(cpu, "_affinity", lambda: set(range(8)))
    monkeypatch.setattr(cpu, "_cgroup_quota", lambda: None)
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", slurm)
    assert cpu.cpu_budget() == want
    assert executor.local_workers(replace(C.resolve("quick").runtime, device="cpu")) == want
