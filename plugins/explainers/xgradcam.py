"""XGrad-CAM (Fu et al., 2020), plugin name ``xgradcam``.

``ReLU(Σ_k α_k A_k)`` with ``α_k = Σ_ij ∂score/∂A_kij · A_kij / (Σ_ij A_kij + 1e-7)``: the
activation-weighted mean gradient (the axioms of sensitivity and conservation of the paper).
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``XGradCAM`` up to its per-image min-max normalisation (tested);
written natively (see ``_layer_cams``) so it is batched, stays on the device and is
differentiable (``layer_cam_maps(..., create_graph=True)``).

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``); ``relu`` — the final ReLU, as the library applies (default true).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory
from ._layer_cams import LayerCAMFamily


@dataclass(frozen=True)
class XGradCAM(LayerCAMFamily):
    """XGrad-CAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "xgradcam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("xgradcam", "XGrad-CAM at a feature stage (activation-weighted gradients; bilinear, ReLU)",
                          option_factory("explainer xgradcam", XGradCAM), spatial_dims=(2, 3))
