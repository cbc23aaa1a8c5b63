"""``auprc`` — pixel-level area under the precision–recall curve, the mask as labels.

Why: Arun et al. (2021) score saliency localisation in radiology this way; unlike IoU it
needs no threshold and, unlike ROC AUC, it is not flattered by the large background of a
small ROI. Computed as average precision (the step-wise sum scikit-learn uses, ties
grouped), for the whole batch in one sort: no per-image loop.

Options: ``absolute`` — score ``|attribution|`` (default false).

Empty masks score NaN. Chance: the exact expectation of average precision for a uniformly
random ranking of P pixels with m positives is a + (1 − a)·H_P / P with a = (m−1)/(P−1)
and H_P the P-th harmonic number (slightly above the prevalence m/P).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.regions import check_mask_name, mask_suffix, named_mask
from xaibench.kit.spatial import flat
from xaibench.kit.stats import mean_chance, nan_empty


def average_precision(a: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Average precision of scores ``a`` (N×P) for labels ``m`` (N×P bool), ties grouped."""
    s, order = torch.sort(a, dim=1, descending=True, stable=True)
    lab = m.gather(1, order).double()
    tp = lab.cumsum(1)
    pos = torch.arange(1, a.shape[1] + 1, device=a.device, dtype=torch.float64)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:, :-1] = s[:, 1:] != s[:, :-1]  # the end of each group of tied scores
    ends = torch.where(last, tp, torch.zeros_like(tp))
    prev = torch.cat([torch.zeros_like(tp[:, :1]), ends[:, :-1]], 1).cummax(1).values
    contrib = torch.where(last, (tp - prev) * tp / pos, torch.zeros_like(tp))
    return contrib.sum(1) / tp[:, -1].clamp_min(1)


def ap_chance(total: int, area: np.ndarray) -> np.ndarray:
    """E[average precision] of a random ranking (see the module docstring)."""
    h = float(np.sum(1.0 / np.arange(1, total + 1)))
    a = (area - 1) / max(1, total - 1)
    out = a + (1 - a) * h / total
    return np.where(area > 0, out, np.nan)


@dataclass(frozen=True)
class AUPRC:
    absolute: bool = False
    mask: str = "roi"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(isinstance(self.absolute, bool), "metric auprc", "absolute", "true or false", self.absolute)
        check_mask_name("metric auprc", self.mask)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric auprc"))
        if self.absolute:
            a = a.abs()
        m = flat(named_mask(inp, self.mask, "metric auprc", a.shape[0]).to(a.device)).bool()
        area = m.sum(1)
        vals = nan_empty(average_precision(a, m), area)
        chance = ap_chance(m.shape[1], area.cpu().numpy().astype(float))
        return [Score(mask_suffix("auprc", self.mask), vals, True,
                      chance=mean_chance(np.where(np.isnan(vals), np.nan, chance)))]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("auprc", "pixel-level area under the precision-recall curve against the mask",
                       option_factory("metric auprc", AUPRC), family="localisation", spatial_dims=(2, 3))
