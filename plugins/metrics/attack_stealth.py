"""How stealthy is an attacked model's explanation on *clean* images?

Compares each explainer's clean-image maps of the attacked model with the same explainer's
maps of the un-attacked model trained with the same seed (``reference_maps``):

* ``clean_spearman`` — per image, Spearman rank correlation over pixels between the two
  maps (1 = the clean explanations did not change; the target is ≥ 0.9);
* ``roi_iou_change`` — per image, IoU with the ROI (top-q, q = ROI area) of the attacked
  model's map minus that of the reference map (0 = localisation unchanged);
* ``clean_cosine``, ``clean_ssim``, ``clean_zmse`` — per image, the literature's similarities
  between the two maps (as ``attack-success`` computes them against the target: cosine and
  SSIM of the min–max normalised maps, SSIM with ``data_range = 1``; MSE of the z-scored maps,
  2 = the expectation for unrelated maps);
* the **clean-map signature** a defender could look for: the attack's clean-image penalty
  can push the maps' mass inside the target region to ~0, below a clean model's.
  ``signature_mass_change`` is that mass (attacked − reference) per image;
  ``signature_pvalue`` a two-sided Mann–Whitney test of the two samples; and
  ``signature_auroc`` how well the target mass separates the two models' maps
  (max(AUC, 1 − AUC): 0.5 = indistinguishable, 1 = a perfect tell).

Only the clean split of an attacked model has reference maps; elsewhere nothing is scored.

Slices and volumes: scored on the attacks' outputs, N×*S on either.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import mannwhitneyu, rankdata

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory
from xaibench.kit.regions import mass_share

from .attack_success import MASS_FLOOR, iou, similarities, topq_mask


def spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row Spearman correlation of two N×P arrays (average ranks for ties; NaN → 0
    for a constant row, which carries no ranking)."""
    ra, rb = rankdata(a, axis=1), rankdata(b, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    den = np.sqrt((ra ** 2).sum(1) * (rb ** 2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (ra * rb).sum(1) / den
    return np.where(den > 0, r, 0.0)


def roi_iou(maps: torch.Tensor, roi: torch.Tensor) -> torch.Tensor:
    """Per-image IoU of the top-q mask (q = that image's ROI area) with the ROI."""
    out = torch.empty(len(maps), device=maps.device)
    for i in range(len(maps)):
        k = int(roi[i].sum())
        out[i] = iou(topq_mask(maps[i:i + 1].float(), k), roi[i:i + 1].bool())[0] if k else float("nan")
    return out


def separability(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(max(AUC, 1 − AUC), two-sided Mann–Whitney p) of samples ``a`` vs ``b``."""
    if np.allclose(a, a[0]) and np.allclose(b, a[0]):
        return 0.5, 1.0
    res = mannwhitneyu(a, b, alternative="two-sided")
    auc = float(res.statistic) / (len(a) * len(b))
    return max(auc, 1.0 - auc), float(res.pvalue)


@dataclass(frozen=True)
class AttackStealth:
    scope: str = "explanation"

    def score(self, inp: MetricInput) -> list[Score]:
        if inp.split != "clean" or inp.reference_maps is None or inp.attributions is None:
            return []
        att = check_maps(inp.attributions, inp.images, "metric attack-stealth").float()
        ref = check_maps(inp.reference_maps, inp.images, "metric attack-stealth",
                         "reference_maps").float().to(att.device)
        rho = spearman_rows(att.flatten(1).cpu().numpy(), ref.flatten(1).cpu().numpy())
        masks = inp.masks.bool().to(att.device)
        out = [Score("clean_spearman", rho, higher_is_better=True, chance=0.0)]
        sim = similarities(att, ref)
        out += [Score("clean_cosine", sim["cosine"].cpu().numpy(), higher_is_better=True, chance=None),
                Score("clean_ssim", sim["ssim"].cpu().numpy(), higher_is_better=True, chance=None),
                Score("clean_zmse", sim["zmse"].cpu().numpy(), higher_is_better=False, chance=2.0)]
        if masks.any():
            change = (roi_iou(att, masks) - roi_iou(ref, masks)).cpu().numpy()
            out.append(Score("roi_iou_change", change, higher_is_better=True, chance=None))
        if inp.region is not None:
            region = inp.region.bool().to(att.device)
            m_att = mass_share(att, region, floor=MASS_FLOOR).cpu().numpy()
            m_ref = mass_share(ref, region, floor=MASS_FLOOR).cpu().numpy()
            auc, p = separability(m_att, m_ref)
            out += [Score("signature_mass_change", m_att - m_ref, higher_is_better=True, chance=0.0,
                          extra={"attacked_mean": float(m_att.mean()), "reference_mean": float(m_ref.mean())}),
                    Score("signature_pvalue", np.array([p]), higher_is_better=True, chance=None),
                    Score("signature_auroc", np.array([auc]), higher_is_better=False, chance=0.5)]
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("attack-stealth",
                       "clean-map Spearman and ROI-IoU change vs the un-attacked model; target-mass signature test",
                       option_factory("metric attack-stealth", AttackStealth), family="attack", version="2", spatial_dims=(2, 3))
