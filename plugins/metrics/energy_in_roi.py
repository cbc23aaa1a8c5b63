"""``energy-in-roi`` — the share of attribution mass that falls inside the mask.

Why: the research notes' "% attribution inside the hippocampus", read as a fraction of
the map's evidence; it does not binarise, so it also sees how *much* of the map is
elsewhere. Quantus calls it RelevanceMassAccuracy (signed) and AttributionLocalisation
(absolute or positive values); the ``mode`` option reproduces each.

Options:

* ``mode`` — ``positive`` (default: negative attribution is evidence *against* the target
  and is dropped), ``absolute`` (|a|: Quantus' AttributionLocalisation default) or
  ``signed`` (raw values: Quantus' RelevanceMassAccuracy default).

An image whose map has no mass (all zero, or no positive value in ``positive`` mode) or
whose mask is empty scores NaN. Chance: for any map whose pixel values are exchangeable
(a uniformly random map), the expected share is exactly the mask's area fraction.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.regions import MODES, check_mask_name, mask_suffix, mass_share, named_mask
from xaibench.kit.spatial import flat
from xaibench.kit.stats import mean_chance, nan_empty


@dataclass(frozen=True)
class EnergyInROI:
    mode: str = "positive"
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(self.mode in MODES, "metric energy-in-roi", "mode", " | ".join(MODES), self.mode)
        check_mask_name("metric energy-in-roi", self.mask)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric energy-in-roi"))
        m = flat(named_mask(inp, self.mask, "metric energy-in-roi", a.shape[0]).to(a.device))
        area = m.sum(1)
        vals = nan_empty(mass_share(a.double(), m, self.mode), area)
        chance = nan_empty(area.double() / m.shape[1], area)
        return [Score(mask_suffix("energy-in-roi", self.mask), vals, True, chance=mean_chance(chance),
                      extra={"mode": self.mode})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("energy-in-roi", "share of (positive) attribution mass inside the mask",
                       option_factory("metric energy-in-roi", EnergyInROI), family="localisation", spatial_dims=(2, 3))
