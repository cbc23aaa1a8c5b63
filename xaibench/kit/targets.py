"""Which scalar is explained, in the shape libraries expect.

Why: a :class:`~xaibench.contracts.Target` can be a logit, a margin or a group direction,
while captum and pytorch-grad-cam expect a model whose outputs are indexed by a class; these
give every target kind that shape, for explainers and attacks alike.
"""
from __future__ import annotations

import torch

from xaibench.contracts import Classifier, Target
from xaibench.errors import XaibenchError


def class_scores(target: Target, logits: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """``N×K`` scores such that ``out.gather(1, classes) == target.score(logits, emb)``.

    Libraries (captum, pytorch-grad-cam) pick an output column per image; this gives every
    target kind that shape: logits; ``logits - logits.flip(1)`` for the two-class margin;
    ``φ·[+1, −1]`` for the group direction (column 0 = group A's sign, column 1 = group B's).
    """
    if target.kind == "logit":
        return logits
    if target.kind == "margin":
        if logits.shape[1] != 2:
            raise XaibenchError("target 'margin' needs a two-class model")
        return logits - logits.flip(1)
    if target.direction is None:
        raise ValueError("group-direction target needs a direction")
    phi = emb @ target.direction.to(emb.device, emb.dtype)
    return torch.stack([phi, -phi], dim=1)


class ScoreModel(torch.nn.Module):
    """Wraps a classifier so ``forward(x)`` returns :func:`class_scores` (``N×K``); index it with
    ``target.classes``. The classifier's modules (stages) stay reachable for hooks."""

    def __init__(self, model: Classifier, target: Target) -> None:
        super().__init__()
        self.model = model
        self.kind, self.direction = target.kind, target.direction

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits, emb = self.model.forward_all(x)
        return class_scores(Target(self.kind, torch.zeros(0, dtype=torch.long), self.direction), logits, emb)


def score_head(model: Classifier, target: Target) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W, b)`` with ``class_scores = emb @ W.T + b`` for a GAP + linear model (CAM, LRP)."""
    head = model.head
    if not isinstance(head, torch.nn.Linear):
        raise XaibenchError(f"this explainer needs a linear head on pooled features, got {type(head).__name__}")
    w = head.weight
    b = head.bias if head.bias is not None else torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
    if target.kind == "logit":
        return w, b
    if target.kind == "margin":
        if w.shape[0] != 2:
            raise XaibenchError("target 'margin' needs a two-class model")
        return w - w.flip(0), b - b.flip(0)
    d = target.direction.to(w.device, w.dtype)
    return torch.stack([d, -d]), torch.zeros(2, device=w.device, dtype=w.dtype)
