"""The table model: titles, columns with direction and chance level, rows of mean ± CI
cells with the best per column marked and a rank; no formatting decisions here."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Column:
    key: str
    higher_is_better: bool
    chance: float | None


@dataclass(frozen=True)
class Value:
    mean: float
    lo: float
    hi: float
    n: int
    best: bool = False


@dataclass(frozen=True)
class Row:
    label: str
    values: tuple[Value | None, ...]
    rank: float | None


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[Column, ...]
    rows: tuple[Row, ...]
    footer: tuple[str, ...]
    row_header: str = "explainer"


MODEL_ROWS = ("-",)
UNRANKED = ("seconds",)  # cost columns are shown but do not enter the rank  # model-level values (accuracy…) are stored with explainer "-"


def _table(title: str, g: pd.DataFrame, row_key: str, rank: bool, footer: tuple[str, ...]) -> Table:
    cols = []
    for key, cg in g.groupby("column", sort=False):
        ch = cg["chance"].dropna()
        cols.append(Column(str(key), bool(cg["higher_is_better"].iloc[0]), float(ch.mean()) if len(ch) else None))
    labels = list(dict.fromkeys(g[row_key]))
    grid = {(r[row_key], r["column"]): r for _, r in g.iterrows()}
    best = {}
    for c in cols:
        means = [grid[(lab, c.key)]["mean"] for lab in labels if (lab, c.key) in grid]
        means = [m for m in means if not math.isnan(m)]
        if len(means) > 1:
            best[c.key] = max(means) if c.higher_is_better else min(means)
    ranks: dict[str, float] = {}
    if rank and len(labels) > 1:
        per_col = []
        for c in cols:
            m = np.array([grid[(lab, c.key)]["mean"] if (lab, c.key) in grid else np.nan for lab in labels], float)
            if np.isfinite(m).sum() < 2 or c.key.startswith(UNRANKED):
                continue
            r = pd.Series(m if not c.higher_is_better else -m).rank(method="average").to_numpy()
            per_col.append(r)
        if per_col:
            mean_rank = np.nanmean(np.vstack(per_col), axis=0)
            ranks = dict(zip(labels, mean_rank.tolist()))
    rows = []
    for lab in sorted(labels, key=lambda x: ranks.get(x, 0.0)) if ranks else labels:
        vals = []
        for c in cols:
            r = grid.get((lab, c.key))
            if r is None:
                vals.append(None)
                continue
            is_best = c.key in best and not math.isnan(r["mean"]) and math.isclose(r["mean"], best[c.key], rel_tol=0, abs_tol=1e-12)
            vals.append(Value(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), int(r["n"]), is_best))
        rows.append(Row(str(lab), tuple(vals), ranks.get(lab)))
    return Table(title, tuple(cols), tuple(rows), footer, row_header=row_key)


def _footer(g: pd.DataFrame, rank: bool) -> str:
    n = int(g["n"].max())
    seeds = sorted(set(" ".join(g["seeds"]).split()))
    configs = sorted(set(" ".join(g["config"]).split()))
    versions = "; ".join(sorted({v for v in g.get("versions", pd.Series(dtype=str)).fillna("") if v}))
    return (f"mean ± 95% bootstrap CI over images and seeds; n ≤ {n} values per cell; "
            f"seeds {' '.join(seeds)}; {len(configs)} cell configs "
            f"({', '.join(configs[:3])}{'…' if len(configs) > 3 else ''}); best per column in bold"
            + ("; rank = mean rank over this table's columns" if rank else "") + (f"; {versions}" if versions else ""))


def _with_accuracy_drop(models: pd.DataFrame) -> pd.DataFrame:
    """Add "accuracy drop vs none": the clean model's accuracy minus each model's (points)."""
    acc = models[models["column"] == "accuracy"].set_index("attack")
    if "none" not in acc.index or len(acc) < 2:
        return models
    base = acc.loc["none"]
    rows = []
    for attack, r in acc.iterrows():
        d = 100 * (base["mean"] - r["mean"])
        half = 100 * ((base["ci_high"] - base["ci_low"]) ** 2 + (r["ci_high"] - r["ci_low"]) ** 2) ** 0.5 / 2
        rows.append({**r.to_dict(), "attack": attack, "column": "accuracy drop vs none (points)", "mean": d,
                     "ci_low": d - half, "ci_high": d + half, "chance": float("nan"), "higher_is_better": False})
    return pd.concat([models, pd.DataFrame(rows)], ignore_index=True)


# Family tables in reading order (a family not listed here follows, alphabetically). The
# family comes from each metric plugin's record; these names only fix the order and titles.
FAMILIES = {
    "localisation": "localisation (against the ROI mask)",
    "faithfulness": "faithfulness (removing what the map points at)",
    "attack": "attack transfer and stealth (per explainer)",
    "detection": "detecting triggered inputs (AUROC, triggered vs clean)",
    "agreement": "agreement between explainers",
    "stability": "stability",
    "sanity": "sanity (model randomisation)",
    "group": "group statistics",
    "explainer": "explainer cost and map resolution",
}
UNRANKED_FAMILIES = ("explainer",)  # facts about the explainer, not scores to rank on


def _family_order(families: list[str]) -> list[str]:
    known = [f for f in FAMILIES if f in families]
    return known + sorted(f for f in families if f not in FAMILIES)


def build_tables(summary: pd.DataFrame) -> list[Table]:
    """One model table per (dataset, backbone), then per (dataset, backbone, attack) one
    explainer table per metric family (rows = explainers, ranked within the family)."""
    tables = []
    if summary.empty:
        return tables
    if "family" not in summary:
        summary = summary.assign(family="other")
    for (ds, bb), g in summary.groupby(["dataset", "backbone"], sort=False):
        models = _with_accuracy_drop(g[g["explainer"].isin(MODEL_ROWS)])
        if not models.empty:
            foot = (f"dataset {ds}; backbone {bb}; seeds {' '.join(sorted(set(' '.join(models['seeds']).split())))}",)
            tables.append(_table(f"Models: {ds} / {bb}", models, "attack", rank=False, footer=foot))
        for at, ga in g[~g["explainer"].isin(MODEL_ROWS)].groupby("attack", sort=False):
            per_expl = ga[ga["explainer"] != "*"]
            for fam in _family_order(list(dict.fromkeys(per_expl["family"]))):
                gf = per_expl[per_expl["family"] == fam]
                rank = fam not in UNRANKED_FAMILIES
                tables.append(_table(f"{ds} / {bb} / attack: {at} — {FAMILIES.get(fam, fam)}", gf, "explainer",
                                     rank=rank, footer=(_footer(gf, rank),)))
    from .sweeps import monotonicity_tables

    return tables + monotonicity_tables(summary)
