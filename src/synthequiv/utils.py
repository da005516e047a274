"""Shared helpers: user-facing errors, atomic writes, hashing, seeding, device choice.

Every other module imports from here; nothing here imports another synthequiv module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import random
import re
import shutil
import stat
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

if TYPE_CHECKING:  # torch is imported where used: `synthequiv --help` need not load it
    import torch


class SynthequivError(Exception):
    """A problem with the user's input or environment: the CLI prints it as one line, exit 2."""


# ----------------------------------------------------------------------------- atomic files

_UMASK = os.umask(0)
os.umask(_UMASK)


TEMP_PREFIX = ".sqtmp-"  # every temp file atomic_path makes; the sweep deletes only these
# where a run directory's writers put files: the sweep looks here and nowhere else
RUN_SUBDIRS = (".", "samples", "figures", "generators/*")


def check_replaceable(path: str | os.PathLike) -> None:
    """One-line error unless `path` is missing or a regular file (never follows a symlink).

    A rename over a device node, FIFO, socket, symlink or directory would replace it (as root,
    `--out /dev/null` would replace the system's), so writers refuse those.
    """
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise SynthequivError(f"cannot write {path}: {exc.strerror or exc}") from exc
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a symlink" if stat.S_ISLNK(mode)
                else "not a regular file")
        raise SynthequivError(f"refusing to write {path}: it is {kind}; choose another path")


def check_outside(out: str | os.PathLike, folder: str | os.PathLike, what: str,
                  why: str = "it would be read as part of that data") -> None:
    """One-line error when `out` is `folder` or lies inside it (symlinks resolved): an output
    written into an image folder would be read back as part of it (a run directory as a
    class, a PNG as an image), breaking that data for the next run."""
    o, f = Path(out).expanduser().resolve(), Path(folder).expanduser().resolve()
    if o == f or f in o.parents:
        raise SynthequivError(f"refusing to write {out} inside the {what} {folder}: {why}; "
                              "choose a path outside it")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error delete it.

    Readers never see a half-written file: the rename is atomic on POSIX file systems.
    `suffix` keeps the extension for writers that insist on one (np.savez, savefig). Only a
    missing path or a regular file is ever replaced (check_replaceable).
    """
    path = Path(path)
    check_replaceable(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f"{TEMP_PREFIX}{path.name}.",
            suffix=suffix or path.suffix or ".tmp"
        )
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get normal modes
    except OSError as exc:
        raise SynthequivError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        check_replaceable(path)  # it may have changed while we wrote
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def sweep_temp_files(root: str | os.PathLike, subdirs: tuple[str, ...] = RUN_SUBDIRS) -> int:
    """Delete temp files that a killed writer left (`.sqtmp-*` from atomic_path).

    Looks only in `root`'s own known subfolders (not recursively, so a run directory placed
    over other files never deletes them) and only at regular files with the temp prefix.
    Call only while holding the run directory's lock: then no writer is active.
    """
    count, root = 0, Path(root)
    for sub in subdirs:
        for d in sorted(root.glob(sub)) if "*" in sub else [root / sub]:
            if d.is_symlink() or not d.is_dir():
                continue
            for p in d.iterdir():
                if p.name.startswith(TEMP_PREFIX) and not p.is_symlink() and p.is_file():
                    p.unlink(missing_ok=True)
                    count += 1
    return count


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an .npz file without pickle (object arrays are refused); one that
    cannot fit in memory is refused from its headers, before anything is allocated."""
    check_memory(npz_bytes(path), f"{path}")
    try:
        f = np.load(path, allow_pickle=False)
        if not isinstance(f, np.lib.npyio.NpzFile):  # a bare .npy array, not an archive
            raise SynthequivError(f"cannot read {path} as .npz: it holds a single .npy array")
        with f:
            return {k: f[k] for k in f.files}
    except FileNotFoundError as exc:
        raise SynthequivError(f"file not found: {path}") from exc
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        # truncated or corrupted archives raise BadZipFile / zlib.error, not OSError
        raise SynthequivError(f"cannot read {path} as .npz: {exc}") from exc


def available_memory() -> int:
    """Bytes this process may still allocate: the kernel's MemAvailable, lowered to what an
    address-space cap (`ulimit -v`, RLIMIT_AS) leaves beside what the process already maps."""
    import resource

    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                have = int(line.split()[1]) * 1024
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        used = 0
        with contextlib.suppress(OSError, ValueError, IndexError):
            used = int(Path("/proc/self/statm").read_text().split()[0]) * os.sysconf(
                "SC_PAGE_SIZE")
        have = min(have, max(0, soft - used))
    return have


def check_memory(need: float, what: str) -> None:
    """One error line, before allocating, when `need` bytes exceed what is available."""
    have = available_memory()
    if need > have:
        raise SynthequivError(f"{what} needs about {need / 2**30:.1f} GiB of memory; "
                              f"{have / 2**30:.1f} GiB is available")


def npz_bytes(path: str | os.PathLike) -> int:
    """Bytes the arrays of an .npz take once loaded, read from their headers (nothing loaded);
    0 when a header cannot be read (load_npz then says why)."""
    total = 0
    try:
        with zipfile.ZipFile(path) as z:
            for name in z.namelist():
                if not name.endswith(".npy"):
                    continue
                with z.open(name) as f:
                    major, _ = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if major == 1
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f)
                    total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    except (OSError, ValueError, zipfile.BadZipFile, zlib.error, EOFError):
        return 0
    return total


# ----------------------------------------------------------------------------- hashing / json


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, paths, numpy scalars/arrays → plain JSON types."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def stable_hash(*parts: Any, length: int = 12) -> str:
    """Hash of JSON-serialisable parts (dataclasses allowed); keys artifacts in the run dir."""
    blob = json.dumps([to_jsonable(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def tensor_digest(*tensors: torch.Tensor, length: int = 12) -> str:
    """Content hash of tensors (e.g. the exact training images a generator saw)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:length]


# ----------------------------------------------------------------------------- seeding / device


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch.Generator seeded the same way."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def check_device_name(name: str) -> None:
    """One error line unless `name` is auto, cpu or cuda[:N] (whether CUDA is present is
    resolve_device's question: this one needs no torch)."""
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", str(name)):
        raise SynthequivError(f"unknown device '{name}' (use auto, cpu or cuda[:N])")


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu. Decided once, outside training loops."""
    import torch

    check_device_name(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SynthequivError(f"device '{name}' requested but CUDA is not available")
    return torch.device(name)


def device_type(device) -> str:
    """"cuda" or "cpu": what `resolve_device` would pick, without requiring the device to be
    present (a plan or a group size for `cuda` is decided on any machine)."""
    import torch

    name = str(device)
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if name.startswith("cuda") else "cpu"


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True where the CPU has bf16 arithmetic instructions (x86 avx512_bf16 or AMX, read from
    /proc/cpuinfo): there oneDNN runs bf16 convolutions natively. Elsewhere bf16 is emulated."""
    try:
        flags = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return False
    return bool(re.search(r"\b(avx512_bf16|amx_bf16)\b", flags))


BF16_ENV = "SYNTHEQUIV_CPU_BF16"  # auto (default) | 1 | 0: generator training and sampling, CPU


def cpu_bf16_choice() -> str:
    """The value of SYNTHEQUIV_CPU_BF16, checked (config.validate calls it before any work)."""
    choice = os.environ.get(BF16_ENV, "auto").strip().lower()
    if choice not in ("auto", "0", "1"):
        raise SynthequivError(f"{BF16_ENV} must be auto, 0 or 1, got '{choice}'")
    return choice


def generator_autocast(device: torch.device, cache_enabled: bool = True):
    """The autocast context of generator training: bf16 on CUDA, and on CPUs with native bf16
    (1.45x the images/s of float32 for the mnist preset's net on 2 AVX-512-BF16 cores, measured
    with benchmarks/stages.py); float32 elsewhere, where emulated bf16 is slower.
    `SYNTHEQUIV_CPU_BF16=0|1` overrides the CPU choice (inherited by worker processes)."""
    import torch

    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=cache_enabled)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=cpu_bf16(device),
                          cache_enabled=cache_enabled)


def cpu_bf16(device: torch.device) -> bool:
    """Whether generator work on this CPU device runs under bf16 autocast: where the CPU has
    native bf16 (`cpu_has_native_bf16`), unless SYNTHEQUIV_CPU_BF16 says otherwise."""
    choice = cpu_bf16_choice()
    on = cpu_has_native_bf16() if choice == "auto" else choice == "1"
    return on and device.type == "cpu"


@functools.cache
def compile_unavailable(device_type: str, index: int | None = None) -> str | None:
    """Why torch.compile cannot run on this device (a short reason), or None. CUDA needs
    Triton and a GPU of compute capability ≥ 7.0; the CPU needs a C++ compiler."""
    import torch

    if device_type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            return "Triton is not installed"
        major, minor = torch.cuda.get_device_capability(index)
        if major < 7:
            return f"compute capability {major}.{minor} < 7.0 (Triton needs Volta or newer)"
        return None
    compilers = [os.environ.get("CXX", ""), "g++", "c++", "clang++"]
    if not any(c and shutil.which(c) for c in compilers):
        return "no C++ compiler found (torch.compile needs one on the CPU)"
    return None


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """One-line error for a zero/negative/non-finite count or size (NaN passes no comparison,
    so it is refused explicitly; so are bools and non-numbers)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if ok and not math.isfinite(value):
        ok = False
    if not ok or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise SynthequivError(f"{name} must be {bound} (a finite number), got {value!r}")


MAX_PER_CLASS = 1_000_000  # any per-class count above this is a typo, not a study


def check_counts(key: str, values: tuple[int, ...], allow_empty: bool = False) -> None:
    """Per-class counts (splits, grid amounts): each in [1, MAX_PER_CLASS], none repeated."""
    if not values and not allow_empty:
        raise SynthequivError(f"{key} is empty")
    for v in values:
        if not 0 < v <= MAX_PER_CLASS:
            raise SynthequivError(f"{key} entries must be in [1, {MAX_PER_CLASS}], got {v}")
    if len(set(values)) != len(values):
        raise SynthequivError(f"{key} has duplicate entries: {list(values)}")


SEED_MAX = 2**63 - 1  # torch.manual_seed takes int64


def check_seed(name: str, value: int) -> None:
    """Seeds are plain integers in [0, 2**63): torch/numpy overflow beyond."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) \
            or not 0 <= value <= SEED_MAX:
        raise SynthequivError(f"{name} must be an integer in [0, 2**63), got {value!r}")


# ----------------------------------------------------------------------------- worker processes


def watch_parent() -> None:
    """In a spawned worker process: leave as soon as the process that started it is gone.
    A parent killed outright (SIGKILL, the OOM killer) closes no pipe an idle pool worker is
    waiting on, so without this its workers idle on forever. Call it from the pool's
    initializer; it returns at once (a daemon thread waits on the parent's sentinel)."""
    import multiprocessing as mp
    import threading
    from multiprocessing.connection import wait

    parent = mp.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
