"""Gradient × input as an xaibench explainer plugin (a complete out-of-tree example).

Install with ``pip install ./examples/xaibench-gradxinput``; then ``xaibench list explainer``
shows ``grad-x-input`` and any suite can name it.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target, check_images
from xaibench.hookspecs import ExplainerRecord


@dataclass(frozen=True)
class GradXInput:
    """Map = Σ_c x · ∂T/∂x (signed; larger = more evidence for the target)."""

    absolute: bool = False

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "grad-x-input")
        maps = []
        for i in range(0, len(x), context.chunk_size):  # bounded memory: one chunk at a time
            xi = x[i:i + context.chunk_size].detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(target.subset(slice(i, i + len(xi)))(model, xi).sum(), xi)
            m = (g * xi).sum(1).detach()
            maps.append(m.abs() if self.absolute else m)
        return torch.cat(maps).float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("grad-x-input", "gradient × input (example plugin)", GradXInput)
