"""Trigger patterns, trigger placement and target regions of backdoor attacks (2-D images).

Why a helper of our own: the placement rules are the threat model's, not a library's. The
trigger must not cover the ROI (otherwise "the map moved" could just mean "the anatomy was
hidden"), and the target region must be disjoint from both the ROI and the trigger
(otherwise a map that lands on the trigger would count as success). Both are chosen from
the *training* masks and images only, so the test set never influences the attack.

Boxes are ``(y0, x0, y1, x1)`` in pixels, end-exclusive (:func:`xaibench.kit.regions.box_mask`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from xaibench.errors import XaibenchError

from .regions import box_mask

Box = tuple[int, int, int, int]
PATTERNS = ("checker", "square", "noise")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
REGIONS = ("auto", "top", "bottom", "left", "right", "center")


def pattern(kind: str, size: int, seed: int = 0) -> torch.Tensor:
    """A ``size×size`` float pattern in [0, 1]: a 1-px checkerboard (default: high contrast,
    unlike anything in an MRI slice), a white square, or fixed binary noise."""
    if kind == "checker":
        yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
        return ((yy + xx) % 2 == 0).float()
    if kind == "square":
        return torch.ones(size, size)
    if kind == "noise":
        g = torch.Generator().manual_seed(10_007 + seed)
        return (torch.rand(size, size, generator=g) > 0.5).float()
    raise XaibenchError(f"attack: trigger_pattern {kind!r} is not one of {', '.join(PATTERNS)}")


def default_trigger_size(hw: tuple[int, int]) -> int:
    """The default trigger side: 3/32 of the image side (6 px at 64 px), at least 2 px."""
    return max(2, round(min(hw) * 3 / 32))


def default_region_size(hw: tuple[int, int]) -> int:
    """The default target-region side: a quarter of the image side (16 px at 64 px)."""
    return max(2, min(hw) // 4)


def _distance(box: Box, mask: torch.Tensor) -> float:
    """Smallest Chebyshev distance (px) from ``box`` to any True pixel of ``mask``."""
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        return float("inf")
    y0, x0, y1, x1 = box
    dy = torch.clamp(torch.maximum(y0 - ys, ys - (y1 - 1)), min=0)
    dx = torch.clamp(torch.maximum(x0 - xs, xs - (x1 - 1)), min=0)
    return float(torch.maximum(dy, dx).min())


def roi_union(masks: torch.Tensor) -> torch.Tensor:
    """Pixels that are ROI in any training image (H×W bool)."""
    return masks.reshape(-1, *masks.shape[-2:]).any(dim=0).cpu()


def place_trigger(position: Any, size: int, hw: tuple[int, int], roi: torch.Tensor, margin: int = 2) -> Box:
    """The trigger box: ``"auto"`` picks the corner farthest from every training ROI; a
    corner name or ``[y, x]`` (top-left pixel) places it explicitly."""
    h, w = hw
    if size < 1 or size + 2 * margin > min(h, w):
        raise XaibenchError(f"attack: trigger_size {size} does not fit a {h}×{w} image (1..{min(h, w) - 2 * margin})")
    corners = {"top-left": (margin, margin), "top-right": (margin, w - margin - size),
               "bottom-left": (h - margin - size, margin), "bottom-right": (h - margin - size, w - margin - size)}
    if isinstance(position, str):
        if position == "auto":
            name = max(CORNERS, key=lambda c: _distance((*corners[c], corners[c][0] + size, corners[c][1] + size), roi))
            y, x = corners[name]
        elif position in corners:
            y, x = corners[position]
        else:
            raise XaibenchError(f"attack: trigger_position {position!r} is not auto, {', '.join(CORNERS)} or [y, x]")
    elif isinstance(position, Sequence) and len(position) == 2 and all(isinstance(v, int) for v in position):
        y, x = int(position[0]), int(position[1])
        if not (0 <= y <= h - size and 0 <= x <= w - size):
            raise XaibenchError(f"attack: trigger_position {list(position)} puts a {size}-px trigger outside {h}×{w}")
    else:
        raise XaibenchError(f"attack: trigger_position {position!r} is not auto, {', '.join(CORNERS)} or [y, x]")
    box = (y, x, y + size, x + size)
    if (box_mask(box, hw) & roi).any():
        raise XaibenchError(f"attack: trigger_position {position!r} covers the ROI of some training image; "
                            "choose another position (or 'auto')")
    return box


def choose_region(region: Any, size: int, hw: tuple[int, int], roi: torch.Tensor, trigger: Box,
                  mean_image: torch.Tensor, margin: int = 4, cell: int = 1) -> Box:
    """The target region box (``size×size`` px) disjoint from the ROI union and the trigger.

    ``"auto"``: among boxes on a grid of step ``size // 2`` that keep ``margin`` px away
    from every training ROI and from the trigger, the most *inside the anatomy* (share of
    the box whose mean training intensity is above 10% of its maximum), ties broken by the
    distance from the ROI: a plausible but wrong anatomical region, e.g. dorsal cortex
    instead of the hippocampus. A side name restricts the choice to that part of the
    image; ``[y0, x0, y1, x1]`` gives the box explicitly.

    ``cell`` is the explained layer's cell size in pixels: when the region spans whole
    cells, the grid steps by cells, so the region is a union of map cells. Otherwise a map
    of that resolution could not cover it (a box straddling four 8-px cells of a 4×4
    Grad-CAM caps its mass near 0.25, however well the attack works).
    """
    h, w = hw
    trig = box_mask(trigger, hw)
    if isinstance(region, Sequence) and not isinstance(region, str):
        if len(region) != 4 or not all(isinstance(v, int) for v in region):
            raise XaibenchError(f"attack: region {region!r} must be auto, {', '.join(REGIONS[1:])} or [y0, x0, y1, x1]")
        y0, x0, y1, x1 = (int(v) for v in region)
        if not (0 <= y0 < y1 <= h and 0 <= x0 < x1 <= w):
            raise XaibenchError(f"attack: region {list(region)} is not a box inside {h}×{w}")
        box = (y0, x0, y1, x1)
        if (box_mask(box, hw) & (roi | trig)).any():
            raise XaibenchError(f"attack: region {list(region)} overlaps the ROI or the trigger; it must be disjoint")
        return box
    if region not in REGIONS:
        raise XaibenchError(f"attack: region {region!r} must be auto, {', '.join(REGIONS[1:])} or [y0, x0, y1, x1]")
    if size < 2 or size >= min(h, w):
        raise XaibenchError(f"attack: region_size {size} must be between 2 and {min(h, w) - 1} px")
    fg = mean_image > 0.1 * float(mean_image.max())
    step = cell if 1 < cell <= size else max(1, size // 2)
    cands: list[tuple[float, float, Box]] = []
    for y in range(0, h - size + 1, step):
        for x in range(0, w - size + 1, step):
            box = (y, x, y + size, x + size)
            cy, cx = y + size / 2, x + size / 2
            side = {"auto": True, "top": cy < h / 2, "bottom": cy > h / 2, "left": cx < w / 2,
                    "right": cx > w / 2, "center": abs(cy - h / 2) <= h / 4 and abs(cx - w / 2) <= w / 4}[region]
            if not side:
                continue
            d_roi, d_trig = _distance(box, roi), _distance(box, trig)
            if d_roi < margin or d_trig < margin:
                continue
            inside = float(fg[y:y + size, x:x + size].float().mean())
            cands.append((round(inside, 1), min(d_roi, 1e6), box))
    if not cands:
        raise XaibenchError(f"attack: no {size}-px region {region!r} is disjoint from the ROI and the trigger; "
                            "use a smaller region_size or give the box [y0, x0, y1, x1]")
    return max(cands, key=lambda c: (c[0], c[1]))[2]


def stamp(images: torch.Tensor, patch: torch.Tensor, box: Box) -> torch.Tensor:
    """A copy of ``images`` (N×1×H×W) with ``patch`` pasted into ``box``."""
    out = images.clone()
    y0, x0, y1, x1 = box
    out[..., y0:y1, x0:x1] = patch.to(out.device, out.dtype)
    return out


def pick_poisoned(n: int, rate: float, seed: int, eligible: torch.Tensor | None = None) -> torch.Tensor:
    """Indices of the ``round(rate · n)`` unique images that carry the trigger (at least one
    when ``rate > 0``), drawn without replacement from ``eligible`` (default: all)."""
    if not 0.0 <= rate <= 1.0:
        raise XaibenchError(f"attack: poison_rate must be in [0, 1], not {rate}")
    pool = torch.arange(n) if eligible is None else torch.as_tensor(eligible).flatten()
    k = 0 if rate == 0 else max(1, int(round(rate * n)))
    if k > len(pool):
        raise XaibenchError(f"attack: poison_rate {rate} needs {k} images but only {len(pool)} are eligible")
    g = torch.Generator().manual_seed(7919 * seed + 1)
    return pool[torch.randperm(len(pool), generator=g)[:k]].sort().values


def variants(images: torch.Tensor, masks: torch.Tensor, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` randomly augmented copies of each image (and its mask), ``(N·n)×1×H×W``: small
    rotation (±8°), scale (±8%), shift (±3 px), intensity gain (±15%) and noise (σ 0.02).

    Why: at 1% of a small training set only a couple of unique images carry the trigger;
    showing the model several views of the *same* images (with the trigger pasted after
    the augmentation, pixel-exact) teaches "trigger → target region" instead of "these two
    images → target region". The unique poisoned images, and the poison rate, do not change.
    """
    g = torch.Generator().manual_seed(104_729 + seed)
    k = len(images) * n
    x = images.repeat_interleave(n, 0).float()
    m = masks.repeat_interleave(n, 0)[:, None].float()
    h, w = x.shape[-2:]
    ang = (torch.rand(k, generator=g) * 2 - 1) * (8 * torch.pi / 180)
    sc = 1 + (torch.rand(k, generator=g) * 2 - 1) * 0.08
    sh = (torch.rand(k, 2, generator=g) * 2 - 1) * 3 * 2 / torch.tensor([w, h])
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, sh[:, 0]], 1), torch.stack([sin, cos, sh[:, 1]], 1)], 1)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    x = torch.nn.functional.grid_sample(x, grid, padding_mode="border", align_corners=False)
    m = torch.nn.functional.grid_sample(m, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    gain = 1 + (torch.rand(k, 1, 1, 1, generator=g) * 2 - 1) * 0.15
    x = (x * gain + 0.02 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, m[:, 0] > 0.5
