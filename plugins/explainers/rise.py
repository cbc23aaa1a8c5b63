"""RISE (Petsiuk et al., 2018): randomized input sampling for explanation.

``S(u) = 1/(M·p) Σ_m (score(x ⊙ M_m) − s̄) · M_m(u)``: ``masks`` random masks, each a
``grid``×``grid`` Bernoulli(``p``) grid upsampled bilinearly to ``(grid+1)·cell`` and cropped
at a random shift (the paper's smooth masks; on volumes a ``grid``³ grid, trilinear, shifted
along every axis); masked-out pixels become ``baseline`` (0 = black). Subtracting the mean
masked score ``s̄`` (``center``, default true) changes the map only by a constant but removes
the noise a large score offset would add. Larger = keeping the pixel raises the score =
evidence for the target; signed when centred. One channel.

Written by hand because captum has no RISE: masks are drawn once per call from a
``torch.Generator`` seeded with ``context.seed`` (the same masks for every image, as in the
paper) and (image, mask) pairs are pushed through the model in passes of ``chunk_size``
images, so results do not depend on ``chunk_size``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require

_MODES = {2: "bilinear", 3: "trilinear"}


def rise_masks(n: int, size: tuple[int, ...], grid: int, p: float, seed: int) -> torch.Tensor:
    """``n×*S`` float masks in [0, 1] (CPU), reproducible for ``seed``; ``S`` is H×W or D×H×W
    (a ``grid`` cells per axis, upsampled bi/trilinearly, shifted along every axis)."""
    g = torch.Generator().manual_seed(int(seed))
    nd = len(size)
    cell = [math.ceil(s / grid) for s in size]
    cells = (torch.rand(n, 1, *[grid] * nd, generator=g) < p).float()
    up = F.interpolate(cells, size=tuple((grid + 1) * c for c in cell), mode=_MODES[nd], align_corners=False)
    shifts = [torch.randint(0, c, (n,), generator=g) for c in cell]
    idx = torch.zeros((n, 1, *[1] * nd), dtype=torch.long)
    for axis, (s, d) in enumerate(zip(size, shifts)):  # row-major index into the upsampled grid
        view = [n, 1] + [s if k == axis else 1 for k in range(nd)]
        idx = idx * up.shape[2 + axis] + (d[:, None] + torch.arange(s)[None]).view(view)
    idx = idx.expand(n, 1, *size)
    return up.flatten(2).gather(2, idx.flatten(2)).view(n, *size)


@dataclass(frozen=True)
class Rise:
    """RISE; ``masks`` (count), ``grid`` (cells per side), ``p`` (keep probability)."""

    masks: int = 1000
    grid: int = 8
    p: float = 0.5
    baseline: float = 0.0
    center: bool = True

    def __post_init__(self) -> None:
        require(isinstance(self.masks, int) and self.masks >= 1, "explainer rise", "masks", "an integer ≥ 1")
        require(isinstance(self.grid, int) and self.grid >= 1, "explainer rise", "grid", "an integer ≥ 1")
        require(isinstance(self.p, (int, float)) and 0 < self.p < 1, "explainer rise", "p", "a number in (0, 1)")
        require(isinstance(self.baseline, (int, float)), "explainer rise", "baseline", "a number")
        require(isinstance(self.center, bool), "explainer rise", "center", "true or false")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer rise")
        n, hw = x.shape[0], tuple(x.shape[2:])
        masks = rise_masks(self.masks, hw, self.grid, float(self.p), context.seed).to(x.device, x.dtype)
        scores = torch.empty(n, self.masks, device=x.device)
        pairs = n * self.masks
        with torch.no_grad():
            for sl in chunks(pairs, context.chunk_size):
                idx = torch.arange(sl.start, sl.stop, device=x.device)
                img, msk = idx // self.masks, idx % self.masks
                m = masks[msk][:, None]
                xm = x[img] * m + float(self.baseline) * (1 - m)
                scores.view(-1)[sl] = target.subset(img.to(target.classes.device))(model, xm).float()
            if self.center:
                scores = scores - scores.mean(dim=1, keepdim=True)
            sal = (scores @ masks.flatten(1).float()).view(n, *hw)
        return (sal / (self.masks * float(self.p))).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("rise", "RISE: random smooth masks, batched", option_factory("explainer rise", Rise),
                          spatial_dims=(2, 3), conformance={"masks": 32})
