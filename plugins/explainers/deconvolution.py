"""Deconvolution (Zeiler & Fergus, 2014) through captum's ``Deconvolution``.

The input gradient with every ReLU's backward pass replaced by a ReLU of the incoming
gradient (the forward mask is ignored): the "deconvnet" reconstruction of what excites the
score. Signed as returned; larger = more evidence. One input channel, no reduction. Captum
overrides ReLU modules; hooks are removed after each call. Batched: ``chunk_size`` images per
call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import Deconvolution as CaptumDeconvolution

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import gradient_attribution
from xaibench.kit.options import option_factory


@dataclass(frozen=True)
class Deconvolution:
    """Deconvolution (no options)."""

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        return gradient_attribution(CaptumDeconvolution, "explainer deconvolution", model, x, target, context.chunk_size)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("deconvolution", "deconvolution / deconvnet (captum)",
                          option_factory("explainer deconvolution", Deconvolution), spatial_dims=(2, 3))
