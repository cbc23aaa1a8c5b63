"""Gradient × input as an xaibench explainer plugin (a complete out-of-tree example).

Install with ``pip install ./examples/xaibench-gradxinput``; then ``xaibench list explainer``
shows ``grad-x-input`` and any suite can name it. Built on the public toolkit
(:mod:`xaibench.kit`), as the built-in explainers are: the input check, the chunked input
gradient (at most ``context.chunk_size`` images per pass) and the option factory.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit import check_images, input_gradient, option_factory, require

NAME = "explainer grad-x-input"


@dataclass(frozen=True)
class GradXInput:
    """Map = Σ_c x · ∂T/∂x (signed; larger = more evidence for the target)."""

    absolute: bool = False

    def __post_init__(self) -> None:
        require(isinstance(self.absolute, bool), NAME, "absolute", "true or false", self.absolute)

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, NAME)
        m = (input_gradient(model, x, target, context.chunk_size) * x).sum(1)
        return (m.abs() if self.absolute else m).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("grad-x-input", "gradient × input (example plugin)", option_factory(NAME, GradXInput))
