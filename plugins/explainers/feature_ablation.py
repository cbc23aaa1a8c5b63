"""Feature ablation through captum's ``FeatureAblation``: each feature (a group of pixels) is
set to ``baseline`` in turn and gets score(x) − score(x with the feature ablated), spread over
its pixels. Positive = hiding the feature lowers the score = evidence (signed). One channel.

Features (``features``, see ``_captum_family``): ``patches`` — a fixed grid of
``patch``×``patch`` squares (8 px by default: 64 features on a 64×64 image), occlusion without
overlap; or ``slic`` — about ``segments`` SLIC superpixels per image, which follow the anatomy.
Chunking: groups of ``m ≤ chunk_size`` images with captum's
``perturbations_per_eval = chunk_size // m``, as ``occlusion``. Deterministic.

Options: ``features`` — patches or slic; ``patch`` (8) — the grid's square side in pixels;
``segments`` (64) — the SLIC target number of superpixels; ``baseline`` (0.0) — the intensity of
an ablated feature (black, the MRI background).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import FeatureAblation as CaptumFeatureAblation

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import SEGMENTATIONS, chunked, feature_mask, per_image
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel


@dataclass(frozen=True)
class FeatureAblation:
    """Ablation of patch or superpixel features; ``features``, ``patch``, ``segments``, ``baseline``."""

    features: str = "patches"
    """patches (a fixed square grid) or slic (superpixels of each image)"""
    patch: int = 8
    """side of the grid's squares in pixels"""
    segments: int = 64
    """SLIC's target number of superpixels (features = slic)"""
    baseline: float = 0.0
    """intensity of an ablated feature (0 = black, the MRI background)"""

    def __post_init__(self) -> None:
        require(self.features in SEGMENTATIONS, "explainer feature-ablation", "features", f"one of {', '.join(SEGMENTATIONS)}")
        require(isinstance(self.patch, int) and self.patch >= 1, "explainer feature-ablation", "patch", "an integer ≥ 1")
        require(isinstance(self.segments, int) and self.segments >= 1, "explainer feature-ablation", "segments", "an integer ≥ 1")
        require(isinstance(self.baseline, (int, float)), "explainer feature-ablation", "baseline", "a number")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer feature-ablation")
        fa = CaptumFeatureAblation(ScoreModel(model, target))
        mask = feature_mask(self.features, x, self.patch, self.segments)
        cls = target.classes.to(x.device)

        def run(sl: slice) -> torch.Tensor:
            return fa.attribute(x[sl], baselines=float(self.baseline), target=cls[sl], feature_mask=per_image(mask, sl),
                                perturbations_per_eval=max(1, context.chunk_size // (sl.stop - sl.start)))

        with torch.no_grad():
            return chunked(x, context.chunk_size, run)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("feature-ablation", "feature ablation of patches or SLIC superpixels (captum)",
                          option_factory("explainer feature-ablation", FeatureAblation), spatial_dims=(2, 3),
                          conformance={"patch": 16})
