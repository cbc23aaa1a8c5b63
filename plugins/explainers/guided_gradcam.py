"""Guided Grad-CAM (Selvaraju et al., 2017) through captum's ``GuidedGradCam``.

Guided backpropagation times the Grad-CAM map of a stage upsampled to the input: pixel detail
gated by the class-discriminative region. Captum's Grad-CAM part is ReLU'd and averaged over
channels the same way as ``gradcam``; it is upsampled **bilinearly** here
(``interpolate_mode = "bilinear"``, the project's convention for layer maps) instead of
captum's default nearest (trilinear for volumes). Signed as guided backpropagation; larger = more evidence. One input
channel.

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import GuidedGradCam as CaptumGuidedGradCam

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import chunked
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel
from .gradcam import GradCAM


@dataclass(frozen=True)
class GuidedGradCam:
    """Guided Grad-CAM at a stage (``layer``: a stage name or ``auto``)."""

    layer: str | None = None

    variant = "guided-gradcam"

    def __post_init__(self) -> None:
        require(self.layer is None or isinstance(self.layer, str), "explainer guided-gradcam", "layer", "a stage name or 'auto'")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer guided-gradcam")
        name, _ = GradCAM.map_layer(self, model, tuple(x.shape[2:]))  # type: ignore[arg-type]
        ggc = CaptumGuidedGradCam(ScoreModel(model, target), model.stage(name))
        cls = target.classes.to(x.device)
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        with torch.enable_grad():
            return chunked(x, context.chunk_size, lambda sl: ggc.attribute(
                x[sl].detach().clone(), target=cls[sl], interpolate_mode=mode))


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("guided-gradcam", "guided Grad-CAM: guided backprop × bilinear Grad-CAM (captum)",
                          option_factory("explainer guided-gradcam", GuidedGradCam), spatial_dims=(2, 3))
