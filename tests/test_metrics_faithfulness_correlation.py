"""``faithfulness-correlation`` against Quantus' FaithfulnessCorrelation on the same
subsets, at chance 0 for random maps, above it for the exact contributions of a linear
model, and its option errors."""
from __future__ import annotations

import math

import numpy as np
import pytest
import quantus
import torch

from xaibench.contracts import Target
from xaibench.errors import XaibenchError
from xaibench.kit.perturb import Filler
from xaibench_plugins.metrics.faithfulness_correlation import FaithfulnessCorrelation, subset_correlation

from .test_metrics import H, W, inp, linear_model, oracle


def test_equals_quantus_on_the_same_subsets(tiny_model, monkeypatch):
    n, s, runs, size = 6, 32, 12, 40
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n, 1, s, s, generator=g)
    y = torch.tensor([0, 1] * 3)
    a = torch.randn(n, s, s, generator=g)
    drawn: list[np.ndarray] = []
    choice = np.random.choice

    def record(*args, **kwargs):
        out = choice(*args, **kwargs)
        drawn.append(np.asarray(out))
        return out

    monkeypatch.setattr(np.random, "choice", record)
    np.random.seed(0)
    ref = quantus.FaithfulnessCorrelation(nr_runs=runs, subset_size=size, perturb_baseline="black",
                                          disable_warnings=True, return_aggregate=False)(
        model=tiny_model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a.numpy()[:, None], device="cpu",
        softmax=False)
    monkeypatch.undo()
    assert len(drawn) == runs * n  # run-major, one draw per image
    subsets = torch.zeros(n, runs, s * s, dtype=torch.bool)
    for j, idx in enumerate(drawn):
        subsets[j % n, j // n, torch.as_tensor(idx)] = True
    ours = subset_correlation(tiny_model, Target("logit", y), x, a, subsets.view(n, runs, s, s),
                              Filler("black"), chunk=7)
    np.testing.assert_allclose(ours, np.asarray(ref, float), atol=1e-5)


def test_random_maps_score_zero_and_exact_contributions_score_high():
    n = 60
    model = linear_model(11)
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(12))
    metric = FaithfulnessCorrelation(draws=30, subset=0.1)
    rnd = metric.score(inp(torch.rand(n, H, W, generator=torch.Generator().manual_seed(13)), model=model, x=x))[0]
    assert rnd.chance == 0.0 and rnd.extra["n_nan"] == 0
    assert abs(rnd.values.mean()) < 4 * rnd.values.std() / math.sqrt(n)
    exact = oracle(model, x, x.amin(dim=(1, 2, 3), keepdim=True))  # each pixel's own drop: additive model
    good = metric.score(inp(exact, model=model, x=x))[0]
    np.testing.assert_allclose(good.values, 1.0, atol=1e-4)  # subset drop = sum of the pixels' drops
    assert metric.passes(n) == n * 31 and good.extra["subset_pixels"] == round(0.1 * H * W)


def test_options_are_checked():
    for bad in ({"subset": 0}, {"subset": 1.5}, {"subset": True}, {"draws": 2}, {"similarity": "kendall"},
                {"filler": "zeros"}):
        with pytest.raises(XaibenchError, match="faithfulness-correlation"):
            FaithfulnessCorrelation(**bad)
    assert FaithfulnessCorrelation(subset=7).size(100) == 7
