"""Shared helpers: user-facing errors, atomic writes, hashing, seeding, device choice.

Every other module imports from here; nothing here imports another synthequiv module.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import random
import tempfile
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch


class SynthequivError(Exception):
    """A problem with the user's input or environment: the CLI prints it as one line, exit 2."""


# ----------------------------------------------------------------------------- atomic files

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temp path beside `path`; on success rename it over `path`, on error delete it.

    Readers never see a half-written file: the rename is atomic on POSIX file systems.
    `suffix` keeps the extension for writers that insist on one (np.savez, savefig).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.", suffix=suffix or path.suffix or ".tmp"
        )
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get normal modes
    except OSError as exc:
        raise SynthequivError(f"cannot write to {path.parent}: {exc.strerror or exc}") from exc
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def sweep_temp_files(root: str | os.PathLike) -> int:
    """Delete temp files that a killed writer left (`.<name>.*` from atomic_path).

    Call only while holding the run directory's lock: then no writer is active.
    """
    count = 0
    for p in Path(root).rglob(".*"):
        if p.is_file() and p.name != ".lock" and p.name.count(".") >= 2:
            p.unlink(missing_ok=True)
            count += 1
    return count


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_savez(path: str | os.PathLike, **arrays: np.ndarray) -> None:
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Load every array of an .npz file without pickle (object arrays are refused)."""
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
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def resolve_device(name: str = "auto") -> torch.device:
    """'auto' → cuda when available, else cpu. Decided once, outside training loops."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SynthequivError(f"device '{name}' requested but CUDA is not available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise SynthequivError(f"unknown device '{name}' (use auto, cpu or cuda[:N])")
    return torch.device(name)


def check_positive(name: str, value: float, allow_zero: bool = False) -> None:
    """One-line error for a zero/negative count or size."""
    if value is None or (value < 0 if allow_zero else value <= 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise SynthequivError(f"{name} must be {bound}, got {value}")
