"""Metric speed, as ratios against references timed in the same run on the same inputs:

* efficiency of each faithfulness metric against the *ideal* — the images it pushes
  through the model, in passes of ``chunk_size``, times the time of one such pass;
* Quantus at identical settings (localisation, faithfulness, max-sensitivity);
* pytorch-grad-cam's ROAD (the whole metric, and the imputation alone).

Run (a few minutes on 2 CPU cores; the table is printed at the end)::

    pytest benchmarks/bench_metrics.py -s --benchmark-columns=min,mean,rounds

Inputs: 32 images of 64×64, ResNet-18 at width 0.25 with output stride 8 (the suites'
default backbone), plain-gradient maps, rectangular masks; one torch thread (tiny tensors
on a shared machine: a second thread only adds contention).
"""
from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np
import pytest
import quantus
import torch
import torch.nn.functional as F

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench_plugins.backbones.resnet import ResNetBuilder
from xaibench.kit.curves import curves
from xaibench.kit.perturb import road_impute
from xaibench_plugins.metrics.deletion import Deletion
from xaibench_plugins.metrics.delta_t import DeltaT
from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
from xaibench_plugins.metrics.insertion import Insertion
from xaibench_plugins.metrics.iou import IoU
from xaibench_plugins.metrics.noise_stability import NoiseStability
from xaibench_plugins.metrics.pointing_game import PointingGame
from xaibench_plugins.metrics.rank_accuracy import RankAccuracy
from xaibench_plugins.metrics.road import ROAD

N, S, CHUNK = 32, 64, 64
T: dict[str, float] = {}  # benchmark name -> best time (s)
PASSES: dict[str, int] = {}  # faithfulness metric -> images pushed through the model


class Grad:
    def explain(self, model, x, target, context):
        x = x.detach().clone().requires_grad_(True)
        (g,) = torch.autograd.grad(target(model, x).sum(), x)
        return g[:, 0].detach()


def q_explain(model, inputs, targets, **kwargs):
    x = torch.as_tensor(np.asarray(inputs), dtype=torch.float32)
    t = Target("logit", torch.as_tensor(np.asarray(targets), dtype=torch.long))
    return Grad().explain(model, x, t, None).unsqueeze(1).numpy()


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = ResNetBuilder("resnet18", width=0.25, output_stride=8)(2, (S, S)).eval()
    g = torch.Generator().manual_seed(0)
    x = F.avg_pool2d(torch.rand(N, 1, S, S, generator=g), 5, 1, 2)
    y = torch.tensor([0, 1] * (N // 2))
    masks = torch.zeros(N, S, S, dtype=torch.bool)
    for i in range(N):
        r, c = 8 + i % 20, 6 + (3 * i) % 30
        masks[i, r:r + 14, c:c + 12] = True
    a = Grad().explain(model, x, Target("logit", y), None)
    ctx = ExplainContext(reference=x[:4], seed=0, chunk_size=CHUNK)
    inp = MetricInput(model=model, images=x, labels=y, masks=masks, target=Target("logit", y), context=ctx,
                      attributions=a, explainer=Grad())
    np_ = {"x": x.numpy(), "y": y.numpy(), "a": a.numpy()[:, None], "s": masks.numpy()[:, None]}
    return {"model": model, "x": x, "y": y, "masks": masks, "a": a, "inp": inp, "np": np_}


def run(benchmark, name: str, fn, rounds: int = 3, ref: tuple[str, object] | None = None) -> None:
    """Time ``fn`` (best of ``rounds``). With ``ref = (name, callable)`` the reference runs
    right before each round, timed by hand, so both see the same machine load (the
    published machine is shared: interleaving keeps the ratios honest)."""
    ref_times: list[float] = []

    def setup():
        if ref is not None:
            t0 = time.perf_counter()
            ref[1]()
            ref_times.append(time.perf_counter() - t0)

    benchmark.pedantic(fn, setup=setup, rounds=rounds, iterations=1)
    T[name] = benchmark.stats.stats.min
    if ref is not None:
        T[ref[0]] = min(ref_times)
        benchmark.extra_info[ref[0]] = T[ref[0]]


def one_pass(setup) -> None:
    """One forward pass of ``CHUNK`` images: the unit of the ideal."""
    x = setup["x"].repeat(math.ceil(CHUNK / N), 1, 1, 1)[:CHUNK]
    t = Target("logit", setup["y"].repeat(math.ceil(CHUNK / N))[:CHUNK])
    with torch.no_grad():
        t(setup["model"], x)


# --------------------------------------------------------------------------- the ideal


FAITHFUL = {
    "delta-t": (DeltaT(), lambda n: n * (1 + 4 * 9)),
    "deletion": (Deletion(draws=0), lambda n: n * 21),
    "insertion": (Insertion(draws=0), lambda n: n * 21),
    "road": (ROAD(), lambda n: n * 19),
    "delta-t (road filler)": (DeltaT(filler="road"), lambda n: n * (1 + 4 * 9)),
}


@pytest.mark.parametrize("name", list(FAITHFUL))
def test_faithfulness_metric(benchmark, setup, name):
    """The metric, with single unit passes timed right before each round; the ideal uses
    the fastest pass seen (a lower bound, so the efficiency is conservative)."""
    metric, passes = FAITHFUL[name]
    PASSES[name] = passes(N)
    benchmark.group = "faithfulness vs ideal"
    one_pass(setup)
    singles: list[float] = []

    def unit():
        for _ in range(5):
            t0 = time.perf_counter()
            one_pass(setup)
            singles.append(time.perf_counter() - t0)

    run(benchmark, name, lambda: metric.score(setup["inp"]), rounds=3, ref=(f"pass:{name}", unit))
    T[f"pass:{name}"] = min(singles)


# --------------------------------------------------------------------------- vs Quantus


LOCAL = {
    "PointingGame": (lambda: quantus.PointingGame(disable_warnings=True), lambda: PointingGame()),
    "RelevanceMassAccuracy": (lambda: quantus.RelevanceMassAccuracy(disable_warnings=True),
                              lambda: EnergyInROI(mode="signed")),
    "AttributionLocalisation": (lambda: quantus.AttributionLocalisation(disable_warnings=True),
                                lambda: EnergyInROI(mode="absolute")),
    "RelevanceRankAccuracy": (lambda: quantus.RelevanceRankAccuracy(disable_warnings=True), lambda: RankAccuracy()),
    "TopKIntersection": (lambda: quantus.TopKIntersection(k=200, disable_warnings=True), lambda: RankAccuracy(k=200)),
}


@pytest.mark.parametrize("name", list(LOCAL))
def test_localisation(benchmark, setup, name):
    d = setup["np"]
    benchmark.group = "localisation vs Quantus"
    q, ours = LOCAL[name][0](), LOCAL[name][1]()
    ref = lambda: q(model=None, x_batch=d["x"], y_batch=d["y"], a_batch=d["a"], s_batch=d["s"])  # noqa: E731
    run(benchmark, f"o:{name}", lambda: ours.score(setup["inp"]), rounds=7, ref=(f"q:{name}", ref))


def test_iou_ours_only(benchmark, setup):
    benchmark.group = "localisation vs Quantus"
    run(benchmark, "o:IoU", lambda: IoU().score(setup["inp"]), rounds=7)


def _pixel_flipping(setup):
    d = setup["np"]
    return quantus.PixelFlipping(features_in_step=64, perturb_baseline="black", disable_warnings=True)(
        model=setup["model"], x_batch=d["x"], y_batch=d["y"], a_batch=d["a"], device="cpu", softmax=False)


def _region_perturbation(setup):
    d = setup["np"]
    return quantus.RegionPerturbation(patch_size=8, regions_evaluation=64, perturb_baseline="black",
                                      disable_warnings=True)(
        model=setup["model"], x_batch=d["x"], y_batch=d["y"], a_batch=d["a"], device="cpu", softmax=False)


FAITH_Q = {
    "PixelFlipping": (_pixel_flipping, Deletion(units_per_step=64, filler="black", draws=0)),
    "RegionPerturbation": (_region_perturbation, Deletion(patch=8, units_per_step=1, filler="black", draws=0)),
}


@pytest.mark.parametrize("name", list(FAITH_Q))
def test_faithfulness_vs_quantus(benchmark, setup, name):
    benchmark.group = "faithfulness vs Quantus"
    ref, spec = FAITH_Q[name]
    # identical settings include the images per pass: Quantus pushes its 32-image batch
    inp = replace(setup["inp"], context=replace(setup["inp"].context, chunk_size=N))
    run(benchmark, f"o:{name}", lambda: curves(inp, spec, spec.check("deletion"), insertion=False), rounds=2,
        ref=(f"q:{name}", lambda: ref(setup)))


def test_max_sensitivity(benchmark, setup):
    d = setup["np"]
    benchmark.group = "stability vs Quantus"
    q = quantus.MaxSensitivity(nr_samples=10, lower_bound=0.05, disable_warnings=True)
    ours = NoiseStability(draws=10, radius=0.05)
    ref = lambda: q(model=setup["model"], x_batch=d["x"], y_batch=d["y"], a_batch=d["a"], device="cpu",  # noqa
                    explain_func=q_explain)
    run(benchmark, "o:MaxSensitivity", lambda: ours.score(setup["inp"]), rounds=2, ref=("q:MaxSensitivity", ref))


# --------------------------------------------------------------------------- vs pytorch-grad-cam ROAD


def test_road(benchmark, setup):
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    benchmark.group = "ROAD vs pytorch-grad-cam"
    targets = [ClassifierOutputTarget(int(c)) for c in setup["y"]]
    ref = lambda: ROADCombined()(setup["x"], setup["a"].numpy(), targets, setup["model"])  # noqa: E731
    run(benchmark, "o:ROAD", lambda: ROAD().score(setup["inp"]), rounds=2, ref=("g:ROAD", ref))


def _road_masks(a: torch.Tensor) -> torch.Tensor:
    """The 18 removal masks of ROAD (MoRF and LeRF at 10…90%) of every image, 18N×H×W."""
    n = a.shape[0]
    flat = a.reshape(n, -1)
    rank = flat.argsort(1, descending=True).argsort(1)
    out = []
    for p in range(10, 100, 10):
        k = round(p / 100 * flat.shape[1])
        out += [rank < k, rank >= flat.shape[1] - k]
    return torch.stack(out, 1).view(-1, *a.shape[1:])


def test_road_imputation(benchmark, setup):
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    benchmark.group = "ROAD vs pytorch-grad-cam"
    n = 8  # 8 images × 18 masks
    x = setup["x"][:n].repeat_interleave(18, 0)
    removed = _road_masks(setup["a"][:n])
    imp = NoisyLinearImputer(noise=0)
    ref = lambda: [imp(x[i], (~removed[i]).float()) for i in range(len(x))]  # noqa: E731
    run(benchmark, "o:impute", lambda: [road_impute(x[i:i + CHUNK], removed[i:i + CHUNK])
                                        for i in range(0, len(x), CHUNK)], rounds=2, ref=("g:impute", ref))


# --------------------------------------------------------------------------- the table


def test_zz_table():
    """Print the ratios (paste into benchmarks/README.md)."""
    if not T:
        pytest.skip("run the whole file")
    rows = ["| measure | ours (s) | reference (s) | ratio | target |", "|---|---:|---:|---:|---|"]
    for name in FAITHFUL:
        if name in T:
            ideal = PASSES[name] / CHUNK * T[f"pass:{name}"]
            rows.append(f"| {name}: efficiency vs ideal ({PASSES[name]} images, {PASSES[name] / CHUNK:.1f} passes) "
                        f"| {T[name]:.3f} | {ideal:.3f} | {ideal / T[name]:.2f} | ≥ 0.9 |")
    for name, target in [*[(k, "≥ 10×") for k in LOCAL], *[(k, "≥ 1×") for k in FAITH_Q],
                         ("MaxSensitivity", "≥ 3×")]:
        if f"q:{name}" in T and f"o:{name}" in T:
            rows.append(f"| Quantus {name} | {T[f'o:{name}']:.4f} | {T[f'q:{name}']:.4f} | "
                        f"{T[f'q:{name}'] / T[f'o:{name}']:.1f}× | {target} |")
    for mine, ref, label in [("o:ROAD", "g:ROAD", "pytorch-grad-cam ROADCombined (whole metric)"),
                             ("o:impute", "g:impute", "pytorch-grad-cam NoisyLinearImputer (imputation only)")]:
        if mine in T and ref in T:
            rows.append(f"| {label} | {T[mine]:.3f} | {T[ref]:.3f} | {T[ref] / T[mine]:.1f}× | ≥ 10× |")
    print("\n" + "\n".join(rows))
