"""The positive-control dataset ``corrupted-control``: the mask is exactly the corrupted
region, group A is the untouched source, strength 0 changes nothing, bad options fail."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xaibench.errors import XaibenchError
from xaibench_plugins.datasets.corrupted_control import make
from xaibench_plugins.datasets.synthetic_hippocampus import make as make_source

SRC = {"n_subjects": 24, "image_size": 32}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cc")


def load(cache, **opts):
    return make(source_options=SRC, **opts).load(seed=1, cache_dir=cache)


def pairs(part):
    """(clean, corrupted, masks of the corrupted) for a ``copy`` dataset part."""
    n = len(part) // 2
    assert part.labels[:n].eq(0).all() and part.labels[n:].eq(1).all()
    return part.images[:n, 0].numpy(), part.images[n:, 0].numpy(), part.masks[n:].numpy()


def test_registered(registry):
    assert registry.get("dataset", "corrupted-control").factory(corruption="zero").corruption == "zero"


@pytest.mark.parametrize("corruption", ["zero", "topk"])
def test_hard_corruptions_change_exactly_the_mask(cache, corruption):
    sp = load(cache, corruption=corruption, strength=1.0 if corruption == "zero" else 0.03, location="roi")
    for part in (sp.train, sp.val, sp.test):
        a, b, m = pairs(part)
        assert np.array_equal(a != b, m & (a > 0))  # every tissue pixel of the region, nothing else
        assert (b[m] == 0).all()


@pytest.mark.parametrize("corruption", ["blur", "attenuate"])
def test_smooth_corruptions_stay_inside_the_mask(cache, corruption):
    sp = load(cache, corruption=corruption, strength=0.8 if corruption == "attenuate" else 2.0)
    a, b, m = pairs(sp.train)
    changed = np.abs(a - b) > 0
    assert not (changed & ~m).any()
    assert changed[m].mean() > 0.9  # feathered edges, but the whole patch is touched
    if corruption == "attenuate":
        assert (b[m] <= a[m] + 1e-7).all()


def test_group_a_is_the_untouched_source(cache):
    src = make_source(**SRC).load(seed=1, cache_dir=cache)
    sp = load(cache, corruption="attenuate", strength=1.0)
    for s, c in ((src.train, sp.train), (src.val, sp.val), (src.test, sp.test)):
        a = s.images[s.labels == 0]
        assert torch.equal(c.images[c.labels == 0], a)
        assert int(c.labels.sum()) == len(a)  # one corrupted copy per clean image
        assert not torch.equal(c.images[c.labels == 1], a)
        assert c.meta["corrupted"].tolist() == c.labels.bool().tolist()


@pytest.mark.parametrize("corruption", ["zero", "blur", "attenuate", "topk"])
def test_strength_zero_makes_groups_identical(cache, corruption):
    a, b, _ = pairs(load(cache, corruption=corruption, strength=0.0).train)
    assert np.array_equal(a, b)


def test_effect_grows_with_strength(cache):
    effect = []
    for s in (0.25, 0.5, 1.0):
        a, b, m = pairs(load(cache, corruption="blur", strength=2 * s).train)
        effect.append(np.abs(a - b)[m].mean())
    assert effect[0] < effect[1] < effect[2]


def test_locations(cache):
    fixed = load(cache, corruption="zero", location="fixed", center=(0.25, 0.75)).train.masks
    assert (fixed == fixed[0]).all()
    rows, cols = np.nonzero(fixed[0].numpy())
    ps = round(32 * 32 / 224)  # patch_size is given at 224 px and scaled
    assert len(rows) == ps * ps
    assert rows.mean() == pytest.approx(0.25 * 31, abs=1) and cols.mean() == pytest.approx(0.75 * 31, abs=1)
    src = make_source(**SRC).load(seed=1, cache_dir=cache).train
    roi_src = src.masks[src.labels == 0]
    roi = load(cache, corruption="zero", location="roi").train.masks[: len(roi_src)]
    assert (roi & roi_src).flatten(1).any(1).all()  # every patch sits on the source ROI
    rnd = load(cache, corruption="zero", location="random").train.masks
    assert len({tuple(np.argwhere(m.numpy())[0]) for m in rnd}) > 3  # random per image


def test_topk_picks_top_fraction_of_the_reference_map(cache):
    sp = load(cache, corruption="topk", strength=0.05, location="image")
    m = sp.train.masks
    assert (m.flatten(1).sum(1) == round(0.05 * 32 * 32)).all()
    from xaibench_plugins.explainers.edge import sobel_magnitude

    a, b, mk = pairs(sp.train)
    edge = sobel_magnitude(torch.from_numpy(a[:, None])).numpy()
    for e, r in zip(edge, mk):  # the chosen pixels have the largest edge values
        assert e[r].min() >= e[~r].max() - 1e-6
    inside = load(cache, corruption="topk", strength=0.05, location="roi").train
    src = make_source(**SRC).load(seed=1, cache_dir=cache).train
    roi = src.masks[src.labels == 0]
    n = len(roi)
    assert not (inside.masks[:n] & ~roi).any()


def test_pairings_and_determinism(cache):
    copy = load(cache, corruption="attenuate")
    assert int(copy.train.labels.sum()) * 2 == len(copy.train)
    again = load(cache, corruption="attenuate")
    assert torch.equal(copy.train.images, again.train.images) and torch.equal(copy.test.masks, again.test.masks)
    dis = load(cache, corruption="attenuate", pairing="disjoint")
    for part in (dis.train, dis.val, dis.test):
        ids = np.asarray(part.subject_ids)
        lab = part.labels.numpy()
        assert not set(ids[lab == 0]) & set(ids[lab == 1])
        assert abs(int(lab.sum()) - int((lab == 0).sum())) <= 1
    assert dis.card["source_card"]["dataset"] == "synthetic-hippocampus"
    assert json.loads(json.dumps(dis.card))["options"]["pairing"] == "disjoint"  # stored with results


@pytest.mark.parametrize("opts, word", [
    ({"corruption": "noise"}, "corruption"), ({"strength": -1}, "strength"),
    ({"corruption": "attenuate", "strength": 2}, "strength"), ({"location": "image"}, "location"),
    ({"corruption": "topk", "location": "fixed"}, "location"), ({"source": "corrupted-control"}, "source"),
    ({"patch_size": 0}, "patch_size"), ({"center": (0.5, 2)}, "center"), ({"pairing": "x"}, "pairing"),
    ({"colour": 1}, "colour"),
])
def test_bad_options(opts, word):
    with pytest.raises(XaibenchError) as err:
        make(**opts)
    assert "corrupted-control" in str(err.value) and word in str(err.value)


@pytest.mark.parametrize("opts, word", [
    ({"source": "synthetic-hipocampus"}, "synthetic-hippocampus"),  # closest match suggested
    ({"source_options": {"n_subject": 3}}, "n_subject"),
    ({"corruption": "topk", "reference": "gradcam"}, "model"),
])
def test_bad_source_or_reference_fail_at_load(cache, opts, word):
    opts = {"source_options": SRC, **opts}
    with pytest.raises(XaibenchError) as err:
        make(**opts).load(seed=0, cache_dir=cache)
    assert word in str(err.value)


@pytest.mark.parametrize("corruption, strength", [("attenuate", 0.35), ("blur", 4.0), ("zero", 1.0)])
def test_evidence_is_where_the_corruption_changed_the_image_and_the_twin_shares_it(cache, corruption, strength):
    sp = load(cache, corruption=corruption, strength=strength)
    for part in (sp.train, sp.test):
        a, b, _ = pairs(part)
        n = len(a)
        ev = part.named_masks["evidence"].numpy()
        assert np.array_equal(ev[n:], np.abs(a - b) > 0.01)  # group B: exactly the changed pixels
        assert np.array_equal(ev[:n], ev[n:])  # group A: its corrupted twin's evidence
        assert not (ev & ~part.masks.numpy()).any() and ev.any()
        assert torch.equal(part.named_masks["brain"][:n], part.named_masks["brain"][n:])
    assert sp.card["evidence_in_region"] == 1.0 and 0 < sp.card["evidence_area_share"] <= sp.card["region_area_share"]


def test_source_from_a_plugin_file_resolves_through_the_runs_registry(tmp_path):
    """A ``--plugin`` dataset as ``source``: the run's session loads it (before, the wrapper
    re-loaded the installed plugins only and the name was unknown)."""
    from xaibench.cells import RunConfig, Session
    from xaibench.plugins import current_registry, using_registry
    from xaibench.suite import Entry, parse

    from .conftest import TOY_PLUGIN

    suite = parse({"name": "t", "datasets": ["toy-blobs"], "backbones": ["resnet18"], "attacks": ["none"],
                   "explainers": ["random"], "metrics": ["accuracy"]}, "test")
    session = Session(RunConfig(suite, tmp_path, (str(TOY_PLUGIN),), progress=False))
    entry = Entry("dataset", "corrupted-control", {"source": "toy-blobs", "source_options": {"n": 40},
                                                   "corruption": "zero", "strength": 1.0})
    sp = session.dataset(entry)
    src = session.dataset(Entry("dataset", "toy-blobs", {"n": 40}))
    n = len(sp.train) // 2
    assert sp.train.images.shape[-2:] == src.train.images.shape[-2:]
    assert torch.equal(sp.train.images[:n], src.train.images[src.train.labels == 0])  # group A, untouched
    assert "toy-blobs" not in current_registry().names("dataset")  # outside a run: installed plugins only
    with using_registry(session.registry):
        assert "toy-blobs" in current_registry().names("dataset")
