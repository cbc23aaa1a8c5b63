"""``rank-accuracy`` — the share of the top-|mask| attributed pixels that lie in the mask.

Why: a threshold-free localisation score that only uses the map's ranking (Arras et al.
2022's relevance rank accuracy; Quantus' RelevanceRankAccuracy). With ``k`` set to a
pixel count it is Quantus' TopKIntersection (share of the top-k pixels in the mask).

Options:

* ``k`` — ``None`` (the mask's area, per image; score ``rank-accuracy``) or a number of
  pixels (score ``top-k@K``);
* ``absolute`` — rank ``|attribution|`` (default false).

Ties are broken by pixel index. Empty masks score NaN. Chance: a uniformly random map's
top-k set is a random k-subset, so the expected share in the mask is the mask's area
fraction (hypergeometric mean), whatever k.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.regions import check_mask_name, mask_suffix, named_mask
from xaibench.kit.spatial import flat
from xaibench.kit.stats import mean_chance, nan_empty
from xaibench.kit.topk import topk_mask


@dataclass(frozen=True)
class RankAccuracy:
    k: int | None = None
    absolute: bool = False
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        ok = self.k is None or (isinstance(self.k, int) and not isinstance(self.k, bool) and self.k > 0)
        require(ok, "metric rank-accuracy", "k", "omitted (the mask's area) or a number of pixels > 0", self.k)
        require(isinstance(self.absolute, bool), "metric rank-accuracy", "absolute", "true or false", self.absolute)
        check_mask_name("metric rank-accuracy", self.mask)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric rank-accuracy"))
        if self.absolute:
            a = a.abs()
        m = flat(named_mask(inp, self.mask, "metric rank-accuracy", a.shape[0]).to(a.device)).bool()
        area = m.sum(1)
        k = area if self.k is None else torch.full_like(area, min(self.k, m.shape[1]))
        inside = (topk_mask(a, k) & m).sum(1)
        vals = nan_empty(inside.double() / k.clamp_min(1).double(), area)
        chance = nan_empty(area.double() / m.shape[1], area)
        name = "rank-accuracy" if self.k is None else f"top-k@{self.k}"
        return [Score(mask_suffix(name, self.mask), vals, True, chance=mean_chance(chance))]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("rank-accuracy", "share of the top-|mask| attributed pixels inside the mask",
                       option_factory("metric rank-accuracy", RankAccuracy), family="localisation", spatial_dims=(2, 3))
