"""The results store: one SQLite database per output folder (WAL, one transaction per cell).

Every cell row carries its keys, config hash, seed, versions, git commit and wall time;
its values are one row per image (``image >= 0``) or one aggregate row (``image = -1``).
A NaN value means "undefined for this image": SQLite stores it as NULL and :meth:`Store.values`
reads it back as NaN (a row that is there), distinct from a value that was never computed
(no row).
Writing a cell replaces any earlier attempt atomically, so a crash or Ctrl-C leaves
either the whole cell or nothing, and a rerun never duplicates rows. It also replaces any
cell with the same keys (kind, suite, dataset, backbone, attack, seed, explainer, metric,
split) under another id — an earlier config of the same suite, or a cell stored under an
older id scheme — so a table row never pools two computations.
"""
from __future__ import annotations

import errno
import json
import math
import sqlite3
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import StorageError

ScoreRow = tuple[str, str | None, int, float, float | None, bool]  # name, explainer, image, value, chance, hib


def score_rows(scores: list[Any], who: str = "metric") -> tuple[list[ScoreRow], list[tuple[str, str | None, Any]]]:
    """Store rows of ``scores``; ``ValueError`` naming ``who`` for an infinite value (NaN is
    kept: it means the score is undefined for that image)."""
    rows: list[ScoreRow] = []
    extras = []
    for s in scores:
        vals = np.asarray(s.values, dtype=float).reshape(-1)
        inf = np.flatnonzero(np.isinf(vals))
        if inf.size:
            where = f"[image {inf[0]}]" if vals.size > 1 else ""
            raise ValueError(f"{who}: value {s.name}{where} is infinite ({inf.size} of {vals.size}); "
                             "a score must be finite or NaN (undefined)")
        if vals.size == 1 and getattr(s, "aggregate", True) and len(vals) == 1:
            rows.append((s.name, s.explainer, -1, float(vals[0]), s.chance, s.higher_is_better))
        else:
            rows.extend((s.name, s.explainer, i, float(v), s.chance, s.higher_is_better) for i, v in enumerate(vals))
        if s.extra:
            extras.append((s.name, s.explainer, dict(s.extra)))
    return rows, extras


SCHEMA = """
CREATE TABLE IF NOT EXISTS cells (
    cell_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,            -- model | maps | metric
    suite TEXT, dataset TEXT, backbone TEXT, attack TEXT, seed INTEGER,
    explainer TEXT, metric TEXT, split TEXT,
    config_hash TEXT, config TEXT,
    status TEXT NOT NULL,          -- done | failed
    error TEXT, wall_time REAL, finished_at TEXT, versions TEXT, git_commit TEXT,
    facts TEXT                     -- JSON, not hashed: what readers need about the cell's plugins
);
CREATE TABLE IF NOT EXISTS cell_values (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
    name TEXT NOT NULL, explainer TEXT, image INTEGER NOT NULL,
    value REAL, chance REAL, higher_is_better INTEGER
);
CREATE INDEX IF NOT EXISTS cell_values_cell ON cell_values(cell_id);
CREATE TABLE IF NOT EXISTS extras (
    cell_id TEXT NOT NULL REFERENCES cells(cell_id) ON DELETE CASCADE,
    name TEXT NOT NULL, explainer TEXT, data TEXT
);
"""

CELL_COLUMNS = ("cell_id", "kind", "suite", "dataset", "backbone", "attack", "seed", "explainer", "metric", "split",
                "config_hash", "config", "status", "error", "wall_time", "finished_at", "versions", "git_commit", "facts")
KEY_COLUMNS = ("suite", "dataset", "backbone", "attack", "seed", "explainer", "metric", "split")


@dataclass(frozen=True)
class CellRecord:
    """A finished (or failed) cell, ready to be written in one transaction."""

    cell_id: str
    kind: str
    keys: dict[str, Any]
    config_hash: str
    config: dict[str, Any]
    status: str
    wall_time: float
    values: Sequence[tuple[str, str | None, int, float, float | None, bool]] = ()
    extras: Sequence[tuple[str, str | None, Any]] = ()
    error: str | None = None
    versions: dict[str, str] = field(default_factory=dict)
    git_commit: str | None = None
    # Plain data about the cell's plugins that readers need without loading them (a results
    # folder never runs code): the metric's ``family``, the explainer's ``baseline`` kind, the
    # swept ``params`` of its scores, a swept dataset's ``sweep``. Not part of the cell's hash.
    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Plain JSON (NaN and ±inf as JSON's NaN/Infinity): records on disk are never pickled,
        so reading someone's results folder cannot run their code."""
        return json.dumps(asdict(self), default=_json_default, allow_nan=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> "CellRecord":
        """The record of :meth:`to_json`; ``ValueError`` when ``text`` is not one."""
        d = json.loads(text)
        if not isinstance(d, dict) or set(d) - {f.name for f in fields(cls)}:
            raise ValueError("not a cell record")
        try:
            d["values"] = tuple((str(n), e, int(i), float("nan") if v is None else float(v),
                                 None if c is None else float(c), bool(h)) for n, e, i, v, c, h in d.get("values", ()))
            d["extras"] = tuple((str(n), e, x) for n, e, x in d.get("extras", ()))
            rec = cls(**d)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"not a cell record ({exc})") from None
        if not isinstance(rec.cell_id, str) or not isinstance(rec.keys, dict) or not isinstance(rec.config, dict) \
                or not isinstance(rec.facts, dict):
            raise ValueError("not a cell record (cell_id, keys, config)")
        return rec


def _num(v: float | None) -> float | None:
    if v is None:
        return None
    v = float(v)
    return None if math.isnan(v) else v


def _db_error(exc: Exception, path: Path) -> StorageError:
    """One line for a results file SQLite cannot use (and what to do about it)."""
    msg = str(exc).lower()
    where = f"{path.name} in {path.parent}"
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC or "full" in msg:
        return StorageError(f"disk full while writing {path}; free some space and rerun the same command "
                            "(results stored so far are intact)")
    if "readonly" in msg or "read-only" in msg or "unable to open" in msg or isinstance(exc, PermissionError):
        return StorageError(f"cannot write {where}: the folder is read-only (or not a folder); "
                            "give a writable --out folder")
    if "not a database" in msg or "malformed" in msg or "file is encrypted" in msg:
        return StorageError(f"{where} is not a SQLite database; move it away to start fresh")
    return StorageError(f"cannot use {where}: {exc}")


class Store:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            if str(path) != ":memory:":
                path.parent.mkdir(parents=True, exist_ok=True)
            self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA foreign_keys=ON")
            self.db.executescript(SCHEMA)
            if "facts" not in {r[1] for r in self.db.execute("PRAGMA table_info(cells)")}:
                self.db.execute("ALTER TABLE cells ADD COLUMN facts TEXT")  # a store written before facts
        except (sqlite3.Error, OSError) as exc:
            raise _db_error(exc, Path(path)) from None

    def close(self) -> None:
        self.db.close()

    # -- writing -----------------------------------------------------------------
    def write(self, rec: CellRecord) -> None:
        """Write one cell in one transaction (a failure rolls it back: stored cells stay)."""
        try:
            self._write(rec)
        except sqlite3.Error as exc:
            raise _db_error(exc, Path(self.path)) from None

    def _write(self, rec: CellRecord) -> None:
        k = rec.keys
        with self._tx():
            self.db.execute("DELETE FROM cells WHERE cell_id = ?", (rec.cell_id,))
            self.db.execute("DELETE FROM cells WHERE kind = ? AND " + " AND ".join(f"{c} IS ?" for c in KEY_COLUMNS),
                            (rec.kind, *(k.get(c) for c in KEY_COLUMNS)))
            self.db.execute(
                f"INSERT INTO cells ({','.join(CELL_COLUMNS)}) VALUES ({','.join('?' * len(CELL_COLUMNS))})",
                (rec.cell_id, rec.kind, *(k.get(c) for c in KEY_COLUMNS), rec.config_hash,
                 json.dumps(rec.config, sort_keys=True, default=str), rec.status, rec.error, rec.wall_time,
                 time.strftime("%Y-%m-%dT%H:%M:%S"), json.dumps(rec.versions, sort_keys=True), rec.git_commit,
                 json.dumps(rec.facts, sort_keys=True, default=_json_default) if rec.facts else None),
            )
            self.db.executemany(
                "INSERT INTO cell_values VALUES (?,?,?,?,?,?,?)",
                [(rec.cell_id, n, e, int(i), _num(v), _num(c), int(bool(h))) for n, e, i, v, c, h in rec.values],
            )
            self.db.executemany(
                "INSERT INTO extras VALUES (?,?,?,?)",
                [(rec.cell_id, n, e, json.dumps(d, default=_json_default)) for n, e, d in rec.extras],
            )

    def _tx(self):
        store = self

        class _Tx:
            def __enter__(self):
                store.db.execute("BEGIN IMMEDIATE")

            def __exit__(self, exc_type, *_):
                store.db.execute("ROLLBACK" if exc_type else "COMMIT")
                return False

        return _Tx()

    # -- reading -----------------------------------------------------------------
    def done(self, cell_ids: Iterable[str] | None = None) -> set[str]:
        rows = self.db.execute("SELECT cell_id FROM cells WHERE status = 'done'").fetchall()
        have = {r[0] for r in rows}
        return have if cell_ids is None else have & set(cell_ids)

    def cells(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM cells", self.db)

    def values(self, suite: str | None = None) -> pd.DataFrame:
        """Every value joined with its cell's keys (one row per image or aggregate), with the
        facts recorded at run time: ``metric_family`` and the swept ``param_key``/``param_value``
        (None/NaN for cells stored before facts)."""
        q = ("SELECT c.cell_id, c.suite, c.dataset, c.backbone, c.attack, c.seed, c.metric, c.split, c.config_hash, "
             "json_extract(c.config, '$.metric.name') AS metric_plugin, "
             "json_extract(c.facts, '$.family') AS metric_family, "
             "COALESCE(v.explainer, c.explainer) AS explainer, v.name, v.image, v.value, v.chance, "
             "v.higher_is_better, c.versions FROM cell_values v JOIN cells c USING (cell_id) WHERE c.status = 'done'")
        args: tuple = ()
        if suite:
            q += " AND c.suite = ?"
            args = (suite,)
        df = pd.read_sql_query(q, self.db, params=args)
        df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)  # NULL = NaN: undefined
        return self._with_params(df)

    def extras(self) -> pd.DataFrame:
        q = ("SELECT c.cell_id, c.suite, c.dataset, c.backbone, c.attack, c.seed, c.metric, c.split, "
             "COALESCE(e.explainer, c.explainer) AS explainer, e.name, e.data "
             "FROM extras e JOIN cells c USING (cell_id) WHERE c.status = 'done'")
        return self._with_params(pd.read_sql_query(q, self.db))

    def _with_params(self, df: pd.DataFrame) -> pd.DataFrame:
        """``param_key``/``param_value`` of each row's score, from its cell's recorded params."""
        rows = self.db.execute("SELECT cell_id, json_extract(facts, '$.params') AS p FROM cells "
                               "WHERE p IS NOT NULL").fetchall()
        lookup = {(cid, n): p for cid, text in rows for n, p in json.loads(text).items()}
        got = [lookup.get(k) for k in zip(df["cell_id"], df["name"])]
        return df.assign(param_key=[p[0] if p else None for p in got],
                         param_value=[float(p[1]) if p else float("nan") for p in got])

    def failures(self) -> pd.DataFrame:
        return pd.read_sql_query("SELECT * FROM cells WHERE status = 'failed'", self.db)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
