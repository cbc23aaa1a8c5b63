"""Per-image ranking and top-k selection of flattened maps (``N×P``, any spatial dims).

Why one rule: localisation metrics binarise a map at its top-k pixels; ties are broken by
pixel index (flattened, row-major), so a result never depends on the sort implementation.
"""
from __future__ import annotations

import torch


def ranks_desc(a: torch.Tensor) -> torch.Tensor:
    """Rank of every pixel of ``N×P`` ``a``, 0 = most attributed; ties by pixel index (stable)."""
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


def topk_maps(maps: torch.Tensor, k: int) -> torch.Tensor:
    """``N×*S`` bool: each map's ``k`` largest pixels (``1 <= k <= P``), ties by pixel index."""
    flat = maps.reshape(maps.shape[0], -1)
    kk = max(1, min(int(k), flat.shape[1]))
    return topk_mask(flat, torch.full((flat.shape[0],), kk, device=flat.device)).view_as(maps)
