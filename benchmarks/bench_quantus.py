"""Native complexity and random-logit metrics against Quantus on the same inputs, as ratios.

Run::

    pytest benchmarks/bench_quantus.py -s --benchmark-columns=min,rounds

Inputs: 32 images of 64×64, random signed maps; random-logit with ResNet-18 at width 0.25,
output stride 8, plain-gradient explainer; one torch thread. Each reference runs right before
each round of ours (interleaved, best of the rounds for both).
"""
from __future__ import annotations

import time

import numpy as np
import pytest
import quantus
import torch

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench_plugins.backbones.resnet import ResNetBuilder
from xaibench_plugins.metrics.complexity import Complexity
from xaibench_plugins.metrics.effective_complexity import EffectiveComplexity
from xaibench_plugins.metrics.random_logit import RandomLogit
from xaibench_plugins.metrics.sparseness import Sparseness

N, S, ROUNDS = 32, 64, 3
T: dict[str, tuple[float, float]] = {}


class Grad:
    def explain(self, model, x, target, context):
        x = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(target(model, x).sum(), x)
        return g[:, 0].detach()


def q_explain(model, inputs, targets, **kwargs):
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    t = Target("logit", torch.as_tensor(np.asarray(targets), dtype=torch.long).reshape(-1))
    return Grad().explain(model, x, t, None).unsqueeze(1).numpy()


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ResNetBuilder("resnet18", width=0.25, output_stride=8)(2, (S, S)).eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.rand(N, 1, S, S, generator=g), torch.tensor([0, 1] * (N // 2))
    a = torch.randn(N, S, S, generator=g)
    inp = MetricInput(model=model, images=x, labels=y, masks=torch.zeros(N, S, S, dtype=torch.bool),
                      target=Target("logit", y), context=ExplainContext(reference=x[:2]), attributions=a,
                      explainer=Grad())
    yield model, inp
    print("\n| metric | ours (s) | Quantus (s) | Quantus / ours |\n|---|---:|---:|---:|")
    for k, (ours, ref) in T.items():
        print(f"| {k} | {ours:.4f} | {ref:.4f} | {ref / ours:.1f}× |")


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


CASES = {"sparseness": (Sparseness(), quantus.Sparseness, {}),
         "complexity": (Complexity(), quantus.Complexity, {}),
         "effective-complexity": (EffectiveComplexity(), quantus.EffectiveComplexity, {}),
         "random-logit": (RandomLogit(), quantus.RandomLogit, {"num_classes": 2})}


@pytest.mark.parametrize("name", list(CASES))
def test_native_vs_quantus(benchmark, setup, name):
    model, inp = setup
    ours, cls, kw = CASES[name]
    q = cls(disable_warnings=True, **kw)
    call = dict(model=model, x_batch=inp.images.numpy(), y_batch=inp.labels.numpy(),
                a_batch=inp.attributions[:, None].numpy(), device="cpu", explain_func=q_explain)
    refs, mine = [], []

    def round_():
        refs.append(_time(lambda: q(**call)))
        mine.append(_time(lambda: ours.score(inp)))

    benchmark.pedantic(round_, rounds=ROUNDS, warmup_rounds=1)
    T[name] = (min(mine), min(refs))
