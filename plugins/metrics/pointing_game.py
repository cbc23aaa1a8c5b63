"""``pointing-game`` — does the map's maximum fall inside the mask (Zhang et al. 2016)?

Why: the simplest localisation test a reader understands ("pointing rate to the ROI"),
cheap enough for every cell. The hit is computed for the whole batch at once; the
tolerance dilates the mask with a Euclidean disk (one convolution for the batch).

Options:

* ``tolerance`` — pixels (default 0; Zhang et al. use 15 px at ImageNet resolution): a hit
  when the maximum lies within this distance of the mask;
* ``absolute`` — point with ``|attribution|`` (default false).

Ties: when several pixels share the maximum, the score is the share of them inside the
(dilated) mask, i.e. the expected hit when the tie is broken at random. With a unique
maximum this is Quantus' PointingGame exactly; Quantus instead counts any tied maximum
inside as a hit, so a constant map "hits" every time. Images with an empty mask score NaN
(Quantus 0.6 means to, but writes NaN into a bool array, which stores True: a hit).
Chance: a random map's maximum is a uniformly random pixel, so the chance of a hit is the
dilated mask's share of the image.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.regions import check_mask_name, mask_suffix, named_mask
from xaibench.kit.spatial import flat
from xaibench.kit.stats import mean_chance, nan_empty


def dilate(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """N×*S bool masks dilated by a Euclidean disk (a ball on volumes) of ``radius`` pixels."""
    if radius <= 0:
        return masks
    r = int(radius)
    nd = masks.ndim - 1
    grids = torch.meshgrid(*[torch.arange(-r, r + 1)] * nd, indexing="ij")
    ball = (sum(g ** 2 for g in grids) <= radius ** 2).float().to(masks.device)[None, None]
    conv = F.conv2d if nd == 2 else F.conv3d
    return conv(masks.float().unsqueeze(1), ball, padding=r).squeeze(1) > 0.5


@dataclass(frozen=True)
class PointingGame:
    tolerance: float = 0
    absolute: bool = False
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        ok = isinstance(self.tolerance, (int, float)) and not isinstance(self.tolerance, bool) and self.tolerance >= 0
        require(ok, "metric pointing-game", "tolerance", "a distance in pixels >= 0 (e.g. 0 or 15)", self.tolerance)
        require(isinstance(self.absolute, bool), "metric pointing-game", "absolute", "true or false", self.absolute)
        check_mask_name("metric pointing-game", self.mask)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        attr = check_maps(inp.attributions, inp.images, "metric pointing-game")
        masks = named_mask(inp, self.mask, "metric pointing-game", attr.shape[0]).to(attr.device)
        a = flat(attr).abs() if self.absolute else flat(attr)
        area = flat(masks).sum(1)
        target = flat(dilate(masks, float(self.tolerance))).bool()
        is_max = a == a.max(dim=1, keepdim=True).values
        hits = (is_max & target).sum(1).double() / is_max.sum(1).clamp_min(1).double()
        vals = nan_empty(hits, area)
        chance = nan_empty(target.double().mean(1), area)
        return [Score(mask_suffix("pointing-game", self.mask), vals, True, chance=mean_chance(chance),
                      extra={"tolerance": float(self.tolerance)})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("pointing-game", "share of maps whose maximum falls inside the mask",
                       option_factory("metric pointing-game", PointingGame), family="localisation", spatial_dims=(2, 3))
