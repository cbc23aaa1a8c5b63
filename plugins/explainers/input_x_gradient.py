"""Gradient × input (Shrikumar et al., 2016), plugin name ``input-x-gradient``.

``x · ∂score/∂x``: the first-order Taylor share of each pixel relative to a black image.
Signed: positive = the pixel's intensity, through the local gradient, supports the target.
One input channel, no reduction. Written by hand (one autograd call, chunked) like
``saliency``; equals captum's ``InputXGradient`` (tested). The single-file example plugin
``grad-x-input`` (examples/) computes the same map and stays the example of an external package.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.batching import input_gradient
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory


@dataclass(frozen=True)
class InputXGradient:
    """Input times its gradient (no options)."""

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer input-x-gradient")
        x = x.detach()
        return (x * input_gradient(model, x, target, context.chunk_size)).sum(dim=1).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("input-x-gradient", "gradient × input (signed; equals captum InputXGradient)",
                          option_factory("explainer input-x-gradient", InputXGradient), spatial_dims=(2, 3))
