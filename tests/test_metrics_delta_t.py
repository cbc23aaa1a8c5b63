"""ΔT's control region: a shape-matched control is unbiased for blob-shaped top-q sets
where the scattered control is not (issue: the comparison must not favour an explainer
family by the shape of its top-q sets), plus the ROI-removal and confidence options."""
from __future__ import annotations

from functools import partial
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, ExplainContext, MetricInput, Target
from xaibench.errors import XaibenchError
from xaibench.kit.spatial import gaussian_blur as _blur
from xaibench_plugins.metrics._regions import brain_masks, random_placements
from xaibench_plugins.metrics.delta_t import DeltaT

gaussian_blur = partial(_blur, border="reflect")  # the removal filler's border

H = W = 24
SIDE = 6


class _HighFrequency(torch.nn.Module):
    """Feature = −(z − local mean of z)²: T falls with high-frequency energy, so removing
    scattered pixels costs far more than removing a blob of the same size."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return -(z - F.avg_pool2d(z, 3, 1, 1, count_include_pad=False)) ** 2


def hf_model() -> Classifier:
    m = Classifier(_HighFrequency(), feature_dim=1, stages={}, num_classes=2, in_chans=1)
    with torch.no_grad():
        m.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m.head.bias.zero_()
    return m.eval()


def blob_maps(n: int, seed: int) -> torch.Tensor:
    """A SIDE×SIDE square at a uniformly random place: the top-q set of a CAM-like map."""
    rng = np.random.default_rng(seed)
    a = torch.zeros(n, H, W)
    for i in range(n):
        r, c = rng.integers(0, H - SIDE + 1, size=2)
        a[i, r:r + SIDE, c:c + SIDE] = 1.0
    return a


def _inp(a, x, y=None, **kw):
    y = torch.zeros(len(x), dtype=torch.long) if y is None else y
    return MetricInput(model=hf_model(), images=x, labels=y, masks=a > 0, target=Target("logit", y),
                       context=ExplainContext(reference=x[:2], seed=0, chunk_size=64), attributions=a, **kw)


@pytest.fixture(scope="module")
def smooth_images():
    return gaussian_blur(torch.rand(80, 1, H, W, generator=torch.Generator().manual_seed(0)), 2.0) + 0.2


def test_matched_control_is_unbiased_where_the_scattered_control_is_biased(smooth_images):
    x = smooth_images
    a = blob_maps(len(x), 1)
    q = SIDE * SIDE / (H * W)
    matched = DeltaT(q=q, draws=8).score(_inp(a, x))[0]
    scattered = DeltaT(q=q, draws=8, control="scattered").score(_inp(a, x))[0]
    se = lambda v: v.std() / math.sqrt(len(v))
    # the blob is one more same-shape region at a uniform place: no excess in expectation
    assert abs(matched.values.mean()) < 4 * se(matched.values)
    # scattered pixels cost more than a blob on this model: the top-q set looks unfaithful
    assert scattered.values.mean() < -10 * se(scattered.values)
    assert scattered.extra["delta_random"] > 3 * scattered.extra["delta_top"] > 0
    assert matched.extra["control"] == "matched" and scattered.extra["control"] == "scattered"


def test_random_placements_keep_the_shape_and_stay_in_the_brain():
    g = torch.Generator().manual_seed(0)
    mask = torch.zeros(2, H, W, dtype=torch.bool)
    mask[0, 2:5, 3:10] = True  # a 3×7 bar
    mask[1, 0, 0] = mask[1, 1, 1] = True  # two diagonal pixels
    brain = torch.zeros(2, H, W, dtype=torch.bool)
    brain[:, 4:20, 4:20] = True
    out = random_placements(mask, brain, 50, g)
    assert (out.flatten(2).sum(2) == mask.flatten(1).sum(1).view(-1, 1)).all()
    assert not (out & ~brain.unsqueeze(1)).any()
    rows = out[0].any(2).sum(1)
    assert set(rows.tolist()) == {3, 7}  # both orientations of the bar occur
    assert len({tuple(torch.nonzero(m).flatten().tolist()) for m in out[0]}) > 20
    # no brain given: the nonzero pixels of the image
    x = torch.zeros(1, 1, H, W)
    x[0, 0, 5:9, 5:9] = 1
    assert torch.equal(brain_masks(x)[0], x[0, 0] > 0)
    assert brain_masks(x, {"brain": brain}).shape == (2, H, W)


def test_roi_removal_control_mask_and_confident_images(smooth_images):
    x = smooth_images[:20]
    a = blob_maps(len(x), 2)
    q = SIDE * SIDE / (H * W)
    other = torch.zeros(len(x), H, W, dtype=torch.bool)
    other[:, :3, :12] = True
    y = torch.tensor([0, 1] * 10)
    s = {v.name: v for v in DeltaT(q=q, draws=4, mask="roi", control_mask="edge-band").score(
        _inp(a, x, y, named_masks={"edge-band": other}))}
    top, roi = s[f"delta-t@{100 * q:.4g}%"], s["delta-t-roi"]
    assert roi.extra["delta_mask"] == pytest.approx(top.extra["delta_top"], rel=1e-5)  # the ROI is the blob
    vs = s["delta-t-roi-vs-edge-band"].values
    assert np.all(np.isfinite(vs)) and vs.shape == (20,)
    # the model always predicts class 1 (T of class 0 is minus an energy): class-0 images are not scored
    conf = DeltaT(q=q, draws=2, min_confidence=0.5).score(_inp(a, x, y))[0]
    assert np.isnan(conf.values[y == 0]).all() and np.isfinite(conf.values[y == 1]).all()
    assert conf.extra["n_scored"] == 10
    with pytest.raises(XaibenchError, match="control"):
        DeltaT(control="blob")
    with pytest.raises(XaibenchError, match="control_mask"):
        DeltaT(control_mask="brain")
    with pytest.raises(XaibenchError, match="min_confidence"):
        DeltaT(min_confidence=1.5)


def test_a_set_that_fits_only_where_it_is_gets_a_different_control():
    brain = torch.zeros(1, H, W, dtype=torch.bool)
    brain[0, 4:20, 4:20] = True
    g = torch.Generator().manual_seed(3)
    speckle = brain & (torch.rand(1, H, W, generator=g) < 0.3)  # spans the whole brain
    out = random_placements(speckle, brain, 20, g)
    assert (out.flatten(2).sum(2) == speckle.sum()).all()
    assert not any(torch.equal(o, speckle[0]) for o in out[0])
