"""The out-of-tree example package is discovered through its entry point and scored by a suite.

It is installed as a fake distribution (a ``.dist-info`` folder with ``entry_points.txt`` on
``sys.path``), which is exactly what ``importlib.metadata`` sees after ``pip install``.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from xaibench.cells import RunConfig
from xaibench.plugins import DISABLE_ENV, load
from xaibench.runner import run_local
from xaibench.store import Store
from xaibench.suite import parse

from .conftest import TOY_PLUGIN

EXAMPLE = Path(__file__).parents[1] / "examples" / "xaibench-gradxinput"


@pytest.fixture
def installed(tmp_path, monkeypatch):
    site = tmp_path / "site"
    info = site / "xaibench_gradxinput-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xaibench-gradxinput\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[xaibench]\ngradxinput = xaibench_gradxinput\n")
    monkeypatch.syspath_prepend(str(EXAMPLE / "src"))
    monkeypatch.syspath_prepend(str(site))
    yield
    sys.modules.pop("xaibench_gradxinput", None)


def test_discovered_with_its_distribution(installed):
    reg = load()
    assert "grad-x-input" in reg.names("explainer")
    assert reg.provider("explainer", "grad-x-input").startswith("xaibench-gradxinput")


def test_disabled_by_the_environment_switch(installed, monkeypatch):
    monkeypatch.setenv(DISABLE_ENV, "1")
    assert "grad-x-input" not in load().names("explainer")


def test_scored_through_a_suite(installed, tmp_path):
    suite = parse({
        "name": "example", "n_eval": 8, "datasets": ["toy-blobs"], "attacks": ["none"],
        "explainers": ["grad-x-input", "toy-grad"], "metrics": ["toy-mass"],
        "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8, "epochs": 2}}],
    }, "test")
    out = tmp_path / "out"
    summary = run_local(RunConfig(suite, out, (str(TOY_PLUGIN),), "cpu", progress=False))
    assert not summary.failed
    v = Store(out / "results.sqlite").values()
    mass = v[(v["name"] == "toy-mass") & (v["explainer"] == "grad-x-input")]
    assert len(mass) == 8 and mass["value"].between(0, 1).all()


def test_gradient_times_input_matches_captum(installed, tiny_model):
    from captum.attr import InputXGradient

    from xaibench.contracts import ExplainContext, Target
    from xaibench_gradxinput import GradXInput

    x = torch.rand(4, 1, 32, 32)
    tgt = Target("logit", torch.tensor([0, 1, 0, 1]))
    ours = GradXInput().explain(tiny_model, x, tgt, ExplainContext(reference=x, chunk_size=3))
    ref = InputXGradient(tiny_model).attribute(x.clone().requires_grad_(True), target=tgt.classes).sum(1)
    assert torch.allclose(ours, ref, atol=1e-6)
