"""DeepLIFT-SHAP (Lundberg & Lee, 2017) through captum's ``DeepLiftShap``.

The mean over ``baselines`` reference training images ``b`` (``context.reference``, the first
ones, in order: deterministic) of DeepLIFT's ``(x − b) · m(x, b)``: SHAP values under the
reference distribution with DeepLIFT's linearisation. Signed: positive = evidence for the
target relative to typical training images; sums to score(x) − mean score(b). One channel.

Batched: captum pairs every image with every baseline, so each call carries
``chunk_size // baselines`` images (at least one), ``≤ chunk_size`` rows per pass.

Options: ``baselines`` (8) — how many reference images form the distribution (captum needs 2
or more).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import DeepLiftShap as CaptumDeepLiftShap

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import chunked
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel


@dataclass(frozen=True)
class DeepLiftShap:
    """DeepLIFT-SHAP over the first ``baselines`` reference images."""

    baselines: int = 8
    """how many reference images (the first ones) form the baseline distribution; at least 2"""

    def __post_init__(self) -> None:
        require(isinstance(self.baselines, int) and self.baselines >= 2, "explainer deepliftshap", "baselines", "an integer ≥ 2")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer deepliftshap")
        ref = context.reference
        if ref is None or ref.ndim != x.ndim or ref.shape[0] < 2 or ref.shape[1:] != x.shape[1:]:
            raise XaibenchError("explainer deepliftshap: needs at least 2 reference images of the inputs' shape")
        base = ref[: self.baselines].to(x.device, x.dtype)
        dls = CaptumDeepLiftShap(ScoreModel(model, target))
        cls = target.classes.to(x.device)
        with torch.enable_grad():
            return chunked(x, max(1, context.chunk_size // base.shape[0]),
                           lambda sl: dls.attribute(x[sl].detach(), baselines=base, target=cls[sl]))


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("deepliftshap", "DeepLIFT-SHAP over reference training images (captum)",
                          option_factory("explainer deepliftshap", DeepLiftShap), spatial_dims=(2, 3),
                          conformance={"baselines": 2})
