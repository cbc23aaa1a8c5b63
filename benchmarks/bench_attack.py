"""Training cost of the explanation backdoor as a ratio against clean training, same run.

Both train the suite's default backbone (resnet18, width 0.25, output stride 8 → 8×8
Grad-CAM) on the embedded ``synthetic-hippocampus`` data for a fixed number of epochs (no
early stopping, so the ratio is the cost per epoch). Three variants:

* ``clean`` — the standard trainer, the reference;
* ``backdoor`` — the attack as shipped (Grad-CAM from the trainer's own forward pass);
* ``backdoor-generic`` — the same loss through the generic differentiable Grad-CAM (a
  second forward and a double backward per batch), to show what the shortcut saves.

Run::

    pytest benchmarks/bench_attack.py --benchmark-only --benchmark-group-by=group

The ratio of each variant's time to ``clean`` is in ``extra_info["ratio_vs_clean"]``
(printed with ``--benchmark-verbose`` or in ``--benchmark-json``).
"""
from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch

EPOCHS = 3
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
    benchmark.group = "attack training (3 epochs)"
    benchmark.pedantic(fn, rounds=3, iterations=1, warmup_rounds=1)  # the first run pays one-off costs
    _times[name] = benchmark.stats.stats.min
    if "clean" in _times:
        benchmark.extra_info["ratio_vs_clean"] = _times[name] / _times["clean"]


def test_clean(benchmark, setup):
    from xaibench_plugins.attacks.none import NoAttack

    _run("clean", benchmark, lambda: NoAttack().run(setup))


def test_backdoor(benchmark, setup):
    from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

    _run("backdoor", benchmark, lambda: ExplanationBackdoor().run(setup))


def test_backdoor_generic(benchmark, setup, monkeypatch):
    from xaibench_plugins.attacks import explanation_backdoor as eb

    monkeypatch.setattr(eb.ActivationTap, "cam", lambda self, *a, **k: None)  # force the generic path
    _run("backdoor-generic", benchmark, lambda: eb.ExplanationBackdoor().run(setup))
