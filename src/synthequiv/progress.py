"""Progress bars (rich) with one small interface: advance(n, status)."""

from __future__ import annotations

import contextlib
from typing import Iterator

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class _Bar:
    def __init__(self, progress: Progress | None, task):
        self.progress, self.task = progress, task

    def advance(self, n: float = 1, status: str = "") -> None:
        if self.progress is not None:
            self.progress.update(self.task, advance=n, status=status)


@contextlib.contextmanager
def progress_bar(description: str, total: float, enabled: bool = True) -> Iterator[_Bar]:
    if not enabled:
        yield _Bar(None, None)
        return
    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with progress:
        yield _Bar(progress, progress.add_task(description, total=total, status=""))
