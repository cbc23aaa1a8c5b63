"""roi-prior: the mean training mask, the spatial prior every localisation score is read against.

Why: with a fixed field of view the hippocampus sits in nearly the same pixels of every
slice, so a map that only "knows where the ROI usually is" (no model, no test image) scores
far above uniform chance on IoU, pointing game and energy-in-ROI. An explainer that does not
beat this row has not shown that it localises anything in the image. The map is
``context.mask_priors[mask]`` (the per-pixel share of training images whose ``mask`` covers
that pixel), the same for every image; ``mask`` = ``roi`` (default), ``evidence`` or any
named mask the dataset has. Ignores the model, the target and the image's content.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require


@dataclass(frozen=True)
class ROIPrior:
    """The mean training mask of ``mask`` (``roi`` | ``evidence`` | …), for every image."""

    mask: str = "roi"

    def __post_init__(self) -> None:
        ok = isinstance(self.mask, str) and bool(self.mask)
        require(ok, "explainer roi-prior", "mask", "a mask name such as roi or evidence")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer roi-prior")
        priors = dict(context.mask_priors or {})
        if self.mask not in priors:
            have = ", ".join(sorted(priors)) or "none"
            raise XaibenchError(f"explainer roi-prior: option mask={self.mask!r} has no training prior; "
                                f"this dataset has: {have}")
        prior = priors[self.mask].float()
        if tuple(prior.shape) != tuple(x.shape[2:]):
            raise XaibenchError(f"explainer roi-prior: the {self.mask!r} prior is {tuple(prior.shape)}, "
                                f"the images are {tuple(x.shape[2:])}")
        return prior.to(x.device).expand(x.shape[0], *prior.shape).contiguous()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("roi-prior", "mean training mask: where the ROI usually is (spatial-prior baseline)",
                          option_factory("explainer roi-prior", ROIPrior), spatial_dims=(2, 3), baseline="prior")
