"""``roi-volume`` on constructed inputs: the regression numbers against a direct least
squares, hemispheres with their own volumes and BH, categorical covariates as fixed
effects (an ordinal code would leave a non-monotone site confound in), option errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import false_discovery_control

from xaibench.errors import XaibenchError
from xaibench_plugins.metrics._regression import bh, design, ols_effect, permutation_p
from xaibench_plugins.metrics.roi_volume import ROIVolume

from .test_calibration_roi_volume import N, S, _inp, cohort


def _ratio_maps(roi: torch.Tensor, ratio: np.ndarray) -> torch.Tensor:
    """Maps whose mean in ``roi`` is ``ratio`` times their mean over the image."""
    area = roi.flatten(1).sum(1).double().numpy()
    p = S * S
    # inside c, outside 1: ratio = c·p / (c·area + p − area)  →  c = ratio (p − area) / (p − ratio·area)
    c = ratio * (p - area) / (p - ratio * area)
    return torch.where(roi, torch.as_tensor(c).float().view(-1, 1, 1), torch.tensor(1.0))


def test_regression_numbers_match_least_squares_and_the_control_stays_null():
    roi, meta, named = cohort(3)
    rng = np.random.default_rng(0)
    vol = meta["hippocampal_volume"]
    ratio = 1.5 + 0.4 * (vol - vol.mean()) + 0.1 * rng.normal(size=N)
    a = _ratio_maps(roi, ratio) + 0.01 * torch.rand(N, S, S, generator=torch.Generator().manual_seed(0))
    s = {v.name: v for v in ROIVolume(hemispheres=False, scores=["ratio"]).score(_inp(a, roi, meta, named))}
    cov, names = design(meta, ["age", "site"], N)
    assert names == ["age", "site=B", "site=C"]
    x = np.column_stack([np.ones(N), cov])
    e = (a * roi).flatten(1).sum(1).double().numpy() / roi.flatten(1).sum(1).numpy() / a.flatten(1).mean(1).double().numpy()
    full = np.column_stack([x, e])
    b, res, *_ = np.linalg.lstsq(full, vol, rcond=None)
    rss1 = float(((vol - full @ b) ** 2).sum())
    rss0 = float(((vol - x @ np.linalg.lstsq(x, vol, rcond=None)[0]) ** 2).sum())
    se = np.sqrt(rss1 / (N - full.shape[1]) * np.linalg.inv(full.T @ full)[-1, -1])
    tss = float(((vol - vol.mean()) ** 2).sum())
    assert s["roi-volume-beta"].values[0] == pytest.approx(b[-1], rel=1e-6)
    assert s["roi-volume-se"].values[0] == pytest.approx(se, rel=1e-6)
    assert s["roi-volume-delta-r2"].values[0] == pytest.approx((rss0 - rss1) / tss, rel=1e-6)
    assert s["roi-volume-partial"].values[0] > 0.8 and s["roi-volume-p"].values[0] < 0.002
    assert s["roi-volume-partial"].extra["covariates"] == names
    assert s["roi-volume-control-p"].values[0] > 0.01  # the control region carries no association
    assert "roi-volume-q" not in s  # a single test: nothing to adjust


def test_hemispheres_use_their_own_volumes_and_are_fdr_adjusted():
    roi, meta, named = cohort(4)
    left = meta["hippocampal_volume_left"]
    ratio = 1.0 + 0.5 * (left - left.mean())  # only the left ROI tracks its volume
    a = torch.ones(N, S, S)
    a = torch.where(named["roi-left"], torch.as_tensor(ratio).float().view(-1, 1, 1), a)
    a = a + 0.05 * torch.rand(N, S, S, generator=torch.Generator().manual_seed(1))
    scores = ROIVolume(scores=["mean"]).score(_inp(a, roi, meta, named))
    s = {v.name: v.values[0] for v in scores}
    assert s["roi-volume-mean-p-left"] < 0.002 and s["roi-volume-mean-partial-left"] > 0.8
    assert s["roi-volume-mean-p-right"] > 0.01
    ps = [s["roi-volume-mean-p"], s["roi-volume-mean-p-left"], s["roi-volume-mean-p-right"]]
    np.testing.assert_allclose([s["roi-volume-mean-q"], s["roi-volume-mean-q-left"], s["roi-volume-mean-q-right"]],
                               false_discovery_control(ps), rtol=1e-12)
    # hand-rolled BH on a known case, NaN passed through
    np.testing.assert_allclose(bh([0.01, 0.04, 0.03, np.nan]), [0.03, 0.04, 0.04, np.nan])
    off = {v.name for v in ROIVolume(scores=["mean"], hemispheres=False).score(_inp(a, roi, meta, named))}
    assert not any(n.endswith("-left") for n in off)


def test_categorical_site_is_a_fixed_effect_not_an_ordinal_code():
    roi, meta, named = cohort(5)
    rng = np.random.default_rng(2)
    site = np.array(["A", "B", "C"] * (N // 3) + ["A"] * (N % 3), dtype=object)
    fx = np.array([{"A": 0.0, "B": 1.0, "C": -1.0}[v] for v in site])  # not monotone in the code
    vol = 3.5 + fx + 0.1 * rng.normal(size=N)
    meta = {"hippocampal_volume": vol, "site": site}
    ratio = 1.5 + 0.3 * fx + 0.03 * rng.normal(size=N)  # the score follows the site, not the volume
    a = _ratio_maps(roi, ratio)
    s = {v.name: v for v in ROIVolume(hemispheres=False, scores=["ratio"]).score(_inp(a, roi, meta, named))}
    assert s["roi-volume-partial"].extra["covariates"] == ["site=B", "site=C"]
    assert s["roi-volume-partial"].extra["pearson"] > 0.9  # confounded without the covariate
    assert s["roi-volume-p"].values[0] > 0.01
    # the same site as ordinal codes 0/1/2 leaves most of the confound in
    coded = {"hippocampal_volume": vol, "site": np.array([{"A": 0, "B": 1, "C": 2}[v] for v in site], float)}
    ordinal = {v.name: v for v in ROIVolume(hemispheres=False, scores=["ratio"]).score(_inp(a, roi, coded, named))}
    assert ordinal["roi-volume-partial"].values[0] > 0.8
    # a numeric column named as categorical becomes fixed effects again
    forced = {v.name: v for v in ROIVolume(hemispheres=False, scores=["ratio"], categorical=["site"]).score(
        _inp(a, roi, coded, named))}
    assert forced["roi-volume-partial"].values[0] == pytest.approx(s["roi-volume-partial"].values[0], abs=1e-9)


def test_studentized_permutation_p_and_ols_helpers():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    assert permutation_p(x, x + 0.1 * rng.normal(size=40), 1000, 0) == pytest.approx(1 / 1001)
    assert np.isnan(permutation_p(x, np.ones(40), 1000, 0))
    eff = ols_effect(2 * x + rng.normal(size=40), x, np.zeros((40, 0)))
    assert eff["beta"] == pytest.approx(2, abs=0.5) and 0 < eff["delta_r2_null"] < 0.05


def test_options_and_missing_data_are_one_line_errors():
    roi, meta, named = cohort(6)
    a = torch.rand(N, S, S)
    with pytest.raises(XaibenchError, match="hippocampal_volume"):
        ROIVolume().score(_inp(a, roi, {"age": meta["age"]}, named))
    with pytest.raises(XaibenchError, match="covariates"):
        ROIVolume(covariates=["icv"]).score(_inp(a, roi, meta, named))
    with pytest.raises(XaibenchError, match="scores"):
        ROIVolume(scores=["share"])
    with pytest.raises(XaibenchError, match="categorical"):
        ROIVolume(categorical="site")
