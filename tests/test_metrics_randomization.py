"""Model randomisation keeps undefined similarities visible: NaN per image (not dropped),
counted in ``n_nan`` and as the ``randomization-nan`` share."""
from __future__ import annotations

import numpy as np
import torch

from xaibench_plugins.metrics.randomization import Randomization

from .test_metrics import inp


class _HalfConstant:
    """The image for even rows, a constant (rank-less) map for odd rows."""

    def explain(self, model, x, target, context):
        out = x[:, 0].clone()
        out[1::2] = 0.0
        return out


def test_undefined_similarities_are_kept_as_nan_and_counted(tiny_model):
    n = 6
    x = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    scores = {s.name: s for s in Randomization().score(inp(x[:, 0].clone(), masks, tiny_model, x,
                                                           explainer=_HalfConstant()))}
    r = scores["randomization"]
    assert r.values.shape == (n,)
    np.testing.assert_array_equal(np.isnan(r.values), [False, True] * 3)
    np.testing.assert_allclose(r.values[::2], 1.0)
    assert r.extra["n"] == n and r.extra["n_nan"] == 3
    assert r.extra["n_nan_per_layer"] == [3] * len(r.extra["layers"])
    np.testing.assert_array_equal(scores["randomization-nan"].values, [0, 1] * 3)
    np.testing.assert_allclose(r.extra["curve"], 1.0)  # the curve is over the defined images, and says so
