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

from ._common import check, check_mask_name, check_maps, factory, flat, mask_suffix, mean_chance, metric_mask, nan_empty

MODES = ("positive", "absolute", "signed")


def mass_share(a: torch.Tensor, m: torch.Tensor, mode: str) -> torch.Tensor:
    """Share of the map's mass inside the mask, N (NaN where the map has no mass)."""
    a = a.clamp_min(0) if mode == "positive" else a.abs() if mode == "absolute" else a
    a = a.double()
    total = a.sum(1)
    inside = (a * m).sum(1)
    return torch.where(total != 0, inside / torch.where(total != 0, total, 1.0), torch.nan)


@dataclass(frozen=True)
class EnergyInROI:
    mode: str = "positive"
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        check(self.mode in MODES, "energy-in-roi", "mode", " | ".join(MODES), self.mode)
        check_mask_name("energy-in-roi", self.mask)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps("energy-in-roi", inp.attributions, inp.images))
        m = flat(metric_mask(inp, self.mask, "energy-in-roi", a.shape[0]).to(a.device))
        area = m.sum(1)
        vals = nan_empty(mass_share(a, m, self.mode), area)
        chance = nan_empty(area.double() / m.shape[1], area)
        return [Score(mask_suffix("energy-in-roi", self.mask), vals, True, chance=mean_chance(chance),
                      extra={"mode": self.mode})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("energy-in-roi", "share of (positive) attribution mass inside the mask",
                       factory("energy-in-roi", EnergyInROI), family="localisation")
