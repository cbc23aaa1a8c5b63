"""Batched similarity of attribution maps: Spearman (ties averaged, as scipy), SSIM (as
scikit-image's defaults) and top-q IoU, each one call for N map pairs.

Why by hand: scipy's ``spearmanr`` and scikit-image's ``structural_similarity`` take one
pair at a time on the CPU; the stability and sanity metrics compare thousands of pairs
(every image × draw × layer × seed pair), so these run as a few tensor operations on the
maps' device. Tested against both libraries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .topk import topk_mask


def average_ranks(x: torch.Tensor) -> torch.Tensor:
    """Row-wise ranks of N×P ``x`` with ties given their average rank (0-based)."""
    n, p = x.shape
    s, order = torch.sort(x, dim=1, stable=True)
    first = torch.ones_like(s, dtype=torch.bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    gid = first.long().cumsum(1) - 1
    pos = torch.arange(p, device=x.device, dtype=torch.float64).expand(n, p)
    lo = torch.full((n, p), float(p), device=x.device, dtype=torch.float64).scatter_reduce(1, gid, pos, "amin")
    hi = torch.zeros((n, p), device=x.device, dtype=torch.float64).scatter_reduce(1, gid, pos, "amax")
    avg = (lo.gather(1, gid) + hi.gather(1, gid)) / 2
    return torch.empty_like(avg).scatter_(1, order, avg)


def pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Pearson correlation (NaN for a constant row)."""
    a = a.double() - a.double().mean(1, keepdim=True)
    b = b.double() - b.double().mean(1, keepdim=True)
    den = (a.norm(dim=1) * b.norm(dim=1))
    return torch.where(den > 0, (a * b).sum(1) / torch.where(den > 0, den, 1.0), torch.nan)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise Spearman rank correlation of N×P maps (N×H×W accepted)."""
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    return pearson(average_ranks(a.float()), average_ranks(b.float()))


def minmax(a: torch.Tensor) -> torch.Tensor:
    """Each N×*S map scaled to [0, 1] (a constant map becomes 0)."""
    flat = a.reshape(a.shape[0], -1).double()
    lo, hi = flat.min(1, keepdim=True).values, flat.max(1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-30)).view_as(a)


_POOL = {2: F.avg_pool2d, 3: F.avg_pool3d}


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0, win: int = 7,
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Mean SSIM per pair of N×*S maps (2-D or 3-D), as ``skimage.metrics.structural_similarity``
    with its defaults (a uniform window of ``win`` pixels along every axis, sample
    covariance, borders cropped)."""
    x, y = a.double().unsqueeze(1), b.double().unsqueeze(1)
    nd = a.ndim - 1
    pool = _POOL[nd]
    win = min(win, *a.shape[1:])
    win -= 1 - win % 2
    cov = win ** nd / (win ** nd - 1)
    mx, my = pool(x, win, 1), pool(y, win, 1)
    vx = cov * (pool(x * x, win, 1) - mx * mx)
    vy = cov * (pool(y * y, win, 1) - my * my)
    vxy = cov * (pool(x * y, win, 1) - mx * my)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=tuple(range(1, s.ndim)))


def topq_iou(a: torch.Tensor, b: torch.Tensor, q: float) -> torch.Tensor:
    """IoU of the top-q pixel sets of two N×*S maps (ties by pixel index)."""
    a, b = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    k = torch.full((a.shape[0],), max(1, int(round(q * a.shape[1]))), device=a.device)
    ta, tb = topk_mask(a.float(), k), topk_mask(b.float(), k)
    return (ta & tb).sum(1).double() / (ta | tb).sum(1).clamp_min(1).double()


SIMILARITIES = {"spearman": lambda a, b: spearman(a, b), "ssim": lambda a, b: ssim(minmax(a), minmax(b))}
