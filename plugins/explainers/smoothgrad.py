"""SmoothGrad (Smilkov et al., 2017): captum ``NoiseTunnel``'s smoothgrad, computed in batches.

The mean of a base attribution over ``samples`` copies of the image with Gaussian noise added.
Base (``base``): ``saliency`` (the signed input gradient, or its magnitude with
``absolute = true`` taken per sample before averaging, as in the paper's figures) or ``ig``
(captum Integrated Gradients from a zero baseline with ``ig_steps`` steps on each noisy copy).
Noise σ = ``noise`` × the input range, where the range is the contract's intensity range
[0, 1] (so σ is the same for every image whatever shares its batch); ``noise`` 0.15 by default
(the paper recommends 10–20 %). Signed unless ``absolute``; one input channel, no reduction.

Why not call ``NoiseTunnel`` directly: it draws the noise from torch's *global* generator
for the whole batch at once, so results would depend on which images share a call (and on
the caller's random state); calling it image by image makes every pass ``samples`` rows
long (6× slower than captum on a batch in our benchmark). So each image's noise is drawn
exactly as a one-image ``NoiseTunnel`` call draws it after
``torch.manual_seed(image_seed(seed, i))``, from a private generator on the CPU, and the
noisy copies of all images are pushed through the model in full passes of ``chunk_size``.
Tested equal to captum's per-image call with those seeds; independent of ``chunk_size``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import IntegratedGradients

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import image_seed, RowBatcher
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps
from xaibench.kit.targets import ScoreModel


def smoothgrad_noise(seed: int, index: int, samples: int, shape: tuple[int, ...], sigma: float) -> torch.Tensor:
    """Image ``index``'s noise ``samples×shape`` as NoiseTunnel draws it after ``torch.manual_seed``."""
    g = torch.Generator().manual_seed(image_seed(seed, index))
    return torch.normal(0, torch.tensor(sigma).repeat((samples, *shape)), generator=g)


@dataclass(frozen=True)
class SmoothGrad:
    """SmoothGrad over ``saliency`` or ``ig``; ``samples``, ``noise`` (fraction of the range)."""

    base: str = "saliency"
    samples: int = 32
    noise: float = 0.15
    absolute: bool = False
    ig_steps: int = 16

    def __post_init__(self) -> None:
        require(self.base in ("saliency", "ig"), "explainer smoothgrad", "base", "saliency or ig")
        require(isinstance(self.samples, int) and self.samples >= 1, "explainer smoothgrad", "samples",
                "an integer ≥ 1")
        require(isinstance(self.noise, (int, float)) and self.noise >= 0, "explainer smoothgrad", "noise",
                "a number ≥ 0")
        require(isinstance(self.absolute, bool) and not (self.absolute and self.base == "ig"),
                "explainer smoothgrad", "absolute", "true or false (true only with base = saliency)")
        require(isinstance(self.ig_steps, int) and self.ig_steps >= 1, "explainer smoothgrad", "ig_steps",
                "an integer ≥ 1")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer smoothgrad")
        x = x.detach()
        out = empty_maps(x)
        sigma = float(self.noise) * 1.0  # × the [0, 1] intensity range
        batcher = RowBatcher(context.chunk_size)
        ig = IntegratedGradients(ScoreModel(model, target)) if self.base == "ig" else None

        def run(idx: torch.Tensor, rows: torch.Tensor) -> None:
            t = target.subset(idx.to(target.classes.device))
            if ig is not None:
                a = ig.attribute(rows, baselines=torch.zeros_like(rows), target=t.classes.to(rows.device),
                                 n_steps=self.ig_steps, internal_batch_size=context.chunk_size)
            else:
                rows = rows.requires_grad_(True)
                (a,) = torch.autograd.grad(t(model, rows).sum(), rows)
                a = a.abs() if self.absolute else a
            out.index_add_(0, idx, a.detach().sum(dim=1))

        with torch.enable_grad():
            for i in range(x.shape[0]):
                noise = smoothgrad_noise(context.seed, i, self.samples, tuple(x.shape[1:]), sigma)
                for batch in batcher.add(i, x[i:i + 1] + noise.to(x.device, x.dtype)):
                    run(*batch)
            for batch in batcher.flush():
                run(*batch)
        return (out / self.samples).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("smoothgrad", "SmoothGrad (captum NoiseTunnel's definition, batched; gradient or IG)",
                          option_factory("explainer smoothgrad", SmoothGrad), spatial_dims=(2, 3),
                          conformance={"samples": 3})
