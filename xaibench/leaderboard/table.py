"""From the summary frame to the table model: one table per (dataset, backbone, attack,
metric family), methods ranked, reference rows (baselines) apart. A CSV written before
the paired tests (no ``ci`` column) renders exactly as it did then."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd

from ..suite import CLEAN_ATTACK
from .attack_facts import FACTS, FACTS_FAMILY
from .model import Column, Ranking, Row, Table, Value
from .paired import PRIOR_FAMILIES, UNRANKED_FAMILIES, prior_of
from .stats import ALPHA
from .sweeps import monotonicity_tables

__all__ = ["Column", "Row", "Table", "Value", "build_tables", "FAMILIES"]

MODEL_ROWS = ("-",)  # model-level values (accuracy…) are stored with explainer "-"


def _f(x) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def _per_seed(s: object, seeds: tuple[str, ...]) -> tuple[float, ...]:
    got = dict(p.split(":", 1) for p in str(s or "").split() if ":" in p)
    return tuple(_f(got.get(k)) for k in seeds) if len(seeds) > 1 else ()


def _legacy_ranks(grid: dict, labels: list[str], cols: list[Column]) -> dict[str, float]:
    """Mean of column ranks of the means (how a CSV without Friedman ranks is ranked)."""
    per_col = []
    for c in cols:
        m = np.array([grid[(lab, c.key)]["mean"] if (lab, c.key) in grid else np.nan for lab in labels], float)
        if np.isfinite(m).sum() >= 2:
            per_col.append(pd.Series(m if not c.higher_is_better else -m).rank(method="average").to_numpy())
    return dict(zip(labels, np.nanmean(np.vstack(per_col), axis=0).tolist())) if per_col else {}


def _value(r: pd.Series, best: float | None, seeds: tuple[str, ...], new: bool) -> Value:
    is_best = best is not None and not math.isnan(r["mean"]) and math.isclose(r["mean"], best, rel_tol=0, abs_tol=1e-12)
    if not new:
        return Value(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), int(r["n"]), is_best)
    pb, pp, nan = _f(r.get("p_vs_best")), _f(r.get("p_vs_prior")), _f(r.get("n_nan"))
    return Value(float(r["mean"]), float(r["ci_low"]), float(r["ci_high"]), int(r["n"]), is_best,
                 int(nan) if math.isfinite(nan) else 0, _per_seed(r.get("per_seed"), seeds),
                 is_best or (math.isfinite(pb) and pb >= ALPHA), None if math.isnan(pp) else pp < ALPHA)


def _table(title: str, g: pd.DataFrame, row_key: str, rank: bool, footer: tuple[str, ...],
           family: str = "") -> Table:
    new = "ci" in g
    kind = {lab: str(b) for lab, b in zip(g[row_key], g["baseline"]) if isinstance(b, str) and b} if new else {}
    labels = list(dict.fromkeys(g[row_key]))
    methods = [lab for lab in labels if lab not in kind]
    grid = {(r[row_key], r["column"]): r for _, r in g.iterrows()}
    cols = []
    for key, cg in g.groupby("column", sort=False):
        ch = cg["chance"].dropna()
        prior = prior_of(str(key), kind) if family in PRIOR_FAMILIES else None
        pv = float(grid[(prior, key)]["mean"]) if prior and (prior, key) in grid else None
        neutral = "family" in cg and str(cg["family"].iloc[0]) == FACTS_FAMILY
        cols.append(Column(str(key), bool(cg["higher_is_better"].iloc[0]), float(ch.mean()) if len(ch) else None, pv,
                           neutral))
    order = list(FACTS.values())  # stated facts (unique share, exposure…) lead in their order, then the scores
    cols.sort(key=lambda c: (not c.neutral, order.index(c.key) if c.key in order else 0))
    best = {}
    for c in (c for c in cols if not c.neutral):
        means = [m for m in (grid[(lab, c.key)]["mean"] for lab in methods if (lab, c.key) in grid) if not math.isnan(m)]
        if len(means) > 1:
            best[c.key] = max(means) if c.higher_is_better else min(means)
    ranks: dict[str, float] = {}
    ranking = None
    if rank and len(methods) > 1:
        fr = g[g[row_key].isin(methods)].drop_duplicates(row_key) if new else g.iloc[:0]
        if new and np.isfinite(fr["rank"].astype(float)).all() and len(fr):
            ranks = dict(zip(fr[row_key], fr["rank"].astype(float)))
            ranking = Ranking(tuple(sorted(ranks.items(), key=lambda x: x[1])), float(fr["friedman_p"].iloc[0]),
                              float(fr["cd"].iloc[0]), str(fr["blocks"].iloc[0]))
        else:
            ranks = _legacy_ranks(grid, methods, cols)
    seeds = tuple(sorted(set(" ".join(g["seeds"].astype(str)).split()), key=int)) if new else ()
    rows = []
    ordered = sorted(methods, key=lambda x: ranks.get(x, 0.0)) if ranks else methods
    for lab in ordered + [lab for lab in labels if lab in kind]:
        vals = tuple(_value(grid[(lab, c.key)], best.get(c.key), seeds, new) if (lab, c.key) in grid else None
                     for c in cols)
        rows.append(Row(str(lab), vals, ranks.get(lab), kind.get(lab)))
    return Table(title, tuple(cols), tuple(rows), footer, row_key, seeds, ranking)


CI_UNITS = {"hierarchical": "bootstrap over seeds, then images within each resampled seed",
            "image": "bootstrap over images (one seed)",
            "seed-t": "Student-t over the per-seed values (one number per seed)",
            "single": "one value, no interval"}


def _legacy_footer(g: pd.DataFrame, rank: bool) -> str:
    n = int(g["n"].max())
    seeds = sorted(set(" ".join(g["seeds"]).split()))
    configs = sorted(set(" ".join(g["config"]).split()))
    versions = "; ".join(sorted({v for v in g.get("versions", pd.Series(dtype=str)).fillna("") if v}))
    return (f"mean ± 95% bootstrap CI over images and seeds; n ≤ {n} values per cell; "
            f"seeds {' '.join(seeds)}; {len(configs)} cell configs "
            f"({', '.join(configs[:3])}{'…' if len(configs) > 3 else ''}); best per column in bold"
            + ("; rank = mean rank over this table's columns" if rank else "") + (f"; {versions}" if versions else ""))


def _tests_footer(g: pd.DataFrame, t: Table) -> list[str]:
    out = []
    n_best = int(np.isfinite(g["p_vs_best"].astype(float)).sum())
    if n_best:
        out.append(f"† not significantly worse than the best (one-sided Wilcoxon signed-rank on the same images and "
                   f"seeds, Holm over this table's {n_best} comparisons, α = {ALPHA})")
    n_prior = int(np.isfinite(g["p_vs_prior"].astype(float)).sum())
    if n_prior:
        priors = ", ".join(r.label for r in t.rows if (r.baseline or "").split("@")[0] == "prior")
        out.append(f"° does not beat the prior of the column's mask ({priors}: one-sided Wilcoxon signed-rank, Holm over {n_prior} comparisons, "
                   f"α = {ALPHA}); headers give the uniform chance and the prior's value")
    if t.ranking is not None:
        r = t.ranking
        which = "image-level columns" if r.blocks.endswith("image-seed") else "columns"
        out.append(f"rank = Friedman mean rank over {r.blocks} blocks (a block's score: the mean of the method's ranks "
                   f"over this table's {which}); Friedman p = {r.p:.3g}; Nemenyi critical difference (α = {ALPHA}) = "
                   f"{r.cd:.3f}: methods whose ranks differ by less are not told apart")
    elif any(r.rank is not None for r in t.rows):
        out.append("rank = mean of the methods' ranks of the column means (no block has every method in every "
                   "column, so no Friedman test)")
    if any(r.baseline for r in t.rows):
        out.append("reference rows (baseline kind in brackets) follow the methods; they are not ranked or marked best")
    nan = [(c.key, r.label, v.n_nan, v.n + v.n_nan) for r in t.rows for c, v in zip(t.columns, r.values)
           if v is not None and v.n_nan]
    if nan:
        out.append("undefined values (NaN, left out of the mean and interval): "
                   + "; ".join(f"{c}: {lab} {k} of {tot}" for c, lab, k, tot in nan))
    return out


def _footer(g: pd.DataFrame, rank: bool, t: Table | None = None) -> tuple[str, ...]:
    if "ci" not in g or t is None:
        return (_legacy_footer(g, rank),)
    configs = sorted(set(" ".join(g["config"]).split()))
    versions = "; ".join(sorted({v for v in g.get("versions", pd.Series(dtype=str)).fillna("") if v}))
    units = [u for u in CI_UNITS if u in set(g["ci"])]
    head = (f"mean ± half-width of the 95% interval; intervals: {'; '.join(CI_UNITS[u] for u in units)}; "
            f"n ≤ {int(g['n'].max())} values per cell; seeds {' '.join(t.seeds) or '–'}"
            + (f" (per-seed means in brackets, in this order; – = no value)" if len(t.seeds) > 1 else "")
            + f"; {len(configs)} cell configs ({', '.join(configs[:3])}{'…' if len(configs) > 3 else ''})"
            + "; best method per column in bold" + (f"; {versions}" if versions else ""))
    return (head, *_tests_footer(g, t))


def _with_accuracy_drop(models: pd.DataFrame) -> pd.DataFrame:
    """Add "accuracy drop vs none": the clean model's accuracy minus each model's (points)."""
    acc = models[models["column"] == "accuracy"].set_index("attack")
    if CLEAN_ATTACK not in acc.index or len(acc) < 2:
        return models
    base = acc.loc[CLEAN_ATTACK]
    rows = []
    for attack, r in acc.iterrows():
        d = 100 * (base["mean"] - r["mean"])
        half = 100 * ((base["ci_high"] - base["ci_low"]) ** 2 + (r["ci_high"] - r["ci_low"]) ** 2) ** 0.5 / 2
        rows.append({**r.to_dict(), "attack": attack, "column": "accuracy drop vs none (points)", "mean": d,
                     "ci_low": d - half, "ci_high": d + half, "chance": float("nan"), "higher_is_better": False,
                     **({"per_seed": "", "n_nan": 0} if "ci" in models else {})})
    return pd.concat([models, pd.DataFrame(rows)], ignore_index=True)


# Family tables in reading order (a family not listed here follows, alphabetically). The
# family comes from each metric plugin's record; these names only fix the order and titles.
FAMILIES = {
    "localisation": "localisation (against the ROI mask)",
    "faithfulness": "faithfulness (removing what the map points at)",
    "attack": "attack transfer and stealth (per explainer)",
    "detection": "detecting triggered inputs (AUROC, triggered vs clean)",
    "complexity": "complexity (how concentrated the map is)",
    "agreement": "agreement between explainers",
    "stability": "stability",
    "sanity": "sanity (model randomisation)",
    "group": "group statistics",
    "explainer": "explainer cost and map resolution",
}


def _family_order(families: list[str]) -> list[str]:
    known = [f for f in FAMILIES if f in families]
    return known + sorted(f for f in families if f not in FAMILIES)


def _titled(title: str, g: pd.DataFrame, row_key: str, rank: bool, family: str = "",
            footer: tuple[str, ...] | None = None) -> Table:
    t = _table(title, g, row_key, rank, (), family)
    return Table(t.title, t.columns, t.rows, footer or _footer(g, rank, t), t.row_header, t.seeds, t.ranking)


def build_tables(summary: pd.DataFrame) -> list[Table]:
    """One model table per (dataset, backbone), then per (dataset, backbone, attack) one
    explainer table per metric family (rows = explainers, ranked within the family)."""
    tables: list[Table] = []
    if summary.empty:
        return tables
    if "family" not in summary:
        summary = summary.assign(family="other")
    for (ds, bb), g in summary.groupby(["dataset", "backbone"], sort=False):
        models = _with_accuracy_drop(g[g["explainer"].isin(MODEL_ROWS)])
        if not models.empty:
            foot = (f"dataset {ds}; backbone {bb}; seeds {' '.join(sorted(set(' '.join(models['seeds']).split())))}",)
            if "ci" in models:
                units = [u for u in CI_UNITS if u in set(models["ci"])]
                foot = (foot[0] + f"; intervals: {'; '.join(CI_UNITS[u] for u in units)}"
                        + ("; per-seed values in brackets" if len(set(" ".join(models["seeds"]).split())) > 1 else ""),)
            tables.append(_titled(f"Models: {ds} / {bb}", models, "attack", rank=False, footer=foot))
        for at, ga in g[~g["explainer"].isin(MODEL_ROWS)].groupby("attack", sort=False):
            per_expl = ga[ga["explainer"] != "*"]
            for fam in _family_order(list(dict.fromkeys(per_expl["family"]))):
                gf = per_expl[per_expl["family"] == fam]
                rank = fam not in UNRANKED_FAMILIES
                tables.append(_titled(f"{ds} / {bb} / attack: {at} — {FAMILIES.get(fam, fam)}", gf, "explainer",
                                      rank=rank, family=fam))
    return tables + monotonicity_tables(summary)
