"""The MONAI 3-D ResNet backbones and the N-D Classifier: forward shapes, stages, modes, a short
training run on tiny volumes, the local-weights round trip, and the 2-D Classifier unchanged."""
from __future__ import annotations

import pytest
import torch

from xaibench.contracts import Classifier
from xaibench.errors import XaibenchError
from xaibench.kit.layers import stage_outputs
from xaibench.plugins import instantiate
from xaibench.training import evaluate, fast_layout, train

FAST = {"width": 0.125, "stem_stride": 2, "max_pool": False}
SHAPE = (16, 24, 24)


def _build(registry, name="resnet10-3d", **opts):
    return instantiate(registry, "backbone", name, {**FAST, **opts})


@pytest.mark.parametrize("name", ["resnet10-3d", "resnet18-3d"])
def test_forward_shapes_stages_and_record(registry, name):
    assert registry.get("backbone", name).spatial_dims == (3,)
    torch.manual_seed(0)
    m = _build(registry, name)(2, SHAPE).eval()
    assert isinstance(m, Classifier) and m.stage_names == ("layer1", "layer2", "layer3", "layer4")
    x = torch.rand(3, 1, *SHAPE)
    with stage_outputs(m, m.stage_names) as acts:
        logits, emb = m.forward_all(x)
    assert logits.shape == (3, 2) and emb.shape == (3, m.head.in_features) and torch.isfinite(logits).all()
    assert {k: tuple(v.shape[2:]) for k, v in acts.items()} == {
        "layer1": (8, 12, 12), "layer2": (4, 6, 6), "layer3": (2, 3, 3), "layer4": (1, 2, 2)}
    assert torch.allclose(emb, m.feature_map(x).mean(dim=(2, 3, 4)))
    assert not any(isinstance(mod, torch.nn.ReLU) and mod.inplace for mod in m.modules())
    finer = _build(registry, name, last_stride=1)(2, SHAPE).eval()
    with stage_outputs(finer, ["layer4"]) as acts:
        finer(x)
    assert tuple(acts["layer4"].shape[2:]) == (2, 3, 3)


def test_gradients_reach_the_input_and_the_stages(registry):
    m = _build(registry)(2, SHAPE).eval()
    x = torch.rand(2, 1, *SHAPE, requires_grad=True)
    with stage_outputs(m, ["layer3"]) as acts:
        score = m(x)[:, 1].sum()
        (ga, gx) = torch.autograd.grad(score, [acts["layer3"], x])
    assert gx.shape == x.shape and gx.abs().sum() > 0 and ga.abs().sum() > 0


def test_option_errors(registry):
    for bad in ({"mode": "sideways"}, {"mode": "probe"}, {"stem_stride": 3}, {"last_stride": 0}, {"width": 0}):
        with pytest.raises(XaibenchError):
            _build(registry, **bad)
    with pytest.raises(XaibenchError, match="D×H×W volumes"):
        _build(registry)(2, (32, 32))


def test_two_epochs_on_tiny_volumes(registry, tmp_path):
    from xaibench_plugins.datasets.synthetic_hippocampus import make

    sp = make(n_subjects=24, image_size=24, depth=16, dims=3).load(seed=0, cache_dir=tmp_path)
    b = _build(registry, epochs=2, batch_size=8, patience=5)
    torch.manual_seed(0)
    model = b(2, sp.image_size)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    res = train(model, sp.train, sp.val, seed=0, builder=b, progress=False)
    assert len(res.history["train_loss"]) == 2 and all(torch.isfinite(torch.tensor(res.history["val_loss"])))
    assert any(not torch.equal(before[k], v) for k, v in res.model.state_dict().items() if v.is_floating_point())
    assert not res.model.training and fast_layout(res.model) == torch.contiguous_format
    ev = evaluate(res.model, sp.test, torch.device("cpu"))
    assert 0.0 <= ev["accuracy"] <= 1.0


def test_partial_and_probe_modes_train_only_what_they_say(registry, tmp_path):
    m = _build(registry)(2, SHAPE)
    path = tmp_path / "enc.pt"
    torch.save(m.encoder.state_dict(), path)
    probe = _build(registry, mode="probe", weights=str(path))
    pm = probe(2, SHAPE)
    groups = probe.param_groups(pm)
    assert len(groups) == 1 and all(not p.requires_grad for p in pm.encoder.parameters())
    part = _build(registry, mode="partial")
    qm = part(2, SHAPE)
    groups = part.param_groups(qm)
    assert len(groups) == 2 and all(p.requires_grad for p in qm.encoder.layer4.parameters())
    assert not any(p.requires_grad for p in qm.encoder.layer1.parameters())


def test_weights_round_trip_including_a_module_prefix(registry, tmp_path):
    torch.manual_seed(1)
    src = _build(registry)(2, SHAPE).eval()
    x = torch.rand(2, 1, *SHAPE)
    plain, wrapped = tmp_path / "plain.pt", tmp_path / "wrapped.pt"
    torch.save(src.encoder.state_dict(), plain)
    # MedicalNet-style: DataParallel "module." prefix, a classifier head to drop
    state = {f"module.{k}": v for k, v in src.encoder.state_dict().items()} | {"module.fc.weight": torch.zeros(2, 64)}
    torch.save({"state_dict": state}, wrapped)
    for path in (plain, wrapped):
        torch.manual_seed(2)  # another initialisation: only the loaded weights can make the features equal
        dst = _build(registry, weights=str(path))(2, SHAPE).eval()
        assert torch.allclose(dst.feature_map(x), src.feature_map(x), atol=1e-6)
    torch.save({"conv1.weight": torch.zeros(3, 3)}, tmp_path / "bad.pt")
    with pytest.raises(XaibenchError):
        _build(registry, weights=str(tmp_path / "bad.pt"))(2, SHAPE)


def test_classifier_two_d_unchanged_and_volumes_broadcast():
    enc = torch.nn.Conv2d(3, 4, 3)
    m = Classifier(enc, 4, {"c": enc})
    assert tuple(m.mean.shape) == (1, 3, 1, 1) and set(m.state_dict()) == {"mean", "std", "encoder.weight",
                                                                         "encoder.bias", "head.weight", "head.bias"}
    x = torch.rand(2, 1, 8, 8)
    ref = (x.expand(-1, 3, -1, -1) - m.mean) / m.std  # the 2-D formula before volumes
    assert torch.equal(m.prepare(x), ref)
    enc3 = torch.nn.Conv3d(3, 4, 3)
    m3 = Classifier(enc3, 4, {"c": enc3})
    m3.load_state_dict({**m.state_dict(), "encoder.weight": enc3.weight, "encoder.bias": enc3.bias})
    v = torch.rand(2, 1, 5, 8, 8)
    p = m3.prepare(v)
    assert p.shape == (2, 3, 5, 8, 8)
    assert torch.allclose(p[:, 1], (v[:, 0] - 0.456) / 0.224)
    assert m3(v).shape == (2, 2)


def test_deeplift_runs_on_the_3d_backbone_each_activation_used_once():
    """MONAI's blocks call one ReLU module twice, which captum's DeepLIFT refuses ("a Module
    ReLU() ... is being used more than once"); the backbone gives each block two."""
    from xaibench.contracts import ExplainContext, Target
    from xaibench.plugins import instantiate, load

    reg = load()
    torch.manual_seed(0)
    m = instantiate(reg, "backbone", "resnet10-3d", {"width": 0.25, "stem_stride": 2, "max_pool": False})(
        2, (16, 16, 16)).eval()
    calls: dict[int, int] = {}
    hooks = [r.register_forward_hook(lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1))
             for r in m.modules() if isinstance(r, torch.nn.ReLU)]
    x = torch.rand(2, 1, 16, 16, 16)
    m(x)
    for h in hooks:
        h.remove()
    assert calls and max(calls.values()) == 1
    e = instantiate(reg, "explainer", "deeplift", {})
    a = e.explain(m, x, Target("logit", torch.tensor([0, 1])), ExplainContext(reference=x[:1], seed=0))
    assert a.shape == (2, 16, 16, 16) and torch.isfinite(a).all() and a.abs().sum() > 0
