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

import numpy as np
import pytest
import quantus
import torch
import torch.nn.functional as F

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench_plugins.backbones.resnet import ResNetBuilder
from xaibench_plugins.metrics._curves import curves
from xaibench_plugins.metrics._perturb import road_impute
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


def run(benchmark, name: str, fn, rounds: int = 3) -> None:
    benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1 if rounds > 1 else 0)
    T[name] = benchmark.stats.stats.min


# --------------------------------------------------------------------------- the ideal


def test_one_batched_pass(benchmark, setup):
    """One forward pass of ``CHUNK`` images: the unit of the ideal."""
    x = setup["x"].repeat(math.ceil(CHUNK / N), 1, 1, 1)[:CHUNK]
    t = Target("logit", setup["y"].repeat(2)[:CHUNK])
    benchmark.group = "ideal"
    with torch.no_grad():
        run(benchmark, "pass", lambda: t(setup["model"], x), rounds=10)


FAITHFUL = {
    "delta-t": (DeltaT(), lambda n: n * (1 + 4 * 9)),
    "deletion": (Deletion(), lambda n: n * 21),
    "insertion": (Insertion(), lambda n: n * 21),
    "road": (ROAD(), lambda n: n * 19),
    "delta-t (road filler)": (DeltaT(filler="road"), lambda n: n * (1 + 4 * 9)),
}


@pytest.mark.parametrize("name", list(FAITHFUL))
def test_faithfulness_metric(benchmark, setup, name):
    metric, passes = FAITHFUL[name]
    PASSES[name] = passes(N)
    benchmark.group = "faithfulness vs ideal"
    run(benchmark, name, lambda: metric.score(setup["inp"]), rounds=2)


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
@pytest.mark.parametrize("who", ["quantus", "ours"])
def test_localisation(benchmark, setup, name, who):
    d = setup["np"]
    benchmark.group = f"localisation {name}"
    if who == "quantus":
        m = LOCAL[name][0]()
        run(benchmark, f"q:{name}", lambda: m(model=None, x_batch=d["x"], y_batch=d["y"], a_batch=d["a"],
                                              s_batch=d["s"]), rounds=5)
    else:
        m = LOCAL[name][1]()
        run(benchmark, f"o:{name}", lambda: m.score(setup["inp"]), rounds=5)


def test_iou_ours_only(benchmark, setup):
    benchmark.group = "localisation IoU"
    run(benchmark, "o:IoU", lambda: IoU().score(setup["inp"]), rounds=5)


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
    "PixelFlipping": (_pixel_flipping, Deletion(units_per_step=64, filler="black")),
    "RegionPerturbation": (_region_perturbation, Deletion(patch=8, units_per_step=1, filler="black")),
}


@pytest.mark.parametrize("name", list(FAITH_Q))
@pytest.mark.parametrize("who", ["quantus", "ours"])
def test_faithfulness_vs_quantus(benchmark, setup, name, who):
    benchmark.group = f"faithfulness {name}"
    ref, spec = FAITH_Q[name]
    if who == "quantus":
        run(benchmark, f"q:{name}", lambda: ref(setup), rounds=2)
    else:
        run(benchmark, f"o:{name}", lambda: curves(setup["inp"], spec, spec.check("deletion"), insertion=False),
            rounds=2)


@pytest.mark.parametrize("who", ["quantus", "ours"])
def test_max_sensitivity(benchmark, setup, who):
    d = setup["np"]
    benchmark.group = "stability MaxSensitivity"
    if who == "quantus":
        m = quantus.MaxSensitivity(nr_samples=10, lower_bound=0.05, disable_warnings=True)
        run(benchmark, "q:MaxSensitivity", lambda: m(model=setup["model"], x_batch=d["x"], y_batch=d["y"],
                                                     a_batch=d["a"], device="cpu", explain_func=q_explain), rounds=2)
    else:
        m = NoiseStability(draws=10, radius=0.05)
        run(benchmark, "o:MaxSensitivity", lambda: m.score(setup["inp"]), rounds=2)


# --------------------------------------------------------------------------- vs pytorch-grad-cam ROAD


@pytest.mark.parametrize("who", ["pytorch-grad-cam", "ours"])
def test_road(benchmark, setup, who):
    benchmark.group = "ROAD"
    if who == "ours":
        run(benchmark, "o:ROAD", lambda: ROAD().score(setup["inp"]), rounds=2)
        return
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    targets = [ClassifierOutputTarget(int(c)) for c in setup["y"]]
    run(benchmark, "g:ROAD", lambda: ROADCombined()(setup["x"], setup["a"].numpy(), targets, setup["model"]),
        rounds=1)


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


@pytest.mark.parametrize("who", ["pytorch-grad-cam", "ours"])
def test_road_imputation(benchmark, setup, who):
    benchmark.group = "ROAD imputation"
    n = 8  # 8 images × 18 masks
    x = setup["x"][:n].repeat_interleave(18, 0)
    removed = _road_masks(setup["a"][:n])
    if who == "ours":
        run(benchmark, "o:impute", lambda: [road_impute(x[i:i + CHUNK], removed[i:i + CHUNK])
                                            for i in range(0, len(x), CHUNK)], rounds=3)
        return
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imp = NoisyLinearImputer(noise=0)
    run(benchmark, "g:impute", lambda: [imp(x[i], (~removed[i]).float()) for i in range(len(x))], rounds=1)


# --------------------------------------------------------------------------- the table


def test_zz_table():
    """Print the ratios (paste into benchmarks/README.md)."""
    if "pass" not in T:
        pytest.skip("run the whole file")
    rows = ["| measure | ours (s) | reference (s) | ratio | target |", "|---|---:|---:|---:|---|"]
    for name in FAITHFUL:
        if name in T:
            ideal = PASSES[name] / CHUNK * T["pass"]
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
