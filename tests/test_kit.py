"""The public toolkit (``xaibench.kit``): the rules every plugin shares, in 2-D and 3-D.

Pinned here: the empty-map result of ``mass_share``, the border rule of ``gaussian_blur``
(against scipy.ndimage), tie-breaking of top-k, and the N-D shape checks.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import ndimage

from xaibench.errors import XaibenchError
from xaibench.kit import (as_masks, box_mask, check_images, check_maps, chunks, empty_maps, gaussian_blur, map_shape,
                          mass_share, option_factory, per_chunk, require, topk_mask, topk_maps, upsample)
from xaibench.contracts import Target

SHAPES = [(2, 1, 12, 10), (2, 1, 6, 8, 7)]  # N×1×H×W and N×1×D×H×W


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_checks_accept_2d_and_3d_and_name_the_plugin(shape):
    x = torch.rand(shape)
    check_images(x, "explainer e")
    maps = torch.rand(map_shape(x))
    assert check_maps(maps, x, "metric m") is maps
    assert check_maps(maps[:, None], x, "metric m").shape == maps.shape  # N×1×*S squeezed
    with pytest.raises(XaibenchError, match="metric m: attributions must be"):
        check_maps(maps[:, :-1], x, "metric m")
    with pytest.raises(XaibenchError, match="metric m: needs attributions"):
        check_maps(None, x, "metric m")


@pytest.mark.parametrize("bad", [torch.rand(2, 12, 10), torch.rand(2, 1, 2, 3, 4, 5), torch.zeros(2, 1, 4, 4, dtype=torch.long),
                                 torch.rand(2, 3, 4, 4)])
def test_check_images_refuses_other_shapes_and_dtypes(bad):
    with pytest.raises(XaibenchError, match="explainer e: expected float images"):
        check_images(bad, "explainer e")


def test_option_factory_and_require_are_one_line_errors():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Opts:
        steps: int = 3
        scope: str = "explanation"

    make = option_factory("metric m", Opts)
    assert make(steps=4).steps == 4
    with pytest.raises(XaibenchError, match=r"^metric m: unknown option 'scope'; allowed: steps$"):
        make(scope="x")
    with pytest.raises(XaibenchError, match=r"^metric m: option 'steps' must be an integer >= 1, got 0$"):
        require(False, "metric m", "steps", "an integer >= 1", 0)


def test_upsample_is_bilinear_in_2d_and_trilinear_in_3d():
    m2, m3 = torch.rand(2, 3, 4), torch.rand(2, 2, 3, 4)
    assert torch.equal(upsample(m2, (6, 8)), F.interpolate(m2[:, None], (6, 8), mode="bilinear")[:, 0])
    assert torch.equal(upsample(m3, (4, 6, 8)), F.interpolate(m3[:, None], (4, 6, 8), mode="trilinear")[:, 0])
    assert upsample(m3, (2, 3, 4)) is m3


@pytest.mark.parametrize("shape", SHAPES)
def test_empty_maps_are_zero_n_by_spatial(shape):
    x = torch.rand(shape)
    e = empty_maps(x)
    assert e.shape == map_shape(x) and e.dtype == torch.float32 and not e.any()


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("border, scipy_mode", [("replicate", "nearest"), ("reflect", "mirror")])
def test_gaussian_blur_borders_match_scipy(shape, border, scipy_mode):
    x = torch.rand(shape, dtype=torch.float64)
    sigma = 1.0  # radius round(3σ) = 3, scipy's truncate = 3
    ours = gaussian_blur(x, sigma, border=border).numpy()
    ref = np.stack([ndimage.gaussian_filter(v[0], sigma, mode=scipy_mode, truncate=3.0) for v in x.numpy()])[:, None]
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_gaussian_blur_reflect_falls_back_to_replicate_on_small_images_and_keeps_constants():
    x = torch.rand(1, 1, 5, 5)
    assert torch.equal(gaussian_blur(x, 3.0, border="reflect"), gaussian_blur(x, 3.0, border="replicate"))
    c = torch.full((1, 1, 9, 9, 9), 0.25, dtype=torch.float64)
    for border in ("replicate", "reflect"):
        np.testing.assert_allclose(gaussian_blur(c, 1.5, border=border).numpy(), 0.25, atol=1e-15)
    assert gaussian_blur(x, 0.0) is x
    with pytest.raises(ValueError, match="border"):
        gaussian_blur(x, 1.0, border="zeros")


@pytest.mark.parametrize("spatial", [(4, 4), (2, 4, 4)])
def test_mass_share_empty_map_is_nan_or_zero_with_a_floor(spatial):
    region = torch.zeros(spatial, dtype=torch.bool)
    region.view(-1)[:4] = True
    maps = torch.zeros(3, *spatial)
    maps[0].view(-1)[:2] = 1.0  # all inside
    maps[1].view(-1)[[0, -1]] = 1.0  # half inside
    maps[2] -= 1.0  # nothing positive: no mass
    share = mass_share(maps, region)
    assert share[:2].tolist() == [1.0, 0.5] and torch.isnan(share[2])
    assert mass_share(maps, region, floor=1e-12).tolist() == [1.0, 0.5, 0.0]
    assert mass_share(maps, region, mode="absolute")[2] == pytest.approx(4 / region.numel())
    per_image = region.expand(3, *spatial)
    assert torch.equal(mass_share(maps, per_image, floor=1e-12), mass_share(maps, region, floor=1e-12))


def test_as_masks_shares_a_volume_only_with_its_spatial_shape():
    vol = torch.zeros(2, 4, 4, dtype=torch.bool)
    assert as_masks(vol, 3, (2, 4, 4)).shape == (3, 2, 4, 4)  # shared D×H×W mask
    assert as_masks(vol, 2, (4, 4)).shape == (2, 4, 4)  # two per-image H×W masks
    with pytest.raises(XaibenchError, match="fit neither"):
        as_masks(vol, 3, (4, 4))


def test_topk_breaks_ties_by_pixel_index_in_any_dims():
    a = torch.tensor([[1.0, 2.0, 2.0, 2.0, 0.0]])
    assert topk_mask(a, torch.tensor([2])).tolist() == [[False, True, True, False, False]]
    v = torch.zeros(1, 2, 2, 2)
    v[0, 1, 1, 1] = 1.0
    top = topk_maps(v, 2)
    assert top.shape == v.shape and top[0, 1, 1, 1] and top.view(-1)[0] and int(top.sum()) == 2


def test_box_mask_in_2d_and_3d():
    assert int(box_mask((1, 2, 3, 5), (4, 6)).sum()) == 2 * 3
    b = box_mask((0, 1, 1, 2, 3, 4), (3, 4, 5))
    assert int(b.sum()) == 2 * 2 * 3 and b[1, 2, 3] and not b[2, 2, 3]


def test_chunks_and_per_chunk_cover_the_batch_in_bounded_passes():
    assert [(s.start, s.stop) for s in chunks(5, 2)] == [(0, 2), (2, 4), (4, 5)]
    x = torch.arange(5.0).view(5, 1, 1, 1)
    target = Target("logit", torch.arange(5))
    seen = []

    def fn(xi: torch.Tensor, ti: Target) -> torch.Tensor:
        seen.append(len(xi))
        return xi[:, 0, 0] * 0 + ti.classes.view(-1, 1).float()

    assert per_chunk(fn, x, target, 2).view(-1).tolist() == [0, 1, 2, 3, 4] and seen == [2, 2, 1]


def test_planner_leaves_out_explainers_and_metrics_that_do_not_support_the_datasets_dims():
    from types import SimpleNamespace

    from xaibench.dims import explainers_for, fits, metrics_for, skip_notes
    from xaibench.suite import Entry

    dims = {("dataset", "vol"): (3,), ("dataset", "slices"): (2,), ("explainer", "flat"): (2,),
            ("explainer", "any"): (2, 3)}
    registry = SimpleNamespace(get=lambda kind, name: SimpleNamespace(spatial_dims=dims[(kind, name)]))
    vol, slices = Entry("dataset", "vol", {}, "vol"), Entry("dataset", "slices", {}, "slices")
    flat_e, any_e = Entry("explainer", "flat", {}, "flat"), Entry("explainer", "any", {}, "any")
    dims[("metric", "box")] = (2,)
    box = Entry("metric", "box", {}, "box")
    suite = SimpleNamespace(datasets=[vol, slices], explainers=[flat_e, any_e], metrics=[box])
    assert fits(registry, slices, flat_e) and not fits(registry, vol, flat_e) and fits(registry, vol, any_e)
    assert explainers_for(registry, suite, vol) == [any_e]
    assert explainers_for(registry, suite, slices) == [flat_e, any_e]
    assert metrics_for(registry, suite, vol) == [] and metrics_for(registry, suite, slices) == [box]
    assert skip_notes(registry, suite) == [
        "skipped explainer flat on dataset vol: the dataset is 3-D, the explainer supports 2-D",
        "skipped metric box on dataset vol: the dataset is 3-D, the metric supports 2-D"]
