"""Stage hooks, layer choice and the IoU ceiling of a layer map (the CAM family's toolkit).

Why: layer explainers and the explanation backdoor hook the same named stages and must pick
the same default layer; the ceiling says how well a map of a given resolution can localise
at all, so a low IoU is read against what the layer allows.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, Score
from xaibench.errors import XaibenchError

from .spatial import upsample

MIN_CAM_SIZE = 8  # default layer: the deepest stage whose map is at least this many cells per side


@contextlib.contextmanager
def stage_outputs(model: Classifier, names: Sequence[str]) -> Iterator[dict[str, torch.Tensor]]:
    """Record the output tensors of the named stages during forward passes.

    The hooks only store the output (no tensor hooks, no in-place edits), so gradients and
    double backward through the recorded tensors work; they are removed on exit.
    """
    out: dict[str, torch.Tensor] = {}
    handles = []
    try:
        for name in names:
            handles.append(model.stage(name).register_forward_hook(
                lambda mod, args, output, name=name: out.__setitem__(name, output)))
        yield out
    finally:
        for h in handles:
            h.remove()


def pick_layer(shapes: Mapping[str, tuple[int, ...]], min_size: int = MIN_CAM_SIZE) -> str:
    """The deepest stage whose map is at least ``min_size`` cells on each side; if none is,
    the deepest stage with the finest map."""
    names = list(shapes)
    fine = [n for n in names if min(shapes[n]) >= min_size]
    if fine:
        return fine[-1]
    best = max(math.prod(shapes[n]) for n in names)
    return [n for n in names if math.prod(shapes[n]) == best][-1]


def resolve_layer(who: str, model: Classifier, layer: str | None) -> list[str]:
    """Stages to hook: the named one, or all of them (the default is picked after a forward);
    ``who`` (``"explainer NAME"``) names the plugin in the error."""
    if layer in (None, "auto"):
        return list(model.stage_names)
    if layer not in model.stage_names:
        raise XaibenchError(
            f"{who}: option 'layer' is {layer!r}; this model has {', '.join(model.stage_names)} (or 'auto')"
        )
    return [layer]


def iou_ceiling(masks: torch.Tensor, map_shape: tuple[int, ...], mode: str = "nearest") -> torch.Tensor:
    """Best IoU with ``masks`` (``N×*S`` bool) that *any* map of resolution ``map_shape``
    (``*s`` cells, 2-D or 3-D) can reach after upsampling to ``S`` and thresholding. One value per image.

    * ``nearest`` — exact: the map is constant on each cell, so a thresholded map is a union
      of cells; the best union takes cells in decreasing order of mask coverage (the optimum
      of this ratio objective is a coverage threshold), so we scan that order.
    * ``bilinear`` — achievable (a lower bound of the exact ceiling, which has no closed form):
      the best threshold of two candidate maps, the cell coverage fractions and the best
      ``nearest`` union, each upsampled bi/trilinearly.

    Either is an upper bound for a layer explainer that binarises at a threshold (e.g. the
    top-q fraction). On the synthetic-hippocampus slices a 7×7 map caps IoU at 0.37 (nearest)
    / 0.55 (bilinear), a 2×2 map at 0.07 (docs/explainers.md).
    """
    map_shape = tuple(int(v) for v in map_shape)
    if masks.ndim == len(map_shape):
        masks = masks[None]
    n, size = masks.shape[0], tuple(masks.shape[1:])
    cells = math.prod(map_shape)
    cell = F.interpolate(torch.arange(cells, dtype=torch.float32, device=masks.device).view(1, 1, *map_shape),
                         size=size, mode="nearest")[0, 0].long().view(-1)
    flat = masks.reshape(n, -1).float()
    inter = torch.zeros(n, cells, device=masks.device).index_add_(1, cell, flat)
    count = torch.bincount(cell, minlength=cells).float()
    area = flat.sum(1)
    order = torch.argsort(inter / count, dim=1, descending=True)
    ci = inter.gather(1, order).cumsum(1)
    cn = count[order].cumsum(1)
    iou = ci / (area[:, None] + cn - ci).clamp_min(1e-12)
    best_k = iou.argmax(1)
    best = iou.gather(1, best_k[:, None])[:, 0]
    if mode == "nearest":
        return torch.where(area > 0, best, torch.zeros_like(best))
    if mode != "bilinear":
        raise ValueError(f"iou_ceiling: mode must be 'nearest' or 'bilinear', not {mode!r}")
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(cells, device=masks.device).expand(n, -1))
    chosen = (rank <= best_k[:, None]).float()
    out = torch.zeros(n, device=masks.device)
    for grid in (inter / count, chosen):
        up = upsample(grid.view(n, *map_shape), size).reshape(n, -1)
        out = torch.maximum(out, _best_threshold_iou(up, flat))
    return torch.where(area > 0, out, torch.zeros_like(out))


def _best_threshold_iou(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Max over thresholds of IoU(values ≥ t, mask), per row; ties are kept together."""
    res = []
    for v, m in zip(values, mask):
        vs, idx = torch.sort(v, descending=True)
        ci = m[idx].cumsum(0)
        k = torch.arange(1, v.numel() + 1, device=v.device, dtype=torch.float32)
        iou = ci / (m.sum() + k - ci).clamp_min(1e-12)
        last_of_tie = torch.ones_like(vs, dtype=torch.bool)
        last_of_tie[:-1] = vs[1:] != vs[:-1]
        res.append(iou[last_of_tie].max())
    return torch.stack(res)


def describe_ceiling(explainer: Any, model: Classifier, images: torch.Tensor, masks: torch.Tensor) -> list[Score]:
    """The ``describe`` hook of layer explainers: the IoU ceiling (bilinear, achievable) that
    the chosen stage's map resolution implies on these masks, stored beside the scores."""
    _, shape = explainer.map_layer(model, tuple(images.shape[2:]))
    ceiling = iou_ceiling(masks.bool(), shape, mode="bilinear")
    vals = torch.where(masks.flatten(1).any(1), ceiling, torch.full_like(ceiling, float("nan")))
    return [Score("iou-ceiling", vals.cpu().numpy(), True, extra={"map_shape": list(shape)})]
