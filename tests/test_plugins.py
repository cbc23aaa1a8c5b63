"""The plugin manager: one door for built-ins and third parties, validation, isolation."""
from __future__ import annotations

import sys
import types
from importlib import metadata

import pytest

import xaibench
from xaibench.errors import PluginError, XaibenchError
from xaibench.hookspecs import ExplainerRecord, MetricRecord
from xaibench.plugins import DISABLE_ENV, PluginManager, load

from .conftest import TOY_PLUGIN


def _module(name: str, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, v in attrs.items():
        setattr(mod, k, v)
    return mod


def test_builtins_come_through_the_entry_point_group():
    eps = {ep.name: ep for ep in metadata.entry_points(group="xaibench")}
    assert eps["gradcam"].dist.name == "xaibench"
    reg = load()
    assert reg.provider("backbone", "resnet18").startswith("xaibench (xaibench_plugins.backbones.resnet")
    for kind in ("explainer", "metric", "dataset", "backbone", "attack", "suite", "executor"):
        assert reg.names(kind), f"no built-in {kind}"
    assert {"local", "dask", "slurm"} <= set(reg.names("executor"))
    assert reg.provider("executor", "slurm").startswith("xaibench (xaibench_plugins.executors.slurm")


def test_register_and_unregister_inside_one_test():
    @xaibench.hookimpl
    def xaibench_metrics():
        yield MetricRecord("always-one", "a test metric", object)

    plugin = _module("always_one", xaibench_metrics=xaibench_metrics)
    pm = PluginManager()
    pm.load_entry_points()
    pm.register(plugin, name="always-one", provider="test")
    assert "always-one" in pm.registry().names("metric")
    pm.unregister(plugin)
    assert "always-one" not in pm.registry().names("metric")


def test_duplicate_name_names_both_providers():
    @xaibench.hookimpl
    def xaibench_explainers():
        yield ExplainerRecord("gradcam", "an impostor", object)

    pm = PluginManager()
    pm.load_entry_points()
    pm.register(_module("impostor", xaibench_explainers=xaibench_explainers), name="impostor", provider="impostor-dist")
    with pytest.raises(PluginError, match=r"duplicate explainer name 'gradcam'.*xaibench .*impostor-dist"):
        pm.registry()


def test_unknown_hook_is_rejected():
    @xaibench.hookimpl
    def xaibench_explainerz():
        return []

    pm = PluginManager()
    with pytest.raises(PluginError, match="unknown hook"):
        pm.register(_module("typo", xaibench_explainerz=xaibench_explainerz), name="typo", provider="typo-dist")


def test_wrong_record_type_is_rejected():
    @xaibench.hookimpl
    def xaibench_explainers():
        yield MetricRecord("x", "wrong type", object)

    pm = PluginManager()
    pm.register(_module("wrong", xaibench_explainers=xaibench_explainers), name="wrong", provider="wrong-dist")
    with pytest.raises(PluginError, match="wrong-dist.*expected ExplainerRecord"):
        pm.registry()


class _FakeDist:
    name = "broken-dist"


class _FakeEP:
    def __init__(self, name, value, loader):
        self.name, self.value, self._loader, self.dist, self.group = name, value, loader, _FakeDist(), "xaibench"

    def load(self):
        return self._loader()


def _fake_eps(monkeypatch, extra):
    real = metadata.entry_points

    def entry_points(**kw):
        eps = list(real(**kw))
        return eps + extra if kw.get("group") == "xaibench" else eps

    monkeypatch.setattr(metadata, "entry_points", entry_points)


def test_failing_plugin_is_named_with_its_distribution_and_others_load(monkeypatch):
    def boom():
        raise ImportError("needs libfoo")

    _fake_eps(monkeypatch, [_FakeEP("broken", "broken_pkg.plugin", boom)])
    reg = load()
    assert any("'broken'" in f and "broken-dist" in f and "needs libfoo" in f for f in reg.failures)
    assert "gradcam" in reg.names("explainer")


def test_environment_switch_disables_third_party_plugins(monkeypatch):
    @xaibench.hookimpl
    def xaibench_metrics():
        yield MetricRecord("third-party", "from another distribution", object)

    _fake_eps(monkeypatch, [_FakeEP("tp", "tp.plugin", lambda: _module("tp", xaibench_metrics=xaibench_metrics))])
    assert "third-party" in load().names("metric")
    monkeypatch.setenv(DISABLE_ENV, "1")
    reg = load()
    assert "third-party" not in reg.names("metric")
    assert "gradcam" in reg.names("explainer")  # built-ins stay


def test_single_file_plugin(tmp_path):
    assert "toy-blobs" in load([TOY_PLUGIN]).names("dataset")
    with pytest.raises(XaibenchError, match="no such file"):
        load([tmp_path / "missing.py"])
    bad = tmp_path / "bad.py"
    bad.write_text("raise RuntimeError('broken on purpose')\n")
    with pytest.raises(PluginError, match="bad.py: failed to import: RuntimeError: broken on purpose"):
        load([bad])


def test_unknown_name_suggests_closest(registry):
    with pytest.raises(XaibenchError, match=r"unknown explainer 'gradcamm' \(did you mean: gradcam"):
        registry.get("explainer", "gradcamm")
