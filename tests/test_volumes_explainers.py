"""Explainers and localisation metrics on volumes, beyond conformance: Grad-CAM by hand and
against MONAI, IG completeness, LRP conservation through Conv3d, occlusion and RISE on a model
that reads one known cube, 3-D Sobel against scipy, and a random map at chance."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, MetricInput, Target
from xaibench_plugins.explainers.edge import Edge
from xaibench_plugins.explainers.gradcam import GradCAM
from xaibench_plugins.explainers.ig import IG
from xaibench_plugins.explainers.lrp import LRP
from xaibench_plugins.explainers.occlusion import Occlusion
from xaibench_plugins.explainers.random import RandomMap
from xaibench_plugins.explainers.rise import Rise
from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
from xaibench_plugins.metrics.iou import IoU

from .volume_fixtures import VOL, ToyVolumes, tiny_3d_model, volume_context, volumes_classifier


@pytest.fixture(autouse=True)
def _nd():
    with volumes_classifier():
        yield


@pytest.fixture(scope="module")
def vols():
    return ToyVolumes().load(seed=0)


@pytest.fixture(scope="module")
def model3d():
    return tiny_3d_model()


def _x_t(vols, n=4):
    return vols.test.images[:n], Target("logit", vols.test.labels[:n])


def test_gradcam_on_a_volume_is_the_mean_gradient_over_dhw_by_hand(model3d, vols):
    x, t = _x_t(vols)
    ours = GradCAM(layer="layer2").explain(model3d, x, t, volume_context(vols))
    acts = {}
    h = model3d.stage("layer2").register_forward_hook(lambda m, i, o: acts.__setitem__("a", o))
    try:
        with torch.enable_grad():
            xi = x.clone().requires_grad_(True)
            score = t(model3d, xi)
            (g,) = torch.autograd.grad(score.sum(), acts["a"])
    finally:
        h.remove()
    a = acts["a"].detach()
    assert a.shape[2:] == (VOL // 2,) * 3
    w = g.mean(dim=(2, 3, 4))  # α_k: the mean gradient over d×h×w
    cam = torch.relu(torch.einsum("nc,ncdhw->ndhw", w, a))
    ref = F.interpolate(cam[:, None], size=(VOL,) * 3, mode="trilinear", align_corners=False)[:, 0]
    assert ours.shape == (4, VOL, VOL, VOL) and ref.abs().max() > 0
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_gradcam_on_a_volume_equals_monai(model3d, vols):
    import monai.visualize as monai_vis  # a test dependency: the reference must run, not skip
    x, _ = _x_t(vols)
    t = Target("logit", torch.ones(len(x), dtype=torch.long))  # MONAI explains one class index per call
    ours = GradCAM(layer="layer2").explain(model3d, x, t, volume_context(vols))
    cam = monai_vis.GradCAM(nn_module=model3d, target_layers="encoder.1",
                            upsampler=lambda size: (lambda m: F.interpolate(m, size=size, mode="trilinear",
                                                                            align_corners=False)),
                            postprocessing=lambda m: m)
    theirs = cam(x.clone(), class_idx=1)[:, 0].detach()
    assert theirs.abs().max() > 0
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)


def test_ig_completeness_on_a_volume(model3d, vols):
    x, _ = _x_t(vols, 2)
    t = Target("margin", vols.test.labels[:2])
    a = IG(steps=128).explain(model3d, x, t, volume_context(vols))
    with torch.no_grad():
        gap = t(model3d, x) - t(model3d, torch.zeros_like(x))
    assert gap.abs().min() > 1e-4
    assert ((a.sum(dim=(1, 2, 3)) - gap).abs() / gap.abs()).max() < 0.01


def _bias_free_bn(model: Classifier) -> Classifier:
    """The fixture with BatchNorm3d at identity statistics: merged, it adds no bias."""
    for name in model.stage_names:
        bn = model.stage(name)[1]
        bn.reset_parameters()
        bn.reset_running_stats()
    return model.eval()


@pytest.mark.parametrize("composite", ["epsilon-plus-flat", "epsilon-gamma-box"])
def test_lrp_conserves_relevance_through_conv3d(vols, composite):
    """As on slices (where the test model's BatchNorm is also bias-free): relevance sums to the
    logit minus the head bias through Conv3d, BatchNorm3d and AdaptiveAvgPool3d. (A merged
    BatchNorm bias absorbs relevance in 2-D and 3-D alike.)"""
    model = _bias_free_bn(tiny_3d_model())
    x, t = _x_t(vols)
    rel = LRP(composite=composite).explain(model, x, t, volume_context(vols, chunk_size=3))
    with torch.no_grad():
        explained = t(model, x) - model.head.bias[t.classes]
    assert rel.shape == (4, VOL, VOL, VOL) and explained.abs().min() > 1e-3
    assert (rel.sum(dim=(1, 2, 3)) - explained).abs().max() < 0.01 * explained.abs().max()


def test_lrp_merges_batchnorm3d_into_the_conv3d(model3d, vols):
    """The canonizer folds BatchNorm3d as it folds BatchNorm2d: the map equals that of the same
    model with the BatchNorm folded into the convolution by hand."""
    import copy

    folded = copy.deepcopy(model3d)
    for name in folded.stage_names:
        conv, bn = folded.stage(name)[0], folded.stage(name)[1]
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        merged = torch.nn.Conv3d(conv.in_channels, conv.out_channels, 3, stride=conv.stride, padding=1)
        with torch.no_grad():
            merged.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1, 1))
            merged.bias.copy_(bn.bias - bn.running_mean * scale)
        folded.stage(name)[0], folded.stage(name)[1] = merged, torch.nn.Identity()
    x, t = _x_t(vols)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model3d(x), rtol=1e-5, atol=1e-6)
    ours = LRP().explain(model3d, x, t, volume_context(vols))
    torch.testing.assert_close(ours, LRP().explain(folded, x, t, volume_context(vols)), rtol=1e-4, atol=1e-8)
    assert ours.abs().max() > 0


class _CubeReader(torch.nn.Module):
    """Reads only a known cube: the encoder output is the image masked to it (1 channel)."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return (z[:, :1] * self.mask) * (self.mask.numel() / self.mask.sum())


def _cube_model(cube: tuple[slice, slice, slice]) -> tuple[Classifier, torch.Tensor]:
    inside = torch.zeros((VOL,) * 3, dtype=torch.bool)
    inside[cube] = True
    enc = _CubeReader(inside.float()[None, None])
    model = Classifier(enc, 1, {"layer1": enc}, num_classes=2, in_chans=1, mean=(0.0,), std=(1.0,))
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model.head.bias.zero_()
    return model.eval(), inside


CUBE = (slice(4, 8), slice(8, 12), slice(0, 4))


def test_occlusion_puts_its_mass_on_the_cube_the_model_reads():
    model, inside = _cube_model(CUBE)
    x = torch.rand(2, 1, VOL, VOL, VOL, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    t = Target("logit", torch.tensor([1, 1]))
    sal = Occlusion(window=4, stride=4).explain(model, x, t, volume_context(ToyVolumes().load(seed=0)))
    assert sal.shape == (2, VOL, VOL, VOL)
    assert torch.allclose(sal[:, ~inside], torch.zeros(()), atol=1e-6)  # windows aligned with the cube
    assert (sal[:, inside] > 0).all()


def test_rise_puts_its_mass_near_the_cube_the_model_reads():
    model, inside = _cube_model(CUBE)
    x = torch.rand(2, 1, VOL, VOL, VOL, generator=torch.Generator().manual_seed(0)) * 0.5 + 0.5
    t = Target("logit", torch.tensor([1, 1]))
    sal = Rise(masks=400, grid=4).explain(model, x, t, volume_context(ToyVolumes().load(seed=0), chunk_size=200))
    top = sal.flatten(1).topk(int(inside.sum())).indices
    assert (inside.flatten()[top].float().mean(1) > 0.5).all()  # chance: 64 / 4096


def test_edge_on_a_volume_is_the_3d_sobel_magnitude():
    from scipy import ndimage

    x = torch.rand(2, 1, 8, 9, 10, generator=torch.Generator().manual_seed(0))
    ours = Edge().explain(None, x, None, None)
    ref = np.stack([np.sqrt(sum(ndimage.sobel(v[0].numpy().astype(np.float64), axis=k, mode="nearest") ** 2
                                for k in range(3))) for v in x])
    np.testing.assert_allclose(ours.numpy(), ref, rtol=1e-4, atol=1e-5)


def test_random_maps_score_chance_on_volumes(vols):
    """IoU and energy-in-ROI of uniform noise on 16³ volumes with 5³ ROIs sit at their stated
    chance (mean over 64 maps, each an independent draw)."""
    imgs = vols.train.images[:16].repeat(4, 1, 1, 1, 1) + torch.arange(64).view(-1, 1, 1, 1, 1) * 1e-6
    masks = vols.train.masks[:16].repeat(4, 1, 1, 1)
    labels = vols.train.labels[:16].repeat(4)
    ctx = volume_context(vols)
    maps = RandomMap().explain(None, imgs, None, ctx)
    assert maps.shape == (64, VOL, VOL, VOL) and len({m.sum().item() for m in maps}) == 64
    inp = MetricInput(model=None, images=imgs, labels=labels, masks=masks, target=Target("logit", labels),
                      context=ctx, attributions=maps)
    for metric, tol in ((IoU(), 0.01), (EnergyInROI(), 0.002)):
        (s,) = metric.score(inp)
        assert abs(float(np.nanmean(s.values)) - s.chance) < tol, (s.name, np.nanmean(s.values), s.chance)
    assert abs(EnergyInROI().score(inp)[0].chance - 125 / VOL ** 3) < 1e-12
