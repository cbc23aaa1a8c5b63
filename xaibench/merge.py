"""Merge results folders computed on different machines into one.

Cells are content-addressed (the cell id hashes the cell's full config), so the same id in
two stores is the same computation. Identical results are kept once; a cell whose values
differ is a *conflict*: the first folder's version is kept, the conflict is reported (one
line each) and the merge exits 1, so a disagreement is never silently overwritten.
"Identical" ignores what legitimately differs between two runs of the same cell: wall
times, timestamps, versions/commit, and values whose name contains ``seconds``.
A failed cell never wins over a done one. Result files not yet ingested by a killed run
are merged too (plain JSON; a file that is not a record is skipped with a warning and the
merge exits 2), and so are the cache folders (models, maps, datasets: content-addressed
files, copied when missing; old pickled sidecars are never copied).

Cell ids include the suite name and the entry labels, so different suites are kept apart
(each under its own name). A cell whose keys (suite, dataset, backbone, attack, seed,
explainer, metric, split) match a stored cell of a *different* config is refused: pooling
the two would put two computations into one table row. The summary says how many cells
of each suite were merged, kept apart and refused.
"""
from __future__ import annotations

import json
import math
import shutil
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .errors import XaibenchError, warn
from .store import KEY_COLUMNS, Store, _db_error

TIMING = "seconds"
CACHE_DIRS = ("models", "maps", "datasets")


@dataclass(frozen=True)
class Cell:
    """One cell as stored: its row, its values and its extras (raw SQLite tuples)."""

    row: dict[str, Any]
    values: tuple[tuple, ...]
    extras: tuple[tuple, ...]

    @property
    def status(self) -> str:
        return str(self.row["status"])

    def label(self) -> str:
        r = self.row
        return "/".join(str(r.get(k)) for k in ("dataset", "backbone", "attack", "explainer", "metric", "split")) \
            + f"/seed{r.get('seed')}"


@dataclass
class MergeReport:
    added: int = 0
    identical: int = 0
    replaced_failed: int = 0
    conflicts: list[str] = field(default_factory=list)
    files_copied: int = 0
    file_conflicts: int = 0
    refused: list[str] = field(default_factory=list)  # one line per refused cell
    unreadable: int = 0  # result files skipped (not cell records)
    suites: dict[str, int] = field(default_factory=dict)  # suite -> cells added from the sources

    def line(self, out: Path) -> str:
        """The one-line summary of what was merged, kept apart and refused."""
        suites = ", ".join(f"{k} {v}" for k, v in sorted(self.suites.items())) or "none"
        apart = f" (suites kept apart: {suites})" if len(self.suites) > 1 else f" (suite {suites})"
        s = (f"merged into {out}: {self.added} cells added{apart}, {self.identical} identical, "
             f"{self.replaced_failed} failed cells replaced by done ones, {len(self.conflicts)} conflicts, "
             f"{len(self.refused)} refused (same keys, different config)")
        s += f", {self.unreadable} unreadable result files skipped" if self.unreadable else ""
        s += f"; {self.files_copied} cache files copied"
        return s + (f", {self.file_conflicts} cache files differ (first kept)" if self.file_conflicts else "")


def _drop_timing(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _drop_timing(v) for k, v in obj.items() if TIMING not in str(k)}
    if isinstance(obj, list):
        return [_drop_timing(v) for v in obj]
    return obj


def _same_number(a: Any, b: Any, rtol: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    a, b = float(a), float(b)
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=rtol, abs_tol=0.0)


def _same_json(a: Any, b: Any, rtol: float) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k], rtol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same_json(x, y, rtol) for x, y in zip(a, b))
    num = (int, float)
    if isinstance(a, num) and isinstance(b, num) and not isinstance(a, bool) and not isinstance(b, bool):
        return _same_number(a, b, rtol)
    return a == b


def difference(a: Cell, b: Cell, rtol: float = 0.0) -> str | None:
    """``None`` when the two versions of a cell agree; else what differs (first difference)."""
    if a.status != b.status:
        return f"status {a.status} vs {b.status}"
    if a.row.get("config_hash") != b.row.get("config_hash"):
        return f"config {a.row.get('config_hash')} vs {b.row.get('config_hash')}"

    def vals(c: Cell) -> dict:  # (name, explainer, image) -> (value, chance, higher_is_better)
        return {(n, e, i): (v, ch, h) for n, e, i, v, ch, h in c.values if TIMING not in str(n)}

    va, vb = vals(a), vals(b)
    if set(va) != set(vb):
        extra = sorted(set(va) ^ set(vb), key=str)[0]
        return f"value {extra[0]}[{extra[2]}] present in one folder only"
    for k in sorted(va, key=str):
        (x, cx, hx), (y, cy, hy) = va[k], vb[k]
        if not _same_number(x, y, rtol) or not _same_number(cx, cy, rtol) or hx != hy:
            who = f"{k[0]}" + (f" ({k[1]})" if k[1] else "") + (f"[image {k[2]}]" if k[2] >= 0 else "")
            return f"{who}: {x!r} vs {y!r}"

    def extras(c: Cell) -> dict:
        return {(n, e): _drop_timing(json.loads(d)) if d else None for n, e, d in c.extras if TIMING not in str(n)}

    ea, eb = extras(a), extras(b)
    for k in sorted(set(ea) | set(eb), key=str):
        if not _same_json(ea.get(k), eb.get(k), rtol):
            return f"extra {k[0]}" + (f" ({k[1]})" if k[1] else "") + " differs"
    return None  # (two failures of the same cell with different messages are not a conflict)


def read_cells(db: sqlite3.Connection) -> dict[str, Cell]:
    db.row_factory = sqlite3.Row
    rows = {r["cell_id"]: dict(r) for r in db.execute("SELECT * FROM cells")}
    vals: dict[str, list] = {k: [] for k in rows}
    for r in db.execute("SELECT cell_id, name, explainer, image, value, chance, higher_is_better FROM cell_values"):
        vals.setdefault(r[0], []).append(tuple(r)[1:])
    ext: dict[str, list] = {k: [] for k in rows}
    for r in db.execute("SELECT cell_id, name, explainer, data FROM extras"):
        ext.setdefault(r[0], []).append(tuple(r)[1:])
    db.row_factory = None
    return {k: Cell(rows[k], tuple(sorted(vals[k], key=str)), tuple(sorted(ext[k], key=str))) for k in rows}


def source_cells(folder: Path, report: MergeReport | None = None) -> dict[str, Cell]:
    """The cells of a results folder: its store plus result files a killed run left behind
    (a file that is not a cell record is skipped with a warning naming it)."""
    from .executors.jobs import PendingError, legacy_files, pending_files, read_pending

    cells: dict[str, Cell] = {}
    db_path = folder / "results.sqlite"
    if db_path.exists():
        try:
            db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
            try:
                cells.update(read_cells(db))
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise _db_error(exc, db_path) from None
    bad = [(p, f"{p}: old pickled result file, not read (pickles can run code); skipped") for p in legacy_files(folder)]
    recs = []
    for p in pending_files(folder):
        try:
            recs.append(read_pending(p))
        except PendingError as exc:
            bad.append((p, str(exc)))
    for _, why in bad:
        warn(why)
    if report is not None:
        report.unreadable += len(bad)
    if recs:
        mem = Store(Path(":memory:"))
        try:
            for r in recs:
                mem.write(r)
            cells.update(read_cells(mem.db))
        finally:
            mem.close()
    return cells


def _key(cell: Cell) -> tuple:
    return (cell.row.get("kind"), *(cell.row.get(k) for k in KEY_COLUMNS))


def _write(dest: Store, cell: Cell) -> None:
    cols = [r[1] for r in dest.db.execute("PRAGMA table_info(cells)")]
    with dest._tx():
        cid = cell.row["cell_id"]
        dest.db.execute("DELETE FROM cells WHERE cell_id = ?", (cid,))
        dest.db.execute(f"INSERT INTO cells ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                        [cell.row.get(c) for c in cols])
        dest.db.executemany("INSERT INTO cell_values VALUES (?,?,?,?,?,?,?)", [(cid, *v) for v in cell.values])
        dest.db.executemany("INSERT INTO extras VALUES (?,?,?,?)", [(cid, *e) for e in cell.extras])


def _same_file(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(1 << 20), fb.read(1 << 20)
            if x != y:
                return False
            if not x:
                return True


def merge_caches(src: Path, out: Path, report: MergeReport) -> None:
    for sub in CACHE_DIRS:
        root = src / "cache" / sub
        if not root.is_dir():
            continue
        for p in root.rglob("*"):
            if not p.is_file() or ".tmp" in p.name or p.name.endswith((".pkl", ".cell.pt")):
                continue  # (old pickled records are never copied: they could run code)
            target = out / "cache" / sub / p.relative_to(root)
            if target.exists():
                if sub != "datasets" and not _same_file(p, target):
                    report.file_conflicts += 1  # e.g. a model retrained on another GPU: keep the first
                continue
            with open(p, "rb") as f:
                atomic_write(target, lambda g: shutil.copyfileobj(f, g, 1 << 20))
            report.files_copied += 1


def merge(sources: list[Path], out: Path, rtol: float = 0.0) -> MergeReport:
    """Merge ``sources`` into ``out`` (which may already hold results: it counts as the first)."""
    out = Path(out)
    for s in sources:
        if not Path(s).is_dir():
            raise XaibenchError(f"merge: {s} is not a folder; give results folders (with results.sqlite)")
        if not (Path(s) / "results.sqlite").exists() and not (Path(s) / "pending").is_dir():
            raise XaibenchError(f"merge: {s} has no results.sqlite; give folders written by `xaibench run`")
        if Path(s).resolve() == out.resolve():
            raise XaibenchError(f"merge: {s} is also the --out folder; merge into a new folder")
    report = MergeReport()
    out.mkdir(parents=True, exist_ok=True)
    dest = Store(out / "results.sqlite")
    try:
        have = read_cells(dest.db)
        configs = {_key(c): c.row.get("config_hash") for c in have.values()}
        for src in sources:
            src = Path(src)
            for cid, cell in source_cells(src, report).items():
                mine = have.get(cid)
                other = configs.get(_key(cell))
                if mine is None and other is not None and other != cell.row.get("config_hash"):
                    report.refused.append(f"refused: cell {cid} ({cell.label()}, suite {cell.row.get('suite')}) in "
                                          f"{src}: config {cell.row.get('config_hash')} where {out} has {other}")
                elif mine is None:
                    _write(dest, cell)
                    have[cid] = cell
                    configs[_key(cell)] = cell.row.get("config_hash")
                    report.added += 1
                    suite = str(cell.row.get("suite"))
                    report.suites[suite] = report.suites.get(suite, 0) + 1
                elif mine.status == "failed" and cell.status == "done":
                    _write(dest, cell)
                    have[cid] = cell
                    report.replaced_failed += 1
                elif mine.status == "done" and cell.status == "failed":
                    report.identical += 1  # a done result beats a failed attempt
                else:
                    diff = difference(mine, cell, rtol)
                    if diff is None:
                        report.identical += 1
                    else:
                        report.conflicts.append(f"conflict: cell {cid} ({cell.label()}) in {src}: {diff}")
            merge_caches(src, out, report)
    finally:
        dest.close()
    return report
