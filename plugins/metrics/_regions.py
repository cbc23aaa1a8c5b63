"""Shape-matched random regions: a mask moved to a random place inside the brain.

Why: a control for "remove these pixels" (ΔT) or "attribution in this region" (roi-volume)
must differ from the tested region only in *where* it is. Scattered random pixels differ
in shape too: removing a contiguous blob and removing as many isolated pixels change a
CNN's output by different amounts, so a scattered control favours explainers whose top-q
sets have one shape over another. Here the region keeps its exact shape: one of the 8
right-angle rotations/flips of the mask is moved to a uniformly random position at which
it lies inside the brain (every placement that fits, or — when none fits entirely — the
placements that fit best, equally likely). A placement that reproduces the set itself (a
scattered top-q set spanning the brain may fit nowhere else) is excluded unless it is the
only one, so the control is never the tested set.

The brain is ``named_masks["brain"]`` when the dataset gives it, else the image's nonzero
pixels (the whole image if it has none).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch


def brain_masks(images: torch.Tensor, named_masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """N×H×W bool brain mask of each image (see the module docstring)."""
    if named_masks and "brain" in named_masks:
        b = named_masks["brain"].bool().to(images.device)
        return b.unsqueeze(0).expand(len(images), -1, -1) if b.dim() == 2 else b
    b = images[:, 0] > 0
    empty = ~b.flatten(1).any(1)
    return torch.where(empty.view(-1, 1, 1), torch.ones_like(b), b)


def _shift(v: torch.Tensor, dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
    """``v`` (…×H×W) with out[…, y, x] = v[…, y + dr, x + dc] (False outside)."""
    h, w = v.shape[-2:]
    ys = torch.arange(h, device=v.device) + dr.unsqueeze(-1)  # …×H
    xs = torch.arange(w, device=v.device) + dc.unsqueeze(-1)  # …×W
    oky, okx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    g = v.gather(-2, ys.clamp(0, h - 1).unsqueeze(-1).expand(*v.shape))
    g = g.gather(-1, xs.clamp(0, w - 1).unsqueeze(-2).expand(*v.shape))
    return g & oky.unsqueeze(-1) & okx.unsqueeze(-2)


def _kernels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each mask's rotations/flips moved to the top-left corner: N×T×H×W, and the height
    and width (N×T) of their bounding boxes. T = 8 for square images, else the 4 that
    keep the image's shape."""
    h, w = masks.shape[-2:]
    ks = range(4) if h == w else (0, 2)
    v = torch.stack([torch.rot90(m, k, (1, 2)) for m in (masks, masks.flip(2)) for k in ks], 1)
    rows, cols = v.any(3), v.any(2)
    r0, c0 = rows.int().argmax(2), cols.int().argmax(2)
    kh = h - r0 - rows.flip(2).int().argmax(2)
    kw = w - c0 - cols.flip(2).int().argmax(2)
    empty = ~rows.any(2)
    return _shift(v, r0, c0), torch.where(empty, 0, kh).cpu(), torch.where(empty, 0, kw).cpu()


def _overlap(img: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """N×T×H×W: pixels of ``img`` (N×H×W) under each kernel placed with its corner at
    (r, c). Circular FFT correlation, exact (no wrap-around) wherever the kernel fits."""
    h, w = img.shape[-2:]
    fi = torch.fft.rfft2(img.float())  # counts ≤ H·W: float32 error is far below the 0.5 rounding
    fk = torch.fft.rfft2(kernels.float())
    return torch.fft.irfft2(fi.unsqueeze(1) * fk.conj(), s=(h, w)).round()


def random_placements(masks: torch.Tensor, brain: torch.Tensor, draws: int, generator: torch.Generator,
                      avoid: torch.Tensor | None = None) -> torch.Tensor:
    """N×draws×H×W: each mask moved ``draws`` times to a random place in its brain — among
    the placements that fit best, those missing ``avoid`` (N×H×W) if any do; all equally
    likely (``generator`` is a CPU generator, so the draws are the same on every device)."""
    n, h, w = masks.shape
    dev = masks.device
    kern, kh, kw = _kernels(masks.bool())
    area = masks.flatten(1).sum(1).double().view(n, 1, 1, 1)
    rr, cc = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    inside = ((rr <= h - kh.view(n, -1, 1, 1)) & (cc <= w - kw.view(n, -1, 1, 1)) & (kh.view(n, -1, 1, 1) > 0)).to(dev)
    # the set itself is no control: placements that reproduce it are out (unless nothing else fits)
    same = _overlap(masks.bool(), kern) >= area - 0.5
    other = inside & ~same
    inside = torch.where(other.flatten(1).any(1).view(n, 1, 1, 1), other, inside)
    fit = torch.where(inside, _overlap(brain.bool(), kern), torch.tensor(-1.0))
    best = torch.minimum(area, fit.flatten(1).amax(1).view(n, 1, 1, 1))
    ok = inside & (fit >= best - 0.5)
    if avoid is not None:
        clear = ok & (_overlap(avoid.bool(), kern) < 0.5)
        ok = torch.where(clear.flatten(1).any(1).view(n, 1, 1, 1), clear, ok)
    has = ok.flatten(1).any(1)
    if not bool(has.any()):
        return torch.zeros(n, draws, h, w, dtype=torch.bool, device=dev)
    cs = ok.flatten(1).cumsum(1).cpu()  # the u-th allowed placement, u uniform
    u = (torch.rand(n, draws, generator=generator, dtype=torch.float64) * cs[:, -1:]).long().clamp_max(
        (cs[:, -1:] - 1).clamp_min(0))
    idx = torch.searchsorted(cs, u + 1).clamp_max(cs.shape[1] - 1)
    t, rem = idx // (h * w), idx % (h * w)
    chosen = kern[torch.arange(n, device=dev).view(-1, 1), t.to(dev)]  # N×draws×H×W
    out = _shift(chosen, -(rem // w).to(dev), -(rem % w).to(dev))
    return out & has.view(n, 1, 1, 1)
