"""From stored values to the summary frame that is published as CSV.

One row per (dataset, backbone, attack, explainer, column): mean, a 95% interval whose
unit of resampling is named in ``ci``, n and n_nan, the per-seed means, chance level,
direction, the metric family the column's table is grouped by (from the metric plugin's
record; ``explainer`` for the facts stored with the maps, such as their cost), the
explainer's baseline kind, and the paired-test and Friedman results of its table (see
``paired.py``). Everything a table shows is derivable from this frame alone, so the
committed Markdown can be checked against the committed CSV. Rows come out in one order
whatever the executor (``sort_rows``).
"""
from __future__ import annotations

import json
import re
from collections.abc import Mapping

import numpy as np
import pandas as pd

from ..suite import CLEAN_ATTACK
from .paired import table_tests
from .stats import N_BOOT, bootstrap_ci, hierarchical_ci, t_interval

__all__ = ["SUMMARY_COLUMNS", "N_BOOT", "bootstrap_ci", "summarise", "sort_rows", "column_name"]

KEYS = ["dataset", "backbone", "attack", "explainer", "column"]
SUMMARY_COLUMNS = KEYS + ["mean", "ci_low", "ci_high", "n", "seeds", "chance", "higher_is_better", "config",
                          "versions", "family", "n_nan", "per_seed", "ci", "baseline", "p_vs_best", "p_vs_prior",
                          "rank", "friedman_p", "cd", "blocks", "sweep"]
MAPS_FAMILY = "explainer"  # values stored by maps cells (time per image, IoU ceiling), not by a metric


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


def _by_seed(g: pd.DataFrame) -> tuple[np.ndarray, list[np.ndarray]]:
    """The seeds (sorted) and each seed's values, in image order (the frame is sorted)."""
    seeds = g["seed"].to_numpy()
    values = g["value"].to_numpy(float)
    uniq = np.unique(seeds)
    return uniq, [values[seeds == s] for s in uniq]


def interval(g: pd.DataFrame) -> tuple[float, float, str]:
    """(lo, hi, unit): image-level values → bootstrap over seeds then images (one seed:
    over images); one value per seed (aggregates, image -1) → Student-t over the seeds."""
    _, by_seed = _by_seed(g)
    if (g["image"] < 0).all():
        per_seed = np.array([np.nanmean(v) if np.isfinite(v).any() else np.nan for v in by_seed])
        lo, hi = t_interval(per_seed)
        return lo, hi, "seed-t" if np.isfinite(per_seed).sum() > 1 else "single"
    lo, hi = hierarchical_ci(by_seed)
    return lo, hi, "hierarchical" if sum(np.isfinite(v).any() for v in by_seed) > 1 else "image"


def _per_seed(g: pd.DataFrame) -> str:
    """'0:0.512 1:nan 2:0.487' — the mean of each seed, so a failed seed stays visible."""
    seeds, by_seed = _by_seed(g)
    return " ".join(f"{int(s)}:{np.nanmean(v):.4g}" if np.isfinite(v).any() else f"{int(s)}:nan"
                    for s, v in zip(seeds, by_seed))


def _row(key: tuple, g: pd.DataFrame) -> dict:
    v = g["value"].to_numpy(float)
    finite = v[np.isfinite(v)]
    lo, hi, unit = interval(g)
    chance = g["chance"].dropna()
    return {
        **dict(zip(KEYS, key)),
        "mean": float(finite.mean()) if finite.size else float("nan"), "ci_low": lo, "ci_high": hi,
        "n": int(finite.size), "seeds": " ".join(str(s) for s in sorted({int(s) for s in g["seed"]})),
        "chance": float(chance.mean()) if len(chance) else float("nan"),
        "higher_is_better": bool(g["higher_is_better"].iloc[0]),
        "config": " ".join(sorted({str(c)[:8] for c in g["config_hash"]}))[:80],
        "versions": _core_versions(g), "family": str(g["family"].iloc[0]),
        "n_nan": int(v.size - finite.size), "per_seed": _per_seed(g), "ci": unit,
        "baseline": str(g["baseline"].iloc[0]),
    }


def natural(s: object) -> tuple:
    """Sort key comparing the numbers inside a name as numbers (strength=4.0 < 16.0)."""
    return tuple((0, float(t), "") if re.fullmatch(r"\d+(?:\.\d+)?", t) else (1, 0.0, t)
                 for t in re.split(r"(\d+(?:\.\d+)?)", str(s)) if t)


def _lead(first: str):
    return lambda s: (0 if s == first else 1, natural(s))


def sort_rows(summary: pd.DataFrame) -> pd.DataFrame:
    """The documented row order: dataset, backbone, attack (the clean attack first), explainer
    (model rows "-" first, then "*", then by name), column — names in natural order."""
    if summary.empty:
        return summary
    keys = {"dataset": natural, "backbone": natural, "attack": _lead(CLEAN_ATTACK),
            "explainer": lambda s: ({"-": 0, "*": 1}.get(s, 2), natural(s)), "column": natural}
    order = sorted(range(len(summary)), key=lambda i: tuple(f(summary[k].iloc[i]) for k, f in keys.items()))
    return summary.iloc[order].reset_index(drop=True)


def _family(plugin: object, recorded: object, families: Mapping[str, str]) -> str:
    if plugin is None or (isinstance(plugin, float) and np.isnan(plugin)):
        return MAPS_FAMILY
    return recorded if isinstance(recorded, str) and recorded else families.get(str(plugin), "other")


def summarise(values: pd.DataFrame, families: Mapping[str, str] | None = None,
              baselines: Mapping[str, str] | None = None, sweeps: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``Store.values()`` → the summary frame. A value's family is the one its cell recorded
    (``metric_family``); ``families`` maps metric plugin names to their family for cells
    stored before that (unknown plugins: ``other``); ``baselines`` maps explainer labels to
    their baseline kind ("chance", "prior", "model-free"); ``sweeps`` dataset labels to their
    sweep (JSON, see ``sweeps.dataset_sweeps_of``)."""
    if values.empty:
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    df = values.copy()
    df["value"] = pd.to_numeric(df["value"], errors="coerce").astype(float)  # stored NULL → NaN, counted
    df["column"] = [column_name(n, s) for n, s in zip(df["name"], df["split"])]
    plugin = df["metric_plugin"] if "metric_plugin" in df else df.get("metric", pd.Series([None] * len(df), index=df.index))
    recorded = df["metric_family"] if "metric_family" in df else pd.Series([None] * len(df), index=df.index)
    df["family"] = [_family(m, f, families or {}) for m, f in zip(plugin, recorded)]
    df["baseline"] = [(baselines or {}).get(e, "") or "" for e in df["explainer"]]
    df = df.sort_values(KEYS + ["seed", "image"], kind="stable")  # the bootstrap sees one order
    rows = [_row(key, g) for key, g in df.groupby(KEYS, sort=True, dropna=False)]
    summary = pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
    summary = table_tests(summary, df)
    summary["sweep"] = [(sweeps or {}).get(d, "") for d in summary["dataset"]]
    return sort_rows(summary)[SUMMARY_COLUMNS]
