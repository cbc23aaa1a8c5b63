"""``synthetic-hippocampus`` with ``dims = 3``: volume shapes, masks, determinism, the planner
reading the instance's dims, 2-D output unchanged; the backdoor attacks on volumes."""
from __future__ import annotations

import hashlib
from functools import partial
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from xaibench.contracts import AttackContext
from xaibench.errors import XaibenchError
from xaibench.kit import triggers as T
from xaibench.suite import Entry
from xaibench.training import train
from xaibench_plugins.datasets.synthetic_hippocampus import make

VOL = {"n_subjects": 24, "image_size": 24, "depth": 16, "dims": 3}
SHAPE = (16, 24, 24)


@pytest.fixture(scope="module")
def vol(tmp_path_factory):
    return make(**VOL).load(seed=1, cache_dir=tmp_path_factory.mktemp("v"))


def test_volume_shapes_dtypes_and_masks(vol):
    for part in (vol.train, vol.val, vol.test):
        n = len(part)
        assert part.images.shape == (n, 1, *SHAPE) and part.images.dtype == torch.float32
        assert 0.0 <= part.images.min() and part.images.max() <= 1.0
        assert part.masks.shape == (n, *SHAPE) and part.masks.dtype == torch.bool
        assert set(part.named_masks) == {"roi-left", "roi-right", "evidence", "brain"}
        for m in part.named_masks.values():
            assert m.shape == (n, *SHAPE) and m.dtype == torch.bool
        left, right = part.named_masks["roi-left"], part.named_masks["roi-right"]
        assert torch.equal(left | right, part.masks) and not (left & right).any()
        assert (part.masks.flatten(1).sum(1) > 0).all()  # every volume holds its hippocampi
        # patient's left on the image's left (columns), as in the 2-D slices
        cols = torch.arange(SHAPE[2]).float()
        assert ((left.sum((1, 2)).float() * cols).sum(1) < (right.sum((1, 2)).float() * cols).sum(1)).all()
    assert vol.image_size == SHAPE and vol.card["volume_shape"] == list(SHAPE)


def test_volume_roi_is_the_hippocampal_volume_and_the_evidence_lies_near_it(vol):
    part = vol.train
    voxel_mm3 = (104.0 / 24) ** 3
    vox = part.masks.flatten(1).sum(1).numpy() * voxel_mm3
    ratio = vox / part.meta["hippocampal_volume"]
    assert 0.7 < np.median(ratio) < 1.3  # voxelised ellipsoids vs the analytic volume
    ev, brain = part.named_masks["evidence"], part.named_masks["brain"]
    assert ev.any() and ev.float().mean() < 0.2 and brain.float().mean() > 0.5
    near = torch.nn.functional.max_pool3d(part.masks[:, None].float(), 7, 1, 3)[:, 0] > 0
    assert (ev & near).sum() > 0.5 * ev.sum()  # the group effect acts around the hippocampus


def test_volumes_deterministic_per_seed():
    a, b = make(**VOL).generate(1), make(**VOL).generate(1)
    assert np.array_equal(a["images"], b["images"]) and np.array_equal(a["mask_evidence"], b["mask_evidence"])
    c = make(**VOL).generate(2)
    assert not np.array_equal(a["images"], c["images"])


# the 2-D output before volumes existed (sha256 of the generated arrays; seed 3)
PINNED_2D = {"images": "797479e6c38ce232", "masks": "e390e1a215b56aba", "mask_evidence": "2a80e6e26c0a1d0f"}


def test_two_d_output_unchanged_by_the_volume_options():
    opts = {"n_subjects": 12, "image_size": 32}
    a = make(**opts).generate(3)
    got = {k: hashlib.sha256(np.ascontiguousarray(a[k]).tobytes()).hexdigest()[:16] for k in PINNED_2D}
    assert got == PINNED_2D
    assert make(**opts, dims=2).key(3) == make(**opts).key(3)
    assert "dims" not in make(**opts).options() and make(**opts, dims=3).options()["dims"] == 3


@pytest.mark.parametrize("bad", [{"dims": 4}, {"dims": True}, {"depth": 16},
                                 {"dims": 3, "slices_per_subject": 3}, {"dims": 3, "depth": 4}])
def test_volume_option_errors_are_one_line(bad):
    with pytest.raises(XaibenchError) as e:
        make(n_subjects=12, **bad)
    assert "\n" not in str(e.value) and "synthetic-hippocampus" in str(e.value)


def test_planner_prefers_the_dataset_instances_dims(registry):
    from xaibench.dims import dims_of, fits

    slices = Entry("dataset", "synthetic-hippocampus", {})
    volumes = Entry("dataset", "synthetic-hippocampus", {"dims": 3})
    broken = Entry("dataset", "synthetic-hippocampus", {"dims": 7})
    assert dims_of(registry, slices) == (2,) and dims_of(registry, volumes) == (3,)
    assert dims_of(registry, broken) == (2, 3)  # invalid options: the record's dims; the cell reports the error
    flat = Entry("explainer", "flat")
    reg = SimpleNamespace(get=lambda kind, name: registry.get(kind, name) if kind == "dataset"
                          else SimpleNamespace(spatial_dims=(2,)))
    assert fits(reg, slices, flat) and not fits(reg, volumes, flat)


# --------------------------------------------------------------------------- attacks on volumes


def _ctx(vol):
    from xaibench_plugins.backbones.resnet3d import ResNet3dBuilder

    b = ResNet3dBuilder("resnet10", width=0.125, stem_stride=2, max_pool=False, last_stride=1, epochs=2, batch_size=8)
    return AttackContext(vol, lambda: b(2, vol.image_size), partial(train, seed=0, builder=b, progress=False),
                         0, torch.device("cpu"), batch_size=8)


def _check_outcome(out, vol):
    assert out.trigger.shape == SHAPE and out.trigger.dtype == torch.bool
    size = round(min(SHAPE) * 3 / 32)
    assert int(out.trigger.sum()) == size ** 3  # a cube
    assert not (out.trigger & T.roi_union(vol.train.masks, 3)).any()
    trig = out.triggered_test.images
    assert trig.shape == vol.test.images.shape
    changed = (trig != vol.test.images)[:, 0].any(0)
    assert changed.any() and not (changed & ~out.trigger).any()  # only the trigger's voxels change
    assert torch.isfinite(out.train.model(vol.test.images)).all()


def test_explanation_backdoor_on_volumes(vol):
    from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

    out = ExplanationBackdoor(poison_rate=0.1).run(_ctx(vol))
    _check_outcome(out, vol)
    assert out.region.shape == SHAPE and out.region.any()
    roi = T.roi_union(vol.train.masks, 3)
    assert not (out.region & (roi | out.trigger)).any()
    assert len(out.info["region_box"]) == 6 and out.info["gradcam_path"] == "cam-shortcut"
    assert len(out.train.history["val_extra"]) == 2  # held-out backdoor loss ran (N-D Grad-CAM)


def test_badnets_on_volumes(vol):
    from xaibench_plugins.attacks.badnets import BadNets

    out = BadNets(poison_rate=0.2).run(_ctx(vol))
    _check_outcome(out, vol)
    assert out.region is None and out.info["poison_count"] >= 1 and len(out.info["trigger_box"]) == 6


def test_three_d_trigger_placement_and_errors():
    roi = torch.zeros(SHAPE, dtype=torch.bool)
    roi[6:10, 10:14, 2:6] = True  # near the left side: the trigger goes right
    box = T.place_trigger("auto", 3, SHAPE, roi)
    assert len(box) == 6 and box[2] > 12
    assert T.place_trigger("first-top-left", 3, SHAPE, roi) == (2, 2, 2, 5, 5, 5)
    assert T.place_trigger([0, 0, 20], 3, SHAPE, roi) == (0, 0, 20, 3, 3, 23)
    with pytest.raises(XaibenchError, match=r"\[z, y, x\]"):
        T.place_trigger("top-left", 3, SHAPE, roi)  # a 2-D name on a volume
    with pytest.raises(XaibenchError, match="overlaps"):
        T.choose_region([6, 10, 2, 10, 14, 6], 4, SHAPE, roi, box, torch.ones(SHAPE))
    assert T.pattern("checker", 3, nd=3).shape == (3, 3, 3) and T.pattern("checker", 3, nd=3).sum() == 14
    with pytest.raises(XaibenchError, match="2-D slices only"):
        T.variants(torch.zeros(2, 1, *SHAPE), torch.zeros(2, *SHAPE, dtype=torch.bool), 2, 0)
