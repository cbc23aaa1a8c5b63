"""SmoothGrad (Smilkov et al., 2017) through captum's ``NoiseTunnel``: the mean of a base
attribution over ``samples`` copies of the image with Gaussian noise added.

Base (``base``): ``saliency`` (the signed input gradient, or its magnitude with
``absolute = true`` taken per sample before averaging, as in the paper's figures) or ``ig``
(Integrated Gradients from a zero baseline with ``ig_steps`` steps). Noise σ = ``noise`` × the
input range, where the range is the contract's intensity range [0, 1] (so σ is the same for
every image and does not depend on which images share a batch); ``noise`` 0.15 by default
(the paper recommends 10–20 %). Signed unless ``absolute``; one input channel, no reduction.

Determinism without disturbing the caller: captum draws noise from torch's global generator,
so each image is explained in its own call with the global state seeded from
(``context.seed``, image index) and restored afterwards. Samples per model pass =
``min(samples, chunk_size)``; results do not depend on ``chunk_size`` as long as
``samples ≤ chunk_size`` (captum draws noise per pass).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients, NoiseTunnel
from captum.attr import Saliency as CaptumSaliency

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord

from ._common import ScoreModel, check, check_input, factory, image_seed, seeded


@dataclass(frozen=True)
class SmoothGrad:
    """SmoothGrad over ``saliency`` or ``ig``; ``samples``, ``noise`` (fraction of the range)."""

    base: str = "saliency"
    samples: int = 32
    noise: float = 0.15
    absolute: bool = False
    ig_steps: int = 16

    def __post_init__(self) -> None:
        check("smoothgrad", "base", self.base in ("saliency", "ig"), "saliency or ig")
        check("smoothgrad", "samples", isinstance(self.samples, int) and self.samples >= 1, "an integer ≥ 1")
        check("smoothgrad", "noise", isinstance(self.noise, (int, float)) and self.noise >= 0, "a number ≥ 0")
        check("smoothgrad", "absolute", isinstance(self.absolute, bool) and not (self.absolute and self.base == "ig"),
              "true or false (true only with base = saliency)")
        check("smoothgrad", "ig_steps", isinstance(self.ig_steps, int) and self.ig_steps >= 1, "an integer ≥ 1")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_input("smoothgrad", x)
        fwd = ScoreModel(model, target)
        nt = NoiseTunnel(CaptumSaliency(fwd) if self.base == "saliency" else IntegratedGradients(fwd))
        per_pass = min(self.samples, context.chunk_size)
        extra = ({"abs": self.absolute} if self.base == "saliency"
                 else {"n_steps": self.ig_steps, "internal_batch_size": context.chunk_size})
        cls = target.classes.to(x.device)
        out = torch.empty(x.shape[0], *x.shape[-2:], device=x.device)
        with torch.enable_grad():
            for i in range(x.shape[0]):
                with seeded(image_seed(context.seed, i), x.device):
                    a = nt.attribute(x[i:i + 1].detach(), nt_type="smoothgrad", nt_samples=self.samples,
                                     nt_samples_batch_size=per_pass, stdevs=float(self.noise) * 1.0,
                                     target=cls[i:i + 1], **extra)
                out[i] = a.detach().sum(dim=1)[0]
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("smoothgrad", "SmoothGrad (captum NoiseTunnel over the gradient or IG)",
                          factory("smoothgrad", SmoothGrad))
