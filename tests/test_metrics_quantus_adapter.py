"""The Quantus adapter and the native complexity / random-logit metrics against Quantus on the
same inputs (tolerances stated per test), on 3-D inputs, and the adapter's one-line errors."""
from __future__ import annotations

import numpy as np
import pytest
import quantus
import torch

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench.errors import XaibenchError
from xaibench_plugins.metrics import quantus_adapter as qa
from xaibench_plugins.metrics.complexity import Complexity
from xaibench_plugins.metrics.effective_complexity import EffectiveComplexity
from xaibench_plugins.metrics.random_logit import RandomLogit
from xaibench_plugins.metrics.sparseness import Sparseness

from .quantus_bridge import Grad, q_explain

N, S = 6, 32


@pytest.fixture(scope="module")
def data():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(N, 1, S, S, generator=g)
    y = torch.tensor([0, 1] * (N // 2))
    masks = torch.zeros(N, S, S, dtype=torch.bool)
    masks[:, 5:15, 8:20] = True
    a = torch.randn(N, S, S, generator=g) * torch.linspace(0.1, 3, N).view(N, 1, 1)  # maxima differ
    a[:, :4] = 0  # some exact zeros
    return x, y, masks, a


def _inp(model, x, y, a, masks=None, **kw):
    masks = torch.zeros(a.shape, dtype=torch.bool) if masks is None else masks
    return MetricInput(model=model, images=x, labels=y, masks=masks, target=Target("logit", y),
                       context=ExplainContext(reference=x[:2]), attributions=a, **kw)


def _q(cls, x, y, a, per_image=False, model=None, **kw):
    """Quantus on the batch, or one image at a time (its normalisation is by the batch maximum)."""
    call = dict(model=model, device="cpu")
    if per_image:
        return np.concatenate([np.asarray(cls(disable_warnings=True, **kw)(
            x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(), a_batch=a[i:i + 1, None].numpy(), **call),
            dtype=float) for i in range(len(x))])
    return np.asarray(cls(disable_warnings=True, **kw)(x_batch=x.numpy(), y_batch=y.numpy(),
                                                       a_batch=a[:, None].numpy(), **call), dtype=float)


# --------------------------------------------------------------------------- catalogue


def test_catalogue_is_quantus_and_every_metric_is_registered(registry):
    assert {c: tuple(k.__name__ for k in d.values()) for c, d in quantus.AVAILABLE_METRICS.items()} == \
        {c.capitalize(): names for c, names in qa.CATALOGUE.items()}
    metrics = set(registry.names("metric"))
    for cat, names in qa.CATALOGUE.items():
        for name in names:
            if name in qa.NATIVE:
                assert qa.NATIVE[name].split()[0] in metrics and f"quantus.{name}" not in metrics
            else:
                rec = registry.get("metric", f"quantus.{name}")
                assert rec.family == qa.FAMILIES[cat]


def test_adapter_options_and_errors(registry, data, tiny_model):
    x, y, masks, a = data
    make = registry.get("metric", "quantus.Infidelity").factory
    with pytest.raises(XaibenchError, match=r"^metric quantus.Infidelity: unknown option 'nr_sample'; allowed: .*"
                                            r"n_perturb_samples"):
        make(nr_sample=3)
    m = make(n_perturb_samples=2)
    vol = _inp(tiny_model, x[:, :, None].expand(-1, -1, 4, -1, -1), y, a[:, None].expand(-1, 4, -1, -1))
    with pytest.raises(XaibenchError, match="take 2-D images N×1×H×W, got 6×1×4×32×32"):
        m.score(vol)
    with pytest.raises(XaibenchError, match="needs ROI masks"):
        registry.get("metric", "quantus.AUC").factory().score(_inp(tiny_model, x, y, a))
    with pytest.raises(XaibenchError, match="needs the explainer"):
        registry.get("metric", "quantus.AvgSensitivity").factory().score(_inp(tiny_model, x, y, a))
    focus = registry.get("metric", "quantus.Focus").factory()
    with pytest.raises(XaibenchError, match="^metric quantus.Focus: cannot run here: needs mosaics"):
        focus.score(_inp(tiny_model, x, y, a, masks))
    bad = registry.get("metric", "quantus.Sufficiency").factory(threshold="high")
    with pytest.raises(XaibenchError, match="^metric quantus.Sufficiency: Quantus failed: "):
        bad.score(_inp(tiny_model, x, y, a))


@pytest.mark.parametrize("name,kw", [("AUC", {}), ("Sufficiency", {"threshold": 0.9}),
                                     ("AvgSensitivity", {"nr_samples": 3})])
def test_adapter_equals_quantus_called_directly(registry, data, tiny_model, name, kw):
    x, y, masks, a = data
    a = Grad().explain(tiny_model, x, Target("logit", y), None)
    ours = registry.get("metric", f"quantus.{name}").factory(seed=5, **kw).score(
        _inp(tiny_model, x, y, a, masks, explainer=Grad()))[0]
    np.random.seed(5)
    torch.manual_seed(5)
    ref = getattr(quantus, name)(disable_warnings=True, **kw)(
        model=tiny_model, x_batch=x.numpy(), y_batch=y.numpy(), a_batch=a[:, None].numpy(),
        s_batch=masks[:, None].numpy(), device="cpu", explain_func=q_explain)
    np.testing.assert_allclose(ours.values, np.asarray(ref, float), atol=1e-6)
    assert ours.higher_is_better == (name != "AvgSensitivity")


def test_adapter_reduces_curves_and_cascades():
    vals, extra = qa.to_values([np.array([1.0, 3.0]), np.array([0.0, 2.0])], 2)
    np.testing.assert_allclose(vals, [2.0, 1.0])
    vals, extra = qa.to_values({"a": [1, 2], "b": [3, 4]}, 2)
    np.testing.assert_allclose(vals, [3, 4])
    assert extra["layers"] == ["a", "b"] and extra["curve"] == [1.5, 3.5]
    vals, extra = qa.to_values({10: 0.5, 50: 0.25}, 3)
    np.testing.assert_allclose(vals, [0.375])


# --------------------------------------------------------------------------- complexity family


def test_sparseness_equals_quantus(data):
    x, y, _, a = data
    ours = Sparseness().score(_inp(None, x, y, a))[0].values
    np.testing.assert_allclose(ours, _q(quantus.Sparseness, x, y, a, per_image=True), atol=1e-9)
    # on the batch, Quantus scales by the batch maximum (30x the smallest map maximum here): 1e-5
    np.testing.assert_allclose(ours, _q(quantus.Sparseness, x, y, a), atol=1e-5)


def test_complexity_equals_quantus(data):
    x, y, _, a = data
    ours = Complexity().score(_inp(None, x, y, a))[0].values
    np.testing.assert_allclose(ours, _q(quantus.Complexity, x, y, a), rtol=1e-6)  # Quantus runs in float32


def test_effective_complexity_equals_quantus_and_pins_its_batch_normalisation(data):
    x, y, _, a = data
    a = a.clone()
    a[0, 10:, :] *= 1e-3  # small values, counted or not depending on the scale
    inp = _inp(None, x, y, a)
    rel = EffectiveComplexity(eps=1e-2).score(inp)[0].values
    np.testing.assert_array_equal(rel, _q(quantus.EffectiveComplexity, x, y, a, per_image=True, eps=1e-2))
    absolute = EffectiveComplexity(eps=1e-2, scale="none").score(inp)[0].values
    np.testing.assert_array_equal(absolute, _q(quantus.EffectiveComplexity, x, y, a, eps=1e-2, normalise=False))
    batch = _q(quantus.EffectiveComplexity, x, y, a, eps=1e-2)
    assert not np.array_equal(batch, rel)  # Quantus' count depends on the other images' maxima
    with pytest.raises(XaibenchError, match="option 'scale'"):
        EffectiveComplexity(scale="batch")


@pytest.mark.parametrize("metric", [Sparseness(), Complexity(), EffectiveComplexity()])
def test_complexity_family_on_volumes(data, metric):
    """N×1×D×H×W images, N×D×H×W maps: the same values as the maps laid out flat in 2-D."""
    x, y, _, a = data
    vol, maps = x.view(N, 1, 4, 8, S), a.view(N, 4, 8, S)
    v3 = metric.score(_inp(None, vol, y, maps))[0].values
    v2 = metric.score(_inp(None, x, y, a))[0].values
    np.testing.assert_allclose(v3, v2, atol=1e-12)
    assert np.isfinite(v3).all()


# --------------------------------------------------------------------------- random logit


@pytest.mark.parametrize("absolute", [False, True])
def test_random_logit_equals_quantus(data, tiny_model, absolute):
    x, y, masks, _ = data
    a = Grad().explain(tiny_model, x, Target("logit", y), None)
    ours = RandomLogit(absolute=absolute).score(_inp(tiny_model, x, y, a, explainer=Grad()))[0]
    ref = np.concatenate([quantus.RandomLogit(num_classes=2, abs=absolute, disable_warnings=True)(
        model=tiny_model, x_batch=x[i:i + 1].numpy(), y_batch=y[i:i + 1].numpy(), a_batch=a[i:i + 1, None].numpy(),
        device="cpu", explain_func=q_explain) for i in range(N)])
    np.testing.assert_allclose(ours.values, ref, atol=1e-6)
    assert ours.extra["other_classes"] == (1 - y).tolist()


def test_random_logit_draws_the_other_class_as_quantus():
    from xaibench_plugins.metrics.random_logit import other_classes

    y = torch.tensor([0, 3, 9, 5, 5, 1, 2, 7])
    np.random.seed(42)
    idx = np.random.randint(0, 9, len(y))
    want = [[c for c in range(10) if c != yy][i] for yy, i in zip(y.tolist(), idx)]
    assert other_classes(y, 10, 42).tolist() == want


class Tiny3D(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv, self.head = torch.nn.Conv3d(1, 4, 3, padding=1), torch.nn.Linear(4, 2)

    def forward_all(self, x):
        emb = torch.relu(self.conv(x)).mean(dim=(2, 3, 4))
        return self.head(emb), emb

    def forward(self, x):
        return self.forward_all(x)[0]


def test_random_logit_on_volumes():
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(3, 1, 4, 10, 10, generator=g), torch.tensor([0, 1, 0])
    model = Tiny3D().eval()
    a = Grad().explain(model, x, Target("logit", y), None)
    assert a.shape == (3, 4, 10, 10)
    s = RandomLogit(similarity="spearman").score(_inp(model, x, y, a, explainer=Grad()))[0]
    assert s.values.shape == (3,) and np.isfinite(s.values).all() and (s.values < 1).all()
