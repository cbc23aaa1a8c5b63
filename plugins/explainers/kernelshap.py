"""Kernel SHAP (Lundberg & Lee, 2017) through captum's ``KernelShap``.

LIME with the Shapley kernel: ``n_samples`` feature subsets drawn by captum's Shapley-kernel
sampler, scored with the other features at ``baseline``, and a linear regression weighted by
the kernel; the coefficients estimate the features' Shapley values (each pixel gets its
feature's). Signed: positive = the feature raises the score. One channel. The default sample
count is small to keep the benchmark cheap: the estimate is noisy below a few times the
number of features.

Features, seeding and batching as ``lime``: a fixed ``patches`` grid (16 px: 16 features on a
64×64 image) or ``slic`` superpixels; each image's samples drawn after seeding with the
image's seed and sent through the model ``chunk_size`` at a time.

Options: ``n_samples`` — coalitions per image (64); ``features`` — patches (a fixed square grid)
or slic (superpixels of each image); ``patch`` — side of the grid's squares in pixels (16);
``segments`` — SLIC's target number of superpixels (16); ``baseline`` — intensity of a removed
feature (0 = black).
"""
from __future__ import annotations

from dataclasses import dataclass

from captum.attr import KernelShap as CaptumKernelShap

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory
from xaibench.kit.targets import ScoreModel
from .lime import Lime


@dataclass(frozen=True)
class KernelShap(Lime):
    """Kernel SHAP on patch or superpixel features; ``n_samples`` per image."""

    name = "kernelshap"

    def method(self, f: ScoreModel):
        return CaptumKernelShap(f)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("kernelshap", "Kernel SHAP on patch or superpixel features (captum)",
                          option_factory("explainer kernelshap", KernelShap),
                          conformance={"n_samples": 8, "patch": 8}, spatial_dims=(2, 3))
