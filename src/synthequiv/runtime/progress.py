"""Progress: rich bars on a terminal, timestamped lines in a pipe or file, both in log.txt.

Two shapes:
  progress_bar(description, total, done)  counted work (classifier cells, generators), `done`
                                     of it finished before (a resumed run): `advance(n,
                                     status)`; one log line per advance; `extend(n)`: n more
  kimg_bar(enabled)                  a generator's training in k images, with the subset of
                                     rich's Progress API the training loop uses (`add_task`,
                                     `update`); a log line every LOG_FRACTION of the run or
                                     LOG_EVERY_S seconds, whichever comes first
  count_bar(enabled, unit)           counted items inside one task (sampled images), the same
                                     API; a log line every COUNT_FRACTION, LOG_EVERY_S and at
                                     the end
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from synthequiv.runtime import runlog

LOG_FRACTION = 0.05  # a generator log line every 5 % of its kimg …
LOG_EVERY_S = 300.0  # … or every 5 minutes, whichever comes first
COUNT_FRACTION = 0.25  # count_bar: a line every quarter of tasks running over COUNT_QUIET_S,
COUNT_QUIET_S = 10.0  # and one at the end (a short sampling set logs one line)


def _eta(done: float, total: float, elapsed: float) -> str:
    if done <= 0 or total <= done:
        return ""
    return f", eta {_hms(elapsed * (total - done) / done)}"


def _hms(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class _Bar:
    def __init__(self, description: str, total: float, progress: Progress | None, task,
                 echo: str = "plain", done: float = 0.0):
        self.description, self.total, self.done, self.echo = description, total, done, echo
        self.progress, self.task, self.t0 = progress, task, time.time()
        self.before = done  # finished by an earlier run: not in this run's rate (eta)

    def extend(self, n: float) -> None:
        """n more to do (work that became known while the bar ran)."""
        self.total += n
        if self.progress is not None:
            self.progress.update(self.task, total=self.total)

    def advance(self, n: float, status: str) -> None:
        self.done += n
        if self.progress is not None:
            self.progress.update(self.task, advance=n, status=status)
        el = time.time() - self.t0
        eta = _eta(self.done - self.before, self.total - self.before, el)
        runlog.info(f"{self.description} {self.done:g}/{self.total:g}: {status} "
                    f"(elapsed {_hms(el)}{eta})", self.echo)
        runlog.metric("progress", what=self.description, done=self.done, total=self.total,
                      status=status)


@contextlib.contextmanager
def progress_bar(description: str, total: float, enabled: bool = True,
                 done: float = 0) -> Iterator[_Bar]:
    """A bar on a terminal; log lines (timestamped on stdout when piped, always in log.txt).
    `done` of the `total` were finished before (resume): the bar starts there."""
    if not enabled:  # quiet on stdout; log.txt still gets the lines
        yield _Bar(description, total, None, None, echo="never", done=done)
        return
    if runlog.plain():
        before = f" ({done:g} of {total:g} done before)" if done else ""
        runlog.info(f"{description}: {total - done:g} to do{before}")
        yield _Bar(description, total, None, None, done=done)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with progress:
        yield _Bar(description, total, progress,
                   progress.add_task(description, total=total, completed=done, status=""),
                   done=done)


class KimgLog:
    """Rich-Progress-compatible `add_task` / `update` that writes throttled log lines:
    "generator 12.8/25.6 kimg, loss 0.0412, 1296 img/s, eta 0:00:10" — at start, every
    `fraction` of the total or LOG_EVERY_S once the task has run `quiet_s`, and at the end."""

    fraction, quiet_s = LOG_FRACTION, 0.0

    def __init__(self, bar: Progress | None = None, echo: str = "plain"):
        self.bar, self.tasks, self.echo = bar, {}, echo

    def __enter__(self) -> KimgLog:
        if self.bar is not None:
            self.bar.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)

    def add_task(self, description: str, total: float, completed: float = 0.0, **fields):
        task = self.bar.add_task(description, total=total, completed=completed, **fields) \
            if self.bar is not None else len(self.tasks)
        self.tasks[task] = {"description": description, "total": total, "start": completed,
                            "last": completed, "t_last": time.time(), "t0": time.time()}
        self._start_line(description, total, completed)
        return task

    def update(self, task, completed: float | None = None, advance: float = 0.0,
               **fields) -> None:
        if self.bar is not None:
            self.bar.update(task, completed=completed, advance=advance, **fields)
        t = self.tasks[task]
        done = completed if completed is not None else t["last"] + advance
        now, step = time.time(), max(t["total"] * self.fraction, 1e-9)
        crossed = math.floor(done / step) > math.floor(t["last"] / step)
        if done >= t["total"] or (now - t["t0"] >= self.quiet_s and (
                crossed or now - t["t_last"] >= LOG_EVERY_S)):
            self._line(t, done, now, fields)
            t["t_last"] = now
        t["last"] = done

    def _start_line(self, description: str, total: float, completed: float) -> None:
        runlog.info(f"{description}: {completed:.1f}/{total:.1f} kimg at start", self.echo)

    def _line(self, t: dict, done: float, now: float, fields: dict) -> None:
        loss, ips = fields.get("loss"), fields.get("ips")
        d = 1 if t["total"] >= 10 else 2  # short runs: 0.64 kimg would read 0.6
        parts = [f"{t['description']} {done:.{d}f}/{t['total']:.{d}f} kimg"]
        if loss is not None and math.isfinite(loss):
            parts.append(f"loss {loss:.4f}")
        if ips:
            parts.append(f"{ips:.0f} img/s")
        eta = _eta(done - t["start"], t["total"] - t["start"], now - t["t0"])
        runlog.info(", ".join(parts) + eta, self.echo)
        runlog.metric("generator", kimg=done, total_kimg=t["total"], loss=loss, img_per_s=ips)


def kimg_bar(enabled: bool, description: str = "generator") -> KimgLog:
    """The generator training loop's progress: a rich bar on a terminal, throttled
    timestamped lines when piped; log.txt gets the lines in every case."""
    if not _main_rank():
        return _Silent()
    if not enabled:  # quiet on stdout; log.txt still gets the lines
        return KimgLog(None, echo="never")
    if runlog.plain():
        return KimgLog(None)
    return KimgLog(Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("{task.completed:.1f}/{task.total:.1f} kimg"),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[ips]:.0f} img/s"),
        TimeRemainingColumn(), transient=False))


class CountLog(KimgLog):
    """KimgLog for counted items: "sampling 800/1600 images (elapsed 0:00:02, eta 0:00:02)",
    no start line; a line at the end, and every COUNT_FRACTION of the total or LOG_EVERY_S once
    the task has run COUNT_QUIET_S."""

    fraction, quiet_s = COUNT_FRACTION, COUNT_QUIET_S

    def __init__(self, bar: Progress | None = None, echo: str = "plain", unit: str = "images"):
        super().__init__(bar, echo)
        self.unit = unit

    def _start_line(self, description: str, total: float, completed: float) -> None:
        pass

    def _line(self, t: dict, done: float, now: float, fields: dict) -> None:
        el = now - t["t0"]
        eta = _eta(done - t["start"], t["total"] - t["start"], el)
        runlog.info(f"{t['description']} {done:g}/{t['total']:g} {self.unit} "
                    f"(elapsed {_hms(el)}{eta})", self.echo)


def count_bar(enabled: bool, unit: str = "images") -> KimgLog:
    """Counted items inside one task: a rich bar (with M/N) on a terminal, timestamped lines
    when piped (never a bar's final frame in a log); log.txt gets the lines in every case."""
    if not _main_rank():
        return _Silent()
    if not enabled:
        return CountLog(None, echo="never", unit=unit)
    if runlog.plain():
        return CountLog(None, unit=unit)
    return CountLog(Progress(*Progress.get_default_columns(), MofNCompleteColumn()), unit=unit)


def _main_rank() -> bool:
    """Under DDP only rank 0 logs (the ranks hold the same numbers)."""
    import torch

    dist = torch.distributed
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


class _Silent(KimgLog):
    def add_task(self, description: str, total: float, completed: float = 0.0, **fields):
        return 0

    def update(self, task, completed=None, advance=0.0, **fields) -> None:
        pass
