"""Multi-process generator training: torchrun launches the ranks, DDP averages the gradients.

One generator training can span W processes (one per GPU; on a CPU, W gloo processes, which is
what the tests run). Every rank draws the same global batch from the step's seeded generator
and trains on its 1/W slice; DDP averages the gradients, so the W ranks take the optimizer step
one process takes on the whole batch (equal up to float summation order). Weights, EMA and
optimizer state therefore stay identical on every rank; rank 0 alone writes the checkpoint,
which resumes on any number of ranks.

  train_distributed  driver side: writes a job file, runs `torchrun --nproc_per_node W` on this
                     module, turns a failed rank's error into one SynthequivError
  main               rank side (`python -m synthequiv.generation.distributed JOB`): joins
                     the process group, calls its family's train (generator.train_generator)

Every family of families.py trains here (generator.family picks it); nproc > 1 needs a family
with ddp = True (all three of unet, edm and dit: they share generator.py's loop).
  Rank, current      which rank this process is, as train_generator sees it
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import torch

from synthequiv.generation.ranks import Rank, check_split, current  # noqa: F401 (re-exported)
from synthequiv.utils import SynthequivError, atomic_torch_save, check_positive, resolve_device

JOB_NAME = "ddp_job.pt"


def init_from_env(device_name: str) -> torch.device:
    """Join the process group torchrun describes in the environment; return this rank's
    device (cuda:LOCAL_RANK on GPUs, with nccl; the CPU with gloo)."""
    device = resolve_device(device_name)
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.distributed.is_initialized():
        if device.type == "cuda":
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(device)
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


# ----------------------------------------------------------------------------- driver side


def train_distributed(images: torch.Tensor, labels: torch.Tensor, num_classes: int, cfg,
                      out_dir: Path, device: torch.device | str, nproc: int,
                      compile: bool = False, progress: bool = True) -> Path:
    """The family's train (generator.train_generator) on `nproc` DDP ranks (one per GPU, or
    gloo processes on CPU); returns out_dir/checkpoint.pt. nproc = 1 trains in this process,
    which may itself be one rank of a torchrun the user started (e.g. over several nodes): it
    then joins that group."""
    from synthequiv.generation.families import check_family_config, get_family
    from synthequiv.generation.generator import (
        CHECKPOINT_NAME,
        check_data,
        existing_checkpoint,
        run_meta,
    )

    check_positive("generator_nproc", nproc)
    family = get_family(cfg.family)
    outer = int(os.environ.get("WORLD_SIZE", "1")) > 1  # launched by the user's torchrun
    if outer and nproc != 1:
        raise SynthequivError("this process is already a torchrun rank: leave --processes / "
                              "generator_nproc at 1 (torchrun decides the processes)")
    if outer or nproc == 1:
        if outer:
            device = init_from_env(torch.device(device).type)
        return family.train(images, labels, num_classes, cfg, out_dir, device,
                            progress and current().main, compile)
    if not family.ddp:
        raise SynthequivError(f"the {family.name} generator family trains in one process; "
                              "leave generator_nproc at 1")
    check_family_config(cfg)
    check_data(images, labels, num_classes)
    device = torch.device(device)
    check_split(cfg.batch_size, nproc)
    if device.type == "cuda" and torch.cuda.device_count() < nproc:
        raise SynthequivError(f"generator_nproc={nproc} but only {torch.cuda.device_count()} "
                              f"GPU(s) are visible")
    path = Path(out_dir) / CHECKPOINT_NAME
    meta = run_meta(images, labels, num_classes, cfg, family.builder)
    state = existing_checkpoint(path, meta, mmap=True)
    if state is not None and state["finished"]:
        return path  # done: no processes to start
    job = write_job(images, labels, num_classes, cfg, out_dir, device, compile, progress)
    try:
        proc = subprocess.run(ddp_command(job, nproc), stderr=subprocess.PIPE, text=True)
    finally:
        job.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise SynthequivError(_failure(proc.stderr, proc.returncode, nproc))
    return path


def write_job(images, labels, num_classes, cfg, out_dir: Path, device: torch.device,
              compile: bool, progress: bool) -> Path:
    """Everything the ranks need, in one file beside the checkpoint (weights-only loadable)."""
    job = Path(out_dir) / JOB_NAME
    atomic_torch_save({"images": images, "labels": labels, "num_classes": int(num_classes),
                       "config": dataclasses.asdict(cfg), "device": device.type,
                       "compile": bool(compile), "progress": bool(progress),
                       "driver_pid": os.getpid()}, job)
    return job


def ddp_command(job: Path, nproc: int) -> list[str]:
    """torchrun on one node (--standalone picks a free rendezvous port)."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}", "-m", "synthequiv.generation.distributed", str(job)]


def _failure(stderr: str, returncode: int, nproc: int) -> str:
    """The first rank's `error: …` line, else the last line torchrun printed."""
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("error: "):
            return ln[len("error: "):]
    last = lines[-1] if lines else "no output"
    return f"generator training on {nproc} processes failed (exit {returncode}): {last}"


# ----------------------------------------------------------------------------- rank side


def _exit_with(driver_pid: int, period_s: float = 1.0) -> None:
    """torchrun starts each rank in a session of its own, so a killed driver or torchrun would
    leave the ranks training on as orphans (and writing the checkpoint). Watch both; exit
    with them."""
    parent = os.getppid()

    def alive(pid: int) -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def watch() -> None:
        while True:
            time.sleep(period_s)
            if os.getppid() != parent or not alive(driver_pid):
                os._exit(1)

    threading.Thread(target=watch, daemon=True, name="synthequiv-orphan-watch").start()


def main(argv: list[str] | None = None) -> None:
    from synthequiv.generation.families import get_family
    from synthequiv.generation.generator import config_from_dict

    argv = sys.argv[1:] if argv is None else argv
    job_path = Path(argv[0])
    try:
        job = torch.load(job_path, weights_only=True)
        _exit_with(job["driver_pid"])
        device = init_from_env(job["device"])
        cfg = config_from_dict(job["config"])
        get_family(cfg.family).train(job["images"], job["labels"], job["num_classes"], cfg,
                                     job_path.parent, device,
                                     job["progress"] and current().main, job["compile"])
    except SynthequivError as exc:
        # one write(2) of < 4 KiB on a pipe is atomic: the ranks' lines never interleave
        sys.stderr.flush()
        os.write(2, f"error: {exc}\n".encode()[:4000])
        sys.exit(2)
    finally:
        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
