"""``road`` — RemOve And Debias (Rong et al. 2022): the target drop when the most (MoRF)
or least (LeRF) relevant pixels are replaced by noisy linear imputation.

Why: removal by a constant leaks the mask's shape (the model sees the hole, not the
missing evidence); ROAD's imputation fills each removed pixel from its neighbours plus
noise, so the drop measures the information removed. Every percentile of both orders is
one row of the same chunked batched passes (N·2·|percentiles| + N forwards), and the
imputation is solved for a whole chunk at once (``xaibench.kit.perturb.road_impute``: the same linear
system pytorch-grad-cam solves per image with a sparse direct solver).

Options: ``percentiles`` — removed shares in percent (default 10, 20, …, 90, as
pytorch-grad-cam); ``road_noise`` (default 0.01); ``tol`` — relative residual of the
imputation solve (default 3e-5: under 1e-3 absolute, over ten times below the noise);
``filler`` (default ``road``; others for ablations); ``absolute``; ``seed``.

Scores, per image, averaged over the percentiles, with ΔT = T(x) − T(imputed):
``road-morf`` (higher is better), ``road-lerf`` (lower is better) and ``road`` =
(ΔT_MoRF − ΔT_LeRF) / 2, pytorch-grad-cam's ROADCombined (higher is better; chance 0,
since for a random map both orders are random). Removal counts are round(p·P) pixels (P per image) by
rank; pytorch-grad-cam thresholds at the p-th percentile, which may differ by a pixel.

Slices and volumes: ROAD's imputation is its 8-neighbour system on slices (as the reference)
and, on volumes, the same stencil one axis further: the 26 neighbours of a voxel
(``kit.perturb._neighbours``; the reference defines no volume stencil).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.batching import target_scores
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.perturb import Filler, removal_scores
from xaibench.kit.spatial import flat
from xaibench.kit.topk import ranks_desc


@dataclass(frozen=True)
class ROAD:
    percentiles: Any = (10, 20, 30, 40, 50, 60, 70, 80, 90)
    filler: str = "road"
    road_noise: float = 0.01
    blur_sigma: float = 3.0
    absolute: bool = False
    seed: int = 0
    tol: float = 3e-5
    scope: str = "explanation"

    def __post_init__(self) -> None:
        p = list(self.percentiles) if isinstance(self.percentiles, (list, tuple)) else [self.percentiles]
        ok = len(p) > 0 and all(isinstance(v, (int, float)) and 0 < v < 100 for v in p)
        require(ok, "metric road", "percentiles", "a list of percentages strictly between 0 and 100", self.percentiles)
        Filler.make("metric road", self.filler, self.blur_sigma, self.road_noise)
        require(isinstance(self.tol, (int, float)) and 0 < self.tol < 1, "metric road", "tol", "a number in (0, 1)",
                self.tol)

    def passes(self, n: int) -> int:
        return n * (1 + 2 * len(tuple(self.percentiles)))

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        filler = replace(Filler.make("metric road", self.filler, self.blur_sigma, self.road_noise), tol=float(self.tol))
        pcts = [float(p) for p in (self.percentiles if isinstance(self.percentiles, (list, tuple))
                                   else [self.percentiles])]
        x = inp.images
        n, spatial = x.shape[0], tuple(x.shape[2:])
        p_all = math.prod(spatial)
        a = flat(check_maps(inp.attributions, x, "metric road").to(x.device))
        ranks = ranks_desc(a.abs() if self.absolute else a)
        ks = torch.tensor([max(1, int(round(math.prod(spatial, start=p / 100)))) for p in pcts], device=x.device)
        npc = len(pcts)

        def removed(i: torch.Tensor, lev: torch.Tensor) -> torch.Tensor:
            k = ks[lev % npc].view(-1, 1)
            morf = (lev < npc).view(-1, 1)
            r = ranks[i]
            return torch.where(morf, r < k, r >= p_all - k).view(-1, *spatial)

        chunk = int(inp.context.chunk_size)
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        t0 = target_scores(inp.model, inp.target, x, chunk)
        t = removal_scores(inp.model, inp.target, x, removed, 2 * npc, filler, chunk, seed)
        drop = (t0.view(-1, 1) - t).double().cpu().numpy().reshape(n, 2, npc)
        morf, lerf = drop[:, 0].mean(1), drop[:, 1].mean(1)
        extra = {"percentiles": pcts, "morf_curve": drop[:, 0].mean(0).tolist(),
                 "lerf_curve": drop[:, 1].mean(0).tolist(), "filler": self.filler}
        return [Score("road", (morf - lerf) / 2, True, chance=0.0, extra=extra),
                Score("road-morf", morf, True), Score("road-lerf", lerf, False)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("road", "ROAD: target drop under noisy linear imputation, MoRF vs LeRF",
                       option_factory("metric road", ROAD), family="faithfulness",
                       spatial_dims=(2, 3))
