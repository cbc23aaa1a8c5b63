"""Random: a uniform-noise map, the chance baseline every metric is read against.

Values are i.i.d. U[0, 1) per pixel. Each image's generator is seeded from a hash of that
image's bytes and ``context.seed``: the same image gets the same map on any device, in any
batch or chunk, and a different image (even one perturbed imperceptibly) gets independent
noise. That is what "chance" means for the stability metrics: seeding from the row index
alone gave a perturbed copy the very same map, so noise-stability read 0.5 against its
stated chance of 0. Drawn on the CPU, then moved to the input's device. No sign or channel
meaning; ignores the model and the target.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory


def image_seed(image: torch.Tensor, seed: int) -> int:
    """A 63-bit seed from the image's float32 bytes and ``seed``."""
    data = np.ascontiguousarray(image.detach().float().cpu().numpy()).tobytes()
    h = hashlib.blake2b(data, digest_size=8, key=int(seed).to_bytes(8, "little", signed=True))
    return int.from_bytes(h.digest(), "little") >> 1


@dataclass(frozen=True)
class RandomMap:
    """Uniform noise, ``N×*S``, seeded per image from its bytes and the context seed."""

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer random")
        size = tuple(x.shape[2:])
        maps = [torch.rand(size, generator=torch.Generator().manual_seed(image_seed(img, context.seed)))
                for img in x]
        out = torch.stack(maps) if maps else torch.zeros(0, *size)
        return out.to(x.device)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("random", "uniform noise map seeded by the image (chance baseline)",
                          option_factory("explainer random", RandomMap), spatial_dims=(2, 3), version="2",
                          baseline="chance")
