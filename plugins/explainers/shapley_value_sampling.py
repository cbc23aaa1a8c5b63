"""Shapley value sampling (Castro et al., 2009) through captum's ``ShapleyValueSampling``.

Each of ``n_samples`` random feature orderings adds the features one by one (from an image at
``baseline``); a feature's value is its mean marginal change of the score. An unbiased Monte
Carlo estimate of the Shapley values (exact in expectation, unlike Kernel SHAP's regression),
which sum to score(x) − score(baseline) for every ordering (tested). Signed; one channel.

Features: a fixed grid of ``patch``×``patch`` squares (16 px: 16 features on a 64×64 image),
the same for every image, which is what lets images batch: the orderings are drawn by captum
after seeding torch with the run's seed, shared by all images (their number depends only on
the grid), so a map does not depend on the batch. Groups of ``m ≤ chunk_size`` images with
``perturbations_per_eval = chunk_size // m``. Cost: ``n_samples × (features + 1)`` rows per image.

Options: ``n_samples`` (4) — feature orderings; ``patch`` (16) — the grid's square side in
pixels; ``baseline`` (0.0) — the intensity of a feature not yet added.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import ShapleyValueSampling as CaptumSVS

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import chunked, patch_mask
from xaibench.kit.batching import seeded
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel


@dataclass(frozen=True)
class ShapleyValueSampling:
    """Shapley value sampling over a patch grid; ``n_samples`` orderings."""

    n_samples: int = 4
    """random feature orderings"""
    patch: int = 16
    """side of the grid's squares in pixels (the features)"""
    baseline: float = 0.0
    """intensity of a feature not yet added (0 = black)"""

    def __post_init__(self) -> None:
        require(isinstance(self.n_samples, int) and self.n_samples >= 1, "explainer shapley-value-sampling", "n_samples", "an integer ≥ 1")
        require(isinstance(self.patch, int) and self.patch >= 1, "explainer shapley-value-sampling", "patch", "an integer ≥ 1")
        require(isinstance(self.baseline, (int, float)), "explainer shapley-value-sampling", "baseline", "a number")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer shapley-value-sampling")
        svs = CaptumSVS(ScoreModel(model, target))
        mask = patch_mask(tuple(x.shape[2:]), self.patch, x.device)
        cls = target.classes.to(x.device)

        def run(sl: slice) -> torch.Tensor:
            with seeded(context.seed, x.device):
                return svs.attribute(x[sl], baselines=float(self.baseline), target=cls[sl], feature_mask=mask,
                                     n_samples=self.n_samples,
                                     perturbations_per_eval=max(1, context.chunk_size // (sl.stop - sl.start)))

        with torch.no_grad():
            return chunked(x, context.chunk_size, run)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("shapley-value-sampling", "Shapley value sampling over a patch grid (captum)",
                          option_factory("explainer shapley-value-sampling", ShapleyValueSampling), spatial_dims=(2, 3),
                          conformance={"n_samples": 2})
