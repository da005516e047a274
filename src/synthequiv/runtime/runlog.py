"""Run log: timestamped plain lines for files and pipes, and a metrics.jsonl of events.

While a study runs inside `run_log(run_dir)`, every `info()` line is appended to
run_dir/log.txt and every `metric()` event to run_dir/metrics.jsonl. When stdout is not a
terminal (SLURM, nohup, a pipe) the lines are printed there too, timestamped: rich's live bars
print only finished bars to a file, so a long run would otherwise be silent for hours.

Both files are append-only streams (one short write per line, O_APPEND), not atomic
rewrites: a killed run keeps every line it wrote. Child processes (worker pools, torchrun
ranks) find the run directory through the environment variable below and append to the same
files.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from synthequiv.utils import to_jsonable

ENV = "SYNTHEQUIV_RUN_LOG"  # the active run directory, inherited by child processes
LOG_NAME, METRICS_NAME = "log.txt", "metrics.jsonl"


def stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def plain() -> bool:
    """True when stdout is not a terminal: print timestamped lines instead of live bars."""
    try:
        return not sys.stdout.isatty()
    except (AttributeError, ValueError):  # closed or replaced stdout
        return True


def active_dir() -> Path | None:
    d = os.environ.get(ENV)
    return Path(d) if d else None


def _append(name: str, text: str) -> None:
    d = active_dir()
    if d is None:
        return
    try:
        with open(d / name, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError:
        pass  # a full disk must not kill the study over a log line


def info(message: str, echo: str = "always") -> None:
    """One line to log.txt, and to stdout: echo "always" (timestamped when piped, through
    rich's console on a terminal so live bars are not torn), "plain" (only when piped: on a
    terminal a bar shows it), or "never"."""
    line = f"{stamp()} {message}"
    _append(LOG_NAME, line + "\n")
    if echo == "never":
        return
    if plain():
        print(line, flush=True)
    elif echo == "always":
        from rich import get_console

        get_console().print(message, markup=False, highlight=False)


def metric(event: str, **fields: Any) -> None:
    """One JSON object per line in metrics.jsonl: {"time", "t", "event", **fields}."""
    rec = {"time": stamp(), "t": round(time.time(), 3), "event": event, **fields}
    _append(METRICS_NAME, json.dumps(to_jsonable(rec)) + "\n")


def environment(device: Any = None) -> dict:
    """Versions and device, for summary.json and the log's first lines."""
    import numpy
    import torch

    from synthequiv import __version__

    env = {"synthequiv": __version__, "python": platform.python_version(),
           "torch": torch.__version__, "numpy": numpy.__version__,
           "platform": platform.platform(), "host": platform.node(),
           "cuda": torch.version.cuda if torch.cuda.is_available() else None}
    if device is not None:
        env["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            env["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return env


class Timings(dict):
    """{stage: seconds}; setting a stage logs it ("stage generators_and_sampling_s: 12.3 s")
    and records a "stage" event, so every stage's time reaches the log as it ends."""

    def __setitem__(self, key: str, seconds: float) -> None:
        super().__setitem__(key, seconds)
        info(f"stage {key.removesuffix('_s')}: {seconds:.1f} s")
        metric("stage", stage=key.removesuffix("_s"), seconds=seconds)


@contextlib.contextmanager
def run_log(run_dir: Path) -> Iterator[Path]:
    """Direct log lines and metrics to run_dir for the duration; log start and end."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(ENV)
    os.environ[ENV] = str(run_dir.resolve())
    t0 = time.time()
    env = environment()
    info(f"run {run_dir} started (pid {os.getpid()}; synthequiv {env['synthequiv']}, "
         f"torch {env['torch']}, python {env['python']})")
    metric("start", run_dir=str(run_dir), pid=os.getpid(), **env)
    try:
        yield run_dir
    except BaseException as exc:
        info(f"run failed after {time.time() - t0:.1f} s: {type(exc).__name__}: {exc}")
        metric("end", status="failed", seconds=time.time() - t0, error=str(exc))
        raise
    else:
        info(f"run finished in {time.time() - t0:.1f} s")
        metric("end", status="ok", seconds=time.time() - t0)
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
