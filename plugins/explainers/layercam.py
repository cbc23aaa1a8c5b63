"""LayerCAM (Jiang et al., 2021), plugin name ``layercam``.

``ReLU(Σ_k ReLU(∂score/∂A_k) ⊙ A_k)``: each position's activation weighted by its own positive
gradient (no spatial pooling of the weights), so maps at shallow stages keep their detail.
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``LayerCAM`` up to its per-image min-max normalisation (tested);
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
class LayerCAM(LayerCAMFamily):
    """LayerCAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "layercam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("layercam", "LayerCAM at a feature stage (positive gradients × activations; bilinear, ReLU)",
                          option_factory("explainer layercam", LayerCAM), spatial_dims=(2, 3))
