"""``insertion`` — area under the target as the most attributed pixels are put back first
into a blurred canvas (Petsiuk et al. 2018, RISE). Higher is better.

Why: deletion's mirror; it starts from an image that carries no local evidence, so it is
less sensitive to the out-of-distribution artefacts of removal. Options as ``deletion``
(its module docs), except ``filler`` defaults to ``blur`` (RISE's canvas; ``blur_sigma``
in pixels, default 3). N·(S+1)·(1+draws) forwards in chunked batched passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.curves import curve_scores, CurveSpec
from xaibench.kit.options import option_factory


@dataclass(frozen=True)
class Insertion(CurveSpec):
    filler: str = "blur"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        self.check("metric insertion")

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        return curve_scores("insertion", inp, self, self.check("metric insertion"), insertion=True,
                            higher_is_better=True)


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("insertion", "AUC of the target as the most attributed pixels are inserted (higher is better)",
                       option_factory("metric insertion", Insertion), version="2", family="faithfulness",
                       spatial_dims=(2, 3))
