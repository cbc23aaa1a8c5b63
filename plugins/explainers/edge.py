"""Edge: the Sobel gradient magnitude of the input image, a model-independent baseline.

Explanations that score like ``edge`` on a metric are telling us about the image, not the
model (the sanity checks of Adebayo et al., 2018). ``sqrt(Gx² + Gy²)`` with 3×3 Sobel kernels
and replicated borders (on volumes the three 3×3×3 Sobel–Feldman kernels, √(Gx² + Gy² + Gz²));
optional Gaussian pre-smoothing (``sigma`` in pixels, default 0).
Non-negative; ignores the model and the target. Written by hand: a fixed 2-D (3-D) convolution.
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


def sobel_kernels(nd: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The ``nd`` Sobel kernels (``nd×1×3×…×3``): the derivative ``[-1, 0, 1]`` along one axis
    times the smoothing ``[1, 2, 1]`` along each other axis (the 3-D Sobel–Feldman operator)."""
    d = torch.tensor([-1.0, 0.0, 1.0], device=device, dtype=dtype)
    s = torch.tensor([1.0, 2.0, 1.0], device=device, dtype=dtype)
    ks = []
    for axis in range(nd):
        k = torch.ones((1,) * nd, device=device, dtype=dtype)
        for other in range(nd):
            v = (d if other == axis else s).view([3 if j == other else 1 for j in range(nd)])
            k = k * v
        ks.append(k)
    return torch.stack(ks)[:, None]


def sobel_magnitude(x: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """``N×1×*S`` → ``N×*S`` Sobel magnitude (2-D or 3-D)."""
    x = x.float()
    x = gaussian_blur(x, sigma)
    if x.ndim == 5:
        gxyz = F.conv3d(F.pad(x, (1,) * 6, mode="replicate"), sobel_kernels(3, x.device, x.dtype))
        return gxyz.pow(2).sum(dim=1).sqrt()
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
                          option_factory("explainer edge", Edge), spatial_dims=(2, 3), baseline="model-free")
