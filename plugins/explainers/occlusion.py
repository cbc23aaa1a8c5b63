"""Occlusion (Zeiler & Fergus, 2014) through captum's ``Occlusion``.

A ``window``×``window`` patch (a ``window``³ cube on volumes) slides with ``stride``; each
pixel gets the mean, over the windows covering it, of score(x) − score(x with the window set
to ``baseline``). Positive = hiding the pixel lowers the score = evidence for the target
(signed). One input channel.

``baseline``: a constant intensity (0.0 = black, the MRI background, by default).
Chunking: groups of ``m ≤ chunk_size`` images with captum's
``perturbations_per_eval = chunk_size // m``, so every pass carries ≤ ``chunk_size`` images;
results do not depend on it. Deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import Occlusion as CaptumOcclusion

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps
from xaibench.kit.targets import ScoreModel


@dataclass(frozen=True)
class Occlusion:
    """Sliding-window occlusion; ``window``, ``stride`` (pixels), ``baseline`` intensity."""

    window: int = 8
    stride: int = 4
    baseline: float = 0.0

    def __post_init__(self) -> None:
        require(isinstance(self.window, int) and self.window >= 1, "explainer occlusion", "window", "an integer ≥ 1")
        require(isinstance(self.stride, int) and 1 <= self.stride, "explainer occlusion", "stride", "an integer ≥ 1")
        require(isinstance(self.baseline, (int, float)), "explainer occlusion", "baseline", "a number")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer occlusion")
        require(self.window <= min(x.shape[2:]), "explainer occlusion", "window",
                f"at most the image size {min(x.shape[2:])}")
        nd = x.ndim - 2
        occ = CaptumOcclusion(ScoreModel(model, target))
        cls = target.classes.to(x.device)
        out = empty_maps(x)
        with torch.no_grad():
            for sl in chunks(x.shape[0], context.chunk_size):
                m = sl.stop - sl.start
                a = occ.attribute(x[sl], sliding_window_shapes=(1, *[self.window] * nd),
                                  strides=(1, *[self.stride] * nd), baselines=float(self.baseline),
                                  target=cls[sl], perturbations_per_eval=max(1, context.chunk_size // m))
                out[sl] = a.sum(dim=1)
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("occlusion", "sliding-window occlusion (captum)",
                          option_factory("explainer occlusion", Occlusion), spatial_dims=(2, 3),
                          conformance={"window": 16, "stride": 16})
