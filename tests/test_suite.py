"""Suite files: parsing, sweeps, and one-line errors naming the file and the key."""
from __future__ import annotations

import pytest

from xaibench.errors import XaibenchError
from xaibench.suite import load_file, parse, resolve

BASE = """
name = "t"
datasets = ["toy-blobs"]
backbones = ["resnet18"]
attacks = ["none"]
explainers = ["gradcam"]
metrics = ["iou"]
"""


def _write(tmp_path, text):
    p = tmp_path / "s.toml"
    p.write_text(text)
    return p


def test_parse_minimal(tmp_path):
    s = load_file(_write(tmp_path, BASE))
    assert s.name == "t" and s.seeds == (0,) and s.explainers[0].name == "gradcam"
    assert s.target.kind == "logit"


def test_sweep_expands_into_labelled_entries(tmp_path):
    s = load_file(_write(tmp_path, BASE.replace('attacks = ["none"]', "")
                         + '[[attacks]]\nname = "badnets"\nsweep = { poison_rate = [0.01, 0.05] }\n'))
    assert [a.title for a in s.attacks] == ["badnets[poison_rate=0.01]", "badnets[poison_rate=0.05]"]
    assert s.attacks[1].options == {"poison_rate": 0.05}


@pytest.mark.parametrize("text, message", [
    (BASE + "colour = 1\n", r"s.toml: unknown key 'colour' \(allowed: "),
    (BASE.replace('metrics = ["iou"]', ""), "s.toml: missing key 'metrics'"),
    (BASE + "seeds = [0, 'a']\n", "s.toml: 'seeds' must be a non-empty list of integers"),
    (BASE + 'target = "entropy"\n', "target.kind 'entropy' is not one of logit, margin, group-direction"),
    (BASE.replace('explainers = ["gradcam"]', 'explainers = [{ name = "ig", colour = 1 }]'),
     r"explainers\[0\]: unknown key 'colour'"),
    (BASE.replace('explainers = ["gradcam"]', 'explainers = ["ig", "ig"]'), "lists 'ig' twice"),
    ("name = [", "s.toml: invalid TOML"),
    (BASE.replace('metrics = ["iou"]', 'metrics = [{ name = "iou", explainers = ["ig"] }]'),
     "metric 'iou': explainer 'ig' in 'explainers' is not in the suite's explainers"),
])
def test_invalid_suite_is_one_line_naming_file_and_key(tmp_path, text, message):
    with pytest.raises(XaibenchError, match=message) as err:
        load_file(_write(tmp_path, text))
    assert "\n" not in str(err.value)


def test_unknown_suite_name_suggests(registry):
    with pytest.raises(XaibenchError, match=r"unknown suite 'smok' \(did you mean: smoke"):
        resolve("smok", registry)


def test_builtin_suites_parse(registry):
    from xaibench.plugins import instantiate

    for name in registry.names("suite"):
        suite = resolve(name, registry)
        for entries in (suite.datasets, suite.backbones, suite.attacks, suite.explainers, suite.metrics):
            for e in entries:
                # every name exists and every option is one the plugin takes (a misspelt option
                # would otherwise only fail when the run reaches that cell)
                assert instantiate(registry, e.kind, e.name, dict(e.options)) is not None, f"{name}: {e.key}"


def test_metric_restricted_to_some_explainers(tmp_path):
    s = load_file(_write(tmp_path, BASE.replace('metrics = ["iou"]', 'metrics = [{ name = "iou", explainers = ["gradcam"] }]')))
    assert s.metrics[0].only == ("gradcam",)
