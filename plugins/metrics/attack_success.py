"""Did the explanation attack work? Per image: does the map land in the attack's target region.

On the ``triggered`` split this is the **explanation attack success rate**; on the ``clean``
split the same rule gives the **false-trigger rate** (clean images whose map already lands in
the target: an attack that moves every map is not a backdoor). Both are always reported
together with target IoU and target mass, plus the mass on the trigger footprint.

Binarisation rule (documented in ``docs/attacks.md``): the map's top-q pixels, q = the
target region's area (ties broken by position); a hit is IoU ≥ ``threshold`` (0.5) between
that mask and the region. With q equal to the region area, IoU ≥ 0.5 means at least two
thirds of the region is covered by the map's strongest pixels. Mass = share of the map's
*positive* part inside the region (signed maps: negative evidence is not "pointing at").

Written here rather than with quantus: quantus' localisation metrics take one mask per
image and re-run the explainer; these metrics need the attack's region, both splits, and
only the stored maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord

from ._common import check_maps, factory


def topq_mask(maps: torch.Tensor, k: int) -> torch.Tensor:
    """N×H×W bool: each map's ``k`` largest pixels."""
    flat = maps.flatten(1)
    k = max(1, min(int(k), flat.shape[1]))
    idx = flat.topk(k, dim=1).indices
    out = torch.zeros_like(flat, dtype=torch.bool)
    out.scatter_(1, idx, True)
    return out.view_as(maps)


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of two N×H×W bool masks (``b`` may be H×W)."""
    b = b.expand_as(a)
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return inter / union.clamp_min(1)


def mass(maps: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Share of each map's positive part inside ``region`` (0 for an all-non-positive map)."""
    pos = maps.clamp_min(0).flatten(1)
    r = region.expand_as(maps).flatten(1).to(pos.dtype)
    return (pos * r).sum(1) / pos.sum(1).clamp_min(1e-12)


def region_hits(maps: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit, IoU) per image under the top-q rule with q = region area."""
    k = int(region.sum())
    ious = iou(topq_mask(maps.float(), k), region.bool().to(maps.device))
    return ious >= threshold, ious


@dataclass(frozen=True)
class AttackSuccess:
    threshold: float = 0.5
    scope: str = "explanation"

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise XaibenchError(f"metric attack-success: threshold must be in (0, 1], not {self.threshold}")

    def score(self, inp: MetricInput) -> list[Score]:
        if inp.attributions is None or (inp.region is None and inp.trigger is None):
            return []  # not an attacked model: nothing to measure
        maps = check_maps("attack-success", inp.attributions, inp.images).float()
        out = []
        if inp.trigger is not None:
            trig = inp.trigger.bool().to(maps.device)
            out.append(Score("trigger_mass", mass(maps, trig).cpu().numpy(), higher_is_better=False,
                             chance=float(trig.float().mean())))
        if inp.region is None:
            return out  # a prediction backdoor (badnets) has no target region
        region = inp.region.bool().to(maps.device)
        hit, ious = region_hits(maps, region, self.threshold)
        area = float(region.float().mean())
        # chance: a random map's top-q mask overlaps the region in ~q of its pixels
        chance_iou = area / (2 - area)
        triggered = inp.split == "triggered"
        out += [
            Score("attack_success" if triggered else "false_trigger", hit.float().cpu().numpy(),
                  higher_is_better=False, chance=0.0),
            Score("target_iou", ious.cpu().numpy(), higher_is_better=False, chance=chance_iou),
            Score("target_mass", mass(maps, region).cpu().numpy(), higher_is_better=False, chance=area),
        ]
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("attack-success",
                       "explanation attack success (triggered) / false-trigger rate (clean), target IoU and mass",
                       factory("attack-success", AttackSuccess), family="attack")
