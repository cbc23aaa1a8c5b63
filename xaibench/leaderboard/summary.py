"""From stored values to the summary frame that is published as CSV.

One row per (dataset, backbone, attack, explainer, column): mean and a 95% percentile
bootstrap CI over images pooled across seeds (aggregate values: over seeds), n, chance
level, direction, and the metric family the column's table is grouped by (from the metric
plugin's record; ``explainer`` for the facts stored with the maps, such as their cost).
Everything a table shows is derivable from this frame alone, so the committed Markdown can
be checked against the committed CSV.
"""
from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

SUMMARY_COLUMNS = ["dataset", "backbone", "attack", "explainer", "column", "mean", "ci_low", "ci_high", "n",
                   "seeds", "chance", "higher_is_better", "config", "versions", "family"]
MAPS_FAMILY = "explainer"  # values stored by maps cells (time per image, IoU ceiling), not by a metric
N_BOOT = 1000


def bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean (vectorised)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, v.size, size=(n_boot, v.size))
    means = v[idx].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def _core_versions(g: pd.DataFrame) -> str:
    """'xaibench X, torch Y' from the cells' version records (plugin versions stay in the store)."""
    if "versions" not in g:
        return ""
    out = set()
    for v in g["versions"].dropna().unique():
        d = json.loads(v)
        out.add(", ".join(f"{k} {d[k]}" for k in ("xaibench", "torch") if k in d))
    return "; ".join(sorted(out))


def column_name(name: str, split: str) -> str:
    return name if split == "clean" else f"{name} [{split}]"


def summarise(values: pd.DataFrame, families: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``Store.values()`` → the summary frame; ``families`` maps metric plugin names to
    their family (unknown plugins: ``other``)."""
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    df = values.copy()
    df["column"] = [column_name(n, s) for n, s in zip(df["name"], df["split"])]
    plugin = df["metric_plugin"] if "metric_plugin" in df else df.get("metric", pd.Series([None] * len(df), index=df.index))
    df["family"] = [MAPS_FAMILY if m is None or (isinstance(m, float) and np.isnan(m))
                    else (families or {}).get(m, "other") for m in plugin]
    rows = []
    keys = ["dataset", "backbone", "attack", "explainer", "column"]
    for (ds, bb, at, ex, col), g in df.groupby(keys, sort=False, dropna=False):
        v = g["value"].to_numpy(dtype=float)
        finite = v[np.isfinite(v)]
        lo, hi = bootstrap_ci(finite)
        seeds = sorted({int(s) for s in g["seed"]})
        chance = g["chance"].dropna()
        rows.append({
            "dataset": ds, "backbone": bb, "attack": at, "explainer": ex, "column": col,
            "mean": float(finite.mean()) if finite.size else float("nan"), "ci_low": lo, "ci_high": hi,
            "n": int(finite.size), "seeds": " ".join(map(str, seeds)),
            "chance": float(chance.mean()) if len(chance) else float("nan"),
            "higher_is_better": bool(g["higher_is_better"].iloc[0]),
            "config": " ".join(sorted({str(c)[:8] for c in g["config_hash"]}))[:80],
            "versions": _core_versions(g),
            "family": str(g["family"].iloc[0]),
        })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
