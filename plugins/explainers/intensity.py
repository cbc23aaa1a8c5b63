"""intensity: the image itself inside the brain, a model-free baseline.

Why: a map that is just the (smoothed) image scores whatever the anatomy's brightness
pattern scores; an explainer that does no better on a metric is telling us about the image,
not the model (Adebayo et al.'s point, as ``edge`` makes it for edges). Pixels below
``floor`` (default 0.05: the background of a skull-stripped slice, where only noise remains)
are set to 0, so the map ranks brain before background; ``sigma`` (pixels, default 0)
smooths the image first. Non-negative; ignores the model and the target.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import gaussian_blur


@dataclass(frozen=True)
class Intensity:
    """Image intensity, zero below ``floor``; ``sigma``: Gaussian pre-smoothing in pixels."""

    sigma: float = 0.0
    floor: float = 0.05

    def __post_init__(self) -> None:
        require(isinstance(self.sigma, (int, float)) and self.sigma >= 0, "explainer intensity", "sigma",
                "a number ≥ 0")
        require(isinstance(self.floor, (int, float)) and 0 <= self.floor < 1, "explainer intensity", "floor",
                "a number in [0, 1)")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer intensity")
        with torch.no_grad():
            img = gaussian_blur(x.float(), float(self.sigma))[:, 0]
            return torch.where(img >= self.floor, img, torch.zeros_like(img))


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("intensity", "image intensity inside the brain (model-free baseline)",
                          option_factory("explainer intensity", Intensity), spatial_dims=(2, 3), baseline="model-free")
