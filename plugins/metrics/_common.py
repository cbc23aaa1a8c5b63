"""Shared helpers of the metric family: option checking, per-image top-k binarisation,
analytic chance levels, empty-mask handling.

Why here and not in each plugin: every localisation metric needs the same top-k rule
(ties broken by pixel index, so results are reproducible) and the same convention for
images whose mask is empty (NaN: there is nothing to localise; Quantus' PointingGame
counts them as hits). Perturbation helpers (removal fillers, batched passes) live in
``_perturb.py``.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from scipy.stats import hypergeom

from xaibench.errors import XaibenchError

# --------------------------------------------------------------------------- options


def check(cond: bool, metric: str, option: str, allowed: str, value: Any) -> None:
    """Raise the one-line user error for a bad option value."""
    if not cond:
        raise XaibenchError(f"metric {metric}: option {option}={value!r} is invalid; allowed: {allowed}")


def fractions(value: Any, metric: str, option: str = "q") -> tuple[float, ...]:
    """A fraction or a list of fractions in (0, 1] (percent values > 1 are rejected)."""
    vals = list(value) if isinstance(value, (list, tuple)) else [value]
    ok = len(vals) > 0 and all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 < v <= 1 for v in vals)
    check(ok, metric, option, "a fraction in (0, 1] or a non-empty list of them (0.05 = 5%)", value)
    return tuple(float(v) for v in vals)


def pct(q: float) -> str:
    """0.05 -> '5%', 0.005 -> '0.5%' (used in score names such as ``iou@5%``)."""
    return f"{q * 100:.4g}%"


# --------------------------------------------------------------------------- maps


def flat(a: torch.Tensor) -> torch.Tensor:
    """N×H×W (or N×1×H×W) → N×HW float."""
    return a.reshape(a.shape[0], -1).float()


def as_masks(masks: torch.Tensor, n: int) -> torch.Tensor:
    """N×H×W bool masks (an H×W mask is shared by every image)."""
    m = masks.bool()
    if m.dim() == 2:
        m = m.unsqueeze(0).expand(n, -1, -1)
    return m


def check_mask_name(metric: str, value: Any) -> None:
    """The ``mask`` option: a mask name (``roi``, ``evidence``, ``roi-left`` …)."""
    check(isinstance(value, str) and bool(value), metric, "mask", "a mask name such as roi or evidence", value)


def metric_mask(inp: Any, name: str, metric: str, n: int) -> torch.Tensor:
    """The N×H×W bool mask ``name`` of the evaluated images (``roi`` = ``inp.masks``), or
    the one-line error naming the metric and the masks these images have."""
    try:
        m = inp.mask(name)
    except KeyError:
        have = ", ".join(["roi", *sorted(getattr(inp, "named_masks", None) or {})])
        raise XaibenchError(f"metric {metric}: option mask={name!r}: these images have no such mask; "
                            f"available: {have}") from None
    return as_masks(m, n)


def mask_suffix(name: str, mask: str) -> str:
    """Score name for a mask: unchanged for ``roi`` (the published columns), ``NAME@MASK`` else."""
    return name if mask == "roi" else f"{name}@{mask}"


def ranks_desc(a: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel, 0 = most attributed; ties broken by pixel index (stable)."""
    order = torch.sort(a, dim=1, descending=True, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(a.shape[1], device=a.device).expand_as(order))
    return ranks


def topk_mask(a: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Per-image top-``k[i]`` pixels of ``a`` (N×P) as a bool N×P mask; ties at the k-th
    value are broken by pixel index, as :func:`ranks_desc` orders them. One ``topk`` of
    the largest k instead of a full sort: several times faster for small ROIs."""
    k = k.view(-1, 1).to(a.device).clamp(0, a.shape[1])
    kmax = int(k.max()) if k.numel() else 0
    if kmax == 0:
        return torch.zeros_like(a, dtype=torch.bool)
    vals = torch.topk(a, kmax, dim=1, sorted=True).values
    thr = vals.gather(1, (k - 1).clamp_min(0))
    greater = a > thr
    eq = a == thr
    need = k - greater.sum(1, keepdim=True)
    mask = greater | (eq & (eq.cumsum(1) <= need))
    return mask & (k > 0)


def nan_empty(values: torch.Tensor, area: torch.Tensor) -> np.ndarray:
    """Per-image values as float64 numpy with NaN where the mask is empty."""
    out = values.double().cpu().numpy()
    out[(area == 0).cpu().numpy()] = np.nan
    return out


def mean_chance(per_image: np.ndarray) -> float | None:
    """Chance level of the mean over the images that have a value."""
    finite = per_image[np.isfinite(per_image)]
    return float(finite.mean()) if finite.size else None


# --------------------------------------------------------------------------- chance levels


@lru_cache(maxsize=4096)
def iou_chance(total: int, area: int, k: int) -> float:
    """E[IoU] between a uniformly random ``k``-pixel set and a fixed ``area``-pixel mask
    among ``total`` pixels: the intersection is hypergeometric, IoU = I / (k + area − I)."""
    if area == 0 or k == 0:
        return float("nan")
    i = np.arange(max(0, k + area - total), min(k, area) + 1)
    return float(np.sum(hypergeom.pmf(i, total, area, k) * i / (k + area - i)))


def iou_chances(total: int, area: torch.Tensor, k: torch.Tensor) -> np.ndarray:
    return np.array([iou_chance(total, int(m), int(kk)) for m, kk in zip(area.tolist(), k.tolist())])


def pairs(names: Iterable[str]) -> list[tuple[str, str]]:
    """Unordered pairs in a stable order."""
    names = list(names)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


def seq(x: Any) -> Sequence:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def nanmean(x: Any, axis: int | tuple[int, ...] | None = None) -> np.ndarray:
    """``np.nanmean`` without the all-NaN warning (an all-NaN slice is simply NaN)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(np.asarray(x, dtype=float), axis=axis)


def nanmax(x: Any, axis: int | None = None) -> np.ndarray:
    """``np.nanmax`` without the all-NaN warning."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmax(np.asarray(x, dtype=float), axis=axis)


def factory(metric: str, cls: type) -> Any:
    """``factory(**options)`` turning an unknown option name into a one-line error that
    lists the allowed ones (``scope`` is not an option)."""
    import dataclasses

    allowed = [f.name for f in dataclasses.fields(cls) if f.name != "scope"]

    def make(**options: Any) -> Any:
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise XaibenchError(f"metric {metric}: unknown option {bad[0]!r}; allowed: {', '.join(allowed)}")
        return cls(**options)

    make.__doc__ = cls.__doc__
    return make


def check_maps(metric: str, maps: Any, images: torch.Tensor, what: str = "attributions") -> torch.Tensor:
    """The N×H×W map(s) of an input, checked against the images (one-line error otherwise)."""
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    if maps is None:
        raise XaibenchError(f"metric {metric}: needs {what} (N×H×W maps); none were given")
    if maps.dim() == 4 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != (n, h, w):
        raise XaibenchError(f"metric {metric}: {what} must be N×H×W = {n}×{h}×{w} like the images, "
                            f"got {'×'.join(map(str, maps.shape))}")
    return maps
