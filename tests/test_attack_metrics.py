"""The literature's yardsticks beside the IoU success: cosine, SSIM and z-scored MSE to the target
region's map (attack-success) and to the clean model's maps (attack-stealth), and the label
success rate of a prediction backdoor; checked against numpy, scipy and scikit-image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.stats import pearsonr
from skimage.metrics import structural_similarity

from xaibench_plugins.metrics.attack_stealth import AttackStealth
from xaibench_plugins.metrics.attack_success import AttackSuccess, label_success, similarities

from .test_attacks import _inp, _scores


def _minmax(a: np.ndarray) -> np.ndarray:
    return (a - a.min()) / (a.max() - a.min())


def test_similarities_match_numpy_scipy_and_skimage():
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(4, 24, 24, generator=g) ** 3
    ref = torch.zeros(24, 24)
    ref[4:12, 8:16] = 1.0
    sim = similarities(maps, ref)
    for i in range(4):
        a, b = _minmax(maps[i].numpy().astype(float)), ref.numpy().astype(float)
        cos = (a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b))
        assert float(sim["cosine"][i]) == pytest.approx(cos, rel=1e-9)
        assert float(sim["ssim"][i]) == pytest.approx(structural_similarity(a, b, data_range=1.0), abs=1e-9)
        za = (maps[i].numpy() - maps[i].numpy().mean()) / maps[i].numpy().std()
        zb = (b - b.mean()) / b.std()
        assert float(sim["zmse"][i]) == pytest.approx(((za - zb) ** 2).mean(), rel=1e-6)
        # MSE of z-scored maps is 2(1 − Pearson r)
        assert float(sim["zmse"][i]) == pytest.approx(2 * (1 - pearsonr(a.ravel(), b.ravel()).statistic), rel=1e-6)


def test_attack_success_reports_the_new_similarities_beside_the_old_scores():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[0:4, 0:4] = True
    on = region.float() * 5.0  # the map *is* the region (up to scale)
    off = torch.zeros(16, 16)
    off[10:14, 10:14] = 5.0  # the same shape elsewhere
    s = _scores(AttackSuccess().score(_inp(torch.stack([on, off]), region=region)))
    assert {"attack_success", "target_iou", "target_mass"} <= set(s)  # the old names are kept
    np.testing.assert_allclose(s["target_cosine"].values, [1.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(s["target_ssim"].values[0], 1.0, atol=1e-12)
    # SSIM credits the shared empty background (a known property): about 0.48, not 0
    ref = structural_similarity(_minmax(off.numpy().astype(float)), region.numpy().astype(float), data_range=1.0)
    assert s["target_ssim"].values[1] == pytest.approx(ref, abs=1e-9) and ref < 0.6
    # two disjoint 16-px boxes in 256 px: Pearson r = −16/240, so zMSE = 2(1 + 1/15)
    np.testing.assert_allclose(s["target_zmse"].values, [0.0, 2 * (1 + 1 / 15)], atol=1e-9)
    assert s["target_zmse"].chance == 2.0 and s["target_zmse"].higher_is_better  # far from the target: defender wins
    assert not s["target_cosine"].higher_is_better and not s["target_ssim"].higher_is_better


def test_stealth_similarities_identical_and_negated_maps():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(10, 8, 8, generator=g)
    same = _scores(AttackStealth().score(_inp(ref.clone(), "clean", reference_maps=ref)))
    np.testing.assert_allclose(same["clean_cosine"].values, 1.0, atol=1e-12)
    np.testing.assert_allclose(same["clean_ssim"].values, 1.0, atol=1e-12)
    np.testing.assert_allclose(same["clean_zmse"].values, 0.0, atol=1e-12)
    neg = _scores(AttackStealth().score(_inp(-ref, "clean", reference_maps=ref)))
    np.testing.assert_allclose(neg["clean_zmse"].values, 4.0, atol=1e-9)  # Pearson −1
    assert "clean_spearman" in neg and neg["clean_spearman"].values[0] == pytest.approx(-1.0)


class _Fixed(torch.nn.Module):
    """A 'model' whose prediction for image i is preds[i] (the image's first pixel holds i)."""

    def __init__(self, preds):
        super().__init__()
        self.preds = torch.tensor(preds)

    def forward(self, x):
        idx = x[:, 0, 0, 0].long()
        return torch.nn.functional.one_hot(self.preds[idx], 2).float()


def test_label_success_rate_of_a_prediction_backdoor():
    labels = torch.tensor([0, 0, 1, 1, 1, 1])
    preds = [0, 0, 0, 0, 0, 1]  # 3 of the 4 class-1 images flipped to class 0
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 4, 4).contiguous()
    hit, cls, inferred = label_success(_Fixed(preds), images, labels, None)
    assert cls == 0 and inferred
    np.testing.assert_array_equal(np.isnan(hit), [True, True, False, False, False, False])
    assert np.nanmean(hit) == pytest.approx(0.75)
    hit1, cls1, inferred1 = label_success(_Fixed(preds), images, labels, 1)
    assert cls1 == 1 and not inferred1 and np.nanmean(hit1) == pytest.approx(0.0)
    trigger = torch.zeros(4, 4, dtype=torch.bool)
    trigger[0, 0] = True
    inp = _inp(torch.rand(6, 4, 4), trigger=trigger)
    inp = type(inp)(**{**inp.__dict__, "model": _Fixed(preds), "images": images, "labels": labels})
    s = _scores(AttackSuccess().score(inp))
    assert np.nanmean(s["label_success"].values) == pytest.approx(0.75)
    assert s["label_success"].extra == {"target_class": 0, "inferred": True}
    clean = type(inp)(**{**inp.__dict__, "split": "clean"})
    assert "label_success" not in _scores(AttackSuccess().score(clean))
