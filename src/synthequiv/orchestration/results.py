"""The results table: one row per finished grid cell, in SQLite (stdlib), a single writer.

A row is committed in one transaction, so a killed run leaves either the whole row or none;
the primary key (the cell's hash) makes a second insert of the same cell a no-op.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from synthequiv.utils import SynthequivError, check_replaceable

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
