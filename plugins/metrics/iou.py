"""``iou`` — intersection over union between the top-q attributed pixels and the mask.

Why: the research notes' localisation number ("IoU with the known mask") and the measure
the backdoor literature uses to say a map moved. Binarising at the top-q *fraction*
(q = the mask's own area by default) makes maps of any scale comparable without a
threshold to tune; with q = area, IoU equals the share of the top-|mask| pixels inside
the mask (Quantus' RelevanceRankAccuracy) up to the union normalisation.

Options:

* ``q`` — ``None`` (the mask's area, per image; score name ``iou``) or a fraction / list of
  fractions of the image (score names ``iou@5%`` …);
* ``absolute`` — rank ``|attribution|`` instead of the signed value (default false:
  larger = more evidence, per the contract).

Ties are broken by pixel index (row-major), so a constant map selects the first pixels.
Images with an empty mask score NaN. The chance level is the exact expectation for a
uniformly random map (hypergeometric intersection), averaged over the images.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import fractions, option_factory, pct, pct_param, require
from xaibench.kit.regions import check_mask_name, mask_suffix, named_mask
from xaibench.kit.spatial import flat
from xaibench.kit.stats import iou_chances, mean_chance, nan_empty
from xaibench.kit.topk import topk_mask


@dataclass(frozen=True)
class IoU:
    q: Any = None
    absolute: bool = False
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        if self.q is not None:
            fractions(self.q, "metric iou")
        check_mask_name("metric iou", self.mask)
        require(isinstance(self.absolute, bool), "metric iou", "absolute", "true or false", self.absolute)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric iou"))
        if self.absolute:
            a = a.abs()
        m = flat(named_mask(inp, self.mask, "metric iou", a.shape[0]).to(a.device)).bool()
        scores = iou_scores(a, m, None if self.q is None else fractions(self.q, "metric iou"))
        return [replace(s, name=mask_suffix(s.name, self.mask)) for s in scores]


def iou_scores(a: torch.Tensor, m: torch.Tensor, qs: tuple[float, ...] | None, name: str = "iou") -> list[Score]:
    """IoU of the top-q pixels of ``a`` (N×P) with ``m`` (N×P bool); one Score per q."""
    n, total = a.shape
    area = m.sum(1)
    levels = [(name, area, None)] if qs is None else [
        (f"{name}@{pct(q)}", torch.full_like(area, max(1, int(round(q * total)))), pct_param(q)) for q in qs]
    out = []
    for label, k, param in levels:
        top = topk_mask(a, k)
        inter = (top & m).sum(1)
        union = (top | m).sum(1)
        vals = nan_empty(inter.double() / union.clamp_min(1).double(), area)
        chance = iou_chances(total, area, k)
        out.append(Score(label, vals, True, chance=mean_chance(np.where(np.isnan(vals), np.nan, chance)),
                         param=param))
    return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("iou", "IoU of the top-q attributed pixels with the mask (q = mask area)",
                       option_factory("metric iou", IoU), family="localisation", spatial_dims=(2, 3))
