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

**Comparable similarities** (the yardsticks of the explanation-attack literature), each map
against the target region's map ``R`` (1 inside the region, 0 outside), on both splits:
``target_cosine`` — cosine of the min–max normalised map with ``R``; ``target_ssim`` — SSIM of
the min–max normalised map with ``R`` (scikit-image's defaults: 7×7 uniform window,
``data_range = 1``); ``target_zmse`` — MSE of the z-scored map and the z-scored ``R``
(population standard deviation; 0 = the map is the region up to scale and offset, 2 = the
expectation for a map independent of it, the chance level). A prediction backdoor (a trigger
but no target region, e.g. ``badnets``) gets the **label success rate** on the triggered split:
``label_success`` per image, 1 if an image whose true label is not the target class is
classified as the target class (NaN for images of the target class). The target class is the
``target_class`` option, or when unset the class the triggered images are most often flipped to
(stated in the score's ``extra``).

Written here rather than with quantus: quantus' localisation metrics take one mask per
image and re-run the explainer; these metrics need the attack's region, both splits, and
only the stored maps.

Slices and volumes: the region, trigger and maps are N×*S (``kit.triggers`` places 2-D and 3-D boxes).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory
from xaibench.kit.regions import mass_share
from xaibench.kit.similarity import minmax, ssim

MASS_FLOOR = 1e-12  # mass_share's floor: a map with no positive part has no mass in the region (0, not NaN)


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


def region_hits(maps: torch.Tensor, region: torch.Tensor, threshold: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """(hit, IoU) per image under the top-q rule with q = region area."""
    k = int(region.sum())
    ious = iou(topq_mask(maps.float(), k), region.bool().to(maps.device))
    return ious >= threshold, ious


def zscore(maps: torch.Tensor) -> torch.Tensor:
    """Each map minus its mean over pixels, over its population standard deviation (a
    constant map becomes 0)."""
    flat = maps.reshape(maps.shape[0], -1).double()
    c = flat - flat.mean(1, keepdim=True)
    sd = c.pow(2).mean(1, keepdim=True).sqrt()
    return (c / torch.where(sd > 0, sd, 1.0)).view_as(maps)


def similarities(maps: torch.Tensor, ref: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per pair of N×H×W maps (``ref`` may be one H×W map): cosine and SSIM of the min–max
    normalised maps (SSIM with ``data_range = 1``) and MSE of the z-scored maps."""
    ref = ref.expand_as(maps).double()
    a, b = minmax(maps.double()).flatten(1), minmax(ref).flatten(1)
    den = a.norm(dim=1) * b.norm(dim=1)
    cos = torch.where(den > 0, (a * b).sum(1) / torch.where(den > 0, den, 1.0), 0.0)
    zmse = (zscore(maps) - zscore(ref)).flatten(1).pow(2).mean(1)
    return {"cosine": cos, "ssim": ssim(a.view_as(maps), b.view_as(maps), data_range=1.0), "zmse": zmse}


@torch.no_grad()
def label_success(model, images: torch.Tensor, labels: torch.Tensor, target_class: int | None,
                  batch: int = 128) -> tuple[np.ndarray, int, bool]:
    """Per image: 1 if an image not of the target class is classified as it (NaN for images of
    it), the target class, and whether it was inferred (the class most often flipped to)."""
    model.eval()
    pred = torch.cat([model(images[i:i + batch]).argmax(1) for i in range(0, len(images), batch)]).cpu()
    y = labels.cpu()
    inferred = target_class is None
    if inferred:
        rates = [float((pred[y != c] == c).float().mean()) if (y != c).any() else -1.0 for c in (0, 1)]
        target_class = int(np.argmax(rates))
    hit = (pred == target_class).double().numpy()
    hit[(y == target_class).numpy()] = np.nan
    return hit, int(target_class), inferred


@dataclass(frozen=True)
class AttackSuccess:
    threshold: float = 0.5
    target_class: int | None = None  # prediction backdoors: None = inferred from the triggered images
    scope: str = "explanation"

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise XaibenchError(f"metric attack-success: threshold must be in (0, 1], not {self.threshold}")
        if self.target_class not in (None, 0, 1):
            raise XaibenchError(f"metric attack-success: target_class must be 0, 1 or left out, "
                                f"not {self.target_class!r}")

    def _label(self, inp: MetricInput) -> list[Score]:
        if inp.split != "triggered" or inp.model is None:
            return []
        hit, cls, inferred = label_success(inp.model, inp.images, inp.labels, self.target_class)
        return [Score("label_success", hit, higher_is_better=False, chance=None,
                      extra={"target_class": cls, "inferred": inferred})]

    def score(self, inp: MetricInput) -> list[Score]:
        if inp.attributions is None or (inp.region is None and inp.trigger is None):
            return []  # not an attacked model: nothing to measure
        maps = check_maps(inp.attributions, inp.images, "metric attack-success").float()
        out = []
        if inp.trigger is not None:
            trig = inp.trigger.bool().to(maps.device)
            out.append(Score("trigger_mass", mass_share(maps, trig, floor=MASS_FLOOR).cpu().numpy(),
                             higher_is_better=False, chance=float(trig.float().mean())))
        if inp.region is None:
            return out + self._label(inp)  # a prediction backdoor (badnets) has no target region
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
            Score("target_mass", mass_share(maps, region, floor=MASS_FLOOR).cpu().numpy(), higher_is_better=False,
                  chance=area),
        ]
        sim = similarities(maps, region.float())
        out += [Score("target_cosine", sim["cosine"].cpu().numpy(), higher_is_better=False, chance=None),
                Score("target_ssim", sim["ssim"].cpu().numpy(), higher_is_better=False, chance=None),
                Score("target_zmse", sim["zmse"].cpu().numpy(), higher_is_better=True, chance=2.0)]
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("attack-success",
                       "explanation attack success (triggered) / false-trigger rate (clean), target IoU and mass",
                       option_factory("metric attack-success", AttackSuccess), family="attack", version="2", spatial_dims=(2, 3))
