"""Shapley-CAM (Cai et al., 2025), plugin name ``shapleycam``.

Grad-CAM with second-order weights: the spatial mean of ``∂s/∂A − ½ H·A`` (``H`` the Hessian
of the score w.r.t. the activations, as a Hessian-vector product), an approximation of the
channels' Shapley values. Two backward passes.
Through pytorch-grad-cam (see ``_library_cams``): the library's maps, **min-max normalised to
[0, 1] per image**, resized bilinearly; 2-D models only. Non-negative; larger = more evidence.

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory
from ._library_cams import LibraryCAM


@dataclass(frozen=True)
class ShapleyCAM(LibraryCAM):
    """Shapley-CAM through pytorch-grad-cam."""

    variant = "shapleycam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("shapleycam",
                          "Shapley-CAM at a feature stage (pytorch-grad-cam; gradient and Hessian-vector weights)",
                          option_factory("explainer shapleycam", ShapleyCAM))
