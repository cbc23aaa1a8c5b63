"""Element-wise Grad-CAM (pytorch-grad-cam's ``GradCAMElementWise``), plugin name ``gradcam-elementwise``.

``ReLU(Σ_k ReLU(∂score/∂A_k ⊙ A_k))``: HiResCAM with the ReLU applied to each product before
the channel sum, so negative channels cannot cancel positive ones.
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``GradCAMElementWise`` up to its per-image min-max normalisation (tested);
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
class GradCAMElementWise(LayerCAMFamily):
    """Element-wise Grad-CAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "gradcam-elementwise"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("gradcam-elementwise",
                          "element-wise Grad-CAM at a feature stage (ReLU of gradient ⊙ activation; bilinear)",
                          option_factory("explainer gradcam-elementwise", GradCAMElementWise), spatial_dims=(2, 3))
