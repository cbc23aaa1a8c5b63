"""GradientSHAP (Lundberg & Lee, 2017) through captum's ``GradientShap``.

Expected gradients: the mean over ``samples`` draws of a baseline ``b`` from the reference
training images (``context.reference``) and ``α ~ U(0, 1)`` of
``(x − b) · ∂score/∂x(b + α(x − b))`` (plus optional Gaussian input noise ``noise`` × the [0, 1]
range, captum's ``stdevs``, default 0). Signed: positive = evidence for the target relative
to typical training images; sums to ≈ score(x) − E[score(b)]. One channel, no reduction.

Determinism without disturbing the caller: captum draws baselines and α from numpy's and
torch's global generators, so each image is explained in its own call with both seeded from
(``context.seed``, image index) and restored afterwards (tested equal to captum called the
same way). Samples per model pass = ``min(samples, chunk_size)`` (more samples are drawn
in further seeded blocks and averaged); results do not depend on ``chunk_size`` as long as
``samples ≤ chunk_size``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import GradientShap

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord

from ._common import ScoreModel, check, check_input, factory, image_seed, seeded


@dataclass(frozen=True)
class Shap:
    """GradientSHAP with baselines drawn from the reference images; ``samples``, ``noise``."""

    samples: int = 32
    noise: float = 0.0

    def __post_init__(self) -> None:
        check("shap", "samples", isinstance(self.samples, int) and self.samples >= 1, "an integer ≥ 1")
        check("shap", "noise", isinstance(self.noise, (int, float)) and self.noise >= 0, "a number ≥ 0")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_input("shap", x)
        ref = context.reference
        if ref is None or ref.ndim != 4 or ref.shape[0] == 0 or ref.shape[1:] != x.shape[1:]:
            raise XaibenchError("explainer shap: needs reference images of the same shape as the inputs")
        ref = ref.to(x.device, x.dtype)
        gs = GradientShap(ScoreModel(model, target))
        cls = target.classes.to(x.device)
        per_pass = min(self.samples, context.chunk_size)
        out = torch.empty(x.shape[0], *x.shape[-2:], device=x.device)
        with torch.enable_grad():
            for i in range(x.shape[0]):
                acc = torch.zeros(x.shape[-2:], device=x.device)
                for j, start in enumerate(range(0, self.samples, per_pass)):
                    n = min(per_pass, self.samples - start)
                    with seeded(image_seed(context.seed, i, j), x.device):
                        a = gs.attribute(x[i:i + 1].detach(), baselines=ref, n_samples=n,
                                         stdevs=float(self.noise), target=cls[i:i + 1])
                    acc += a.detach().sum(dim=1)[0] * (n / self.samples)
                out[i] = acc
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("shap", "GradientSHAP (captum; baselines from training images)", factory("shap", Shap))
