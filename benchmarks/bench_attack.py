"""Training cost of the explanation backdoor as a ratio against clean training, same run.

Both train the suite's default backbone (resnet18, width 0.25, output stride 8 → 8×8
Grad-CAM) on the embedded ``synthetic-hippocampus`` data for a fixed number of epochs (no
early stopping, so the ratio is the cost per epoch). Four variants:

* ``clean`` — the standard trainer, the reference;
* ``backdoor`` — the attack as shipped (Grad-CAM from the trainer's own forward pass);
* ``backdoor-generic`` — the same loss through the generic differentiable Grad-CAM (a
  second forward and a double backward per batch), to show what the shortcut saves;
* ``backdoor-layer3`` — the attack on Grad-CAM at the inner stage ``layer3`` (``layer =
  "layer3"``), where no shortcut exists: the double-backward path a real Grad-CAM attack pays.

Run::

    pytest benchmarks/bench_attack.py --benchmark-only --benchmark-group-by=group

The ratio of each variant's time to ``clean`` is in ``extra_info["ratio_vs_clean"]``
(printed with ``--benchmark-verbose`` or in ``--benchmark-json``). On a busy machine,
``XAIBENCH_BENCH_EPOCHS`` and ``XAIBENCH_BENCH_ROUNDS`` (default 3 and 3) shorten the run; the
ratios still come from one session.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest
import torch

EPOCHS = int(os.environ.get("XAIBENCH_BENCH_EPOCHS", 3))
ROUNDS = int(os.environ.get("XAIBENCH_BENCH_ROUNDS", 3))
_times: dict[str, float] = {}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from xaibench.contracts import AttackContext
    from xaibench.training import train
    from xaibench_plugins.backbones.resnet import ResNetBuilder
    from xaibench_plugins.datasets.synthetic_hippocampus import SyntheticHippocampus

    torch.set_num_threads(2)
    splits = SyntheticHippocampus().load(seed=0, cache_dir=Path(tmp_path_factory.mktemp("data")))
    b = ResNetBuilder("resnet18", width=0.25, output_stride=8, epochs=EPOCHS, patience=EPOCHS + 1)
    return AttackContext(splits, lambda: b(2, splits.image_size),
                         functools.partial(train, seed=0, builder=b, progress=False), 0, torch.device("cpu"))


def _run(name: str, benchmark, fn) -> None:
    benchmark.group = f"attack training ({EPOCHS} epochs)"
    benchmark.pedantic(fn, rounds=ROUNDS, iterations=1, warmup_rounds=1)  # the first run pays one-off costs
    _times[name] = benchmark.stats.stats.min
    if "clean" in _times:
        benchmark.extra_info["ratio_vs_clean"] = _times[name] / _times["clean"]


def test_clean(benchmark, setup):
    from xaibench_plugins.attacks.none import NoAttack

    _run("clean", benchmark, lambda: NoAttack().run(setup))


def test_backdoor(benchmark, setup):
    from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

    out = {}

    def run():
        out["info"] = ExplanationBackdoor().run(setup).info

    _run("backdoor", benchmark, run)
    assert out["info"]["gradcam_path"] == "cam-shortcut"


def test_backdoor_generic(benchmark, setup, monkeypatch):
    from xaibench_plugins.attacks import explanation_backdoor as eb

    monkeypatch.setattr(eb.ActivationTap, "cam", lambda self, *a, **k: None)  # force the generic path
    _run("backdoor-generic", benchmark, lambda: eb.ExplanationBackdoor().run(setup))


def test_backdoor_layer3(benchmark, setup):
    from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

    out = {}

    def run():
        out["info"] = ExplanationBackdoor(layer="layer3").run(setup).info

    _run("backdoor-layer3", benchmark, run)
    assert out["info"]["gradcam_path"] == "double-backward"
