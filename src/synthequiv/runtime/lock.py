"""One study (or one generator training) per directory at a time.

An advisory `flock` on <dir>/.lock: the kernel drops it when the holder dies (even by
SIGKILL), so a crashed study never leaves the directory stuck. The lock file is opened with
O_NOFOLLOW and must be a regular file: a `.lock` symlink or FIFO planted in the directory is
refused, never followed or written through.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from synthequiv.utils import SynthequivError


class RunLock:
    def __init__(self, run_dir: Path, what: str = "study"):
        self.path = Path(run_dir) / ".lock"
        self.what = what  # "study", "generator training": names the holder in the error
        self.fd: int | None = None

    def _open(self) -> int:
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:  # created exclusively when missing, so nothing else can be behind the name
                fd = os.open(self.path, flags | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                fd = os.open(self.path, flags)
        except OSError as exc:
            reason = "it is a symlink" if self.path.is_symlink() else exc.strerror or exc
            raise SynthequivError(
                f"cannot use directory {self.path.parent}: cannot open {self.path}: {reason}"
            ) from exc
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise SynthequivError(f"cannot use directory {self.path.parent}: {self.path} is not "
                                  "a regular file; remove it")
        return fd

    def __enter__(self) -> RunLock:
        self.fd = self._open()
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            self.fd = None
            flag = "--name" if self.what == "study" else "--out"
            raise SynthequivError(
                f"directory {self.path.parent} is in use by another {self.what} (pid {holder}); "
                f"wait for it or choose another {flag}"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode(), 0)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
