"""``complexity`` — the entropy of |a| / Σ|a| (Bhatt et al. 2020; Quantus' Complexity).

Why: the companion of ``sparseness`` — how many pixels the evidence is spread over, in nats:
0 when one pixel holds it all, log P for a flat map of P pixels. N-D, one expression for the
batch. As Quantus: −Σ p·log(p + 1e-12) with p = |a| / Σ|a| (the scale of the map cancels,
so Quantus' max-normalisation changes nothing). An all-zero map scores NaN. Lower is simpler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory
from xaibench.kit.spatial import flat


@dataclass(frozen=True)
class Complexity:
    scope: str = "explanation"

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric complexity")).abs().double()
        total = a.sum(1, keepdim=True)
        p = a / torch.where(total > 0, total, 1.0)
        vals = -(p * torch.log(p + 1e-12)).sum(1)
        vals = vals.masked_fill(total[:, 0] == 0, float("nan"))
        return [Score("complexity", vals.cpu().numpy(), False,
                      extra={"max": float(torch.log(torch.tensor(float(a.shape[1]))))})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("complexity", "entropy of |map| / sum: how spread the evidence is (lower is simpler); = Quantus Complexity",
                       option_factory("metric complexity", Complexity), family="complexity", spatial_dims=(2, 3))
