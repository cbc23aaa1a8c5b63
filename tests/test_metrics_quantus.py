"""Our metrics against Quantus (and pytorch-grad-cam's ROAD) on the same inputs and
settings: equal to 1e-6, or the documented difference is asserted."""
from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench.kit.curves import curves
from xaibench.kit.perturb import Filler, road_impute
from xaibench_plugins.metrics.deletion import Deletion
from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
from xaibench_plugins.metrics.noise_stability import NoiseStability
from xaibench_plugins.metrics.pointing_game import PointingGame
from xaibench_plugins.metrics.randomization import Randomization
from xaibench_plugins.metrics.rank_accuracy import RankAccuracy
from xaibench_plugins.metrics.road import ROAD

from .quantus_bridge import Grad, q_explain

N, S = 6, 32


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: one thread is faster than two fighting over a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, S, S, generator=g)
    y = torch.tensor([0, 1] * (N // 2))
    masks = torch.zeros(N, S, S, dtype=torch.bool)
    for i in range(N):
        r, c = 4 + 2 * i, 3 + 3 * i
        masks[i, r:r + 9, c:c + 7] = True
    a = torch.randn(N, S, S, generator=g)
    return x, y, masks, a


def _inp(model, x, y, masks, a, **kw):
    ctx = ExplainContext(reference=x[:2], seed=0, chunk_size=kw.pop("chunk", 64))
    return MetricInput(model=model, images=x, labels=y, masks=masks, target=Target("logit", y), context=ctx,
                       attributions=a, **kw)


def _np(t):
    return t.detach().cpu().numpy()


# --------------------------------------------------------------------------- localisation


def test_pointing_game_equals_quantus_and_fixes_its_empty_mask_defect(data):
    x, y, masks, a = data
    masks = masks.clone()
    masks[0] = False  # Quantus writes NaN into a bool array: stored as True, a hit
    ref = quantus.PointingGame(disable_warnings=True)(model=None, x_batch=_np(x), y_batch=_np(y),
                                                      a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    ours = PointingGame().score(_inp(None, x, y, masks, a))[0].values
    np.testing.assert_allclose(ours[1:], np.asarray(ref[1:], float), atol=1e-6)
    assert ref[0] == 1 and np.isnan(ours[0])


@pytest.mark.parametrize("mode,kwargs", [("signed", {}), ("absolute", {"abs": True})])
def test_energy_in_roi_equals_relevance_mass_accuracy(data, mode, kwargs):
    x, y, masks, a = data
    ref = quantus.RelevanceMassAccuracy(disable_warnings=True, **kwargs)(
        model=None, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    ours = EnergyInROI(mode=mode).score(_inp(None, x, y, masks, a))[0].values
    np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("mode,kwargs", [("absolute", {}), ("positive", {"abs": False, "positive_attributions": True})])
def test_energy_in_roi_equals_attribution_localisation(data, mode, kwargs):
    x, y, masks, a = data
    ref = quantus.AttributionLocalisation(disable_warnings=True, **kwargs)(
        model=None, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    ours = EnergyInROI(mode=mode).score(_inp(None, x, y, masks, a))[0].values
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def test_attribution_localisation_weighting_uses_the_wrong_image_size(data):
    """Quantus weights by area / x_batch[2:].size ((N−2)·C·H·W elements of the batch), the
    paper by area / (H·W). We do not offer the weighted form; this pins the defect."""
    x, y, masks, a = data
    kw = dict(model=None, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    plain = np.asarray(quantus.AttributionLocalisation(disable_warnings=True)(**kw))
    weighted = np.asarray(quantus.AttributionLocalisation(weighted=True, disable_warnings=True)(**kw))
    area = _np(masks).reshape(N, -1).sum(1)
    np.testing.assert_allclose(weighted, plain * area / ((N - 2) * S * S), rtol=1e-6)
    assert not np.allclose(weighted, plain * area / (S * S))


def test_rank_accuracy_equals_relevance_rank_accuracy(data):
    x, y, masks, a = data
    ref = quantus.RelevanceRankAccuracy(disable_warnings=True)(
        model=None, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    ours = RankAccuracy().score(_inp(None, x, y, masks, a))[0].values
    np.testing.assert_allclose(ours, ref, atol=1e-6)


@pytest.mark.parametrize("k", [10, 100])
def test_top_k_equals_top_k_intersection(data, k):
    x, y, masks, a = data
    ref = quantus.TopKIntersection(k=k, disable_warnings=True)(
        model=None, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], s_batch=_np(masks)[:, None])
    score = RankAccuracy(k=k).score(_inp(None, x, y, masks, a))[0]
    assert score.name == f"top-k@{k}"
    np.testing.assert_allclose(score.values, ref, atol=1e-6)


# --------------------------------------------------------------------------- faithfulness


def test_deletion_curve_equals_pixel_flipping(data, tiny_model):
    x, y, masks, a = data
    step = 64
    ref = quantus.PixelFlipping(features_in_step=step, perturb_baseline="black", disable_warnings=True)(
        model=tiny_model, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], device="cpu", softmax=False)
    spec = Deletion(units_per_step=step, filler="black")
    c, frac, _ = curves(_inp(tiny_model, x, y, masks, a, chunk=7), spec, spec.check("deletion"), insertion=False)
    np.testing.assert_allclose(c[:, 1:], np.asarray(ref), atol=1e-5, rtol=1e-6)
    assert frac[0] == 0 and frac[-1] == 1


@pytest.mark.parametrize("size", [32, 30])
def test_patch_deletion_equals_region_perturbation(data, tiny_model, size):
    """Patches on a grid padded as Quantus pads (30 px: one pixel each side)."""
    x, y, masks, a = data
    x, a, masks = x[..., :size, :size].contiguous(), a[..., :size, :size].contiguous(), masks[..., :size, :size]
    n_patches = (-(-size // 4)) ** 2
    ref = quantus.RegionPerturbation(patch_size=4, regions_evaluation=n_patches, perturb_baseline="black",
                                     disable_warnings=True)(
        model=tiny_model, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], device="cpu", softmax=False)
    spec = Deletion(patch=4, units_per_step=1, filler="black")
    inp = _inp(tiny_model, x, y, masks, a)
    c, _, _ = curves(inp, spec, spec.check("deletion"), insertion=False)
    with torch.no_grad():
        t0 = _np(inp.target(tiny_model, x)).astype(float)
    np.testing.assert_allclose(t0[:, None] - c[:, 1:], np.asarray(ref), atol=1e-5, rtol=1e-6)


# --------------------------------------------------------------------------- robustness and randomisation


def test_max_sensitivity_equals_quantus_with_one_explainer_call(data, tiny_model):
    x, y, masks, _ = data
    a = Grad().explain(tiny_model, x, Target("logit", y), None)
    calls = []

    class Counting(Grad):
        def explain(self, model, xx, target, context):
            calls.append(len(xx))
            return super().explain(model, xx, target, context)

    draws, radius, seed = 5, 0.05, 123
    np.random.seed(seed)
    ref = quantus.MaxSensitivity(nr_samples=draws, lower_bound=radius, disable_warnings=True)(
        model=tiny_model, x_batch=_np(x), y_batch=_np(y), a_batch=_np(a)[:, None], device="cpu",
        explain_func=q_explain)
    scores = NoiseStability(draws=draws, radius=radius, seed=seed).score(
        _inp(tiny_model, x, y, masks, a, explainer=Counting()))
    ours = {s.name: s.values for s in scores}["max-sensitivity"]
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6)
    assert calls == [N * draws]  # every perturbed image in one batched call


def test_module_randomization_equals_mprt(data, tiny_model):
    x, y, masks, _ = data
    n = 4
    x, y, masks = x[:n], y[:n], masks[:n]
    a = Grad().explain(tiny_model, x, Target("logit", y), None)
    ref = quantus.MPRT(disable_warnings=True)(model=tiny_model, x_batch=_np(x), y_batch=_np(y),
                                               a_batch=_np(a)[:, None], device="cpu", explain_func=q_explain)
    layers, sims = Randomization(granularity="module").curve(_inp(tiny_model, x, y, masks, a, explainer=Grad()))
    ref_layers = [k for k in ref if k != "original"]
    assert layers == ref_layers
    np.testing.assert_allclose(sims, np.array([ref[k] for k in ref_layers]).T, atol=1e-6)
    # stage granularity is the same cascade sampled at stage boundaries
    stage_layers, stage_sims = Randomization().curve(_inp(tiny_model, x, y, masks, a, explainer=Grad()))
    assert stage_layers == ["logits", "layer4", "layer3", "layer2", "layer1", "stem"]
    last = [max(i for i, name in enumerate(layers) if name.startswith(f"encoder.{s}")) for s in stage_layers[1:5]]
    np.testing.assert_allclose(stage_sims[:, 1:5], sims[:, last], atol=1e-6)
    np.testing.assert_allclose(stage_sims[:, -1], sims[:, -1], atol=1e-6)


# --------------------------------------------------------------------------- ROAD


def test_road_imputation_equals_pytorch_grad_cam():
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(3, 1, 24, 20, generator=g), 3, 1, 1)
    removed = torch.rand(3, 24, 20, generator=g) < torch.tensor([0.1, 0.5, 0.9]).view(3, 1, 1)
    removed[2, 2:20, 3:15] = True  # one large hole
    ref = torch.stack([NoisyLinearImputer(noise=0)(x[i], (~removed[i]).float()) for i in range(3)])
    np.testing.assert_allclose(_np(road_impute(x, removed, tol=1e-8)), _np(ref), atol=1e-5)
    # the default tolerance stays an order of magnitude below ROAD's noise (0.01)
    assert (road_impute(x, removed) - ref).abs().max() < 1e-3
    # noise lands only on removed pixels
    noisy = Filler("road", noise=0.01).apply(x, removed, None, torch.Generator().manual_seed(0))
    assert torch.equal(noisy[~removed.unsqueeze(1)], x[~removed.unsqueeze(1)])


def test_road_equals_pytorch_grad_cam_road_combined(tiny_model):
    """Noise 0, a map with distinct values and 1000 pixels, so that pytorch-grad-cam's
    percentile thresholds remove exactly round(p·HW) pixels, as ours do."""
    from pytorch_grad_cam.metrics.perturbation_confidence import (PerturbationConfidenceMetric,
                                                                  RemoveLeastRelevantFirst,
                                                                  RemoveMostRelevantFirst)
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    n, h, w = 3, 25, 40
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 1, h, w, generator=g)
    y = torch.tensor([0, 1, 0])
    cam = torch.stack([torch.randperm(h * w, generator=g) for _ in range(n)]).float().view(n, h, w) / (h * w)
    pcts = [10, 30, 50, 70, 90]
    targets = [ClassifierOutputTarget(int(c)) for c in y]
    imp = NoisyLinearImputer(noise=0)
    morf = np.mean([PerturbationConfidenceMetric(RemoveMostRelevantFirst(p, imp))(x, _np(cam), targets, tiny_model)
                    for p in pcts], 0)
    lerf = np.mean([PerturbationConfidenceMetric(RemoveLeastRelevantFirst(p, imp))(x, _np(cam), targets, tiny_model)
                    for p in pcts], 0)
    ref = (lerf - morf) / 2
    scores = ROAD(percentiles=pcts, road_noise=0.0, tol=1e-8).score(
        _inp(tiny_model, x, y, torch.zeros(n, h, w, dtype=torch.bool), cam, chunk=4))
    np.testing.assert_allclose(scores[0].values, ref, atol=1e-5)
