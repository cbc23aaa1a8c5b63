"""Guided backpropagation (Springenberg et al., 2015) through captum's ``GuidedBackprop``.

The input gradient with every ReLU's backward pass also clipped to positive incoming
gradients: only paths that increase the score through positive activations survive. Signed
as returned (mostly positive); larger = more evidence. One input channel, no reduction.
Known to be largely insensitive to the model's parameters (Adebayo et al., 2018): the
randomisation metrics here are the check. Captum overrides ReLU *modules* (the ResNets here use
modules throughout); hooks are removed after each call. Batched: ``chunk_size`` images per call.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import GuidedBackprop as CaptumGuidedBackprop

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import gradient_attribution
from xaibench.kit.options import option_factory


@dataclass(frozen=True)
class GuidedBackprop:
    """Guided backpropagation (no options)."""

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        return gradient_attribution(CaptumGuidedBackprop, "explainer guided-backprop", model, x, target, context.chunk_size)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("guided-backprop", "guided backpropagation (captum)",
                          option_factory("explainer guided-backprop", GuidedBackprop), spatial_dims=(2, 3))
