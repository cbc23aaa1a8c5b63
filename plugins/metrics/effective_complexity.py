"""``effective-complexity`` — how many pixels carry evidence: the count of |a| > eps
(Nguyen & Martínez 2020; Quantus' EffectiveComplexity).

Why: the plainest reading of "how much of the image does the map use". N-D, one expression.

Options: ``eps`` (default 1e-5, Quantus' default); ``scale`` — ``image`` (default: |a| is
divided by the map's own maximum first, so eps is relative and the count does not depend on
the map's units) or ``none`` (eps in the map's units). Quantus divides by the maximum of the
whole *batch*, so an image's count there depends on the other images in its batch; ``image``
equals Quantus called one image at a time, ``none`` equals Quantus with ``normalise=False``
(both tested). Values are counts (the share is ``count / extra["pixels"]``); lower is simpler.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import one_of, option_factory, require
from xaibench.kit.spatial import flat

SCALES = ("image", "none")


@dataclass(frozen=True)
class EffectiveComplexity:
    eps: float = 1e-5
    scale: str = "image"
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(isinstance(self.eps, (int, float)) and self.eps >= 0, "metric effective-complexity", "eps",
                "a number >= 0", self.eps)
        one_of(self.scale, SCALES, "metric effective-complexity", "scale")

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a = flat(check_maps(inp.attributions, inp.images, "metric effective-complexity")).abs()
        if self.scale == "image":
            top = a.max(1, keepdim=True).values
            a = a / torch.where(top > 0, top, 1.0)
        vals = (a > self.eps).sum(1).double()
        return [Score("effective-complexity", vals.cpu().numpy(), False,
                      extra={"pixels": int(a.shape[1]), "eps": self.eps, "scale": self.scale})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("effective-complexity", "pixels whose |attribution| exceeds eps (lower is simpler); = Quantus EffectiveComplexity",
                       option_factory("metric effective-complexity", EffectiveComplexity), family="complexity",
                       spatial_dims=(2, 3))
