"""Eigen-Grad-CAM (pytorch-grad-cam's ``EigenGradCAM``), plugin name ``eigengradcam``.

Eigen-CAM on ``∂score/∂A ⊙ A`` instead of ``A``: the first principal component of the
gradient-weighted activations, so the map depends on the target. The component's sign is
fixed so that the projection correlates positively with HiResCAM's map (the channel sum of
``∂score/∂A ⊙ A``): positive = evidence for the target; the library keeps LAPACK's sign.
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``EigenGradCAM`` up to its per-image min-max normalisation and the sign (tested);
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
class EigenGradCAM(LayerCAMFamily):
    """Eigen-Grad-CAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "eigengradcam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("eigengradcam",
                          "Eigen-Grad-CAM at a feature stage (first principal component of gradient ⊙ activation)",
                          option_factory("explainer eigengradcam", EigenGradCAM), spatial_dims=(2, 3))
