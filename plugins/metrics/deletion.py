"""``deletion`` — area under the target as the most attributed pixels are removed first
(Petsiuk et al. 2018, RISE). Lower is better: a faithful map makes T collapse early.

Why: the standard whole-curve faithfulness score; with ``units_per_step = 1`` it is
Quantus' PixelFlipping curve, and with ``patch`` > 1 its RegionPerturbation (most relevant
patch first). All curve points (and random reference orders) are scored in chunked
batched passes: N·(S+1)·(1+draws) forwards.

Options: ``steps`` (curve points after 0, default 20) or ``units_per_step``; ``patch``
(pixels per unit side, default 1); ``filler`` (default ``black``: the image minimum, as
RISE's zeros on [0, 1] images and Quantus' "black"); ``output`` = ``target`` (T, default)
or ``probability`` (softmax of the explained class, as RISE); ``absolute``; ``draws`` —
random removal orders whose mean AUC is the chance level a random map reaches (default 3;
0: no chance level, no extra passes); ``normalise`` — ``clean`` (default) or ``none``.

The value is the trapezoidal AUC over the removed fraction in [0, 1] of T divided by the
image's clean score T(x) (version 2: images with large and small logits weigh alike; NaN,
counted in ``extra["n_nan"]``, where T(x) ≤ 0 and the ratio means nothing), or of T itself
with ``normalise = "none"`` (version 1).
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
class Deletion(CurveSpec):
    scope: str = "explanation"

    def __post_init__(self) -> None:
        self.check("metric deletion")

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        return curve_scores("deletion", inp, self, self.check("metric deletion"), insertion=False,
                            higher_is_better=False)


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("deletion", "AUC of the target as the most attributed pixels are removed (lower is better)",
                       option_factory("metric deletion", Deletion), version="2", family="faithfulness",
                       spatial_dims=(2, 3))
