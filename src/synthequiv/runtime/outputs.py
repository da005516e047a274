"""One guard for every output path a command writes (issue: outputs that replaced a run's files).

Every writing command calls `guard_output(path, kind)` before it loads data or trains:
  - never inside a study's run directory (a directory holding config.yaml beside
    results.sqlite or data_digest.txt), unless it is that command's own run (`own_run`);
  - never a special file: a FIFO, device, socket, symlink (or a directory where a file goes);
  - never over an existing file, or into a non-empty directory, that is not this command's own
    kind of output, unless `force` — a previous output of the same kind is replaced, and the
    caller says so.
The kinds are recognised by content (magic bytes, the files a directory output holds), so an
output written before this guard existed is still recognised.
"""

from __future__ import annotations

import os
import stat
import zipfile
from pathlib import Path

from synthequiv.utils import SynthequivError, check_outside, check_replaceable

RUN_MARKERS = ("results.sqlite", "data_digest.txt")  # beside config.yaml: a study's run dir


def _is_png(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


def _is_samples_npz(p: Path) -> bool:
    try:
        with zipfile.ZipFile(p) as z:
            return {"images.npy", "labels.npy"} <= set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _is_export_csv(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.readline().startswith(b"run,dataset,n_base,")


def _is_parquet(p: Path) -> bool:
    with open(p, "rb") as f:
        return f.read(4) == b"PAR1"


def _is_fit_dir(d: Path) -> bool:
    return (d / "summary.json").is_file() and (d / "report.md").is_file()


def _is_analysis_dir(d: Path) -> bool:
    return (d / "analysis.json").is_file()


def _is_generator_dir(d: Path) -> bool:
    return (d / "checkpoint.pt").is_file() or (d / "generator.json").is_file()


# kind → (what it is, "file" | "dir", recogniser of an earlier output of that kind)
KINDS = {
    "png": ("a PNG image", "file", _is_png),
    "samples": ("a samples .npz", "file", _is_samples_npz),
    "csv": ("an exported results CSV", "file", _is_export_csv),
    "parquet": ("a Parquet file", "file", _is_parquet),
    "fit": ("a fit report directory", "dir", _is_fit_dir),
    "analysis": ("an analysis directory", "dir", _is_analysis_dir),
    "generator": ("a generator directory", "dir", _is_generator_dir),
}


def run_dir_of(path: str | os.PathLike) -> Path | None:
    """The study run directory `path` is or lies in (symlinks resolved), else None."""
    p = Path(path).expanduser().resolve()
    for d in (p, *p.parents):
        if (d / "config.yaml").is_file() and any((d / f).exists() for f in RUN_MARKERS):
            return d
    return None


def guard_output(path: str | os.PathLike, kind: str, *, force: bool = False,
                 own_run: str | os.PathLike | None = None) -> bool:
    """Refuse (one SynthequivError line) an output path the rules above forbid; True when an
    earlier output of the same kind is there and will be replaced."""
    what, shape, recognise = KINDS[kind]
    path = Path(path)
    run = run_dir_of(path)
    if run is not None and (own_run is None or run != Path(own_run).expanduser().resolve()):
        check_outside(path, run, "run directory", "its files belong to that study")
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return False
    if shape == "file":
        check_replaceable(path)  # devices, FIFOs, symlinks, directories
    elif stat.S_ISLNK(mode) or not stat.S_ISDIR(mode):
        raise SynthequivError(f"refusing to write {path}: it is not a directory "
                              f"({what} goes there); choose another path")
    if shape == "dir" and all(e.name.startswith(".") for e in path.iterdir()):
        return False  # empty, or only a lock / temp files of an interrupted run
    try:
        mine = recognise(path)
    except OSError as exc:
        raise SynthequivError(f"cannot check {path}: {exc.strerror or exc}") from exc
    if not mine and not force:
        found = "holds other files, not" if shape == "dir" else "exists and is not"
        raise SynthequivError(f"refusing to write {path}: it {found} {what}; choose another "
                              "path or pass --force to replace it")
    return mine
