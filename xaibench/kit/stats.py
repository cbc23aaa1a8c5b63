"""Small numeric helpers of scores: NaN conventions, analytic chance levels, pairs.

Why: a score is NaN where it is undefined for an image (an empty mask, a map with no mass);
these helpers apply that convention the same way in every metric and aggregate without
all-NaN warnings.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from scipy.stats import hypergeom


def nan_empty(values: torch.Tensor, area: torch.Tensor) -> np.ndarray:
    """Per-image values as float64 numpy with NaN where the mask is empty (``area == 0``)."""
    out = values.double().cpu().numpy()
    out[(area == 0).cpu().numpy()] = np.nan
    return out


def mean_chance(per_image: np.ndarray) -> float | None:
    """Chance level of the mean over the images that have a value."""
    finite = per_image[np.isfinite(per_image)]
    return float(finite.mean()) if finite.size else None


@lru_cache(maxsize=4096)
def iou_chance(total: int, area: int, k: int) -> float:
    """E[IoU] between a uniformly random ``k``-pixel set and a fixed ``area``-pixel mask
    among ``total`` pixels: the intersection is hypergeometric, IoU = I / (k + area − I)."""
    if area == 0 or k == 0:
        return float("nan")
    i = np.arange(max(0, k + area - total), min(k, area) + 1)
    return float(np.sum(hypergeom.pmf(i, total, area, k) * i / (k + area - i)))


def iou_chances(total: int, area: torch.Tensor, k: torch.Tensor) -> np.ndarray:
    """:func:`iou_chance` per image."""
    return np.array([iou_chance(total, int(m), int(kk)) for m, kk in zip(area.tolist(), k.tolist())])


def pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """Unordered pairs in a stable order."""
    names = list(names)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def seq(x: Any) -> Sequence:
    """``x`` as a list (a scalar becomes a one-element list)."""
    return list(x) if isinstance(x, (list, tuple)) else [x]


def nanmean(x: Any, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``np.nanmean`` without the all-NaN warning (an all-NaN slice is simply NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(x, dtype=float), axis=axis)


def nanmax(x: Any, axis: int | None = None) -> np.ndarray:
    """``np.nanmax`` without the all-NaN warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(np.asarray(x, dtype=float), axis=axis)
