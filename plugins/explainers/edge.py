"""Edge: the Sobel gradient magnitude of the input image, a model-independent baseline.

Explanations that score like ``edge`` on a metric are telling us about the image, not the
model (the sanity checks of Adebayo et al., 2018). ``sqrt(Gx² + Gy²)`` with 3×3 Sobel kernels
and replicated borders; optional Gaussian pre-smoothing (``sigma`` in pixels, default 0).
Non-negative; ignores the model and the target. Written by hand: a fixed 2-D convolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import gaussian_blur


def sobel_magnitude(x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """``N×1×H×W`` → ``N×H×W`` Sobel magnitude."""
    x = x.float()
    x = gaussian_blur(x, sigma)
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=x.device, dtype=x.dtype)
    k = torch.stack([kx, kx.T])[:, None]
    gxy = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k)
    return gxy.pow(2).sum(dim=1).sqrt()


@dataclass(frozen=True)
class Edge:
    """Sobel edge magnitude of the input (``sigma``: Gaussian pre-smoothing in pixels)."""

    sigma: float = 0.0

    def __post_init__(self) -> None:
        require(isinstance(self.sigma, (int, float)) and self.sigma >= 0, "explainer edge", "sigma", "a number ≥ 0")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer edge")
        with torch.no_grad():
            return sobel_magnitude(x, float(self.sigma))


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("edge", "Sobel edge magnitude of the input (model-independent baseline)",
                          option_factory("explainer edge", Edge), baseline="model-free")
