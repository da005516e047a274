"""The run directory's one owner: its layout, the keys that name its contents, and every read
and write of its bookkeeping files. Statistics never open a run directory; reporting and the
study read and write through here.

  runs/<name>/config.yaml        the resolved config (read_run_config)
              data_digest.txt    content digest of the data the cells were keyed with
              results.sqlite     one row per finished classifier cell (ResultsTable, a single
                                 writer; read_results opens it read-only)
              cells.json         the current config's cell keys (current_rows reads only those)
              samples/ figures/ generators/<key>/   artifacts keyed by hashes of their inputs
"""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

from synthequiv.utils import (
    SynthequivError,
    atomic_write_json,
    atomic_write_text,
    check_replaceable,
    stable_hash,
)

CONFIG_FILE = "config.yaml"
DIGEST_FILE = "data_digest.txt"
RESULTS_FILE = "results.sqlite"
CELLS_FILE = "cells.json"  # {"keys": [...]}: the current config's cell keys


# ----------------------------------------------------------------------------- config and keys


def config_hash(cfg, digest: str) -> str:
    """What every cell depends on: the data (its source and content digest, `Dataset.digest`),
    splits and the classifier recipe."""
    return stable_hash(cfg.data, digest, cfg.splits, cfg.classifier)


def read_run_config(run_dir: Path):
    """The StudyConfig of a run directory's config.yaml (the study's strict parsing)."""
    from synthequiv import config as C  # lazy: config pulls every stage's dataclasses (torch)

    if not (Path(run_dir) / CONFIG_FILE).exists():
        raise SynthequivError(f"{run_dir} is not a run directory (no {CONFIG_FILE})")
    return C.build(C.StudyConfig, C.read_yaml(Path(run_dir) / CONFIG_FILE))


def run_config_hash(run_dir: Path, cfg) -> str:
    """config_hash of a run directory's study, from its files alone (no data is loaded)."""
    return config_hash(cfg, read_data_digest(run_dir))


def write_cell_keys(run_dir: Path, keys) -> None:
    atomic_write_json(Path(run_dir) / CELLS_FILE, {"keys": sorted(keys)})


# ----------------------------------------------------------------------------- data digest


def note_data_digest(run_dir: Path, ds) -> bool:
    """Store ds.digest in run_dir/data_digest.txt; if the run was started on other data, say
    so in one line (its cells are keyed by the old digest, so none is reused). True if changed."""
    path = Path(run_dir) / DIGEST_FILE
    try:
        old = path.read_text().strip() if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        old = "?"
    changed = bool(old) and old != ds.digest
    if changed:
        print(f"data at {ds.name} changed since this run started: earlier cells are not reused",
              file=sys.stderr)
    if old != ds.digest:
        atomic_write_text(path, ds.digest + "\n")
    return changed


def read_data_digest(run_dir: Path) -> str:
    """The digest note_data_digest stored for a run ("" when there is none): what its cell keys
    and config hash were made with, read without loading the data."""
    path = Path(run_dir) / DIGEST_FILE
    try:
        return path.read_text().strip() if path.is_file() else ""
    except (OSError, UnicodeDecodeError):
        return ""


# ----------------------------------------------------------------------------- results table
# A row is committed in one transaction, so a killed run leaves either the whole row or none;
# the primary key (the cell's hash) makes a second insert of the same cell a no-op.

COLUMNS = {
    "key": "TEXT PRIMARY KEY",  # hash of the cell and every input that made it
    "config_hash": "TEXT",
    "n_base": "INTEGER",  # base images per class
    "arm": "TEXT",  # real | closed | open
    "n_add": "INTEGER",  # added images per class
    "seed": "INTEGER",
    "replicate": "INTEGER",  # independent draw of base sets + generators (0 = the first)
    "accuracy": "REAL",
    "balanced_accuracy": "REAL",
    "auc": "REAL",
    "n_train": "INTEGER",
    "n_test": "INTEGER",  # test images the cell was scored on (its replicate's test split)
    "wall_s": "REAL",
    "version": "TEXT",
    "finished_at": "TEXT",
}


class ResultsTable:
    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            check_replaceable(self.path)  # sqlite would follow a symlink or open a FIFO
            self.db = sqlite3.connect(self.path)
            cols = ", ".join(f"{k} {t}" for k, t in COLUMNS.items())
            self.db.execute(f"CREATE TABLE IF NOT EXISTS cells ({cols})")
            have = {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}
            for name, typ in COLUMNS.items():  # tables written by an older version
                if name not in have:
                    default = " DEFAULT 0" if name == "replicate" else ""
                    self.db.execute(f"ALTER TABLE cells ADD COLUMN {name} {typ}{default}")
            self.db.commit()
        except (sqlite3.Error, OSError) as exc:
            raise SynthequivError(f"cannot open results table {self.path}: {exc}; "
                                  "move it away to recompute its cells") from exc

    def _read(self, sql: str) -> list[tuple]:
        """A query; a damaged file (e.g. a bad page) is one error line, not a traceback."""
        try:
            return self.db.execute(sql).fetchall()
        except sqlite3.Error as exc:
            raise SynthequivError(f"cannot read results table {self.path}: {exc}; "
                                  "move it away to recompute its cells") from exc

    def done_keys(self) -> set[str]:
        return {k for (k,) in self._read("SELECT key FROM cells")}

    def add(self, row: dict) -> None:
        values = [row.get(k) for k in COLUMNS]
        try:
            with self.db:  # one transaction per row
                self.db.execute(
                    f"INSERT OR IGNORE INTO cells ({', '.join(COLUMNS)}) "
                    f"VALUES ({', '.join('?' * len(COLUMNS))})",
                    values,
                )
        except sqlite3.Error as exc:
            raise SynthequivError(f"cannot write results table {self.path}: {exc}") from exc

    def rows(self, keys: set[str] | None = None) -> list[dict]:
        cur = self._read(
            f"SELECT {', '.join(COLUMNS)} FROM cells "
            "ORDER BY replicate, n_base, arm, n_add, seed, key"
        )
        out = [dict(zip(COLUMNS, r)) for r in cur]
        return out if keys is None else [r for r in out if r["key"] in keys]

    def close(self) -> None:
        self.db.close()


def read_results(path: Path) -> list[dict]:
    """Every row of a results.sqlite, opened read-only (never blocks or disturbs a writer)."""
    path = Path(path)
    if not path.is_file():
        raise SynthequivError(f"{path} not found (no classifier cell has finished yet?)")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            cur = db.execute("SELECT * FROM cells")
            cols = [d[0] for d in cur.description]
            rows = [{"replicate": 0, **dict(zip(cols, r))} for r in cur]  # older tables: none
            return sorted(rows, key=lambda r: (r["replicate"] or 0, r["n_base"], r["arm"],
                                               r["n_add"], r["seed"], r["key"]))
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise SynthequivError(f"cannot read results table {path}: {exc}") from exc


def current_rows(run_dir: Path, config_hash: str) -> list[dict]:
    """The rows of results.sqlite that belong to the run's current config: the cells listed
    in its cells.json (written before the grid), or — a run from before that file — the rows
    with its config hash (which misses a generator or sampling change). Older configs' rows
    stay in the table (a changed config reuses what it can) but are never mixed in."""
    rows = read_results(Path(run_dir) / "results.sqlite")
    try:
        keys = set(json.loads((Path(run_dir) / "cells.json").read_text())["keys"])
    except (OSError, ValueError, KeyError, TypeError):
        keys = None
    rows = [r for r in rows if (r.get("key") in keys if keys is not None
                                else r.get("config_hash") == config_hash)]
    if not rows:
        raise SynthequivError(f"{run_dir}: no finished classifier cell of this run's config yet")
    return rows


def earlier_rows(run_dir, ds=None) -> tuple[list[dict] | None, str]:
    """(rows, "") of the study last run in run_dir, or (None, why not): none there, other
    data, or unreadable."""
    if run_dir is None:
        return None, "no run directory to look for an earlier run in"
    if not (Path(run_dir) / RESULTS_FILE).is_file():
        return None, f"no earlier run of this study in {run_dir}"
    if ds is not None and read_data_digest(run_dir) != ds.digest:
        return None, f"the earlier run in {run_dir} used other data"
    try:
        rows = current_rows(Path(run_dir), run_config_hash(run_dir, read_run_config(run_dir)))
    except SynthequivError as exc:
        return None, f"the earlier run in {run_dir} cannot be read ({exc})"
    return rows, ""
