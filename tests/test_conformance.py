"""One conformance test per registered plugin of each kind (as timm does for models):
shapes, dtypes, determinism with a seed, finite values on a normal input, a clear error on
a wrong one. Third-party plugins installed in the environment are checked too. Explainers
and metrics whose record declares 3 in ``spatial_dims`` are checked again on volumes (a tiny
Conv3d model, 16³ volumes); the built-ins that stay 2-D are listed one test id each."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from xaibench.contracts import (AttackContext, AttackOutcome, Classifier, DatasetSplits, ExplainContext,
                                MetricInput, Score, Target)
from xaibench.errors import XaibenchError
from xaibench.plugins import instantiate, load
from xaibench.training import train

from .conftest import TOY_PLUGIN
from .volume_fixtures import ToyVolumes, tiny_3d_model, volume_context, volumes_classifier

REG = load([TOY_PLUGIN])
SIZE = 32


def _names(kind):
    return REG.names(kind)


def _make(kind, name, _folder=None, **extra):
    rec = REG.get(kind, name)
    opts = rec.conformance(_folder) if callable(rec.conformance) else dict(rec.conformance)
    return instantiate(REG, kind, name, {**opts, **extra})


@pytest.fixture(scope="module")
def toy():
    return REG.get("dataset", "toy-blobs").factory(n=48, size=SIZE).load(seed=0, cache_dir=None)


@pytest.fixture(scope="module")
def model():
    from xaibench_plugins.backbones.resnet import ResNetBuilder

    torch.manual_seed(0)
    return ResNetBuilder("resnet18", width=0.125, output_stride=8)(2, (SIZE, SIZE)).eval()


@pytest.fixture(scope="module")
def vols():
    return ToyVolumes().load(seed=0)


@pytest.fixture(scope="module")
def model3d():
    return tiny_3d_model()


def _ctx(toy, seed=0):
    # the runner always gives the training-mask priors ("roi" at least; see cells.explain_context)
    return ExplainContext(reference=toy.train.images[:8], seed=seed, chunk_size=16,
                          mask_priors={"roi": toy.train.masks.float().mean(0)})


# --------------------------------------------------------------------------- explainers
def _dims(kind, name):
    return tuple(getattr(REG.get(kind, name), "spatial_dims", (2,)))


def _names_3d(kind):
    return [n for n in _names(kind) if 3 in _dims(kind, n)]


def _check_explainer(name, model, data, ctx):
    x = data.test.images[:4]
    tgt = Target("logit", data.test.labels[:4])
    params = copy.deepcopy(model.state_dict())
    flags = [p.requires_grad for p in model.parameters()]
    ex = _make("explainer", name)
    a = ex.explain(model, x, tgt, ctx)
    assert a.shape == (4, *x.shape[2:]) and a.dtype == torch.float32 and a.device == x.device
    assert torch.isfinite(a).all(), f"{name}: non-finite values"
    b = _make("explainer", name).explain(model, x, tgt, ctx)
    assert torch.allclose(a, b, atol=1e-5), f"{name}: not deterministic for a fixed seed"
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in params.items()), f"{name}: changed the model"
    assert flags == [p.requires_grad for p in model.parameters()], f"{name}: left requires_grad changed"
    assert not model.training
    with pytest.raises((XaibenchError, ValueError)):
        ex.explain(model, x[:, 0], tgt, ctx)  # N×*S instead of N×1×*S
    return a


@pytest.mark.parametrize("name", _names("explainer"))
def test_explainer(name, model, toy):
    needs = getattr(_make("explainer", name), "needs_backbone", None)  # e.g. attention rollout: a ViT
    if needs:
        torch.manual_seed(0)
        model = _make("backbone", needs)(2, (SIZE, SIZE)).eval()
    assert _check_explainer(name, model, toy, _ctx(toy)).ndim == 3  # N×H×W


@pytest.mark.parametrize("name", _names_3d("explainer"))
def test_explainer_3d(name, model3d, vols):
    with volumes_classifier():
        assert _check_explainer(name, model3d, vols, volume_context(vols)).ndim == 4  # N×D×H×W


# --------------------------------------------------------------------------- metrics
def _metric_input(model, toy, scope, n=8, ctx=None, explainer="toy-grad"):
    st = toy.test.subset(np.arange(n))
    spatial = tuple(st.images.shape[2:])
    side = spatial[-1]
    g = torch.Generator().manual_seed(1)
    maps = {e: torch.rand(n, *spatial, generator=g) for e in ("a", "b", "c")}
    region = torch.zeros(spatial, dtype=torch.bool)
    region[..., :side // 4, -side // 4:] = True
    trigger = torch.zeros(spatial, dtype=torch.bool)
    trigger[..., -side // 8:, :side // 8] = True
    ex = REG.get("explainer", explainer).factory()
    return MetricInput(
        model=model, images=st.images, labels=st.labels, masks=st.masks, target=Target("logit", st.labels),
        context=ctx or _ctx(toy), attributions=maps["a"], explainer=ex, explainer_name="a",
        maps=maps, triggered_maps={k: v.flip(-1) for k, v in maps.items()},
        seed_maps={0: maps["a"], 1: maps["b"], 2: maps["c"]}, reference_maps=maps["b"],
        split="triggered" if scope == "attack" else "clean", region=region, trigger=trigger,
        meta={k: np.asarray(v) for k, v in st.meta.items()}, splits=toy)


def _check_metric(name, make_input):
    m = _make("metric", name)
    scope = getattr(m, "scope", None)
    assert scope in ("explanation", "model", "explainers", "seeds", "attack"), f"{name}: bad scope {scope!r}"
    inp = make_input(scope)
    declared = getattr(m, "unavailable", None)  # a plugin that cannot run here says why, in one line
    if declared:
        with pytest.raises(XaibenchError) as err:
            m.score(inp)
        assert str(err.value) == declared and "\n" not in declared
        return [declared]
    scores = m.score(inp)
    assert scores and all(isinstance(s, Score) for s in scores)
    for s in scores:
        v = np.asarray(s.values, dtype=float)
        assert v.ndim == 1 and v.size in (1, len(inp.images)), f"{name}/{s.name}: values shape {v.shape}"
        assert np.isfinite(v).any(), f"{name}/{s.name}: no finite value on a normal input"
        assert isinstance(s.higher_is_better, bool)
    again = _make("metric", name).score(make_input(scope))
    for s, t in zip(scores, again):
        np.testing.assert_allclose(np.asarray(s.values, float), np.asarray(t.values, float), atol=1e-6,
                                   err_msg=f"{name}/{s.name}: not deterministic")
    if scope == "explanation":
        bad = MetricInput(**{**inp.__dict__, "attributions": inp.attributions[:, :5]})
        with pytest.raises((XaibenchError, ValueError)):
            m.score(bad)
    return [s.name for s in scores]


@pytest.mark.parametrize("name", _names("metric"))
def test_metric(name, model, toy):
    assert _check_metric(name, lambda scope: _metric_input(model, toy, scope))


@pytest.mark.parametrize("name", _names_3d("metric"))
def test_metric_3d(name, model3d, vols):
    with volumes_classifier():
        assert _check_metric(name, lambda scope: _metric_input(model3d, vols, scope, ctx=volume_context(vols),
                                                               explainer="saliency"))


# --------------------------------------------------------------------------- 2-D only
def _two_d_only():
    return [(k, n) for k in ("explainer", "metric") for n in _names(k)
            if 3 not in _dims(k, n) and REG.provider(k, n).startswith("xaibench (")]


@pytest.mark.parametrize("kind, name", _two_d_only(), ids=[f"{k}-{n}" for k, n in _two_d_only()])
def test_two_d_only_plugin_says_why(kind, name):
    """The built-in plugins that stay 2-D, one test id each (``pytest -v`` lists the set):
    each declares (2,) and its module docstring says it is 2-D only and why."""
    import sys

    assert _dims(kind, name) == (2,)
    doc = sys.modules[type(_make(kind, name)).__module__].__doc__ or ""
    assert "2-D" in doc, f"{kind} {name}: declares 2-D only; say so (and why) in its module docstring"


def test_some_plugins_of_each_kind_run_on_volumes():
    assert {"gradcam", "ig", "occlusion", "rise", "lrp", "random"} <= set(_names_3d("explainer"))
    assert {"iou", "energy-in-roi", "deletion", "pointing-game"} <= set(_names_3d("metric"))


# --------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("name", _names("dataset"))
def test_dataset(name, tmp_path):
    rec = REG.get("dataset", name)
    if not rec.conformance and name != "toy-blobs":
        pytest.fail(f"dataset {name}: declare small `conformance` options in its record")
    a = _make("dataset", name, tmp_path / "data").load(seed=0, cache_dir=tmp_path)
    b = _make("dataset", name, tmp_path / "data").load(seed=0, cache_dir=tmp_path / "other")
    assert isinstance(a, DatasetSplits)
    for part, other in ((a.train, b.train), (a.val, b.val), (a.test, b.test)):
        n = len(part)
        assert n > 0 and part.images.dtype == torch.float32 and part.images.ndim == 4 and part.images.shape[1] == 1
        assert part.labels.dtype == torch.int64 and set(part.labels.tolist()) <= {0, 1}
        assert part.masks.dtype == torch.bool and part.masks.shape == (n, *part.images.shape[-2:])
        assert float(part.images.min()) >= 0 and float(part.images.max()) <= 1
        assert torch.isfinite(part.images).all()
        assert torch.equal(part.images, other.images), f"{name}: not deterministic for a seed"
    with pytest.raises(XaibenchError):
        _make("dataset", name, tmp_path / "data", no_such_option=1)


# --------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", _names("backbone"))
def test_backbone(name):
    """Every backbone at each spatial dimensionality its record declares (16³ for volumes)."""
    for dims in _dims("backbone", name):
        shape = (SIZE,) * 2 if dims == 2 else (16,) * 3
        torch.manual_seed(0)
        m = _make("backbone", name, width=0.125)(2, shape).eval()
        assert isinstance(m, Classifier) and m.stage_names
        x = torch.rand(3, 1, *shape)
        logits, emb = m.forward_all(x)
        assert logits.shape == (3, 2) and emb.shape[0] == 3 and torch.isfinite(logits).all()
        torch.manual_seed(0)
        m2 = _make("backbone", name, width=0.125)(2, shape).eval()
        assert torch.allclose(m2(x), logits), f"{name}: initialisation not deterministic for a seed"
    with pytest.raises(XaibenchError):
        _make("backbone", name, mode="sideways")
    with pytest.raises(XaibenchError):
        _make("backbone", name, mode="probe")  # needs a weights file


# --------------------------------------------------------------------------- attacks
@pytest.mark.parametrize("name", _names("attack"))
def test_attack(name, toy):
    from functools import partial

    from xaibench_plugins.backbones.resnet import ResNetBuilder

    builder = ResNetBuilder("resnet18", width=0.125, output_stride=8, epochs=1)
    ctx = AttackContext(splits=toy, build_model=lambda: builder(2, (SIZE, SIZE)),
                        train=partial(train, seed=0, builder=builder, progress=False), seed=0,
                        device=torch.device("cpu"))
    out = _make("attack", name).run(ctx)
    assert isinstance(out, AttackOutcome) and isinstance(out.train.model, Classifier)
    for mask in (out.region, out.trigger):
        assert mask is None or (mask.dtype == torch.bool and mask.shape == (SIZE, SIZE))
    if out.triggered_test is not None:
        assert out.triggered_test.images.shape == toy.test.images.shape
        assert torch.equal(out.triggered_test.labels, toy.test.labels) or name == "badnets"
    with pytest.raises(XaibenchError):
        _make("attack", name, no_such_option=1)
