"""The embedded dataset ``synthetic-hippocampus``: determinism, contract shapes, ROI,
simulated atrophy, subject-level split, cache and option errors."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from xaibench.contracts import DatasetSplits
from xaibench.errors import XaibenchError
from xaibench_plugins.datasets.synthetic_hippocampus import make, write_card

SMALL = {"n_subjects": 40, "image_size": 32}


def _all(sp: DatasetSplits):
    parts = (sp.train, sp.val, sp.test)
    return (torch.cat([p.images for p in parts]), torch.cat([p.masks for p in parts]),
            torch.cat([p.labels for p in parts]), sum((p.subject_ids for p in parts), ()),
            {k: np.concatenate([p.meta[k] for p in parts]) for k in sp.train.meta})


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    return make(**SMALL).load(seed=3, cache_dir=tmp_path_factory.mktemp("c"))


def test_registered_through_entry_point(registry):
    rec = registry.get("dataset", "synthetic-hippocampus")
    assert rec.factory(n_subjects=12).n_subjects == 12


def test_same_seed_identical_other_seed_different(tmp_path, small):
    again = make(**SMALL).generate(3)  # no cache: really regenerated
    a, b = _all(small), again
    assert torch.equal(a[0], torch.cat([small.train.images, small.val.images, small.test.images]))
    order = np.concatenate([np.flatnonzero(b["split"] == i) for i in range(3)])
    assert np.array_equal(a[0].numpy(), b["images"][order])
    assert np.array_equal(a[1].numpy(), b["masks"][order])
    other = make(**SMALL).generate(4)
    assert not np.array_equal(b["images"], other["images"])
    assert not np.allclose(b["hippocampal_volume"], other["hippocampal_volume"])


def test_contract_shapes_dtypes_and_ranges(small):
    for part in (small.train, small.val, small.test):
        n = len(part)
        assert part.images.shape == (n, 1, 32, 32) and part.images.dtype == torch.float32
        assert part.masks.shape == (n, 32, 32) and part.masks.dtype == torch.bool
        assert part.labels.dtype == torch.int64 and set(part.labels.tolist()) <= {0, 1}
        assert 0.0 <= part.images.min() and part.images.max() <= 1.0
        assert not torch.isnan(part.images).any()
        assert len(part.subject_ids) == n
        for key in ("hippocampal_volume", "age", "sex", "tiv"):
            assert len(part.meta[key]) == n and np.issubdtype(part.meta[key].dtype, np.number)
        assert set(np.unique(part.meta["sex"])) <= {0.0, 1.0}  # 0 = female, 1 = male, as in nifti
    assert small.image_size == (32, 32)
    assert small.groups == ("normal", "atrophy") and small.roi_name == "hippocampus"


@pytest.mark.parametrize("plane", ["coronal", "axial", "sagittal"])
def test_roi_nonempty_in_every_image_and_a_few_percent(tmp_path, plane):
    sp = make(n_subjects=20, image_size=32, plane=plane, slices_per_subject=3).load(seed=0, cache_dir=tmp_path)
    _, masks, *_ = _all(sp)
    area = masks.flatten(1).float().mean(1)
    assert (area > 0).all(), f"{plane}: {(area == 0).sum()} images without ROI"
    assert 0.01 < area.mean() < 0.12  # not a speck, not half the image


def test_group_b_volume_smaller_by_configured_atrophy():
    for atrophy in (0.1, 0.25):
        a = make(n_subjects=600, image_size=16, atrophy=atrophy).generate(1)
        vol, lab = a["hippocampal_volume"], a["labels"]
        ratio = vol[lab == 1].mean() / vol[lab == 0].mean()
        assert ratio == pytest.approx(1 - atrophy, abs=0.03)


def test_default_difficulty_volumes_and_roi_area_track_volume(tmp_path):
    a = make(n_subjects=200, image_size=32).generate(0)
    vol, lab = a["hippocampal_volume"], a["labels"]
    assert 8500 < vol[lab == 0].mean() < 10500  # ≈ 4.5–5 cm³ per side
    area = a["masks"].reshape(len(vol), -1).sum(1)
    rho = spearmanr(area / a["tiv"] ** (2 / 3), vol / a["tiv"]).statistic
    assert rho > 0.4  # the slice's ROI shows the subject's (head-size-relative) volume


def test_split_subject_level_disjoint_balanced(tmp_path):
    sp = make(n_subjects=100, image_size=16, slices_per_subject=2).load(seed=5, cache_dir=tmp_path)
    ids = [set(p.subject_ids) for p in (sp.train, sp.val, sp.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    assert [len(s) for s in ids] == [60, 20, 20]
    for part in (sp.train, sp.val, sp.test):
        assert part.labels.float().mean().item() == pytest.approx(0.5, abs=0.05)
        # both slices of a subject stay together
        assert all(part.subject_ids.count(s) == 2 for s in set(part.subject_ids))
    assert sp.card["sizes"]["train"] == {"subjects": 60, "images": 120, "group_B_subjects": 30}
    assert json.loads(json.dumps(sp.card))["split_fractions"] == [0.6, 0.2, 0.2]  # stored with results


def test_cache_file_is_used_and_a_broken_one_rebuilt(tmp_path):
    ds = make(n_subjects=12, image_size=16)
    first = ds.load(seed=0, cache_dir=tmp_path)
    (path,) = tmp_path.glob("synthetic-hippocampus-*.npz")
    with np.load(path) as z:
        z_images = z["images"]
    assert z_images.shape[0] == 12
    path.write_bytes(b"not a zip")
    again = ds.load(seed=0, cache_dir=tmp_path)
    assert torch.equal(first.train.images, again.train.images)
    other = make(n_subjects=12, image_size=16, noise=0.2).load(seed=0, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.npz"))) == 2  # options enter the key
    assert not torch.equal(first.train.images, other.train.images)


def test_difficulty_sets_atrophy_noise_deform_and_overrides_win():
    easy, hard = make(difficulty=0.0).effective, make(difficulty=1.0).effective
    assert easy["atrophy"] > hard["atrophy"] and easy["noise"] < hard["noise"] and easy["deform"] < hard["deform"]
    assert make(difficulty=1.0, atrophy=0.3).effective["atrophy"] == 0.3


@pytest.mark.parametrize("opts, word", [
    ({"n_subjects": 3}, "n_subjects"), ({"n_subjects": 40.5}, "n_subjects"), ({"plane": "oblique"}, "plane"),
    ({"difficulty": 2}, "difficulty"), ({"atrophy": -0.1}, "atrophy"), ({"image_size": "64"}, "image_size"),
    ({"split": [0.5, 0.5]}, "split"), ({"split": [0.6, 0.3, 0.3]}, "split"), ({"colour": 1}, "colour"),
])
def test_bad_option_is_a_one_line_error(opts, word):
    with pytest.raises(XaibenchError) as err:
        make(**opts)
    msg = str(err.value)
    assert "synthetic-hippocampus" in msg and word in msg and "\n" not in msg


def test_write_card_makes_a_png(tmp_path, small):
    path = write_card(small, tmp_path)
    assert path.suffix == ".png" and path.read_bytes()[:4] == b"\x89PNG"


def test_template_is_nilearns_mni152():
    """The fast nibabel read gives exactly what nilearn's loader gives (offline)."""
    from nilearn.datasets import load_mni152_template

    from xaibench_plugins.datasets._hippocampus_sim import _raw_template

    data, affine = _raw_template()
    ref = load_mni152_template(resolution=1)
    assert np.array_equal(data, np.asarray(ref.get_fdata(), np.float32))
    assert np.allclose(affine, ref.affine)


def test_named_masks_roi_halves_brain_and_evidence(small):
    for part in (small.train, small.test):
        nm = part.named_masks
        assert set(nm) == {"roi-left", "roi-right", "evidence", "brain"}
        assert all(m.dtype == torch.bool and m.shape == part.masks.shape for m in nm.values())
        assert torch.equal(nm["roi-left"] | nm["roi-right"], part.masks)
        assert not (nm["roi-left"] & nm["roi-right"]).any()
        cols = torch.arange(32).float()
        # display: patient left on image left, so the left hippocampus lies in the left half
        left_c = (nm["roi-left"].float() * cols).sum((1, 2)) / nm["roi-left"].sum((1, 2)).clamp_min(1)
        right_c = (nm["roi-right"].float() * cols).sum((1, 2)) / nm["roi-right"].sum((1, 2)).clamp_min(1)
        assert (left_c < 16).all() and (right_c > 16).all()
        assert (part.masks & ~nm["brain"]).sum() < 0.02 * part.masks.sum()  # the hippocampus is brain


def test_evidence_is_empty_without_a_group_effect_and_hugs_the_hippocampus(tmp_path):
    from scipy import ndimage

    none = make(n_subjects=12, image_size=32, atrophy=0.0).generate(0)
    assert not none["mask_evidence"].any()
    a = make(n_subjects=40, image_size=32).generate(0)
    ev, roi = a["mask_evidence"], a["masks"]
    assert ev.any(axis=(1, 2)).all()  # both groups: where the other group's version differs
    near = np.stack([ndimage.binary_dilation(m, iterations=4) for m in roi])
    assert (ev & near).sum() > 0.95 * ev.sum()
    assert a["cf_share_evidence"].mean() > 0.7 > a["cf_share_roi"].mean()


def test_jitter_moves_the_window_only(tmp_path):
    base = make(n_subjects=30, image_size=32, jitter_shift=0, jitter_rotation=0).generate(0)
    jit = make(n_subjects=30, image_size=32, jitter_shift=10.0, jitter_rotation=10.0).generate(0)
    for k in ("labels", "hippocampal_volume", "age", "subject"):
        assert np.array_equal(base[k], jit[k])  # the same subjects: the pose draws use a stream of their own
    assert not np.array_equal(base["images"], jit["images"])
    # the ROI wanders: its mean position spreads and the training prior's peak drops
    def spread(m):
        r = np.arange(32)
        return np.std((m * r[None, :, None]).sum((1, 2)) / m.sum((1, 2)))
    assert spread(jit["masks"]) > 2 * spread(base["masks"])
    assert jit["masks"].mean(0).max() < base["masks"].mean(0).max()
    with pytest.raises(XaibenchError, match="jitter_shift"):
        make(jitter_shift=-1)


def test_card_measures_where_the_group_difference_lies(small):
    share = small.card["group_difference_share"]
    assert set(share) == {"population", "per_image", "sample"}
    pop, per = share["population"], share["per_image"]
    assert per["evidence"] > per["roi"] and per["brain"] > 0.99
    for m in ("roi", "evidence", "brain"):
        assert 0 <= pop[m]["weighted"] <= 1 and 0 <= pop[m]["majority"] <= 1
    assert small.card["mask_area_share"]["evidence"] > 0
    json.dumps(small.card)  # JSON-able


def test_side_volumes_are_outcomes_added_only_on_request(tmp_path):
    plain = make(n_subjects=12, image_size=16).load(seed=0, cache_dir=tmp_path)
    assert "hippocampal_volume_left" not in plain.train.meta
    sides = make(n_subjects=12, image_size=16, side_volumes=True).load(seed=0, cache_dir=tmp_path)
    m = sides.train.meta
    np.testing.assert_allclose(m["hippocampal_volume_left"] + m["hippocampal_volume_right"], m["hippocampal_volume"])


def test_card_prior_scores_match_the_roi_prior_explainer_and_metrics(small):
    from xaibench.contracts import ExplainContext, MetricInput
    from xaibench_plugins.explainers.roi_prior import ROIPrior
    from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
    from xaibench_plugins.metrics.iou import IoU
    from xaibench_plugins.metrics.pointing_game import PointingGame

    tr, te = small.train, small.test
    for mask in ("roi", "evidence"):
        ctx = ExplainContext(reference=tr.images[:2], mask_priors={mask: tr.mask(mask).float().mean(0)})
        maps = ROIPrior(mask=mask).explain(None, te.images, None, ctx)
        inp = MetricInput(model=None, images=te.images, labels=te.labels, masks=te.masks, target=None, context=ctx,
                          attributions=maps, named_masks=te.named_masks)
        card = small.card["prior_on_test"][mask]
        for name, metric in (("iou", IoU), ("pointing-game", PointingGame), ("energy-in-roi", EnergyInROI)):
            (s,) = metric(mask=mask).score(inp)
            assert card[name] == pytest.approx(float(np.nanmean(s.values)), abs=1e-5), (mask, name)
