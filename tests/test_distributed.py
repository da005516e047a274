"""Multi-process generator training (torchrun + DDP, gloo on CPU): W ranks take the steps one
process takes, checkpoints resume across world sizes, a killed run leaves no rank behind."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

import synthequiv.generation.generator as G
from conftest import float32_generator_training
from synthequiv.generation.distributed import JOB_NAME, Rank, train_distributed
from synthequiv.generation.generator import (
    GeneratorConfig,
    draw_step,
    make_generator,
    train_generator,
)
from synthequiv.utils import SynthequivError


@pytest.fixture(scope="module", autouse=True)
def float32_generators():
    """Float32 generator training (conftest.float32_generator_training): DDP/worker processes
    are compared with one process to float32 tolerance."""
    yield from float32_generator_training()

# 16 steps of 32 images with flips on (every draw kind), a checkpoint after 8
TINY = GeneratorConfig(train_kimg=0.512, batch_size=32, warmup_kimg=0.128,
                       checkpoint_every_kimg=0.256, ema_halflife_kimg=0.1, xflip=True)


@pytest.fixture(scope="module")
def data():
    from synthequiv.inputs.data import DataConfig, load_dataset

    ds = load_dataset(DataConfig())
    return ds.images[:200], ds.labels[:200]


@pytest.fixture(scope="module")
def single(data, tmp_path_factory):
    """TINY trained in this process: the reference the DDP runs must reproduce."""
    x, y = data
    path = train_generator(x, y, 10, TINY, tmp_path_factory.mktemp("single"), progress=False)
    return torch.load(path, weights_only=True)


@pytest.fixture(scope="module")
def ddp_dir(data, tmp_path_factory):
    """TINY trained by 2 DDP ranks once (a torchrun launch is ~15 s of the suite)."""
    x, y = data
    out = tmp_path_factory.mktemp("ddp")
    train_distributed(x, y, 10, TINY, out, "cpu", nproc=2, progress=False)
    return out


def max_diff(a: dict, b: dict, part: str) -> float:
    return max(float((a[part][k] - b[part][k]).abs().max()) for k in a[part])


def test_rank_slices_partition_the_global_batch():
    gen = make_generator("8px", 10, (1, 8, 8), "v_prediction")
    whole = draw_step(gen, TINY, 3, 200, torch.device("cpu"))
    parts = [whole.part(Rank(r, 4).slice(32)) for r in range(4)]
    for field in ("idx", "flip", "t", "eps", "drop"):
        joined = torch.cat([getattr(p, field) for p in parts])
        assert torch.equal(joined, getattr(whole, field)), field
    assert len(parts[0].idx) == 8


def test_two_ranks_take_the_steps_one_process_takes(single, ddp_dir):
    ddp = torch.load(ddp_dir / "checkpoint.pt", weights_only=True)
    assert ddp["finished"] and ddp["step"] == single["step"] == 16
    assert list(ddp["model"]) == list(single["model"])  # plain keys: no "module." prefix
    # same optimizer steps up to float summation order (measured ~1e-5 on weights of ~3.7)
    assert max_diff(ddp, single, "model") < 1e-4
    assert max_diff(ddp, single, "ema") < 1e-4
    assert sorted(p.name for p in ddp_dir.iterdir()) == ["checkpoint.pt"]  # job file gone
    G.load_generator(ddp_dir)


def test_ddp_resumes_a_single_process_checkpoint(data, single, tmp_path, monkeypatch):
    x, y = data
    save = G._save_checkpoint

    class Stop(Exception):
        pass

    def save_then_stop(*args, **kw):
        save(*args, **kw)
        raise Stop

    monkeypatch.setattr(G, "_save_checkpoint", save_then_stop)
    with pytest.raises(Stop):
        train_generator(x, y, 10, TINY, tmp_path, progress=False)
    monkeypatch.undo()
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["step"] == 8
    resumed = torch.load(train_distributed(x, y, 10, TINY, tmp_path, "cpu", 2, progress=False),
                         weights_only=True)
    assert resumed["finished"] and resumed["step"] == 16
    assert max_diff(resumed, single, "ema") < 1e-4


def test_finished_or_foreign_checkpoints_are_settled_before_any_launch(data, ddp_dir, tmp_path,
                                                                      monkeypatch):
    x, y = data
    shutil.copytree(ddp_dir, tmp_path, dirs_exist_ok=True)  # a finished DDP run

    def no_launch(*args, **kw):
        raise AssertionError("torchrun launched")

    monkeypatch.setattr(subprocess, "run", no_launch)
    assert train_distributed(x, y, 10, TINY, tmp_path, "cpu", 2, progress=False).exists()
    other = dataclasses.replace(TINY, lr=1e-4)
    with pytest.raises(SynthequivError, match=r"another generator setup \(differs in config.lr"):
        train_distributed(x, y, 10, other, tmp_path, "cpu", 2, progress=False)


def test_errors_in_ranks_come_back_as_one_line(data, tmp_path):
    x, y = data
    diverging = dataclasses.replace(TINY, lr=1e30, warmup_kimg=0.0, grad_clip=0.0)
    with pytest.raises(SynthequivError, match=r"^generator loss became nan at step \d+; lower generator.lr \(now 1e\+30\)$"):
        train_distributed(x, y, 10, diverging, tmp_path, "cpu", 2, progress=False)
    assert not (tmp_path / JOB_NAME).exists() and not (tmp_path / "checkpoint.pt").exists()


def test_batch_must_split_over_ranks(data, tmp_path):
    x, y = data
    with pytest.raises(SynthequivError, match="divisible by generator_nproc"):
        train_distributed(x, y, 10, TINY, tmp_path, "cpu", 3, progress=False)
    with pytest.raises(SynthequivError, match="generator_nproc must be > 0"):
        train_distributed(x, y, 10, TINY, tmp_path, "cpu", 0, progress=False)
    assert not any(tmp_path.iterdir())


DRIVER = """
import sys, torch
from pathlib import Path
from synthequiv.inputs.data import DataConfig, load_dataset
from synthequiv.generation.distributed import train_distributed
from synthequiv.generation.generator import GeneratorConfig
ds = load_dataset(DataConfig())
cfg = GeneratorConfig(**eval(sys.argv[2]))
train_distributed(ds.images[:200], ds.labels[:200], 10, cfg, Path(sys.argv[1]), "cpu", 2,
                  progress=False)
"""


@pytest.mark.slow  # two torchrun launches of 2 gloo ranks each (~25–55 s)
def test_killed_driver_takes_its_ranks_along_and_the_run_resumes(data, tmp_path):
    """SIGKILL the driver and torchrun (one process group) after the first checkpoint: the
    ranks (torchrun gives each a session of its own) must stop too, not train on as orphans;
    the run then resumes in one process and ends where an uninterrupted run ends."""
    x, y = data
    # 120 steps of 16, a checkpoint every 20
    cfg = dataclasses.replace(TINY, train_kimg=1.92, batch_size=16, checkpoint_every_kimg=0.32)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, str(ckpt.parent),
                             repr(dataclasses.asdict(cfg))], start_new_session=True,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert ckpt.exists(), "the DDP run wrote no checkpoint"
    time.sleep(4)  # the ranks' watchdog polls once a second
    half = torch.load(ckpt, weights_only=True)
    assert not half["finished"] and half["step"] < 120
    time.sleep(2)
    assert torch.load(ckpt, weights_only=True)["step"] == half["step"], "orphan ranks still train"
    resumed = torch.load(train_generator(x, y, 10, cfg, ckpt.parent, progress=False),
                         weights_only=True)
    whole = torch.load(train_generator(x, y, 10, cfg, tmp_path / "whole", progress=False),
                       weights_only=True)
    assert resumed["finished"] and resumed["step"] == whole["step"] == 120
    assert max_diff(resumed, whole, "ema") < 1e-3


@pytest.mark.slow  # two torchrun launches of 2 gloo ranks each (~25–55 s)
def test_cli_under_an_outer_torchrun_joins_its_group(tmp_path):
    """`torchrun … -m synthequiv.cli generator train` (how a multi-node job launches it): the
    ranks join torchrun's group and write what `--processes 2` writes."""
    args = ["generator", "train", "digits", "--base-per-class", "5", "--kimg", "0.256",
            "--device", "cpu"]
    outer = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                            "--nproc_per_node=2", "-m", "synthequiv.cli", *args, "--out",
                            str(tmp_path / "outer")], capture_output=True, text=True)
    assert outer.returncode == 0, outer.stderr[-2000:]
    inner = subprocess.run([sys.executable, "-m", "synthequiv.cli", *args, "--out",
                            str(tmp_path / "inner"), "--processes", "2"], capture_output=True,
                           text=True)
    assert inner.returncode == 0, inner.stderr[-2000:]
    a, b = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)
            for d in ("outer", "inner"))
    assert a["finished"] and a["step"] == b["step"] == 4
    assert max_diff(a, b, "ema") == 0.0  # same ranks, same reduction order
    nested = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                             "--nproc_per_node=2", "-m", "synthequiv.cli", *args, "--out",
                             str(tmp_path / "nested"), "--processes", "2"], capture_output=True,
                            text=True)
    assert nested.returncode != 0 and "already a torchrun rank" in nested.stderr
