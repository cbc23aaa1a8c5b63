"""Shape-matched random regions: a mask moved to a random place inside the brain.

Why: a control for "remove these pixels" (ΔT) or "attribution in this region" (roi-volume)
must differ from the tested region only in *where* it is. Scattered random pixels differ
in shape too: removing a contiguous blob and removing as many isolated pixels change a
CNN's output by different amounts, so a scattered control favours explainers whose top-q
sets have one shape over another. Here the region keeps its exact shape: one of the 8
right-angle rotations/flips of the mask is moved to a uniformly random position at which
it lies inside the brain (every placement that fits, or — when none fits entirely — the
placements that fit best, equally likely).

The brain is ``named_masks["brain"]`` when the dataset gives it, else the image's nonzero
pixels (the whole image if it has none).
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F


def brain_masks(images: torch.Tensor, named_masks: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
    """N×H×W bool brain mask of each image (see the module docstring)."""
    if named_masks and "brain" in named_masks:
        b = named_masks["brain"].bool().to(images.device)
        return b.unsqueeze(0).expand(len(images), -1, -1) if b.dim() == 2 else b
    b = images[:, 0] > 0
    empty = ~b.flatten(1).any(1)
    return torch.where(empty.view(-1, 1, 1), torch.ones_like(b), b)


def _transforms(mask: torch.Tensor) -> list[torch.Tensor]:
    """The mask's 8 rotations/flips, each cropped to its bounding box."""
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    box = mask[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]
    out = []
    for flip in (False, True):
        m = box.flip(1) if flip else box
        out += [torch.rot90(m, k) for k in range(4)]
    return out


def _placements(mask: torch.Tensor, brain: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Kernels and the (kernel, row, col) of every placement that fits the brain best."""
    h, w = brain.shape
    kernels = [k for k in _transforms(mask) if k.shape[0] <= h and k.shape[1] <= w]
    area = float(mask.sum())
    fits = [F.conv2d(brain.float().view(1, 1, h, w), k.float().view(1, 1, *k.shape))[0, 0] for k in kernels]
    best = min(area, max(float(f.max()) for f in fits))
    cand = []
    for j, f in enumerate(fits):
        rc = torch.nonzero(f >= best - 0.5)
        cand.append(torch.cat([torch.full((len(rc), 1), j, device=rc.device), rc], 1))
    return kernels, torch.cat(cand)


def random_placements(masks: torch.Tensor, brain: torch.Tensor, draws: int, generator: torch.Generator) -> torch.Tensor:
    """N×draws×H×W: each mask moved ``draws`` times to a random place in its brain
    (``generator`` is a CPU generator, so the draws are the same on every device)."""
    n, h, w = masks.shape
    out = torch.zeros(n, draws, h, w, dtype=torch.bool, device=masks.device)
    for i in range(n):
        if not bool(masks[i].any()):
            continue
        kernels, cand = _placements(masks[i], brain[i])
        pick = torch.randint(len(cand), (draws,), generator=generator)
        for d, c in enumerate(cand[pick.to(cand.device)].tolist()):
            k = kernels[c[0]]
            out[i, d, c[1]:c[1] + k.shape[0], c[2]:c[2] + k.shape[1]] = k
    return out
