"""Random: a uniform-noise map, the chance baseline every metric is read against.

Values are i.i.d. U[0, 1) per pixel, drawn on the CPU from a generator seeded with
``context.seed`` (so the same seed gives the same maps on any device and any chunking), then
moved to the input's device. No sign or channel meaning; ignores the model and the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._common import check_input, factory


@dataclass(frozen=True)
class RandomMap:
    """Seeded uniform noise, ``N×H×W``."""

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_input("random", x)
        g = torch.Generator().manual_seed(int(context.seed))
        return torch.rand(x.shape[0], *x.shape[-2:], generator=g).to(x.device)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("random", "uniform noise map (chance baseline)", factory("random", RandomMap))
