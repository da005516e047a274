"""One study per run directory at a time.

An advisory `flock` on run_dir/.lock: the kernel drops it when the holder dies (even by
SIGKILL), so a crashed study never leaves the directory stuck.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .utils import SynthequivError


class RunLock:
    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / ".lock"
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise SynthequivError(
                f"cannot use run directory {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            raise SynthequivError(
                f"run directory {self.path.parent} is in use by another study (pid {holder}); "
                "wait for it or choose another --name"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
