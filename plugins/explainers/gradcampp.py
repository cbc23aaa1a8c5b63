"""Grad-CAM++ (Chattopadhay et al., 2018), plugin name ``gradcam++``.

Channel weights ``Σ_ij α_ij ReLU(∂score/∂A_ij)`` with the closed-form ``α`` for an exponential
score (higher derivatives replaced by powers of the gradient), exactly as pytorch-grad-cam
computes them (tested against it); then ``ReLU(Σ_k w_k A_k)`` upsampled bilinearly, like
Grad-CAM. Non-negative; larger = more evidence. Same ``layer``/``relu`` options and default
layer as ``gradcam``; :func:`~xaibench_plugins.explainers.gradcam.gradcampp_maps` is the
differentiable form.

At the last stage of a GAP + linear model ∂score/∂A_k is the constant ``w_k/(hw)`` over space,
so ``α`` is constant per channel and Grad-CAM++ keeps the channels with ``w_k > 0`` weighted by
``w_k/(2 + w_k·mean(A_k))``: it nearly coincides with Grad-CAM when per-channel contributions
are small and negative channels matter little (see docs/explainers.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.options import option_factory

from .gradcam import GradCAM


@dataclass(frozen=True)
class GradCAMPlusPlus(GradCAM):
    """Grad-CAM++ at a stage (``layer``: a stage name or ``auto``)."""

    variant = "gradcam++"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("gradcam++", "Grad-CAM++ at a feature stage (bilinear upsampling, ReLU)",
                          option_factory("explainer gradcam++", GradCAMPlusPlus), spatial_dims=(2, 3))
