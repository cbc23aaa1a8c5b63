"""Integrated Gradients (Sundararajan et al., 2017) through captum.

``(x − b) · ∫₀¹ ∂score/∂x(b + α(x − b)) dα``, approximated with ``steps`` points (captum's
``method``, default Gauss–Legendre). Signed: positive = moving from the baseline to the
pixel's value raises the score; the sum over pixels ≈ score(x) − score(b) (completeness,
tested within 1% at 128 steps). One input channel, so no channel reduction.

Options: ``baseline`` — ``zeros`` (black), ``mean`` (the per-pixel mean of the reference
training images) or ``blurred`` (the image blurred with a Gaussian of ``blur_sigma`` px);
``steps`` (50); ``method`` (any captum IG method). Chunking: images go in groups of at most
``chunk_size`` and captum's ``internal_batch_size = chunk_size`` packs as many steps as fit,
so every pass carries ≤ ``chunk_size`` images. Deterministic (no randomness).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps, gaussian_blur
from xaibench.kit.targets import ScoreModel


BASELINES = ("zeros", "mean", "blurred")
METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def make_baseline(kind: str, x: torch.Tensor, context: ExplainContext, blur_sigma: float) -> torch.Tensor:
    """The IG/occlusion baseline image for each of ``x``'s images (``N×1×H×W``)."""
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "mean":
        return context.reference.to(x.device, x.dtype).mean(dim=0, keepdim=True).expand_as(x).contiguous()
    return gaussian_blur(x, blur_sigma)


@dataclass(frozen=True)
class IG:
    """Integrated Gradients; ``baseline`` zeros | mean | blurred, ``steps``, ``method``."""

    baseline: str = "zeros"
    steps: int = 50
    method: str = "gausslegendre"
    blur_sigma: float = 5.0

    def __post_init__(self) -> None:
        require(self.baseline in BASELINES, "explainer ig", "baseline", f"one of {', '.join(BASELINES)}")
        require(isinstance(self.steps, int) and self.steps >= 1, "explainer ig", "steps", "an integer ≥ 1")
        require(self.method in METHODS, "explainer ig", "method", f"one of {', '.join(METHODS)}")
        require(isinstance(self.blur_sigma, (int, float)) and self.blur_sigma > 0, "explainer ig", "blur_sigma",
                "a number > 0")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer ig")
        ig = IntegratedGradients(ScoreModel(model, target))
        base = make_baseline(self.baseline, x, context, float(self.blur_sigma))
        out = empty_maps(x)
        with torch.enable_grad():
            for sl in chunks(x.shape[0], context.chunk_size):
                a = ig.attribute(x[sl].detach(), baselines=base[sl], target=target.classes[sl].to(x.device),
                                 n_steps=self.steps, method=self.method, internal_batch_size=context.chunk_size)
                out[sl] = a.detach().sum(dim=1)
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("ig", "Integrated Gradients (captum; zeros, mean or blurred baseline)",
                          option_factory("explainer ig", IG), spatial_dims=(2, 3),
                          conformance={"steps": 4})
