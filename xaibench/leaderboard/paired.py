"""The tests a leaderboard table makes, on the per-image values behind it.

A *table* is one (dataset, backbone, attack, metric family); its *methods* are the
explainers whose record has no ``baseline`` kind. Per column, every method is compared
with the column's best method on the same images (same seed, same image index) by a
one-sided Wilcoxon signed-rank test, and — in localisation tables with a ``prior``
baseline row — with the prior; Holm's correction runs over all comparisons of one kind
the table makes. Friedman's test ranks the methods over blocks = (seed, image): in each
block a method's score is its mean rank over the table's image-level columns; tables
with only one-number-per-seed columns use blocks = seeds. The results go into the
summary frame (``p_vs_best``, ``p_vs_prior``, ``rank``, ``friedman_p``, ``cd``, ``blocks``).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from .stats import friedman, holm, paired_greater

PRIOR_FAMILIES = ("localisation",)  # where "beats the prior" is the question
UNRANKED_FAMILIES = ("explainer",)  # facts about the explainer (cost, map resolution), not scores
NOT_EXPLAINERS = ("-", "*")  # model-level rows and across-explainer rows


def column_mask(column: str) -> str:
    """The mask a localisation column scores against: its last ``@name`` suffix that is
    not a percentage (``iou@5%@evidence`` → evidence), else the ROI."""
    tags = [t for t in column.split(" [")[0].split("@")[1:] if not t.endswith("%")]
    return tags[-1] if tags else "roi"


def prior_of(column: str, kinds: dict[str, str]) -> str | None:
    """The prior row (label) that matches ``column``'s mask, from label → baseline kind
    (``prior`` is the ROI prior, ``prior@MASK`` another mask's)."""
    want = column_mask(column)
    for label, kind in kinds.items():
        if isinstance(kind, str) and kind.split("@")[0] == "prior" and (kind.split("@") + ["roi"])[1] == want:
            return label
    return None


def _grid(g: pd.DataFrame) -> pd.DataFrame:
    """(seed, image) × explainer values of one column."""
    return g.groupby(["seed", "image", "explainer"])["value"].mean().unstack("explainer").sort_index()


def _compare(grid: pd.DataFrame, a: str, b: str, hib: bool) -> float:
    """p-value that ``a`` is better than ``b`` on the same units."""
    x, y = grid[a].to_numpy(float), grid[b].to_numpy(float)
    return paired_greater(x, y) if hib else paired_greater(y, x)


def _best(summary: pd.DataFrame, rows: pd.Index, methods: list[str]) -> str | None:
    s = summary.loc[rows]
    s = s[s["explainer"].isin(methods) & np.isfinite(s["mean"].astype(float))]
    if s.empty:
        return None
    hib = bool(s["higher_is_better"].iloc[0])
    return str(s.sort_values("mean", ascending=not hib, kind="stable")["explainer"].iloc[0])


def _block_scores(df: pd.DataFrame, methods: list[str], columns: list[str]) -> tuple[np.ndarray, int, str]:
    """Blocks × methods mean within-block ranks (1 = best), complete blocks only; also the
    number of blocks before dropping incomplete ones and the block unit."""
    image_cols = [c for c in columns if (df.loc[df["column"] == c, "image"] >= 0).any()]
    unit = "image-seed" if image_cols else "seed"
    ranks = []
    for c in image_cols or columns:
        g = df[(df["column"] == c) & df["explainer"].isin(methods)]
        if not image_cols:
            g = g.assign(image=-1)
        grid = _grid(g).reindex(columns=methods)
        hib = bool(g["higher_is_better"].iloc[0])
        x = grid.to_numpy(float)
        r = stats.rankdata(-x if hib else x, axis=1) if x.size else x  # a block with a NaN: all NaN
        ranks.append(pd.DataFrame(r, index=grid.index, columns=methods))
    if not ranks:
        return np.empty((0, len(methods))), 0, unit
    allr = pd.concat(ranks, keys=range(len(ranks)))
    n_total = allr.index.droplevel(0).nunique()
    filled = allr.notna().sum(axis=1).groupby(level=[1, 2]).sum()
    complete = filled.index[filled == len(ranks) * len(methods)]
    mean = allr.groupby(level=[1, 2]).mean().loc[complete]
    return mean.to_numpy(float), int(n_total), unit


def _one_table(summary: pd.DataFrame, rows: pd.Index, df: pd.DataFrame, family: str) -> None:
    s = summary.loc[rows]
    methods = sorted({e for e, b in zip(s["explainer"], s["baseline"]) if not b})
    kinds = {e: b for e, b in zip(s["explainer"], s["baseline"]) if b}
    columns = list(dict.fromkeys(s["column"]))
    vs_best, vs_prior = [], []  # (summary row index, raw p)
    for c in columns:
        crow = s.index[s["column"] == c]
        grid = _grid(df[df["column"] == c])
        hib = bool(s.loc[crow, "higher_is_better"].iloc[0])
        best = _best(summary, crow, methods)
        prior = prior_of(c, kinds)
        for i in crow:
            e = s.at[i, "explainer"]
            if e not in methods:
                continue
            if best is not None and e != best:
                vs_best.append((i, _compare(grid, best, e, hib)))
            if prior is not None and family in PRIOR_FAMILIES and prior in grid:
                vs_prior.append((i, _compare(grid, e, prior, hib)))
    for pairs, col in ((vs_best, "p_vs_best"), (vs_prior, "p_vs_prior")):
        if pairs:
            summary.loc[[i for i, _ in pairs], col] = holm([p for _, p in pairs])
    if len(methods) < 2:
        return
    scores, n_total, unit = _block_scores(df, methods, columns)
    f = friedman(scores, methods) if len(scores) else None
    if f is None:
        return
    for i in s.index[s["explainer"].isin(methods)]:
        summary.loc[i, ["rank", "friedman_p", "cd"]] = [f.ranks[s.at[i, "explainer"]], f.p, f.cd]
        summary.loc[i, "blocks"] = f"{f.n_blocks} of {n_total} {unit}"


def table_tests(summary: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """Fill the test columns of ``summary`` from the per-image frame ``df`` (which has the
    ``column``, ``family`` and ``baseline`` columns ``summarise`` adds)."""
    summary = summary.copy()
    for c in ("p_vs_best", "p_vs_prior", "rank", "friedman_p", "cd"):
        summary[c] = np.nan
    summary["blocks"] = ""
    keep = ~summary["explainer"].isin(NOT_EXPLAINERS) & ~summary["family"].isin(UNRANKED_FAMILIES)
    dkeep = ~df["explainer"].isin(NOT_EXPLAINERS) & ~df["family"].isin(UNRANKED_FAMILIES)
    tkeys = ["dataset", "backbone", "attack", "family"]
    groups = dict(list(df[dkeep].groupby(tkeys, sort=True)))
    for key, g in summary[keep].groupby(tkeys, sort=True):
        _one_table(summary, g.index, groups[key], key[-1])
    return summary
