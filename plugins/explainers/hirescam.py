"""HiResCAM (Draelos & Carin, 2020), plugin name ``hirescam``.

``ReLU(Σ_k ∂score/∂A_k ⊙ A_k)``: the element-wise product summed over channels; at the last
stage of a GAP + linear model it is exactly the score's share per position (up to ``h·w``).
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``HiResCAM`` up to its per-image min-max normalisation (tested);
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
class HiResCAM(LayerCAMFamily):
    """HiResCAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "hirescam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("hirescam",
                          "HiResCAM at a feature stage (gradient ⊙ activation summed over channels; bilinear, ReLU)",
                          option_factory("explainer hirescam", HiResCAM), spatial_dims=(2, 3))
