"""Deletion and insertion normalised by the clean score: a random map lands at the stated
random-order chance, a faithful map beats it, images whose clean score is not positive
are NaN and counted, and ``normalise = "none"`` is the raw AUC of version 1."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch

from xaibench.kit.spatial import gaussian_blur as _blur
from xaibench_plugins.metrics.deletion import Deletion
from xaibench_plugins.metrics.insertion import Insertion

from .test_metrics import H, W, inp, linear_model, oracle

gaussian_blur = partial(_blur, border="reflect")  # the removal filler's border


def shifted_model(seed: int, bias: float = 3.0):
    """The linear model with T(x) = 3 + mean_p w_p·(x_p − 0.485)/0.229 > 0 on these images."""
    m = linear_model(seed)
    with torch.no_grad():
        m.head.bias.copy_(torch.tensor([bias, -bias]))
    return m


@pytest.mark.parametrize("cls", [Deletion, Insertion], ids=["deletion", "insertion"])
def test_random_map_lands_at_the_random_order_chance(cls):
    n = 80
    model = shifted_model(5)
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(6))
    metric = cls(steps=8)
    assert metric.draws > 0 and metric.normalise == "clean"  # the chance level is on by default
    s = metric.score(inp(torch.rand(n, H, W, generator=torch.Generator().manual_seed(7)), model=model, x=x))[0]
    assert s.chance is not None and np.isfinite(s.values).all() and s.extra["n_nan"] == 0
    assert abs(s.values.mean() - s.chance) < 4 * s.values.std() / math.sqrt(n)
    # a faithful map is clearly on the right side of the chance
    canvas = x.amin(dim=(1, 2, 3), keepdim=True) if cls is Deletion else gaussian_blur(x, 3.0)
    good = metric.score(inp(oracle(model, x, canvas), model=model, x=x))[0]
    gap = good.values.mean() - good.chance
    assert (gap < -0.02) if cls is Deletion else (gap > 0.02)
    # normalised: the deletion curve starts at 1, the insertion curve ends at 1
    assert (s.extra["curve"][0] if cls is Deletion else s.extra["curve"][-1]) == pytest.approx(1.0)


def test_non_positive_clean_scores_are_nan_and_counted_and_raw_auc_is_kept():
    n = 12
    model = shifted_model(8, bias=0.0)  # T(x) has either sign
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(9))
    a = torch.rand(n, H, W, generator=torch.Generator().manual_seed(10))
    with torch.no_grad():
        t = model(x)[:, 0].numpy()
    s = Deletion(steps=4).score(inp(a, model=model, x=x))[0]
    assert (t <= 0).any() and (t > 0).any()
    np.testing.assert_array_equal(np.isnan(s.values), t <= 0)
    assert s.extra["n_nan"] == int((t <= 0).sum()) and s.extra["n"] == n
    raw = Deletion(steps=4, normalise="none").score(inp(a, model=model, x=x))[0]
    ok = t > 0
    np.testing.assert_allclose(s.values[ok], raw.values[ok] / t[ok], rtol=1e-4)
