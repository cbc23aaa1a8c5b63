"""The captum catalogue (issue 16, item 2): every explainer equals captum called directly on
the same model, target and inputs (with the same seeds where it samples), does not depend on
``chunk_size``, and keeps the properties its definition promises (summation to delta)."""
from __future__ import annotations

import pytest
import torch

from xaibench.contracts import ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench_plugins.explainers._captum_family import patch_mask, slic_mask
from xaibench.kit.batching import image_seed, seeded
from xaibench.kit.spatial import gaussian_blur
from xaibench.kit.targets import ScoreModel
from xaibench_plugins.explainers.deconvolution import Deconvolution
from xaibench_plugins.explainers.deeplift import DeepLift
from xaibench_plugins.explainers.deepliftshap import DeepLiftShap
from xaibench_plugins.explainers.feature_ablation import FeatureAblation
from xaibench_plugins.explainers.guided_backprop import GuidedBackprop
from xaibench_plugins.explainers.guided_gradcam import GuidedGradCam
from xaibench_plugins.explainers.input_x_gradient import InputXGradient
from xaibench_plugins.explainers.kernelshap import KernelShap
from xaibench_plugins.explainers.lime import Lime
from xaibench_plugins.explainers.shap import Shap
from xaibench_plugins.explainers.shap import xaibench_explainers as shap_records
from xaibench_plugins.explainers.shapley_value_sampling import ShapleyValueSampling

N, S = 4, 32
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


# the images, reference set, targets and context of the built-in explainers' tests
from .test_explainers import ctx, data, targets  # noqa: E402,F401 (fixtures)


@pytest.mark.parametrize("baseline", ["zeros", "mean"])
def test_deeplift_matches_captum_and_its_convergence_delta(tiny_model, data, targets, baseline):
    """Equal to captum; the map's sum misses score(x) − score(b) by exactly captum's own
    convergence delta (summation-to-delta is approximate on these ResNets)."""
    from captum.attr import DeepLift as CaptumDeepLift

    x, ref = data
    t = targets["logit"]
    ours = DeepLift(baseline=baseline).explain(tiny_model, x, t, ctx(ref, chunk=3))
    base = torch.zeros_like(x) if baseline == "zeros" else ref.mean(0, keepdim=True).expand_as(x).contiguous()
    theirs, conv = CaptumDeepLift(ScoreModel(tiny_model, t)).attribute(x.clone(), baselines=base, target=t.classes,
                                                                       return_convergence_delta=True)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs.detach()[:, 0], rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        gap = t(tiny_model, x) - t(tiny_model, base)
    torch.testing.assert_close(ours.sum(dim=(1, 2)) - gap, conv.detach(), rtol=1e-3, atol=1e-4)


def test_deepliftshap_matches_captum(tiny_model, data, targets):
    from captum.attr import DeepLiftShap as CaptumDeepLiftShap

    x, ref = data
    t = targets["group-direction"]
    ours = DeepLiftShap(baselines=4).explain(tiny_model, x, t, ctx(ref, chunk=8))
    theirs = CaptumDeepLiftShap(ScoreModel(tiny_model, t)).attribute(x.clone(), baselines=ref[:4], target=t.classes)
    torch.testing.assert_close(ours, theirs.detach()[:, 0], rtol=1e-4, atol=1e-6)
    with pytest.raises(XaibenchError, match="deepliftshap"):
        DeepLiftShap().explain(tiny_model, x, t, ctx(ref[:1]))


@pytest.mark.parametrize("name", ["input-x-gradient", "guided-backprop", "deconvolution"])
def test_gradient_variants_match_captum(tiny_model, data, targets, name):
    from captum import attr

    x, ref = data
    t = targets["margin"]
    ours_cls, ref_cls = {"input-x-gradient": (InputXGradient, attr.InputXGradient),
                         "guided-backprop": (GuidedBackprop, attr.GuidedBackprop),
                         "deconvolution": (Deconvolution, attr.Deconvolution)}[name]
    ours = ours_cls().explain(tiny_model, x, t, ctx(ref, chunk=3))
    theirs = ref_cls(ScoreModel(tiny_model, t)).attribute(x.clone().requires_grad_(True), target=t.classes)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs.detach()[:, 0], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("layer", ["layer1", "layer4"])
def test_guided_gradcam_matches_captum_with_bilinear_upsampling(tiny_model, data, targets, layer):
    from captum.attr import GuidedGradCam as CaptumGuidedGradCam

    x, ref = data
    t = targets["logit"]
    ours = GuidedGradCam(layer=layer).explain(tiny_model, x, t, ctx(ref, chunk=3))
    theirs = CaptumGuidedGradCam(ScoreModel(tiny_model, t), tiny_model.stage(layer)).attribute(
        x.clone().requires_grad_(True), target=t.classes, interpolate_mode="bilinear")
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs.detach()[:, 0], rtol=1e-4, atol=1e-7)
    auto = GuidedGradCam().explain(tiny_model, x, t, ctx(ref))
    torch.testing.assert_close(auto, GuidedGradCam(layer="layer1").explain(tiny_model, x, t, ctx(ref)))  # 8×8 at 32 px


def test_patch_mask_is_a_row_major_grid():
    m = patch_mask((5, 7), 3, torch.device("cpu"))[0, 0]
    assert m.shape == (5, 7) and m[0, 0] == 0 and m[0, 6] == 2 and m[4, 0] == 3 and m.max() == 5
    assert torch.equal(m[:3, :3], torch.zeros(3, 3, dtype=torch.long))


@pytest.mark.parametrize("features", ["patches", "slic"])
def test_feature_ablation_matches_captum(tiny_model, data, targets, features):
    from captum.attr import FeatureAblation as CaptumFeatureAblation

    x, ref = data
    t = targets["margin"]
    ours = FeatureAblation(features=features, patch=8, segments=12).explain(tiny_model, x, t, ctx(ref, chunk=3))
    if features == "slic":  # SLIC on pure noise merges into one region; smooth images segment
        x = gaussian_blur(x, 2.0)
        ours = FeatureAblation(features=features, segments=12).explain(tiny_model, x, t, ctx(ref, chunk=3))
    mask = patch_mask((S, S), 8, x.device) if features == "patches" else slic_mask(x, 12)
    assert mask.max() >= 3
    with torch.no_grad():
        theirs = CaptumFeatureAblation(ScoreModel(tiny_model, t)).attribute(x, baselines=0.0, target=t.classes,
                                                                            feature_mask=mask)
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-6)
    for i in range(N):  # one value per feature
        for k in mask[min(i, mask.shape[0] - 1), 0].unique():
            vals = ours[i][mask[min(i, mask.shape[0] - 1), 0] == k]
            assert torch.allclose(vals, vals[0].expand_as(vals))


@pytest.mark.parametrize("cls_ours, cls_name", [(Lime, "Lime"), (KernelShap, "KernelShap")])
def test_lime_and_kernelshap_match_captum_with_the_image_seeds(tiny_model, data, targets, cls_ours, cls_name):
    from captum import attr

    x, ref = data
    t = targets["logit"]
    ours = cls_ours(n_samples=20, patch=8).explain(tiny_model, x, t, ctx(ref, chunk=5, seed=3))
    method = getattr(attr, cls_name)(ScoreModel(tiny_model, t))
    mask = patch_mask((S, S), 8, x.device)
    for i in range(N):
        with seeded(image_seed(3, i)), torch.no_grad():
            theirs = method.attribute(x[i:i + 1], baselines=0.0, target=t.classes[i:i + 1], feature_mask=mask,
                                      n_samples=20)
        torch.testing.assert_close(ours[i], theirs[0, 0], rtol=1e-4, atol=1e-6)
    assert ours.abs().max() > 0
    other = cls_ours(n_samples=20, patch=8).explain(tiny_model, x, t, ctx(ref, chunk=2, seed=3))
    torch.testing.assert_close(other, ours, rtol=1e-4, atol=1e-6)  # independent of chunk_size
    assert not torch.equal(ours, cls_ours(n_samples=20, patch=8).explain(tiny_model, x, t, ctx(ref, seed=4)))


def test_shapley_value_sampling_matches_captum_and_is_efficient(tiny_model, data, targets):
    """Every ordering's marginal changes telescope: the map sums to score(x) − score(black)."""
    from captum.attr import ShapleyValueSampling as CaptumSVS

    x, ref = data
    t = targets["margin"]
    ours = ShapleyValueSampling(n_samples=3, patch=8).explain(tiny_model, x, t, ctx(ref, chunk=3, seed=5))
    with seeded(5), torch.no_grad():
        theirs = CaptumSVS(ScoreModel(tiny_model, t)).attribute(x, baselines=0.0, target=t.classes, n_samples=3,
                                                                feature_mask=patch_mask((S, S), 8, x.device))
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        delta = t(tiny_model, x) - t(tiny_model, torch.zeros_like(x))
    torch.testing.assert_close(ours.sum(dim=(1, 2)) / 64, delta, rtol=1e-3, atol=1e-5)  # 8×8 px per feature


def test_expected_gradients_is_the_shap_explainer_under_another_name(tiny_model, data, targets):
    recs = {r.name: r for r in shap_records()}
    assert set(recs) == {"shap", "expected-gradients"}
    x, ref = data
    t = targets["logit"]
    eg = recs["expected-gradients"].factory(samples=4).explain(tiny_model, x, t, ctx(ref, seed=2))
    torch.testing.assert_close(eg, Shap(samples=4).explain(tiny_model, x, t, ctx(ref, seed=2)), rtol=0, atol=0)


FAST = {
    "deeplift": lambda: DeepLift(), "deepliftshap": lambda: DeepLiftShap(baselines=3),
    "input-x-gradient": lambda: InputXGradient(), "guided-backprop": lambda: GuidedBackprop(),
    "deconvolution": lambda: Deconvolution(), "guided-gradcam": lambda: GuidedGradCam(),
    "feature-ablation": lambda: FeatureAblation(patch=16), "feature-ablation-slic": lambda: FeatureAblation(
        features="slic", segments=6),
    "shapley-value-sampling": lambda: ShapleyValueSampling(n_samples=2),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_chunk_size_does_not_change_results_and_model_is_left_as_found(tiny_model, data, targets, name):
    x, ref = data
    t = targets["group-direction"]
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    hooks = [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()]
    grads = [p.grad for p in tiny_model.parameters()]
    big = FAST[name]().explain(tiny_model, x, t, ctx(ref, chunk=64, seed=1))
    small = FAST[name]().explain(tiny_model, x, t, ctx(ref, chunk=3, seed=1))
    assert big.shape == (N, S, S) and big.dtype == torch.float32 and torch.isfinite(big).all()
    torch.testing.assert_close(small, big, rtol=1e-4, atol=1e-5 * float(big.abs().max()))
    assert all(torch.equal(v, state[k]) for k, v in tiny_model.state_dict().items())
    assert [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()] == hooks
    assert all(p.grad is g for p, g in zip(tiny_model.parameters(), grads))


def test_bad_options_name_the_plugin():
    with pytest.raises(XaibenchError, match="explainer kernelshap: option 'features'"):
        KernelShap(features="voronoi")
    with pytest.raises(XaibenchError, match="explainer deeplift: option 'baseline'"):
        DeepLift(baseline="black")
    with pytest.raises(XaibenchError, match="explainer shapley-value-sampling: option 'n_samples'"):
        ShapleyValueSampling(n_samples=0)
