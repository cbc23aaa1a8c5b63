"""LIME (Ribeiro et al., 2016) through captum's ``Lime``.

``n_samples`` random subsets of the image's features are kept (the others set to
``baseline``), the model scores each, and a sparse linear model (captum's default: scikit-learn
Lasso, α = 0.01, samples weighted by an exponential cosine kernel of their distance to the
image) is fitted to the scores; each pixel gets its feature's coefficient. Signed: positive =
keeping the feature raises the score. One channel. Sampling noise is large at the small default
count (chosen so the benchmark stays cheap); raise ``n_samples`` for stable maps. The Lasso's
α = 0.01 is absolute: when the score barely moves between samples (an untrained model, scores
varying by hundredths) every coefficient is zero and so is the map.

Features (see ``_captum_family``): ``patches`` — a fixed grid of ``patch``×``patch`` squares
(16 px: 16 features on a 64×64 image) or ``slic`` superpixels (``segments``).
Seeding and batching: each image's samples are drawn by captum after seeding torch and numpy
with the image's seed (``image_seed(seed, i)``), so a map does not depend on the other images
of the batch; each image's samples go through the model ``chunk_size`` at a time.

Options: ``n_samples`` (64) — perturbed samples per image; ``features`` — patches or slic;
``patch`` (16) — the grid's square side in pixels; ``segments`` (16) — the SLIC target number
of superpixels; ``baseline`` (0.0) — the intensity of a removed feature.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import Lime as CaptumLime

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._captum_family import SEGMENTATIONS, feature_mask, per_image
from xaibench.kit.batching import image_seed, seeded
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.targets import ScoreModel


@dataclass(frozen=True)
class Lime:
    """LIME on patch or superpixel features; ``n_samples`` per image."""

    n_samples: int = 64
    """perturbed samples per image"""
    features: str = "patches"
    """patches (a fixed square grid) or slic (superpixels of each image)"""
    patch: int = 16
    """side of the grid's squares in pixels"""
    segments: int = 16
    """SLIC's target number of superpixels (features = slic)"""
    baseline: float = 0.0
    """intensity of a removed feature (0 = black)"""

    name = "lime"

    def __post_init__(self) -> None:
        require(isinstance(self.n_samples, int) and self.n_samples >= 1, f"explainer {self.name}", "n_samples", "an integer ≥ 1")
        require(self.features in SEGMENTATIONS, f"explainer {self.name}", "features", f"one of {', '.join(SEGMENTATIONS)}")
        require(isinstance(self.patch, int) and self.patch >= 1, f"explainer {self.name}", "patch", "an integer ≥ 1")
        require(isinstance(self.segments, int) and self.segments >= 1, f"explainer {self.name}", "segments", "an integer ≥ 1")
        require(isinstance(self.baseline, (int, float)), f"explainer {self.name}", "baseline", "a number")

    def method(self, f: ScoreModel):
        return CaptumLime(f)

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, f"explainer {self.name}")
        attr = self.method(ScoreModel(model, target))
        mask = feature_mask(self.features, x, self.patch, self.segments)
        cls = target.classes.to(x.device)
        out = torch.empty(x.shape[0], *x.shape[2:], device=x.device)
        with torch.no_grad():
            for i in range(x.shape[0]):
                with seeded(image_seed(context.seed, i), x.device):
                    a = attr.attribute(x[i:i + 1], baselines=float(self.baseline), target=cls[i:i + 1],
                                       feature_mask=per_image(mask, slice(i, i + 1)), n_samples=self.n_samples,
                                       perturbations_per_eval=max(1, context.chunk_size))
                out[i] = a[0].sum(dim=0)
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("lime", "LIME on patch or superpixel features (captum; Lasso surrogate)",
                          option_factory("explainer lime", Lime), conformance={"n_samples": 8, "patch": 8},
                          spatial_dims=(2, 3))
