"""Regression and multiple-testing helpers for the group metrics (``roi-volume``).

Why here: the association of a per-image score with a per-image quantity (volume) must be
judged after the covariates, with categorical covariates (site, scanner) as fixed effects
— one indicator per level, not an ordinal code that imposes an order and a linear effect
the levels do not have — and with a p-value that is exact under its null (a permutation
test of the partial correlation, Freedman–Lane style: the volume residuals are permuted).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy.stats import false_discovery_control

NOT_COVARIATES = ("group", "groups", "label", "labels", "subject", "subject_id", "subject_ids", "split")


def is_categorical(v: np.ndarray) -> bool:
    """Strings, objects and booleans are levels, not quantities."""
    return v.dtype.kind in "OUSb"


def covariate_columns(meta: Mapping[str, np.ndarray], n: int, exclude: Sequence[str]) -> list[str]:
    """Default covariates: every per-image meta column that is not a volume, an id or a
    label column and is not constant."""
    out = []
    for k, v in meta.items():
        v = np.asarray(v)
        if k in exclude or k.lower() in NOT_COVARIATES or v.shape != (n,):
            continue
        if is_categorical(v):
            if len(set(v.tolist())) > 1:
                out.append(k)
        elif np.issubdtype(v.dtype, np.number) and np.nanstd(v.astype(float)) > 0:
            out.append(k)
    return sorted(out)


def design(meta: Mapping[str, np.ndarray], columns: Sequence[str], n: int,
           categorical: Sequence[str] = ()) -> tuple[np.ndarray, list[str]]:
    """N×K covariate matrix (no intercept) and its column names: numeric columns as they
    are, categorical ones (strings, or listed in ``categorical``) one-hot without their
    first level (the intercept carries it). Missing categorical values are a level."""
    cols, names = [], []
    for c in columns:
        v = np.asarray(meta[c])
        if is_categorical(v) or c in categorical:
            levels = sorted(set(map(str, v.tolist())))
            s = np.array([str(x) for x in v.tolist()])
            for lev in levels[1:]:
                cols.append((s == lev).astype(float))
                names.append(f"{c}={lev}")
        else:
            cols.append(v.astype(float))
            names.append(c)
    return (np.column_stack(cols) if cols else np.zeros((n, 0))), names


def _with_intercept(cov: np.ndarray) -> np.ndarray:
    return np.column_stack([np.ones(len(cov)), cov])


def residualise(v: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``v`` minus its least-squares fit on [1, covariates]."""
    d = _with_intercept(cov)
    beta, *_ = np.linalg.lstsq(d, v, rcond=None)
    return v - d @ beta


def corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def ols_effect(y: np.ndarray, x: np.ndarray, cov: np.ndarray) -> dict[str, float]:
    """β and SE of ``x`` in y ~ 1 + cov + x, and ΔR² over y ~ 1 + cov (with the null
    mean of ΔR², (1 − R²_cov)/(n − k − 1) for k covariate columns)."""
    d0 = _with_intercept(cov)
    d1 = np.column_stack([d0, x])
    n, k = d1.shape
    tss = float(((y - y.mean()) ** 2).sum())
    b1, *_ = np.linalg.lstsq(d1, y, rcond=None)
    rss1 = float(((y - d1 @ b1) ** 2).sum())
    rss0 = float((residualise(y, cov) ** 2).sum())
    rank = np.linalg.matrix_rank(d1)
    dof = n - rank
    xr = residualise(x, cov)
    sxx = float((xr ** 2).sum())
    se = float(np.sqrt(rss1 / dof / sxx)) if dof > 0 and sxx > 0 else float("nan")
    r2_cov = 1 - rss0 / tss if tss > 0 else float("nan")
    return {"beta": float(b1[-1]) if sxx > 0 else float("nan"), "se": se,
            "delta_r2": (rss0 - rss1) / tss if tss > 0 else float("nan"),
            "delta_r2_null": (1 - r2_cov) / max(n - np.linalg.matrix_rank(d0), 1) if tss > 0 else float("nan")}


def permutation_p(a: np.ndarray, b: np.ndarray, perms: int, seed: int) -> float:
    """Two-sided studentized permutation p-value of the correlation of ``a`` and ``b``.

    The statistic is Σab / √Σa²b² (DiCiccio & Romano 2017), not r: it stays valid when
    the spread of one variable depends on the other — as a score's noise does on the
    ROI's area, and the area on the volume — where permuting r rejects too often. All
    permutations are two matrix products."""
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a) @ (b * b))
    if den == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.permuted(np.tile(np.arange(len(b)), (perms, 1)), axis=1)
    t0 = abs(a @ b) / den
    tp = np.abs(b[idx] @ a) / np.sqrt((b * b)[idx] @ (a * a)).clip(1e-300)
    return float((1 + np.sum(tp >= t0 * (1 - 1e-12))) / (1 + perms))


def bh(p: Sequence[float]) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(p, float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = false_discovery_control(p[ok], method="bh")
    return out
