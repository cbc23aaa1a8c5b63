"""The explainer family against its reference libraries (pytorch-grad-cam, captum) and its
defining properties (IG completeness, LRP conservation, CAM = Grad-CAM, RISE localisation,
double backward through Grad-CAM, chunking invariance, determinism, model left as found)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.kit.batching import image_seed, seeded
from xaibench.kit.layers import iou_ceiling, pick_layer
from xaibench.kit.spatial import gaussian_blur
from xaibench.kit.targets import ScoreModel, class_scores
from xaibench_plugins.explainers.cam import CAM
from xaibench_plugins.explainers.edge import Edge
from xaibench_plugins.explainers.gradcam import GradCAM, gradcam_maps
from xaibench_plugins.explainers.gradcampp import GradCAMPlusPlus
from xaibench_plugins.explainers.ig import IG
from xaibench_plugins.explainers.lrp import LRP
from xaibench_plugins.explainers.occlusion import Occlusion
from xaibench_plugins.explainers.random import RandomMap
from xaibench_plugins.explainers.rise import Rise
from xaibench_plugins.explainers.saliency import Saliency
from xaibench_plugins.explainers.shap import Shap
from xaibench_plugins.explainers.smoothgrad import SmoothGrad

N, S = 4, 32


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(N, 1, S, S, generator=g)
    ref = torch.rand(6, 1, S, S, generator=g)
    return x, ref


@pytest.fixture(scope="module")
def targets(tiny_model, data):
    cls = torch.tensor([0, 1, 1, 0])
    d = torch.randn(tiny_model.head.in_features, generator=torch.Generator().manual_seed(2))
    return {"logit": Target("logit", cls), "margin": Target("margin", cls),
            "group-direction": Target("group-direction", cls, d / d.norm())}


def ctx(ref, chunk=64, seed=0):
    return ExplainContext(reference=ref, seed=seed, chunk_size=chunk)


def minmax(a):
    a = a - a.amin(dim=(-2, -1), keepdim=True)
    return a / a.amax(dim=(-2, -1), keepdim=True)


def test_class_scores_gather_to_the_target_score(tiny_model, data, targets):
    x, _ = data
    with torch.no_grad():
        logits, emb = tiny_model.forward_all(x)
        for t in targets.values():
            cols = class_scores(t, logits, emb).gather(1, t.classes[:, None])[:, 0]
            assert torch.allclose(cols, t.score(logits, emb), atol=1e-6)


# --------------------------------------------------------------------------- CAM family


@pytest.mark.parametrize("layer", ["layer1", "layer4"])
@pytest.mark.parametrize("kind", ["logit", "group-direction"])
@pytest.mark.parametrize("ours_cls, ref_name", [(GradCAM, "GradCAM"), (GradCAMPlusPlus, "GradCAMPlusPlus")])
def test_cam_family_matches_pytorch_grad_cam(tiny_model, data, targets, layer, kind, ours_cls, ref_name):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, ref = data
    t = targets[kind]
    ours = ours_cls(layer=layer).explain(tiny_model, x, t, ctx(ref, chunk=3))
    cam = getattr(pytorch_grad_cam, ref_name)(model=ScoreModel(tiny_model, t), target_layers=[tiny_model.stage(layer)])
    theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t.classes])
    live = ours.amax(dim=(1, 2)) > 0  # an all-zero map (ReLU kills everything) has no normalised form
    assert live.sum() >= 2
    np.testing.assert_allclose(minmax(ours[live]).numpy(), theirs[live.numpy()], atol=1e-4)


def test_default_layer_is_the_deepest_with_at_least_8x8(tiny_model):
    assert GradCAM().map_layer(tiny_model, (32, 32)) == ("layer1", (8, 8))  # layers 2-4 are 4×4 at 32 px
    assert GradCAM().map_layer(tiny_model, (64, 64)) == ("layer4", (8, 8))
    assert pick_layer({"a": (4, 4), "b": (2, 2), "c": (2, 2)}) == "a"
    assert pick_layer({"a": (4, 4), "b": (4, 4)}) == "b"


@pytest.mark.parametrize("kind", ["logit", "margin", "group-direction"])
def test_cam_is_gradcam_at_the_last_layer_times_hw(tiny_model, data, targets, kind):
    x, ref = data
    t = targets[kind]
    cam = CAM().explain(tiny_model, x, t, ctx(ref))
    gc = GradCAM(layer="layer4").explain(tiny_model, x, t, ctx(ref))
    assert cam.abs().max() > 0
    torch.testing.assert_close(cam, gc * 16, rtol=1e-4, atol=1e-6 * float(cam.abs().max()))  # 4×4 map


def test_cam_rejects_an_inner_layer(tiny_model, data, targets):
    with pytest.raises(XaibenchError, match="cam.*layer.*last stage"):
        CAM(layer="layer2").explain(tiny_model, data[0], targets["logit"], ctx(data[1]))


def test_differentiable_gradcam_reaches_parameters_only_through_the_gradient(tiny_model, data, targets):
    """layer4's convolutions and the head weight act on a layer3 Grad-CAM map only through
    ∂score/∂A: their gradient is non-zero with create_graph=True (double backward) and absent
    without. (Biases do not enter ∂score/∂A of a ReLU network, so they are left out; timm
    zero-initialises each block's last BatchNorm scale, which would block the residual
    branches, so the copy gets non-zero scales.)"""
    import copy

    x, _ = data
    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5, generator=torch.Generator().manual_seed(3))
    tiny_model = model
    params = [m.weight for m in tiny_model.encoder.layer4.modules() if isinstance(m, torch.nn.Conv2d)]
    params.append(tiny_model.head.weight)
    maps = gradcam_maps(tiny_model, x, targets["logit"], layer="layer3", create_graph=True)
    grads = torch.autograd.grad(maps.pow(2).sum(), params, allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    flat = gradcam_maps(tiny_model, x, targets["logit"], layer="layer3", create_graph=False)
    torch.testing.assert_close(flat, maps.detach())
    assert all(g is None for g in torch.autograd.grad(flat.pow(2).sum(), params, allow_unused=True))


# --------------------------------------------------------------------------- gradient family


@pytest.mark.parametrize("absolute", [False, True])
def test_saliency_matches_captum(tiny_model, data, targets, absolute):
    from captum.attr import Saliency as CaptumSaliency

    x, ref = data
    t = targets["margin"]
    ours = Saliency(absolute=absolute).explain(tiny_model, x, t, ctx(ref, chunk=3))
    theirs = CaptumSaliency(ScoreModel(tiny_model, t)).attribute(x.clone().requires_grad_(True), target=t.classes,
                                                                abs=absolute)[:, 0]
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("baseline", ["zeros", "mean", "blurred"])
def test_ig_matches_captum(tiny_model, data, targets, baseline):
    from captum.attr import IntegratedGradients

    x, ref = data
    t = targets["logit"]
    ours = IG(baseline=baseline, steps=8).explain(tiny_model, x, t, ctx(ref, chunk=8))
    base = {"zeros": torch.zeros_like(x), "mean": ref.mean(0, keepdim=True).expand_as(x),
            "blurred": gaussian_blur(x, 5.0)}[baseline]
    theirs = IntegratedGradients(ScoreModel(tiny_model, t)).attribute(x, baselines=base, target=t.classes, n_steps=8)
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-7)


def test_ig_completeness_within_one_percent_at_128_steps(tiny_model, data, targets):
    x, ref = data
    t = targets["logit"].subset(slice(0, 2))
    a = IG(steps=128).explain(tiny_model, x[:2], t, ctx(ref))
    with torch.no_grad():
        gap = t(tiny_model, x[:2]) - t(tiny_model, torch.zeros_like(x[:2]))
    assert gap.abs().min() > 1e-3
    assert ((a.sum(dim=(1, 2)) - gap).abs() / gap.abs()).max() < 0.01


def test_shap_matches_captum_with_the_same_draws(tiny_model, data, targets):
    """Our batched GradientSHAP = captum's GradientShap called per image after seeding numpy
    and torch with the image's seed (the draws we reproduce)."""
    from captum.attr import GradientShap

    x, ref = data
    t = targets["logit"]
    ours = Shap(samples=5).explain(tiny_model, x, t, ctx(ref, chunk=4, seed=7))
    gs = GradientShap(ScoreModel(tiny_model, t))
    for i in range(N):
        with seeded(image_seed(7, i)):
            theirs = gs.attribute(x[i:i + 1], baselines=ref, n_samples=5, target=t.classes[i:i + 1])
        torch.testing.assert_close(ours[i], theirs[0, 0], rtol=1e-4, atol=1e-7)
    assert not torch.equal(ours, Shap(samples=5).explain(tiny_model, x, t, ctx(ref, seed=8)))


@pytest.mark.parametrize("base, absolute", [("saliency", False), ("saliency", True), ("ig", False)])
def test_smoothgrad_matches_captum_noise_tunnel(tiny_model, data, targets, base, absolute):
    from captum.attr import IntegratedGradients, NoiseTunnel
    from captum.attr import Saliency as CaptumSaliency

    x, ref = data
    t = targets["margin"]
    sg = SmoothGrad(base=base, samples=3, noise=0.2, absolute=absolute, ig_steps=4)
    ours = sg.explain(tiny_model, x, t, ctx(ref, chunk=4, seed=3))
    f = ScoreModel(tiny_model, t)
    nt = NoiseTunnel(CaptumSaliency(f) if base == "saliency" else IntegratedGradients(f))
    extra = {"abs": absolute} if base == "saliency" else {"n_steps": 4}
    for i in (0, 2):
        with seeded(image_seed(3, i)):
            theirs = nt.attribute(x[i:i + 1].clone(), nt_type="smoothgrad", nt_samples=3, stdevs=0.2,
                                  target=t.classes[i:i + 1], **extra)
        torch.testing.assert_close(ours[i], theirs[0, 0], rtol=1e-4, atol=1e-7)


def test_occlusion_matches_captum(tiny_model, data, targets):
    from captum.attr import Occlusion as CaptumOcclusion

    x, ref = data
    t = targets["margin"]
    ours = Occlusion(window=8, stride=8).explain(tiny_model, x, t, ctx(ref, chunk=6))
    with torch.no_grad():
        theirs = CaptumOcclusion(ScoreModel(tiny_model, t)).attribute(
            x, sliding_window_shapes=(1, 8, 8), strides=(1, 8, 8), baselines=0.0, target=t.classes)
    torch.testing.assert_close(ours, theirs[:, 0], rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- LRP, RISE, baselines


@pytest.mark.parametrize("composite", ["epsilon-plus-flat", "epsilon-gamma-box"])
def test_lrp_conserves_relevance(tiny_model, data, targets, composite):
    """Relevance sums to the logit minus the head bias (which no input pixel explains):
    within 1% of the largest |logit − bias| for composites whose convolution rules ignore
    biases (z⁺, γ); α2β1 is not conservative and is not held to it."""
    x, ref = data
    t = targets["logit"]
    rel = LRP(composite=composite).explain(tiny_model, x, t, ctx(ref, chunk=3))
    with torch.no_grad():
        explained = t(tiny_model, x) - tiny_model.head.bias[t.classes]
    assert explained.abs().max() > 1e-3
    assert (rel.sum(dim=(1, 2)) - explained).abs().max() < 0.01 * explained.abs().max()


class _RegionModel(Classifier):
    """Score = mean intensity in a known square (after the model's own normalisation)."""

    def __init__(self, size: int, region: tuple[slice, slice]) -> None:
        mask = torch.zeros(1, 1, size, size)
        mask[..., region[0], region[1]] = 1.0
        enc = _Masker(mask)
        super().__init__(enc, 1, {"layer1": enc}, num_classes=2)
        with torch.no_grad():
            self.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
            self.head.bias.zero_()


class _Masker(torch.nn.Module):
    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z[:, :1] * self.mask) * (self.mask.numel() / self.mask.sum())


def test_rise_puts_its_mass_on_the_region_the_model_reads():
    region = (slice(8, 16), slice(20, 28))
    model = _RegionModel(32, region).eval()
    x = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    t = Target("logit", torch.tensor([1, 1]))
    sal = Rise(masks=400, grid=8).explain(model, x, t, ctx(x, chunk=256))
    inside = torch.zeros(32, 32, dtype=torch.bool)
    inside[region] = True
    near = torch.zeros(32, 32, dtype=torch.bool)  # the region grown by one mask cell (4 px):
    near[4:20, 16:32] = True  # smooth masks blur the map by about a cell
    pos = sal.clamp_min(0)
    assert (pos[:, near].sum(1) / pos.sum(dim=(1, 2)) > 0.8).all()  # chance: 1/4
    top = sal.flatten(1).topk(64).indices  # 64 = region area
    assert (inside.flatten()[top].float().mean(1) > 0.85).all()  # chance: 1/16


def test_edge_is_the_sobel_magnitude():
    from skimage.filters import sobel

    x = torch.rand(2, 1, 20, 24, generator=torch.Generator().manual_seed(0))
    ours = Edge().explain(None, x, None, ctx(x))
    ref = np.stack([sobel(im[0].numpy().astype(np.float64)) for im in x]) * 4 * np.sqrt(2)  # skimage: /4 and RMS
    np.testing.assert_allclose(ours[:, 1:-1, 1:-1].numpy(), ref[:, 1:-1, 1:-1], rtol=1e-4, atol=1e-5)


def test_random_is_seeded_uniform_noise(data):
    x, ref = data
    a = RandomMap().explain(None, x, None, ctx(ref, seed=5))
    assert a.shape == (N, S, S) and a.dtype == torch.float32 and 0 <= a.min() and a.max() < 1
    assert torch.equal(a, RandomMap().explain(None, x, None, ctx(ref, seed=5)))
    assert not torch.equal(a, RandomMap().explain(None, x, None, ctx(ref, seed=6)))


# --------------------------------------------------------------------------- shared behaviour

FAST = {
    "saliency": lambda: Saliency(), "cam": lambda: CAM(), "gradcam": lambda: GradCAM(),
    "gradcam++": lambda: GradCAMPlusPlus(), "ig": lambda: IG(steps=4), "smoothgrad": lambda: SmoothGrad(samples=3),
    "shap": lambda: Shap(samples=3), "lrp": lambda: LRP(), "rise": lambda: Rise(masks=12),
    "occlusion": lambda: Occlusion(window=16, stride=16),
}


@pytest.mark.parametrize("name", sorted(FAST))
def test_chunk_size_does_not_change_results_and_model_is_left_as_found(tiny_model, data, targets, name):
    x, ref = data
    t = targets["group-direction"]
    flags = [p.requires_grad for p in tiny_model.parameters()]
    state = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    hooks = [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()]
    big = FAST[name]().explain(tiny_model, x, t, ctx(ref, chunk=64, seed=1))
    small = FAST[name]().explain(tiny_model, x, t, ctx(ref, chunk=3, seed=1))
    assert big.shape == (N, S, S) and big.dtype == torch.float32 and torch.isfinite(big).all()
    torch.testing.assert_close(small, big, rtol=1e-4, atol=1e-5 * float(big.abs().max()))
    assert [p.requires_grad for p in tiny_model.parameters()] == flags
    assert all(torch.equal(v, state[k]) for k, v in tiny_model.state_dict().items())
    assert [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()] == hooks
    assert not tiny_model.training


def test_explainers_work_under_no_grad(tiny_model, data, targets):
    x, ref = data
    with torch.no_grad():
        for make in (FAST["gradcam"], FAST["ig"], FAST["lrp"]):
            assert make().explain(tiny_model, x, targets["logit"], ctx(ref)).abs().sum() > 0


def test_bad_options_raise_one_line_errors(tiny_model, data, targets):
    from xaibench_plugins.explainers.ig import xaibench_explainers as ig_records

    make = next(iter(ig_records())).factory
    with pytest.raises(XaibenchError, match="explainer ig: unknown option 'step'.*allowed: baseline, steps"):
        make(step=3)
    with pytest.raises(XaibenchError, match="explainer ig: option 'baseline' must be one of zeros, mean, blurred"):
        make(baseline="black")
    with pytest.raises(XaibenchError, match="explainer gradcam: option 'layer'.*layer1, layer2, layer3, layer4"):
        GradCAM(layer="layer9").explain(tiny_model, data[0], targets["logit"], ctx(data[1]))
    with pytest.raises(XaibenchError, match="explainer rise: option 'p'"):
        Rise(p=1.5)
    with pytest.raises(XaibenchError, match="N×1×H×W"):
        Saliency().explain(tiny_model, data[0][:, 0], targets["logit"], ctx(data[1]))


# --------------------------------------------------------------------------- IoU ceiling


def test_iou_ceiling_nearest_is_the_best_union_of_cells():
    g = torch.Generator().manual_seed(0)
    masks = torch.rand(5, 12, 12, generator=g) > 0.6
    masks[0] = False
    masks[0, 2:7, 3:9] = True
    got = iou_ceiling(masks, (3, 3), mode="nearest")
    cells = torch.arange(9).view(3, 3).repeat_interleave(4, 0).repeat_interleave(4, 1)
    for i, m in enumerate(masks):
        best = 0.0
        for k in range(1, 10):
            for sub in itertools.combinations(range(9), k):
                sel = torch.isin(cells, torch.tensor(sub))
                best = max(best, float((sel & m).sum() / (sel | m).sum()))
        assert got[i] == pytest.approx(best, abs=1e-6)


def test_iou_ceiling_is_one_for_aligned_masks_and_falls_with_coarser_maps():
    masks = torch.zeros(1, 32, 32, dtype=torch.bool)
    masks[0, 8:16, 8:16] = True
    assert iou_ceiling(masks, (4, 4))[0] == pytest.approx(1.0)
    small = torch.zeros(1, 32, 32, dtype=torch.bool)
    small[0, 13:17, 13:18] = True
    ceil = [float(iou_ceiling(small, (k, k))[0]) for k in (32, 8, 2)]
    assert ceil[0] == pytest.approx(1.0) and ceil[0] > ceil[1] > ceil[2]
    bil = float(iou_ceiling(small, (2, 2), mode="bilinear")[0])
    assert ceil[2] <= bil <= 1.0
