"""``seed-stability`` — do models trained with different seeds get the same maps?

Why: if retraining with another seed moves the map, a map reflects the run, not the
data. Every seed pair is compared for all images at once.

Options: ``q`` — top fraction for IoU (default 0.1); ``absolute`` (default false).

Scores per image, mean over seed pairs: ``seed-stability-spearman`` (chance 0),
``seed-stability-ssim`` (maps min-max scaled) and ``seed-stability-iou@Q`` (chance: two
independent random top-q sets). Needs at least two seeds (the runner only calls it then).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import fractions, option_factory, pct, pct_param, require
from xaibench.kit.similarity import minmax, spearman, ssim, topq_iou
from xaibench.kit.stats import iou_chance, nanmean, pairs


@dataclass(frozen=True)
class SeedStability:
    q: float = 0.1
    absolute: bool = False
    scope: str = "seeds"

    def __post_init__(self) -> None:
        require(not isinstance(self.q, (list, tuple)), "metric seed-stability", "q", "one fraction in (0, 1]", self.q)
        fractions(self.q, "metric seed-stability")

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        given = inp.seed_maps or {}
        maps = {s: check_maps(m, inp.images, "metric seed-stability", f"seed_maps[{s}]") for s, m in given.items()}
        maps = {s: (m.abs() if self.absolute else m).float() for s, m in maps.items()}
        seeds = sorted(maps)
        if len(seeds) < 2:
            return []
        rho, ss, iou = [], [], []
        for s, t in pairs(seeds):
            a, b = maps[s], maps[t].to(maps[s].device)
            rho.append(spearman(a, b).cpu().numpy())
            ss.append(ssim(minmax(a), minmax(b)).cpu().numpy())
            iou.append(topq_iou(a, b, self.q).cpu().numpy())
        p = int(np.prod(maps[seeds[0]].shape[1:]))
        k = max(1, int(round(self.q * p)))
        return [Score("seed-stability-spearman", nanmean(rho, 0), True, chance=0.0,
                      extra={"seeds": [int(s) for s in seeds]}),
                Score("seed-stability-ssim", nanmean(ss, 0), True),
                Score(f"seed-stability-iou@{pct(self.q)}", nanmean(iou, 0), True, chance=iou_chance(p, k, k),
                      param=pct_param(self.q))]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("seed-stability", "similarity of one explainer's maps across training seeds",
                       option_factory("metric seed-stability", SeedStability), family="stability", spatial_dims=(2, 3))
