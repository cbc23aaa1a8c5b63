"""``delta-t`` — the drop of the target when the top-q attributed pixels are removed,
minus the drop when a *control* set of pixels is removed (the research notes' ΔT top-q vs
random).

Why: removing *any* pixels lowers T a little (the image leaves the data distribution);
only the excess over a control removal says the map found pixels the model uses. The
control must differ from the top-q set only in where it is: removing a contiguous blob
and removing as many scattered pixels change a CNN's output by different amounts, so a
scattered control favours explainers by the *shape* of their top-q sets (the CAM family's
blobs against the speckle of gradients). The default control is therefore the top-q set
itself, rotated/flipped and moved to a random place inside the brain (``_regions``).

Options:

* ``q`` — fractions removed (default ``[0.01, 0.05, 0.1, 0.2]``), one score ``delta-t@Q`` each;
* ``control`` — ``matched`` (default: the same shape at a random place in the brain) or
  ``scattered`` (q random pixels anywhere, the version-1 control);
* ``draws`` — control sets per image and q (default 8), seeded by the run's seed plus ``seed``;
* ``mask`` — also score removing that named mask (``roi``, ``evidence`` …): ``delta-t-<mask>``
  is its drop minus the drop of the same shape at a random place in the brain (a property
  of the model, the same for every explainer; default off);
* ``control_mask`` — with ``mask``: ``delta-t-<mask>-vs-<control_mask>`` is the drop removing
  ``mask`` minus the drop removing the named control region;
* ``min_confidence`` — score only images the model classifies correctly with at least this
  softmax probability of the true class (others NaN: undefined for them); default all;
* ``filler`` — ``mean`` (default) | ``blur`` | ``road`` | ``black`` (see ``xaibench.kit.perturb``), with
  ``blur_sigma`` and ``road_noise``; ``absolute`` — rank ``|attribution|`` (default false).

Per image the value is ΔT_top − mean ΔT_control with ΔT = T(x) − T(x with pixels removed),
in the units of T. Chance: 0 — a random map's top-q set is one more random set of that
shape (for ``matched``, in expectation over maps whose top-q sets are placed uniformly in
the brain; tested). Cost: N·(1 + |q|·(1+draws)) forwards (+ 1 + draws (+1) with ``mask``).

Slices and volumes: the ``matched`` control moves the set by the right-angle rotations/flips
that keep the image's shape (8 on a square slice, 48 on a cubic volume; ``_regions``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.batching import target_scores
from xaibench.kit.checks import check_maps
from xaibench.kit.options import fractions, option_factory, pct, pct_param, require
from xaibench.kit.perturb import Filler, random_ranks, removal_scores
from xaibench.kit.spatial import flat
from xaibench.kit.stats import nanmean
from xaibench.kit.topk import ranks_desc

from ._regions import brain_masks, random_placements

CONTROLS = ("matched", "scattered")


@dataclass(frozen=True)
class DeltaT:
    q: Any = (0.01, 0.05, 0.1, 0.2)
    draws: int = 8
    filler: str = "mean"
    blur_sigma: float = 3.0
    road_noise: float = 0.01
    absolute: bool = False
    control: str = "matched"
    mask: str | None = None
    control_mask: str | None = None
    min_confidence: float | None = None
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        fractions(self.q, "metric delta-t")
        require(isinstance(self.draws, int) and self.draws >= 1, "metric delta-t", "draws", "an integer >= 1",
                self.draws)
        require(self.control in CONTROLS, "metric delta-t", "control", " | ".join(CONTROLS), self.control)
        require(self.mask is None or isinstance(self.mask, str), "metric delta-t", "mask",
                "a mask name (roi, evidence …)", self.mask)
        require(self.control_mask is None or (isinstance(self.control_mask, str) and self.mask is not None),
                "metric delta-t", "control_mask", "a mask name, together with mask", self.control_mask)
        c = self.min_confidence
        require(c is None or (isinstance(c, (int, float)) and 0 <= c < 1), "metric delta-t", "min_confidence",
                "omitted (every image) or a probability in [0, 1)", c)
        Filler.make("metric delta-t", self.filler, self.blur_sigma, self.road_noise)

    def passes(self, n: int) -> int:
        """Model forwards this metric needs for ``n`` images (for the efficiency benchmark)."""
        extra = 0 if self.mask is None else 1 + self.draws + (self.control_mask is not None)
        return n * (1 + len(fractions(self.q, "metric delta-t")) * (1 + self.draws) + extra)

    def _removals(self, inp: MetricInput, a: torch.Tensor, seed: int) -> torch.Tensor:
        """N×L×*S removal masks: per q the top-q set then ``draws`` controls, then the
        named mask, its ``draws`` same-shape controls and the control mask (if asked)."""
        x = inp.images
        n, spatial = x.shape[0], tuple(x.shape[2:])
        p = math.prod(spatial)
        ranks = ranks_desc(a.abs() if self.absolute else a)
        brain = brain_masks(x, inp.named_masks)
        gen = torch.Generator().manual_seed(seed)
        rand = random_ranks(n, self.draws, p, seed, x.device) if self.control == "scattered" else None
        levels = []
        for q in fractions(self.q, "metric delta-t"):
            k = max(1, int(round(math.prod(spatial, start=q))))  # = round(q·H·W) as before, in that order
            top = (ranks < k).view(n, *spatial)
            ctrl = (rand < k).view(n, self.draws, *spatial) if rand is not None else \
                random_placements(top, brain, self.draws, gen)
            levels += [top.unsqueeze(1), ctrl]
        if self.mask is not None:
            region = inp.mask(self.mask).bool().to(x.device)
            region = region.expand(n, *spatial) if region.dim() == len(spatial) else region
            levels += [region.unsqueeze(1), random_placements(region, brain, self.draws, gen)]
            if self.control_mask is not None:
                levels.append(inp.mask(self.control_mask).bool().to(x.device).expand(n, *spatial).unsqueeze(1))
        return torch.cat(levels, 1)

    def _confident(self, inp: MetricInput) -> np.ndarray:
        """Images the model gets right with at least ``min_confidence`` (all if unset)."""
        n = len(inp.images)
        if self.min_confidence is None:
            return np.ones(n, bool)
        chunk = int(inp.context.chunk_size)
        p = torch.cat([inp.model(inp.images[i:i + chunk]).float().softmax(1) for i in range(0, n, chunk)])
        y = inp.labels.to(p.device).view(-1, 1)
        own = p.gather(1, y).squeeze(1)
        return ((p.argmax(1) == y.view(-1)) & (own >= self.min_confidence)).cpu().numpy()

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        qs = fractions(self.q, "metric delta-t")
        filler = Filler.make("metric delta-t", self.filler, self.blur_sigma, self.road_noise)
        x = inp.images
        a = flat(check_maps(inp.attributions, x, "metric delta-t").to(x.device))
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        rm = self._removals(inp, a, seed)
        chunk = int(inp.context.chunk_size)
        t0 = target_scores(inp.model, inp.target, x, chunk)
        t = removal_scores(inp.model, inp.target, x, lambda i, lev: rm[i, lev], rm.shape[1], filler, chunk, seed + 1)
        drop = (t0.view(-1, 1) - t).double().cpu().numpy()
        drop[~self._confident(inp)] = np.nan
        per_q = 1 + self.draws
        base = {"filler": self.filler, "draws": self.draws, "control": self.control,
                "n_scored": int(np.isfinite(drop[:, 0]).sum())}
        out = []
        for j, q in enumerate(qs):
            top, rnd = drop[:, j * per_q], drop[:, j * per_q + 1:(j + 1) * per_q].mean(1)
            out.append(Score(f"delta-t@{pct(q)}", top - rnd, True, chance=0.0, param=pct_param(q),
                             extra={"delta_top": float(nanmean(top)), "delta_random": float(nanmean(rnd)),
                                    **base}))
        if self.mask is not None:
            k = len(qs) * per_q
            region, rnd = drop[:, k], drop[:, k + 1:k + per_q].mean(1)
            out.append(Score(f"delta-t-{self.mask}", region - rnd, True, chance=0.0,
                             extra={"delta_mask": float(nanmean(region)), "delta_random": float(nanmean(rnd)),
                                    **base}))
            if self.control_mask is not None:
                out.append(Score(f"delta-t-{self.mask}-vs-{self.control_mask}", region - drop[:, k + per_q], True,
                                 chance=None, extra={"delta_control": float(nanmean(drop[:, k + per_q])), **base}))
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("delta-t", "target drop removing the top-q attributed pixels minus removing the same shape "
                       "at a random place in the brain", option_factory("metric delta-t", DeltaT), version="2",
                       family="faithfulness", spatial_dims=(2, 3))
