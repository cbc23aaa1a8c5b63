"""Trigger patterns, trigger placement and target regions of backdoor attacks (slices and volumes).

Why a helper of our own: the placement rules are the threat model's, not a library's. The
trigger must not cover the ROI (otherwise "the map moved" could just mean "the anatomy was
hidden"), and the target region must be disjoint from both the ROI and the trigger
(otherwise a map that lands on the trigger would count as success). Both are chosen from
the *training* masks and images only, so the test set never influences the attack.

Boxes are ``(y0, x0, y1, x1)`` in pixels, end-exclusive (:func:`xaibench.kit.regions.box_mask`);
in 3-D ``(z0, y0, x0, z1, y1, x1)``: the trigger is a cube, the region a cube of ``size`` voxels
per side, and the named corners and sides are the 2-D ones in-plane (the last two axes), a 3-D
corner adding ``first-`` / ``last-`` for the first or last slices along depth. Augmented
variants (:func:`variants`) are 2-D only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import itertools

import torch

from xaibench.errors import XaibenchError

from .regions import box_mask

Box = tuple[int, ...]  # (lo_0, …, lo_d, hi_0, …, hi_d)
PATTERNS = ("checker", "square", "noise")
CORNERS = ("top-left", "top-right", "bottom-left", "bottom-right")
REGIONS = ("auto", "top", "bottom", "left", "right", "center")


def pattern(kind: str, size: int, seed: int = 0, nd: int = 2) -> torch.Tensor:
    """A ``size×size`` (``nd`` = 3: ``size³``) float pattern in [0, 1]: a 1-px checkerboard
    (default: high contrast, unlike anything in an MRI slice), a white square, or fixed binary noise."""
    shape = (size,) * nd
    if kind == "checker":
        coords = torch.meshgrid(*[torch.arange(size)] * nd, indexing="ij")
        return (sum(coords) % 2 == 0).float()
    if kind == "square":
        return torch.ones(shape)
    if kind == "noise":
        g = torch.Generator().manual_seed(10_007 + seed)
        return (torch.rand(shape, generator=g) > 0.5).float()
    raise XaibenchError(f"attack: trigger_pattern {kind!r} is not one of {', '.join(PATTERNS)}")


def default_trigger_size(hw: tuple[int, int]) -> int:
    """The default trigger side: 3/32 of the image side (6 px at 64 px), at least 2 px."""
    return max(2, round(min(hw) * 3 / 32))


def default_region_size(hw: tuple[int, int]) -> int:
    """The default target-region side: a quarter of the image side (16 px at 64 px)."""
    return max(2, min(hw) // 4)


def _distance(box: Box, mask: torch.Tensor) -> float:
    """Smallest Chebyshev distance (px) from ``box`` to any True pixel of ``mask``."""
    coords = torch.nonzero(mask, as_tuple=True)
    if coords[0].numel() == 0:
        return float("inf")
    d = len(coords)
    gaps = [torch.clamp(torch.maximum(box[i] - c, c - (box[d + i] - 1)), min=0) for i, c in enumerate(coords)]
    return float(torch.stack(gaps).amax(0).min())


def roi_union(masks: torch.Tensor, nd: int = 2) -> torch.Tensor:
    """Pixels (voxels) that are ROI in any training image (``*S`` bool, ``nd`` = len(S))."""
    return masks.reshape(-1, *masks.shape[-nd:]).any(dim=0).cpu()


def _corners(size: int, shape: tuple[int, ...], margin: int) -> dict[str, tuple[int, ...]]:
    """Named corner positions (lowest index of the box): the 2-D names in-plane, with
    ``first-`` / ``last-`` along depth in 3-D."""
    lo = [margin] * len(shape)
    hi = [n - margin - size for n in shape]
    plane = {"top-left": (lo[-2], lo[-1]), "top-right": (lo[-2], hi[-1]),
             "bottom-left": (hi[-2], lo[-1]), "bottom-right": (hi[-2], hi[-1])}
    if len(shape) == 2:
        return plane
    return {f"{k}-{c}": (z, *yx) for k, z in (("first", lo[0]), ("last", hi[0])) for c, yx in plane.items()}


def place_trigger(position: Any, size: int, hw: tuple[int, ...], roi: torch.Tensor, margin: int = 2) -> Box:
    """The trigger box: ``"auto"`` picks the corner farthest from every training ROI; a
    corner name or ``[y, x]`` (``[z, y, x]``: the lowest-index pixel) places it explicitly."""
    hw, nd = tuple(int(n) for n in hw), len(hw)
    dims = "×".join(map(str, hw))
    if size < 1 or size + 2 * margin > min(hw):
        raise XaibenchError(f"attack: trigger_size {size} does not fit a {dims} image (1..{min(hw) - 2 * margin})")
    corners = _corners(size, hw, margin)
    names = ", ".join(corners)
    xyz = "[y, x]" if nd == 2 else "[z, y, x]"
    if isinstance(position, str):
        if position == "auto":
            name = max(corners, key=lambda c: _distance((*corners[c], *(v + size for v in corners[c])), roi))
            lo = corners[name]
        elif position in corners:
            lo = corners[position]
        else:
            raise XaibenchError(f"attack: trigger_position {position!r} is not auto, {names} or {xyz}")
    elif isinstance(position, Sequence) and len(position) == nd and all(isinstance(v, int) for v in position):
        lo = tuple(int(v) for v in position)
        if not all(0 <= v <= n - size for v, n in zip(lo, hw)):
            raise XaibenchError(f"attack: trigger_position {list(position)} puts a {size}-px trigger outside {dims}")
    else:
        raise XaibenchError(f"attack: trigger_position {position!r} is not auto, {names} or {xyz}")
    box = (*lo, *(v + size for v in lo))
    if (box_mask(box, hw) & roi).any():
        raise XaibenchError(f"attack: trigger_position {position!r} covers the ROI of some training image; "
                            "choose another position (or 'auto')")
    return box


def _explicit_region(region: Sequence, hw: tuple[int, ...], blocked: torch.Tensor) -> Box:
    nd = len(hw)
    form = "[y0, x0, y1, x1]" if nd == 2 else "[z0, y0, x0, z1, y1, x1]"
    if len(region) != 2 * nd or not all(isinstance(v, int) for v in region):
        raise XaibenchError(f"attack: region {region!r} must be auto, {', '.join(REGIONS[1:])} or {form}")
    box = tuple(int(v) for v in region)
    if not all(0 <= box[i] < box[nd + i] <= hw[i] for i in range(nd)):
        raise XaibenchError(f"attack: region {list(region)} is not a box inside {'×'.join(map(str, hw))}")
    if (box_mask(box, hw) & blocked).any():
        raise XaibenchError(f"attack: region {list(region)} overlaps the ROI or the trigger; it must be disjoint")
    return box


def _on_side(region: str, lo: tuple[int, ...], size: int, hw: tuple[int, ...]) -> bool:
    """Whether a box at ``lo`` lies on the named side of the image plane (the last two axes)."""
    h, w = hw[-2:]
    cy, cx = lo[-2] + size / 2, lo[-1] + size / 2
    return {"auto": True, "top": cy < h / 2, "bottom": cy > h / 2, "left": cx < w / 2,
            "right": cx > w / 2, "center": abs(cy - h / 2) <= h / 4 and abs(cx - w / 2) <= w / 4}[region]


def choose_region(region: Any, size: int, hw: tuple[int, ...], roi: torch.Tensor, trigger: Box,
                  mean_image: torch.Tensor, margin: int = 4, cell: int = 1) -> Box:
    """The target region box (``size×size`` px; ``size³`` in 3-D) disjoint from the ROI union and the trigger.

    ``"auto"``: among boxes on a grid of step ``size // 2`` that keep ``margin`` px away
    from every training ROI and from the trigger, the most *inside the anatomy* (share of
    the box whose mean training intensity is above 10% of its maximum), ties broken by the
    distance from the ROI: a plausible but wrong anatomical region, e.g. dorsal cortex
    instead of the hippocampus. A side name restricts the choice to that part of the
    image (in-plane); ``[y0, x0, y1, x1]`` (``[z0, y0, x0, z1, y1, x1]``) gives the box explicitly.

    ``cell`` is the explained layer's cell size in pixels: when the region spans whole
    cells, the grid steps by cells, so the region is a union of map cells. Otherwise a map
    of that resolution could not cover it (a box straddling four 8-px cells of a 4×4
    Grad-CAM caps its mass near 0.25, however well the attack works).
    """
    hw = tuple(int(n) for n in hw)
    trig = box_mask(trigger, hw)
    if isinstance(region, Sequence) and not isinstance(region, str):
        return _explicit_region(region, hw, roi | trig)
    form = "[y0, x0, y1, x1]" if len(hw) == 2 else "[z0, y0, x0, z1, y1, x1]"
    if region not in REGIONS:
        raise XaibenchError(f"attack: region {region!r} must be auto, {', '.join(REGIONS[1:])} or {form}")
    if size < 2 or size >= min(hw):
        raise XaibenchError(f"attack: region_size {size} must be between 2 and {min(hw) - 1} px")
    fg = mean_image > 0.1 * float(mean_image.max())
    step = cell if 1 < cell <= size else max(1, size // 2)
    cands: list[tuple[float, float, Box]] = []
    for lo in itertools.product(*[range(0, n - size + 1, step) for n in hw]):
        if not _on_side(region, lo, size, hw):
            continue
        box = (*lo, *(v + size for v in lo))
        d_roi, d_trig = _distance(box, roi), _distance(box, trig)
        if d_roi < margin or d_trig < margin:
            continue
        inside = float(fg[tuple(slice(v, v + size) for v in lo)].float().mean())
        cands.append((round(inside, 1), min(d_roi, 1e6), box))
    if not cands:
        raise XaibenchError(f"attack: no {size}-px region {region!r} is disjoint from the ROI and the trigger; "
                            f"use a smaller region_size or give the box {form}")
    return max(cands, key=lambda c: (c[0], c[1]))[2]


def stamp(images: torch.Tensor, patch: torch.Tensor, box: Box) -> torch.Tensor:
    """A copy of ``images`` (``N×1×*S``) with ``patch`` pasted into ``box``."""
    out = images.clone()
    d = len(box) // 2
    out[(..., *(slice(box[i], box[d + i]) for i in range(d)))] = patch.to(out.device, out.dtype)
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
    Slices only (a volume's augmentation would need 3-D rotations).
    """
    if images.ndim != 4:
        raise XaibenchError("attack: poison_variants > 1 augments 2-D slices only; use poison_variants = 1 on volumes")
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
