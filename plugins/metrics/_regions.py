"""Shape-matched random regions: a mask moved to a random place inside the brain.

Why: a control for "remove these pixels" (ΔT) or "attribution in this region" (roi-volume)
must differ from the tested region only in *where* it is. Scattered random pixels differ
in shape too: removing a contiguous blob and removing as many isolated pixels change a
CNN's output by different amounts, so a scattered control favours explainers whose top-q
sets have one shape over another. Here the region keeps its exact shape: one of the
right-angle rotations/flips of the mask is moved to a uniformly random position at which
it lies inside the brain (every placement that fits, or — when none fits entirely — the
placements that fit best, equally likely). A placement that reproduces the set itself (a
scattered top-q set spanning the brain may fit nowhere else) is excluded unless it is the
only one, so the control is never the tested set.

The rotations/flips are the signed axis permutations that keep the image's shape: on a
square slice the 8 of the square, on a cube the 48 of the cube (the 24 rotations and their
mirror images — mirror images because the 2-D control has always used flips, and a brain is
near mirror-symmetric, so a mirrored region is as plausible a control as a rotated one); on
other shapes only the permutations of equal sides. 2-D draws are the same as before the
N-D version (same transforms, same order, same random stream; pinned by a test).

The brain is ``named_masks["brain"]`` when the dataset gives it, else the image's nonzero
pixels (the whole image if it has none).
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Mapping

import torch

_BUDGET = 1 << 24  # mask elements (images × transforms × pixels) handled at once


def brain_masks(images: torch.Tensor, named_masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """N×*S bool brain mask of each image (see the module docstring)."""
    d = images.ndim - 2
    if named_masks and "brain" in named_masks:
        b = named_masks["brain"].bool().to(images.device)
        return b.unsqueeze(0).expand(len(images), *b.shape) if b.dim() == d else b
    b = images[:, 0] > 0
    empty = ~b.flatten(1).any(1)
    return torch.where(empty.view(-1, *(1,) * d), torch.ones_like(b), b)


def _shift(v: torch.Tensor, offsets: list[torch.Tensor]) -> torch.Tensor:
    """``v`` (…×*S, d = len(offsets) spatial axes) with out[…, p] = v[…, p + offset] (False
    outside); each offset has the shape of the leading axes."""
    d = len(offsets)
    lead = v.shape[:-d]
    g, ok = v, torch.ones((), dtype=torch.bool, device=v.device)
    for ax, off in enumerate(offsets):
        s = v.shape[-d + ax]
        idx = torch.arange(s, device=v.device) + off.unsqueeze(-1)  # …×s
        shape = (*lead, *(s if k == ax else 1 for k in range(d)))
        g = g.gather(v.ndim - d + ax, idx.clamp(0, s - 1).view(shape).expand(*v.shape))
        ok = ok & ((idx >= 0) & (idx < s)).view(shape)
    return g & ok


def _transforms(masks: torch.Tensor) -> torch.Tensor:
    """N×T×*S: the shape-keeping rotations/flips of each N×*S mask (module docstring); on
    slices in the order of the 2-D version (rotations of the mask, then of its mirror)."""
    spatial = tuple(masks.shape[1:])
    if len(spatial) == 2:
        ks = range(4) if spatial[0] == spatial[1] else (0, 2)
        return torch.stack([torch.rot90(m, k, (1, 2)) for m in (masks, masks.flip(2)) for k in ks], 1)
    views = []
    for perm in itertools.permutations(range(len(spatial))):
        if any(spatial[p] != spatial[i] for i, p in enumerate(perm)):
            continue
        v = masks.permute(0, *(p + 1 for p in perm))
        for signs in itertools.product((False, True), repeat=len(spatial)):
            axes = [i + 1 for i, s in enumerate(signs) if s]
            views.append(v.flip(axes) if axes else v)
    return torch.stack(views, 1)


def _kernels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each mask's rotations/flips moved to the corner: N×T×*S, and the extents (N×T×d,
    on the CPU; 0 for an empty mask) of their bounding boxes."""
    v = _transforms(masks)
    d = v.ndim - 2
    empty = ~v.flatten(2).any(2)
    lo, ext = [], []
    for ax in range(d):
        prof = v
        for k in reversed(range(d)):
            if k != ax:
                prof = prof.any(2 + k)
        s = v.shape[2 + ax]
        first = prof.int().argmax(2)
        lo.append(first)
        ext.append(torch.where(empty, 0, s - first - prof.flip(2).int().argmax(2)).cpu())
    return _shift(v, lo), torch.stack(ext, -1)


def _overlap(img: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """N×T×*S: pixels of ``img`` (N×*S) under each kernel placed with its corner at p.
    Circular FFT correlation, exact (no wrap-around) wherever the kernel fits."""
    dims = tuple(range(-(img.ndim - 1), 0))
    fi = torch.fft.rfftn(img.float(), dim=dims)  # counts ≤ P: float32 error is far below the 0.5 rounding
    fk = torch.fft.rfftn(kernels.float(), dim=dims)
    return torch.fft.irfftn(fi.unsqueeze(1) * fk.conj(), s=img.shape[1:], dim=dims).round()


def _allowed(masks: torch.Tensor, kern: torch.Tensor, ext: torch.Tensor, brain: torch.Tensor,
             avoid: torch.Tensor | None) -> torch.Tensor:
    """N×T×*S bool: the placements of each kernel that may be drawn (module docstring)."""
    n, spatial = masks.shape[0], tuple(masks.shape[1:])
    d, dev = len(spatial), masks.device
    one = (n, -1, *(1,) * d)
    inside = (ext[..., 0] > 0).view(one)
    for ax, s in enumerate(spatial):
        pos = torch.arange(s).view(1, 1, *(s if k == ax else 1 for k in range(d)))
        inside = inside & (pos <= s - ext[..., ax].view(one))
    inside = inside.to(dev)
    area = masks.flatten(1).sum(1).double().view(n, 1, *(1,) * d)
    # the set itself is no control: placements that reproduce it are out (unless nothing else fits)
    same = _overlap(masks, kern) >= area - 0.5
    other = inside & ~same
    inside = torch.where(other.flatten(1).any(1).view(area.shape), other, inside)
    fit = torch.where(inside, _overlap(brain.bool(), kern), torch.tensor(-1.0))
    best = torch.minimum(area, fit.flatten(1).amax(1).view(area.shape))
    ok = inside & (fit >= best - 0.5)
    if avoid is not None:
        clear = ok & (_overlap(avoid.bool(), kern) < 0.5)
        ok = torch.where(clear.flatten(1).any(1).view(area.shape), clear, ok)
    return ok


def _place(masks: torch.Tensor, brain: torch.Tensor, rand: torch.Tensor, avoid: torch.Tensor | None) -> torch.Tensor:
    """N×draws×*S for one chunk of images, ``rand`` (N×draws, uniform) choosing the placement."""
    n, spatial = masks.shape[0], tuple(masks.shape[1:])
    dev, p = masks.device, math.prod(spatial)
    kern, ext = _kernels(masks)
    ok = _allowed(masks, kern, ext, brain, avoid)
    has = ok.flatten(1).any(1)
    cs = ok.flatten(1).cumsum(1).cpu()  # the u-th allowed placement, u uniform
    u = (rand * cs[:, -1:]).long().clamp_max((cs[:, -1:] - 1).clamp_min(0))
    idx = torch.searchsorted(cs, u + 1).clamp_max(cs.shape[1] - 1)
    t, rem = idx // p, idx % p
    coords = []
    for s in reversed(spatial):
        coords.append(-(rem % s).to(dev))
        rem = rem // s
    chosen = kern[torch.arange(n, device=dev).view(-1, 1), t.to(dev)]  # N×draws×*S
    return _shift(chosen, coords[::-1]) & has.view(n, 1, *(1,) * len(spatial))


def random_placements(masks: torch.Tensor, brain: torch.Tensor, draws: int, generator: torch.Generator,
                      avoid: torch.Tensor | None = None) -> torch.Tensor:
    """N×draws×*S: each mask (N×*S) moved ``draws`` times to a random place in its brain —
    among the placements that fit best, those missing ``avoid`` (N×*S) if any do; all equally
    likely (``generator`` is a CPU generator, so the draws are the same on every device).
    Images are handled in chunks (volumes have 48 transforms of many voxels); a mask with
    any pixel always has a placement, so the one draw from ``generator`` happens iff some
    mask is non-empty, as in the 2-D version."""
    masks = masks.bool()
    n, spatial = masks.shape[0], tuple(masks.shape[1:])
    if not bool(masks.any()):
        return torch.zeros(n, draws, *spatial, dtype=torch.bool, device=masks.device)
    rand = torch.rand(n, draws, generator=generator, dtype=torch.float64)
    n_t = 8 if len(spatial) == 2 else 2 ** len(spatial) * math.factorial(len(spatial))
    step = max(1, _BUDGET // (n_t * math.prod(spatial)))
    return torch.cat([_place(masks[i:i + step], brain[i:i + step], rand[i:i + step],
                             None if avoid is None else avoid[i:i + step]) for i in range(0, n, step)])
