"""Eigen-CAM (Muhammad & Yeasin, 2020), plugin name ``eigencam``.

The projection of each position's activation vector (centred over positions) on the first
principal component of the stage's activations, then ReLU. **Class-agnostic**: the target is
not used. An SVD leaves the component's sign free and the library keeps LAPACK's, which
differs between builds (a flipped sign gives the ReLU of the negated map, a different map);
here the sign is fixed so that the projection correlates positively with the channel sum of
the activations: where the stage fires. Equal to the library when their signs agree.
Upsampled bilinearly to the input size (trilinear for 3-D activations through
:func:`~xaibench_plugins.explainers._layer_cams.layer_cam_maps`). Non-negative; larger = more
evidence. Equals pytorch-grad-cam's ``EigenCAM`` up to its per-image min-max normalisation and the sign (tested);
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
class EigenCAM(LayerCAMFamily):
    """Eigen-CAM at a stage (``layer``: a stage name or ``auto``)."""

    variant = "eigencam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("eigencam",
                          "Eigen-CAM at a feature stage (first principal component of activations; class-agnostic)",
                          option_factory("explainer eigencam", EigenCAM), spatial_dims=(2, 3))
