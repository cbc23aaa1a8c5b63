"""The model-free reference rows: random (seeded by the image), roi-prior, intensity, edge."""
from __future__ import annotations

import pytest
import torch

from xaibench.contracts import ExplainContext
from xaibench.errors import XaibenchError
from xaibench.plugins import load
from xaibench_plugins.explainers.intensity import Intensity
from xaibench_plugins.explainers.random import RandomMap
from xaibench_plugins.explainers.roi_prior import ROIPrior


def _ctx(seed=0, priors=None):
    return ExplainContext(reference=torch.zeros(1, 1, 8, 8), seed=seed, mask_priors=priors or {})


def test_random_depends_on_the_image_not_its_row_or_batch():
    x = torch.rand(6, 1, 12, 12, generator=torch.Generator().manual_seed(0))
    a = RandomMap().explain(None, x, None, _ctx(3))
    assert torch.equal(a[2:4], RandomMap().explain(None, x[2:4], None, _ctx(3)))  # any chunking
    assert torch.equal(a[[5, 0]], RandomMap().explain(None, x[[5, 0]], None, _ctx(3)))  # any order
    nudged = x.clone()
    nudged[0, 0, 0, 0] += 1e-3
    b = RandomMap().explain(None, nudged, None, _ctx(3))
    assert torch.equal(a[1:], b[1:]) and not torch.equal(a[0], b[0])  # a perturbed copy gets fresh noise
    assert abs(float(torch.corrcoef(torch.stack([a[0].flatten(), b[0].flatten()]))[0, 1])) < 0.3
    assert not torch.equal(a, RandomMap().explain(None, x, None, _ctx(4)))
    same = x[:1].expand(2, -1, -1, -1)  # identical images: identical maps
    m = RandomMap().explain(None, same, None, _ctx(3))
    assert torch.equal(m[0], m[1])


def test_roi_prior_returns_the_training_prior_for_every_image_and_names_missing_masks():
    prior = torch.rand(8, 8)
    ev = torch.rand(8, 8)
    x = torch.rand(3, 1, 8, 8)
    out = ROIPrior().explain(None, x, None, _ctx(priors={"roi": prior, "evidence": ev}))
    assert out.shape == (3, 8, 8) and torch.equal(out[2], prior)
    assert torch.equal(ROIPrior(mask="evidence").explain(None, x, None, _ctx(priors={"roi": prior, "evidence": ev}))[0],
                       ev)
    with pytest.raises(XaibenchError, match=r"roi-prior: option mask='evidence'.*has: roi"):
        ROIPrior(mask="evidence").explain(None, x, None, _ctx(priors={"roi": prior}))
    with pytest.raises(XaibenchError, match="images are"):
        ROIPrior().explain(None, torch.rand(1, 1, 4, 4), None, _ctx(priors={"roi": prior}))


def test_intensity_is_the_image_above_the_floor():
    x = torch.tensor([[[[0.0, 0.02], [0.5, 0.9]]]])
    out = Intensity().explain(None, x, None, _ctx())
    assert torch.equal(out, torch.tensor([[[0.0, 0.0], [0.5, 0.9]]]))
    with pytest.raises(XaibenchError, match="floor"):
        Intensity(floor=2)


def test_baseline_kinds_are_declared():
    reg = load()
    kinds = {n: reg.get("explainer", n).baseline for n in ("random", "roi-prior", "intensity", "edge", "gradcam")}
    assert kinds == {"random": "chance", "roi-prior": "prior", "intensity": "model-free", "edge": "model-free",
                     "gradcam": None}
