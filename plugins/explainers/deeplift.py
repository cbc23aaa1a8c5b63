"""DeepLIFT (Shrikumar et al., 2017) through captum's ``DeepLift`` (the Rescale rule).

``(x − b) · m``, where the multipliers ``m`` replace each nonlinearity's gradient by the ratio
of its output and input differences between the image and the baseline ``b``. Signed:
positive = moving from the baseline to the pixel's value raises the score. Summation-to-delta
(the map sums to score(x) − score(b)) is not exact on the timm ResNets here: the sum is off by
captum's own convergence delta (tested), from a few percent to tens of percent on the test
model. The source is the stem's max-pool, whose DeepLIFT rule does not conserve: with it
replaced by an average pool the delta vanishes (checked by hand, not a test). One input channel, no reduction.

Captum applies the rule to ReLU modules; the functional operations inside the model (the
grayscale → RGB copy, the input normalisation, the average pool) are linear, where the rule is
the gradient. Batched: ``chunk_size`` images per call, each with its own target.

Options: ``baseline`` — ``zeros`` (black; default), ``mean`` (the per-pixel mean of the
reference training images) or ``blurred`` (the image blurred with a Gaussian of
``blur_sigma`` px), as ``ig``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import DeepLift as CaptumDeepLift

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import chunked
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel
from .ig import BASELINES, make_baseline


@dataclass(frozen=True)
class DeepLift:
    """DeepLIFT (Rescale) against a ``baseline`` image: zeros | mean | blurred."""

    baseline: str = "zeros"
    """zeros (black), mean (the reference images' per-pixel mean) or blurred (the image under a Gaussian)"""
    blur_sigma: float = 5.0
    """σ in pixels of the blurred baseline"""

    def __post_init__(self) -> None:
        require(self.baseline in BASELINES, "explainer deeplift", "baseline", f"one of {', '.join(BASELINES)}")
        require(isinstance(self.blur_sigma, (int, float)) and self.blur_sigma > 0, "explainer deeplift", "blur_sigma", "a number > 0")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer deeplift")
        dl = CaptumDeepLift(ScoreModel(model, target))
        base = make_baseline(self.baseline, x, context, float(self.blur_sigma))
        cls = target.classes.to(x.device)
        with torch.enable_grad():
            return chunked(x, context.chunk_size,
                           lambda sl: dl.attribute(x[sl].detach(), baselines=base[sl], target=cls[sl]))


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("deeplift", "DeepLIFT, Rescale rule (captum; zeros, mean or blurred baseline)",
                          option_factory("explainer deeplift", DeepLift), spatial_dims=(2, 3))
