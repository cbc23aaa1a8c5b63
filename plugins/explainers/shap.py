"""GradientSHAP (Lundberg & Lee, 2017), captum's ``GradientShap`` computed in batches.

Expected gradients: the mean over ``samples`` draws of a baseline ``b`` from the reference
training images (``context.reference``) and ``α ~ U(0, 1)`` of
``(x − b) · ∂score/∂x(b + α(x − b))``. Signed: positive = evidence for the target relative to
typical training images; sums to ≈ score(x) − E[score(b)]. One channel, no reduction.

Why not call ``GradientShap`` directly: it draws baselines and α from numpy's *global*
generator, once per call, for the whole batch, so results would depend on which images share
a call (and on the caller's random state). Calling it image by image fixes that but makes
every model pass ``samples`` rows long — 8× slower than captum on a batch in our benchmark.
So the draws are made per image exactly as a one-image ``GradientShap`` call makes them after
``np.random.seed(image_seed(seed, i))`` (``choice`` of baselines, then ``uniform`` α), and the
(image, sample) rows are pushed through the model in full passes of ``chunk_size``. Tested
equal to captum's per-image call with those seeds; independent of ``chunk_size``.

``expected-gradients`` (Erion et al., 2021) is registered as a second name for the same
explainer: expected gradients *is* this computation (the expectation over reference baselines
and α of ``(x − b) · ∂score/∂x``), so the two names give identical maps (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import image_seed, RowBatcher
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps


def shap_draws(seed: int, index: int, n_ref: int, samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Baseline indices and α of image ``index``, as captum draws them after ``np.random.seed``."""
    rs = np.random.RandomState(image_seed(seed, index))
    return rs.choice(n_ref, samples), rs.uniform(0.0, 1.0, samples)


@dataclass(frozen=True)
class Shap:
    """GradientSHAP with baselines drawn from the reference images; ``samples`` per image."""

    samples: int = 32
    """draws of (reference image, α) per image"""

    def __post_init__(self) -> None:
        require(isinstance(self.samples, int) and self.samples >= 1, "explainer shap", "samples", "an integer ≥ 1")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer shap")
        ref = context.reference
        if ref is None or ref.ndim != x.ndim or ref.shape[0] == 0 or ref.shape[1:] != x.shape[1:]:
            raise XaibenchError("explainer shap: needs reference images of the same shape as the inputs")
        ref = ref.to(x.device, x.dtype)
        x = x.detach()
        out = empty_maps(x)
        batcher = RowBatcher(context.chunk_size)

        def run(idx: torch.Tensor, base: torch.Tensor, alpha: torch.Tensor) -> None:
            xi = x[idx]
            al = alpha.view(-1, *([1] * (xi.ndim - 1)))
            scaled = (al * xi + (1.0 - al) * base).requires_grad_(True)
            (g,) = torch.autograd.grad(target.subset(idx.to(target.classes.device))(model, scaled).sum(), scaled)
            out.index_add_(0, idx, ((xi - base) * g).sum(dim=1))

        with torch.enable_grad():
            for i in range(x.shape[0]):
                bi, al = shap_draws(context.seed, i, ref.shape[0], self.samples)
                alpha = torch.tensor(al, device=x.device, dtype=x.dtype)
                for batch in batcher.add(i, ref[torch.as_tensor(bi, device=x.device)], alpha):
                    run(*batch)
            for batch in batcher.flush():
                run(*batch)
        return (out / self.samples).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("shap", "GradientSHAP (captum's definition, batched; baselines from training images)",
                          option_factory("explainer shap", Shap), spatial_dims=(2, 3), conformance={"samples": 3})
    yield ExplainerRecord("expected-gradients", "expected gradients: another name for shap (GradientSHAP, captum's "
                          "definition, batched; baselines from training images)",
                          option_factory("explainer expected-gradients", Shap), spatial_dims=(2, 3),
                          conformance={"samples": 3})
