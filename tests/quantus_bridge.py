"""A deterministic gradient explainer in xaibench's and Quantus' call conventions, shared by the
tests that compare our metrics with Quantus on the same maps."""
from __future__ import annotations

import numpy as np
import torch

from xaibench.contracts import Target


class Grad:
    """Plain gradient of the target (a deterministic test explainer)."""

    def explain(self, model, x, target, context):
        x = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(target(model, x).sum(), x)
        return g[:, 0].detach()


def q_explain(model, inputs, targets, **kwargs):
    """Quantus' explain_func signature around :class:`Grad`."""
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    t = Target("logit", torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1))
    return Grad().explain(model, x, t, None).unsqueeze(1).numpy()
