"""Masks and regions: per-image masks from shared ones, boxes, and the mass of a map inside a
region, for any number of spatial dimensions.

Why one "mass inside a region": the localisation metric, the attack-success metric and the
backdoor loss all ask it; the answer for a map with no mass is stated once (NaN: there is no
evidence to place) and each caller says what it does with it.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from xaibench.errors import XaibenchError

from .options import require

MODES = ("positive", "absolute", "signed")


def as_masks(masks: torch.Tensor, n: int, spatial: Sequence[int] | None = None) -> torch.Tensor:
    """``N×*S`` bool masks; a mask of ``len(S)`` dims is shared by every image. ``spatial``
    (``S``) removes the guess: without it, a 2-D mask is taken as shared (slices)."""
    m = masks.bool()
    nd = 2 if spatial is None else len(spatial)
    if m.dim() == nd:
        m = m.unsqueeze(0).expand(n, *m.shape)
    if spatial is not None and tuple(m.shape) != (n, *spatial):
        raise XaibenchError(f"masks of shape {tuple(masks.shape)} fit neither {n}×{'×'.join(map(str, spatial))} "
                            f"nor {'×'.join(map(str, spatial))}")
    return m


def box_mask(box: Sequence[int], shape: Sequence[int]) -> torch.Tensor:
    """Bool mask of ``shape`` that is True inside ``box`` = ``(lo_0, …, lo_d, hi_0, …, hi_d)``
    (end-exclusive; ``(y0, x0, y1, x1)`` in 2-D)."""
    d = len(shape)
    if len(box) != 2 * d:
        raise ValueError(f"box_mask: a box in {d}-D has {2 * d} numbers, got {len(box)}")
    m = torch.zeros(tuple(shape), dtype=torch.bool)
    m[tuple(slice(int(box[i]), int(box[d + i])) for i in range(d))] = True
    return m


def rectify(a: torch.Tensor, mode: str) -> torch.Tensor:
    """The evidence a mode counts: ``positive`` clamps at 0, ``absolute`` takes |a|, ``signed`` keeps a."""
    return a.clamp_min(0) if mode == "positive" else a.abs() if mode == "absolute" else a


def mass_share(maps: torch.Tensor, region: torch.Tensor, mode: str = "positive",
               floor: float | None = None) -> torch.Tensor:
    """Share of each map's mass (after :func:`rectify`) inside ``region``, one value per map.

    ``maps`` is ``N×*S`` (or already ``N×P``); ``region`` the same shape, or one shared region.
    A map with no mass (total 0: all zero, or nothing positive in ``positive`` mode) gives
    **NaN** — there is no evidence to place. With ``floor`` the total is clamped to at least
    ``floor`` instead: an empty map gives **0** and the value stays differentiable (what a
    training loss or a "nothing reached the region" score needs). The sums run in ``maps``' dtype.
    """
    if mode not in MODES:
        raise ValueError(f"mass_share: mode must be one of {', '.join(MODES)}, not {mode!r}")
    a = rectify(maps, mode).reshape(maps.shape[0], -1)
    r = region.expand_as(maps).reshape(maps.shape[0], -1).to(a.dtype)
    inside, total = (a * r).sum(1), a.sum(1)
    if floor is not None:
        return inside / total.clamp_min(floor)
    return torch.where(total != 0, inside / torch.where(total != 0, total, 1.0), torch.nan)


def check_mask_name(who: str, value: Any) -> None:
    """The ``mask`` option: a mask name (``roi``, ``evidence``, ``roi-left`` …)."""
    require(isinstance(value, str) and bool(value), who, "mask", "a mask name such as roi or evidence", value)


def named_mask(inp: Any, name: str, who: str, n: int) -> torch.Tensor:
    """The ``N×*S`` bool mask ``name`` of a metric's images (``roi`` = ``inp.masks``), or the
    one-line error naming ``who`` and the masks these images have."""
    try:
        m = inp.mask(name)
    except KeyError:
        have = ", ".join(["roi", *sorted(getattr(inp, "named_masks", None) or {})])
        raise XaibenchError(f"{who}: option mask={name!r}: these images have no such mask; "
                            f"available: {have}") from None
    return as_masks(m, n, tuple(inp.images.shape[2:]) if getattr(inp, "images", None) is not None else None)


def mask_suffix(name: str, mask: str) -> str:
    """Score name for a mask: unchanged for ``roi`` (the published columns), ``NAME@MASK`` else."""
    return name if mask == "roi" else f"{name}@{mask}"
