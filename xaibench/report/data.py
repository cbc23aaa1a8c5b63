"""What the report reads: the store's cells, values and extras as frames, and the shapes
it recognises in metric ``Score.extra`` dicts (curves, matrices) and in suite sweeps.

Recognising shapes instead of metric names keeps the report working for metrics written
after it (see ``docs/report.md`` for the conventions a metric's ``extra`` can follow).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import XaibenchError
from ..leaderboard.sweeps import entry_sweeps

X_KEYS = ("q", "qs", "fraction", "fractions", "steps", "step", "x", "layers", "layer", "levels", "strengths",
          "strength", "percent", "percents", "percentiles", "sigma", "noise")
PASS_KEYS = ("pass_line", "threshold", "random_similarity", "random_baseline", "baseline", "chance_line")
LABEL_KEYS = ("explainers", "labels", "names")


@dataclass
class Curve:
    """One named series over x (mean over images when the extra held one curve per image)."""

    x: list[Any]
    y: np.ndarray
    name: str = ""
    xlabel: str = ""
    pass_line: float | None = None


@dataclass
class Matrix:
    labels: list[str]
    values: np.ndarray
    name: str = ""


def _numbers(v: Any) -> np.ndarray | None:
    """A 1-D (or 2-D: per image) numeric array, or None."""
    if not isinstance(v, list) or not v:
        return None
    try:
        a = np.asarray(v, dtype=float)
    except (TypeError, ValueError):
        return None
    return a if a.ndim in (1, 2) else None


def _pass_line(d: dict) -> float | None:
    for k in PASS_KEYS:
        v = d.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def curves_in(extra: Any, prefix: str = "") -> list[Curve]:
    """Curves in a metric's extra dict: ``{"x": [...], "y": [...]}``, ``{"curve": {...}}``,
    ``{"curves": {name: {...}}}``, or an x-like key (``q``, ``fractions``, ``layers``…) beside
    y lists of the same length (each an N×len(x) list of lists is averaged over images)."""
    if not isinstance(extra, dict):
        return []
    out: list[Curve] = []
    xkey = next((k for k in X_KEYS if isinstance(extra.get(k), list) and extra.get(k)), None)
    pl = _pass_line(extra)
    if xkey is not None:
        x = extra[xkey]
        for k, v in extra.items():
            if k == xkey or k in PASS_KEYS:
                continue
            a = _numbers(v)
            if a is None:
                continue
            if a.ndim == 2 and a.shape[1] == len(x):
                a = np.nanmean(a, axis=0)
            if a.ndim == 1 and len(a) == len(x):
                name = k if k not in ("y", "values") else prefix
                out.append(Curve(list(x), a, f"{prefix}:{name}" if prefix and name != prefix else name,
                                 str(extra.get("xlabel", xkey)), pl))
    for k, v in extra.items():
        if isinstance(v, dict) and k not in ("options",):
            for c in curves_in(v, k if not prefix else f"{prefix}:{k}"):
                if c.pass_line is None:
                    c.pass_line = pl
                out.append(c)
    return out


def matrices_in(extra: Any) -> list[Matrix]:
    """Square matrices with labels: ``{"explainers": [...], "matrix": [[...]]}`` or one
    matrix per measure (``{"explainers": [...], "spearman": [[...]], "iou": [[...]]}``)."""
    if not isinstance(extra, dict):
        return []
    labels = next((extra[k] for k in LABEL_KEYS if isinstance(extra.get(k), list)), None)
    out = []
    for k, v in extra.items():
        a = _numbers(v) if isinstance(v, list) and v and isinstance(v[0], list) else None
        if a is not None and a.ndim == 2 and a.shape[0] == a.shape[1] and a.shape[0] > 1:
            lab = [str(s) for s in labels] if labels and len(labels) == a.shape[0] else [str(i) for i in range(len(a))]
            out.append(Matrix(lab, a, k))
        elif isinstance(v, dict):
            out.extend(Matrix(m.labels, m.values, f"{k}:{m.name}") for m in matrices_in({**v, **(
                {"explainers": labels} if labels and not any(x in v for x in LABEL_KEYS) else {})}))
    return out


@dataclass
class ReportData:
    out: Path
    suite: str | None
    cells: pd.DataFrame
    values: pd.DataFrame
    extras: pd.DataFrame
    notes: list[str] = field(default_factory=list)  # figures skipped and why

    @classmethod
    def load(cls, out: Path, suite: str | None = None) -> "ReportData":
        from ..store import Store

        db = Path(out) / "results.sqlite"
        if not db.exists():
            raise XaibenchError(f"report: {out} has no results.sqlite; run `xaibench run --suite NAME --out {out}` first")
        store = Store(db)
        try:
            cells = store.cells()
            values = store.values(suite)
            extras = store.extras()
        finally:
            store.close()
        if suite:
            if suite not in set(cells["suite"]):
                raise XaibenchError(f"report --suite {suite}: no results of that suite in {out} "
                                    f"(it holds: {', '.join(sorted(set(cells['suite'].dropna()))) or 'nothing'})")
            cells = cells[cells["suite"] == suite]
            extras = extras[extras["suite"] == suite]
        cells = cells.assign(cfg=[json.loads(c) if c else {} for c in cells["config"]])
        extras = extras.assign(obj=[json.loads(d) if d else None for d in extras["data"]])
        return cls(Path(out), suite, cells, values, extras)

    def done(self, kind: str) -> pd.DataFrame:
        c = self.cells
        return c[(c["kind"] == kind) & (c["status"] == "done")]

    def skip(self, what: str, why: str) -> None:
        self.notes.append(f"{what}: {why}")


def model_options(data: ReportData, kind: str) -> dict[str, tuple[str, dict]]:
    """Title of each dataset / attack in the grid → (plugin name, options), from model cells."""
    out: dict[str, tuple[str, dict]] = {}
    for _, r in data.done("model").iterrows():
        ident = r["cfg"].get(kind) or {}
        out.setdefault(str(r[kind]), (str(ident.get("name", r[kind])), dict(ident.get("options", {}))))
    return out


def sweeps(data: ReportData, kind: str) -> list[tuple[str, str, dict[str, float]]]:
    """Groups of grid entries (datasets or attacks) that differ in exactly one numeric option:
    ``(entry, option, {title: value})`` — e.g. corruption strengths, poison rates. Entries are
    grouped by the sweep recorded at run time (the label it was expanded from; the leaderboard
    reads the same), so a suite may sweep several labelled entries of one plugin (blur, zero, …
    corruptions); entries without a sweep group by plugin name. Folders stored before sweeps
    were recorded fall back to the label before the swept part (``blur[strength=2.0]`` → ``blur``)."""
    recorded = entry_sweeps(data.cells, kind)
    by_name: dict[str, dict[str, dict]] = {}
    for title, (name, opts) in model_options(data, kind).items():
        base = recorded.get(title, {}).get("of") or name
        by_name.setdefault(base, {})[title] = opts
    found = []
    for name, members in by_name.items():
        if len(members) < 2:
            continue
        keys = set().union(*(o.keys() for o in members.values()))
        varying = [k for k in keys if len({json.dumps(o.get(k), sort_keys=True) for o in members.values()}) > 1]
        if len(varying) != 1:
            continue
        k = varying[0]
        vals = {t: o.get(k) for t, o in members.items()}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals.values()):
            found.append((name, k, {t: float(v) for t, v in vals.items()}))
    return found
