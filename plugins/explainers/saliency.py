"""Saliency: the plain input gradient of the target (Simonyan et al., 2014).

Sign convention: by default the **signed** gradient ∂score/∂x (positive = brightening the
pixel raises the score), as the contract asks of gradient methods; ``absolute = true`` gives
Simonyan's |∂score/∂x| (captum ``Saliency`` default). Channel reduction: the input has one
channel (grayscale is expanded to three inside the model, so the gradient already sums the
three copies). Written by hand because it is one autograd call; captum's ``Saliency`` gives the
same numbers (tested) but re-runs its input bookkeeping per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import input_gradient
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require


@dataclass(frozen=True)
class Saliency:
    """Input gradient of the target; ``absolute`` for its magnitude."""

    absolute: bool = False

    def __post_init__(self) -> None:
        require(isinstance(self.absolute, bool), "explainer saliency", "absolute", "true or false")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer saliency")
        g = input_gradient(model, x, target, context.chunk_size).sum(dim=1)
        return (g.abs() if self.absolute else g).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("saliency", "input gradient of the target (signed; absolute=true for |grad|)",
                          option_factory("explainer saliency", Saliency), spatial_dims=(2, 3))
