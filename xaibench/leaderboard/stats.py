"""The statistics behind the leaderboard: intervals whose unit of resampling matches how the
numbers were produced (seeds, then images within a seed), paired tests between explainers
on the same images with Holm's correction, and Friedman's test with the Nemenyi critical
difference (Demšar 2006) over the explainers' ranks.

Everything here is plain numpy/scipy on arrays, so each piece is tested against a
reference (scipy, a hand example, Demšar's table) independently of the store.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

N_BOOT = 1000
ALPHA = 0.05


def bootstrap_ci(values: np.ndarray, seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean of i.i.d. values (non-finite ignored)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    if v.size == 1:
        return float(v[0]), float(v[0])
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def hierarchical_ci(groups: Sequence[np.ndarray], seed: int = 0, n_boot: int = N_BOOT) -> tuple[float, float]:
    """95% percentile interval of the pooled mean by a two-level bootstrap: draw the seeds
    with replacement, then the images of each drawn seed with replacement (a seed drawn
    twice gets two independent image draws). Images of one seed share a model, so they
    are not independent of each other; seeds are. Non-finite values are ignored."""
    gs = [np.asarray(g, float) for g in groups]
    gs = [g[np.isfinite(g)] for g in gs]
    gs = [g for g in gs if g.size]
    if not gs:
        return float("nan"), float("nan")
    if len(gs) == 1:
        return bootstrap_ci(gs[0], seed, n_boot)
    rng = np.random.default_rng(seed)
    s = len(gs)
    pick = rng.integers(0, s, size=(n_boot, s))  # which seed fills each slot of each replicate
    sums = np.empty((n_boot, s))
    counts = np.empty((n_boot, s))
    for j, g in enumerate(gs):
        draws = g[rng.integers(0, g.size, size=(n_boot, s, g.size))].sum(axis=2)  # per slot
        mask = pick == j
        sums[mask] = draws[mask]
        counts[mask] = g.size
    means = sums.sum(axis=1) / counts.sum(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return float(lo), float(hi)


def t_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Student-t interval of the mean of a few numbers (one per seed); a single value has
    no interval (lo = hi = the value)."""
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan")
    m = float(v.mean())
    if v.size == 1:
        return m, m
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m - half, m + half


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error control); NaN entries stay NaN
    and do not count as tests."""
    p = np.asarray(pvalues, float)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out[order] = np.minimum(adj, 1.0)
    return out


def paired_greater(a: np.ndarray, b: np.ndarray) -> float:
    """One-sided Wilcoxon signed-rank p-value that ``a`` is larger than ``b`` on the same
    units (pairs with a non-finite side are left out; no non-zero difference: p = 1)."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    if d.size == 0:
        return float("nan")
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, alternative="greater").pvalue)


def nemenyi_q(k: int, alpha: float = ALPHA) -> float:
    """Critical value q_α of the Nemenyi test for k methods: the studentized range
    quantile over √2 (Demšar 2006, Table 5a: 1.960, 2.343, 2.569, … for k = 2, 3, 4, …)."""
    return float(stats.studentized_range.ppf(1 - alpha, k, np.inf) / np.sqrt(2))


def critical_difference(k: int, n_blocks: int, alpha: float = ALPHA) -> float:
    """CD = q_α √(k(k+1) / 6N): two mean ranks further apart differ at level α."""
    return nemenyi_q(k, alpha) * float(np.sqrt(k * (k + 1) / (6.0 * n_blocks)))


@dataclass(frozen=True)
class Friedman:
    ranks: Mapping[str, float]  # mean rank over blocks (1 = best)
    statistic: float
    p: float
    cd: float
    n_blocks: int


def friedman(scores: np.ndarray, labels: Sequence[str], higher_is_better: bool = False) -> Friedman | None:
    """Friedman's test over an N×k array (blocks × methods, complete blocks only) with the
    Nemenyi critical difference; ties share average ranks, rank 1 is the best."""
    x = np.asarray(scores, float)
    x = x[np.all(np.isfinite(x), axis=1)]
    n, k = x.shape if x.ndim == 2 else (0, 0)
    if n < 2 or k < 2:
        return None
    r = stats.rankdata(-x if higher_is_better else x, axis=1)
    mean_r = r.mean(axis=0)
    chi2 = 12.0 * n / (k * (k + 1)) * (np.sum(mean_r ** 2) - k * (k + 1) ** 2 / 4.0)
    ties = np.sum([np.sum(c ** 3 - c) for c in (np.unique(row, return_counts=True)[1] for row in r)])
    denom = 1 - ties / (n * k * (k * k - 1))  # tie correction, as scipy.stats.friedmanchisquare
    chi2 = chi2 / denom if denom > 0 else 0.0
    p = float(stats.chi2.sf(chi2, k - 1)) if denom > 0 else 1.0
    return Friedman(dict(zip(labels, mean_r.tolist())), float(chi2), p, critical_difference(k, n), n)
