"""Shared pieces of the built-in explainers: per-class scores for library calls, stage hooks,
layer choice, upsampling, chunking, seeding, option checking and the IoU ceiling of a layer map.

Why here: every explainer needs the same answers to "which scalar is explained" (a
:class:`~xaibench.contracts.Target` can be a logit, a margin or a group direction, while captum
and pytorch-grad-cam expect a model whose outputs are indexed by a class), "which layer" and
"how do I stay deterministic without touching the caller's random state".
"""
from __future__ import annotations

import contextlib
import dataclasses
import zlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, Target
from xaibench.errors import XaibenchError

MIN_CAM_SIZE = 8  # default layer: the deepest stage whose map is at least this many cells per side


# --------------------------------------------------------------------------- options


def factory(plugin: str, cls: type) -> Callable[..., Any]:
    """``factory(**options)`` that turns unknown option names into a one-line XaibenchError."""
    allowed = [f.name for f in dataclasses.fields(cls)]

    def make(**options: Any) -> Any:
        bad = sorted(set(options) - set(allowed))
        if bad:
            raise XaibenchError(
                f"explainer {plugin}: unknown option {bad[0]!r}; allowed: {', '.join(allowed) or '(none)'}"
            )
        return cls(**options)

    make.__doc__ = cls.__doc__
    return make


def check(plugin: str, option: str, ok: bool, allowed: str) -> None:
    if not ok:
        raise XaibenchError(f"explainer {plugin}: option {option!r} must be {allowed}")


def check_input(plugin: str, x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != 1:
        raise XaibenchError(f"explainer {plugin}: expected images N×1×H×W, got shape {tuple(x.shape)}")


# --------------------------------------------------------------------------- targets


def class_scores(target: Target, logits: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """``N×K`` scores such that ``out.gather(1, classes) == target.score(logits, emb)``.

    Libraries (captum, pytorch-grad-cam) pick an output column per image; this gives every
    target kind that shape: logits; ``logits - logits.flip(1)`` for the two-class margin;
    ``φ·[+1, −1]`` for the group direction (column 0 = group A's sign, column 1 = group B's).
    """
    if target.kind == "logit":
        return logits
    if target.kind == "margin":
        if logits.shape[1] != 2:
            raise XaibenchError("target 'margin' needs a two-class model")
        return logits - logits.flip(1)
    if target.direction is None:
        raise ValueError("group-direction target needs a direction")
    phi = emb @ target.direction.to(emb.device, emb.dtype)
    return torch.stack([phi, -phi], dim=1)


class ScoreModel(torch.nn.Module):
    """Wraps a classifier so ``forward(x)`` returns :func:`class_scores` (``N×K``); index it with
    ``target.classes``. The classifier's modules (stages) stay reachable for hooks."""

    def __init__(self, model: Classifier, target: Target) -> None:
        super().__init__()
        self.model = model
        self.kind, self.direction = target.kind, target.direction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, emb = self.model.forward_all(x)
        return class_scores(Target(self.kind, torch.zeros(0, dtype=torch.long), self.direction), logits, emb)


def score_head(model: Classifier, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` with ``class_scores = emb @ W.T + b`` for a GAP + linear model (CAM, LRP)."""
    head = model.head
    if not isinstance(head, torch.nn.Linear):
        raise XaibenchError(f"this explainer needs a linear head on pooled features, got {type(head).__name__}")
    w = head.weight
    b = head.bias if head.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    if target.kind == "logit":
        return w, b
    if target.kind == "margin":
        if w.shape[0] != 2:
            raise XaibenchError("target 'margin' needs a two-class model")
        return w - w.flip(0), b - b.flip(0)
    d = target.direction.to(w.device, w.dtype)
    return torch.stack([d, -d]), torch.zeros(2, device=w.device, dtype=w.dtype)


# --------------------------------------------------------------------------- layers


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


def pick_layer(shapes: Mapping[str, tuple[int, int]], min_size: int = MIN_CAM_SIZE) -> str:
    """The deepest stage whose map is at least ``min_size`` cells on each side; if none is,
    the deepest stage with the finest map."""
    names = list(shapes)
    fine = [n for n in names if min(shapes[n]) >= min_size]
    if fine:
        return fine[-1]
    best = max(shapes[n][0] * shapes[n][1] for n in names)
    return [n for n in names if shapes[n][0] * shapes[n][1] == best][-1]


def resolve_layer(plugin: str, model: Classifier, layer: str | None) -> list[str]:
    """Stages to hook: the named one, or all of them (the default is picked after a forward)."""
    if layer in (None, "auto"):
        return list(model.stage_names)
    if layer not in model.stage_names:
        raise XaibenchError(
            f"explainer {plugin}: option 'layer' is {layer!r}; this model has {', '.join(model.stage_names)} (or 'auto')"
        )
    return [layer]


def upsample(maps: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``N×h×w`` → ``N×H×W`` bilinearly (half-pixel centres, as cv2.resize / skimage)."""
    if tuple(maps.shape[-2:]) == tuple(size):
        return maps
    return F.interpolate(maps[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``N×C×H×W`` with replicated borders (``sigma`` in pixels)."""
    if sigma <= 0:
        return x
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = (g / g.sum()).repeat(x.shape[1], 1, 1, 1)
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), g.view(x.shape[1], 1, 1, -1), groups=x.shape[1])
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), g.view(x.shape[1], 1, -1, 1), groups=x.shape[1])


# --------------------------------------------------------------------------- batching, seeding


def chunks(n: int, size: int) -> Iterator[slice]:
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def image_seed(seed: int, index: int, block: int = 0) -> int:
    """A per-image (and per sample block) seed, so an image's random draws do not depend on
    which other images share its batch."""
    key = f"{seed}:{index}" if block == 0 else f"{seed}:{index}:{block}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch (CPU and ``device`` if CUDA) and numpy's global generators, and restore the
    caller's states on exit (for libraries such as captum that draw from the global state)."""
    devices = [device] if device is not None and device.type == "cuda" else []
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)


class RowBatcher:
    """Collect per-image rows (``K×…`` tensors tagged with their image index) and hand them
    out in batches of exactly ``size`` rows (the last may be smaller), across image
    boundaries, so sampling methods fill every model pass whatever the samples per image."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self._idx: list[torch.Tensor] = []
        self._rows: list[tuple[torch.Tensor, ...]] = []
        self._n = 0

    def add(self, image: int, *rows: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """Add rows of one image; yield every full batch ``(image_index, *rows)``."""
        self._idx.append(torch.full((rows[0].shape[0],), image, dtype=torch.long, device=rows[0].device))
        self._rows.append(rows)
        self._n += rows[0].shape[0]
        while self._n >= self.size:
            yield self._take(self.size)

    def flush(self) -> Iterator[tuple[torch.Tensor, ...]]:
        while self._n > 0:
            yield self._take(min(self._n, self.size))

    def _take(self, k: int) -> tuple[torch.Tensor, ...]:
        idx = torch.cat(self._idx)
        cols = [torch.cat(c) for c in zip(*self._rows)]
        self._idx = [idx[k:]] if idx.shape[0] > k else []
        self._rows = [tuple(c[k:] for c in cols)] if idx.shape[0] > k else []
        self._n -= k
        return (idx[:k], *(c[:k] for c in cols))


def input_gradient(model: Classifier, x: torch.Tensor, target: Target, chunk_size: int) -> torch.Tensor:
    """d target / d x (``N×1×H×W``), chunked; parameters are not differentiated."""
    out = torch.empty_like(x)
    with torch.enable_grad():
        for sl in chunks(x.shape[0], chunk_size):
            xi = x[sl].detach().requires_grad_(True)
            (g,) = torch.autograd.grad(target.subset(sl)(model, xi).sum(), xi)
            out[sl] = g
    return out


# --------------------------------------------------------------------------- IoU ceiling


def iou_ceiling(masks: torch.Tensor, map_shape: tuple[int, int], mode: str = "nearest") -> torch.Tensor:
    """Best IoU with ``masks`` (``N×H×W`` bool) that *any* map of resolution ``map_shape``
    (``h×w`` cells) can reach after upsampling to ``H×W`` and thresholding. One value per image.

    * ``nearest`` — exact: the map is constant on each cell, so a thresholded map is a union
      of cells; the best union takes cells in decreasing order of mask coverage (the optimum
      of this ratio objective is a coverage threshold), so we scan that order.
    * ``bilinear`` — achievable (a lower bound of the exact ceiling, which has no closed form):
      the best threshold of two candidate maps, the cell coverage fractions and the best
      ``nearest`` union, each upsampled bilinearly.

    Either is an upper bound for a layer explainer that binarises at a threshold (e.g. the
    top-q fraction). On the synthetic-hippocampus slices a 7×7 map caps IoU at 0.37 (nearest)
    / 0.55 (bilinear), a 2×2 map at 0.07 (docs/explainers.md).
    """
    if masks.ndim == 2:
        masks = masks[None]
    n, hh, ww = masks.shape
    h, w = map_shape
    cell = F.interpolate(torch.arange(h * w, dtype=torch.float32, device=masks.device).view(1, 1, h, w),
                         size=(hh, ww), mode="nearest")[0, 0].long().view(-1)
    flat = masks.reshape(n, -1).float()
    inter = torch.zeros(n, h * w, device=masks.device).index_add_(1, cell, flat)
    count = torch.bincount(cell, minlength=h * w).float()
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
    rank.scatter_(1, order, torch.arange(h * w, device=masks.device).expand(n, -1))
    chosen = (rank <= best_k[:, None]).float()
    out = torch.zeros(n, device=masks.device)
    for grid in (inter / count, chosen):
        up = upsample(grid.view(n, h, w), (hh, ww)).reshape(n, -1)
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


def describe_ceiling(explainer, model: Classifier, images: torch.Tensor, masks: torch.Tensor) -> list:
    """The ``describe`` hook of layer explainers: the IoU ceiling (bilinear, achievable) that
    the chosen stage's map resolution implies on these masks, stored beside the scores."""
    from xaibench.contracts import Score

    _, shape = explainer.map_layer(model, tuple(images.shape[-2:]))
    ceiling = iou_ceiling(masks.bool(), shape, mode="bilinear")
    vals = torch.where(masks.flatten(1).any(1), ceiling, torch.full_like(ceiling, float("nan")))
    return [Score("iou-ceiling", vals.cpu().numpy(), True, extra={"map_shape": list(shape)})]
