"""The CAM catalogue (issue 16, item 1): the native variants equal pytorch-grad-cam called
directly on the same model, layer and target (up to its per-image min-max normalisation), work
on 3-D activations, and are differentiable; the library-wrapped ones equal the library."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from xaibench.contracts import ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.kit.targets import ScoreModel
from xaibench_plugins.explainers._layer_cams import VARIANTS, cam_from_layer, layer_cam_maps, layer_map
from xaibench_plugins.explainers.ablationcam import AblationCAM
from xaibench_plugins.explainers.eigencam import EigenCAM
from xaibench_plugins.explainers.eigengradcam import EigenGradCAM
from xaibench_plugins.explainers.fem import FEM
from xaibench_plugins.explainers.finercam import FinerCAM
from xaibench_plugins.explainers.fullgrad import FullGrad
from xaibench_plugins.explainers.gradcam import GradCAM
from xaibench_plugins.explainers.gradcam_elementwise import GradCAMElementWise
from xaibench_plugins.explainers.hirescam import HiResCAM
from xaibench_plugins.explainers.kpca_cam import KPCACAM
from xaibench_plugins.explainers.layercam import LayerCAM
from xaibench_plugins.explainers.scorecam import ScoreCAM
from xaibench_plugins.explainers.shapleycam import ShapleyCAM
from xaibench_plugins.explainers.xgradcam import XGradCAM

N, S = 4, 32
NATIVE = {"layercam": (LayerCAM, "LayerCAM"), "xgradcam": (XGradCAM, "XGradCAM"),
          "hirescam": (HiResCAM, "HiResCAM"), "gradcam-elementwise": (GradCAMElementWise, "GradCAMElementWise"),
          "eigencam": (EigenCAM, "EigenCAM"), "eigengradcam": (EigenGradCAM, "EigenGradCAM")}


# the images, reference set, targets and context of the built-in explainers' tests
from .test_explainers import ctx, data, targets  # noqa: E402,F401 (fixtures)


def library(tiny_model, t, ref_name, layer, x, **kw):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    cam = getattr(pytorch_grad_cam, ref_name)(model=ScoreModel(tiny_model, t), target_layers=[tiny_model.stage(layer)],
                                              **kw)
    try:
        return cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t.classes])
    finally:
        cam.activations_and_grads.release()


def _minmax(v: torch.Tensor) -> torch.Tensor:
    shape = (-1,) + (1,) * (v.ndim - 1)
    v = v - v.flatten(1).amin(1).view(shape)
    return v / (1e-7 + v.flatten(1).amax(1)).view(shape)


def expected_library_maps(low: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """The library's map from our low-resolution map: minmax(resize(minmax(relu(low)))), its
    normalisation before and after resizing (1e-7 guards included)."""
    from xaibench_plugins.explainers._layer_cams import upsample_nd

    return _minmax(upsample_nd(_minmax(torch.relu(low)), size))


def assert_library_equal(low: torch.Tensor, theirs: np.ndarray, eigen: bool) -> None:
    """Per image: equal to the library; for the Eigen variants, to the library with our map or
    with its sign flipped (the library keeps whichever sign LAPACK returns)."""
    size = tuple(theirs.shape[1:])
    live = low.flatten(1).amax(1) > low.flatten(1).amin(1) + 1e-6
    assert live.sum() >= 2, "too few non-constant maps to compare"
    same = expected_library_maps(low, size).numpy()
    flipped = expected_library_maps(-low, size).numpy()
    for i in np.flatnonzero(live.numpy()):
        ok = np.allclose(same[i], theirs[i], atol=2e-4)
        if eigen and not ok:
            ok = np.allclose(flipped[i], theirs[i], atol=2e-4)
        assert ok, f"image {i}: max difference {np.abs(same[i] - theirs[i]).max():.2e}"


@pytest.mark.parametrize("layer", ["layer1", "layer4"])
@pytest.mark.parametrize("kind", ["logit", "group-direction"])
@pytest.mark.parametrize("name", sorted(NATIVE))
def test_native_cams_match_pytorch_grad_cam(tiny_model, data, targets, layer, kind, name):
    x, ref = data
    cls, ref_name = NATIVE[name]
    t = targets[kind]
    ours = cls(layer=layer).explain(tiny_model, x, t, ctx(ref, chunk=3))
    with torch.enable_grad():  # the low-resolution map: the same call without the upsampling
        from xaibench.kit.layers import stage_outputs

        xx = x.clone().requires_grad_(True)
        with stage_outputs(tiny_model, [layer]) as acts:
            score = t(tiny_model, xx)
        low = cam_from_layer(name, acts[layer], score, tuple(acts[layer].shape[2:]), relu=False).detach()
    theirs = library(tiny_model, t, ref_name, layer, x)
    assert ours.shape == (N, S, S) and ours.min() >= 0
    from xaibench_plugins.explainers._layer_cams import upsample_nd

    torch.testing.assert_close(ours, upsample_nd(torch.relu(low), (S, S)))
    assert_library_equal(low, theirs, eigen=name.startswith("eigen"))


def test_native_cams_at_the_last_stage_of_a_gap_model(tiny_model, data, targets):
    """At layer4 of a GAP + linear model ∂s/∂A_k = w_k/(hw) everywhere: HiResCAM = Grad-CAM,
    and LayerCAM / element-wise Grad-CAM equal Grad-CAM with only the positive weights (the
    activations are post-ReLU, so ≥ 0)."""
    x, ref = data
    t = targets["logit"]
    gc = GradCAM(layer="layer4").explain(tiny_model, x, t, ctx(ref))
    torch.testing.assert_close(HiResCAM(layer="layer4").explain(tiny_model, x, t, ctx(ref)), gc, rtol=1e-4, atol=1e-6)
    lc = LayerCAM(layer="layer4").explain(tiny_model, x, t, ctx(ref))
    torch.testing.assert_close(GradCAMElementWise(layer="layer4").explain(tiny_model, x, t, ctx(ref)), lc)
    assert (lc >= gc - 1e-6).all()  # dropping negative channels only raises the map


# --------------------------------------------------------------------------- 3-D


class _Net3d(torch.nn.Module):
    """conv3d → ReLU → conv3d (no striding, so the map has the input's size) → GAP → linear."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.features = torch.nn.Sequential(torch.nn.Conv3d(1, 6, 3, padding=1), torch.nn.ReLU(),
                                            torch.nn.Conv3d(6, 5, 3, padding=1), torch.nn.ReLU())
        self.head = torch.nn.Linear(5, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=(2, 3, 4)))


def _acts_3d(net, x, cls):
    rec = {}
    h = net.features.register_forward_hook(lambda m, a, o: rec.__setitem__("a", o))
    try:
        with torch.enable_grad():
            out = net(x.requires_grad_(True))
    finally:
        h.remove()
    return rec["a"], out.gather(1, cls[:, None])[:, 0]


@pytest.mark.parametrize("name", VARIANTS)
def test_native_cams_on_3d_activations_match_the_library(name):
    """N×C×D×H×W activations give N×D×H×W maps equal to pytorch-grad-cam's 3-D path (its
    resize is the identity when the map already has the input's size)."""
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    net = _Net3d().eval()
    x = torch.rand(3, 1, 4, 6, 5, generator=torch.Generator().manual_seed(4))
    cls = torch.tensor([0, 1, 0])
    acts, score = _acts_3d(net, x.clone(), cls)
    low = cam_from_layer(name, acts, score, tuple(x.shape[2:]), relu=False).detach()
    ours = torch.relu(low)
    assert ours.shape == (3, 4, 6, 5) and ours.min() >= 0 and ours.max() > 0
    cam = getattr(pytorch_grad_cam, NATIVE[name][1])(model=net, target_layers=[net.features])
    try:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in cls])
    finally:
        cam.activations_and_grads.release()
    assert_library_equal(low, theirs, eigen=name.startswith("eigen"))


@pytest.mark.parametrize("name", VARIANTS)
def test_3d_maps_with_one_slice_equal_the_2d_maps_and_upsample_trilinearly(name):
    g = torch.Generator().manual_seed(5)
    a, gr = torch.rand(2, 7, 4, 5, generator=g), torch.randn(2, 7, 4, 5, generator=g)
    m2, m3 = layer_map(name, a, gr), layer_map(name, a[:, :, None], gr[:, :, None])
    assert m3.shape == (2, 1, 4, 5)
    torch.testing.assert_close(m3[:, 0], m2, rtol=1e-5, atol=1e-6)
    a3 = torch.rand(2, 7, 2, 3, 3, generator=g)
    up = cam_from_layer("eigencam", a3, None, (4, 6, 6))
    assert up.shape == (2, 4, 6, 6) and torch.isfinite(up).all()


@pytest.mark.parametrize("name", ["eigencam", "eigengradcam"])
def test_eigen_maps_are_oriented_towards_the_channel_sum(name):
    g = torch.Generator().manual_seed(6)
    a, gr = torch.rand(5, 6, 3, 4, 2, generator=g), torch.randn(5, 6, 3, 4, 2, generator=g)
    v = a if name == "eigencam" else gr * a
    m = layer_map(name, a, gr)
    assert ((m.flatten(1) * v.sum(1).flatten(1)).sum(1) >= 0).all()
    torch.testing.assert_close(layer_map(name, -a if name == "eigencam" else a, -gr if name != "eigencam" else gr),
                               -m if name == "eigencam" else -m, rtol=1e-4, atol=1e-5)


def test_xgradcam_on_3d_by_hand():
    """One channel, 1×1×2 positions: α = Σ g·a / (Σ a + 1e-7); map = α·a."""
    a = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)
    g = torch.tensor([2.0, -1.0]).view(1, 1, 1, 1, 2)
    alpha = (2 * 1 - 1 * 3) / (4 + 1e-7)
    torch.testing.assert_close(layer_map("xgradcam", a, g), alpha * a[:, 0])


@pytest.mark.parametrize("name", ["layercam", "xgradcam", "hirescam", "eigengradcam"])
def test_native_cams_are_differentiable_in_the_parameters(tiny_model, data, targets, name):
    x, _ = data
    w = tiny_model.head.weight
    maps = layer_cam_maps(tiny_model, x, targets["logit"], name, layer="layer3", create_graph=True)
    (g,) = torch.autograd.grad(maps.pow(2).sum(), [w])
    assert g.abs().sum() > 0  # the head acts on a layer3 map only through ∂score/∂A
    flat = layer_cam_maps(tiny_model, x, targets["logit"], name, layer="layer3", create_graph=False)
    torch.testing.assert_close(flat, maps.detach(), rtol=1e-4, atol=1e-6)


# --------------------------------------------------------------------------- through the library


LIBRARY = {"scorecam": (ScoreCAM(layer="layer4"), "ScoreCAM", {}),
           "ablationcam": (AblationCAM(layer="layer4"), "AblationCAM", {}),
           "kpca-cam": (KPCACAM(layer="layer4"), "KPCA_CAM", {}),
           "fem": (FEM(layer="layer1", k=1.0), "FEM", {"k": 1.0}),
           "shapleycam": (ShapleyCAM(layer="layer3"), "ShapleyCAM", {})}


@pytest.mark.parametrize("name", sorted(LIBRARY))
def test_library_cams_equal_the_library(tiny_model, data, targets, name):
    ours_ex, ref_name, kw = LIBRARY[name]
    x, ref = data
    t = targets["margin"]
    layer = ours_ex.layer
    ours = ours_ex.explain(tiny_model, x, t, ctx(ref, chunk=3))
    theirs = library(tiny_model, t, ref_name, layer, x, **kw)
    assert ours.shape == (N, S, S) and float(ours.max()) > 0
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)


def test_fullgrad_equals_the_library(tiny_model, data, targets):
    import pytorch_grad_cam
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x, ref = data
    t = targets["logit"]
    ours = FullGrad().explain(tiny_model, x, t, ctx(ref, chunk=3))
    cam = pytorch_grad_cam.FullGrad(model=ScoreModel(tiny_model, t), target_layers=[])
    try:
        theirs = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t.classes])
    finally:
        cam.activations_and_grads.release()
    np.testing.assert_allclose(ours.numpy(), theirs, atol=1e-5)
    with pytest.raises(XaibenchError, match="fullgrad.*layer"):
        FullGrad(layer="layer2")
    assert FullGrad().describe is None  # no layer, so no IoU ceiling of a layer's resolution


def test_finercam_equals_the_library_default_target(tiny_model, data, targets):
    """Finer-CAM with ``target_idx = c`` (the library's own target construction) on the images
    of class c equals ours on those images."""
    import pytorch_grad_cam

    x, ref = data
    t = targets["logit"]
    ours = FinerCAM(layer="layer4", alpha=0.7).explain(tiny_model, x, t, ctx(ref, chunk=3))
    for c in (0, 1):
        sel = (t.classes == c).nonzero()[:, 0]
        cam = pytorch_grad_cam.FinerCAM(model=ScoreModel(tiny_model, t), target_layers=[tiny_model.stage("layer4")])
        try:
            theirs = cam(input_tensor=x[sel], targets=None, alpha=0.7, target_idx=c)
        finally:
            cam.base_cam.activations_and_grads.release()
        np.testing.assert_allclose(ours[sel].numpy(), theirs, atol=1e-5)


def test_library_cams_leave_the_model_and_its_grads_as_found(tiny_model, data, targets):
    x, ref = data
    before = [p.grad for p in tiny_model.parameters()]
    hooks = [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()]
    stages = [tiny_model.stage(n) for n in tiny_model.stage_names]
    for ex in (ShapleyCAM(), AblationCAM(), FullGrad()):
        ex.explain(tiny_model, x[:2], targets["logit"].subset(slice(0, 2)), ctx(ref))
    assert [p.grad for p in tiny_model.parameters()] == before
    assert [len(m._forward_hooks) + len(m._backward_hooks) for m in tiny_model.modules()] == hooks
    assert [tiny_model.stage(n) for n in tiny_model.stage_names] == stages
    assert not tiny_model.training


ALL = {**{name: (lambda cls=cls: cls()) for name, (cls, _) in NATIVE.items()},
       "scorecam": ScoreCAM, "ablationcam": AblationCAM, "fullgrad": FullGrad, "kpca-cam": KPCACAM, "fem": FEM,
       "shapleycam": ShapleyCAM, "finercam": FinerCAM}


@pytest.mark.parametrize("name", sorted(ALL))
def test_chunk_size_does_not_change_cam_maps(tiny_model, data, targets, name):
    x, ref = data
    t = targets["group-direction"]
    big = ALL[name]().explain(tiny_model, x, t, ctx(ref, chunk=64))
    small = ALL[name]().explain(tiny_model, x, t, ctx(ref, chunk=3))
    assert big.shape == (N, S, S) and big.dtype == torch.float32 and torch.isfinite(big).all() and big.min() >= 0
    torch.testing.assert_close(small, big, rtol=1e-4, atol=1e-5 * float(big.abs().max()))


def test_a_failing_library_call_leaves_the_model_as_found(tiny_model, data, targets, monkeypatch):
    """Ablation-CAM swaps an ablation layer into the model; an error half-way must not leave it."""
    from pytorch_grad_cam.ablation_layer import AblationLayer

    x, ref = data
    stages = [tiny_model.stage(n) for n in tiny_model.stage_names]

    def boom(self, *a, **k):
        raise RuntimeError("boom")

    monkeypatch.setattr(AblationLayer, "set_next_batch", boom)
    with pytest.raises(RuntimeError, match="boom"):
        AblationCAM(layer="layer4").explain(tiny_model, x[:1], targets["logit"].subset(slice(0, 1)), ctx(ref))
    assert [tiny_model.stage(n) for n in tiny_model.stage_names] == stages
    assert not any(isinstance(m, AblationLayer) for m in tiny_model.modules())
