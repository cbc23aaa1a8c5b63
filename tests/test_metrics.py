"""The metric family: exact values on constructed inputs, chance levels, perfect maps,
empty masks, the removal machinery against closed forms, and option errors."""
from __future__ import annotations

from functools import partial
import itertools
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from sklearn.metrics import average_precision_score

from xaibench.contracts import Classifier, ExplainContext, MetricInput, Target
from xaibench.errors import XaibenchError
from xaibench.kit.curves import curves
from xaibench.kit.stats import iou_chance
from xaibench.kit.spatial import gaussian_blur as _blur
from xaibench_plugins.metrics.agreement import Agreement, plot_matrix
from xaibench_plugins.metrics.auprc import AUPRC, ap_chance, average_precision
from xaibench_plugins.metrics.deletion import Deletion
from xaibench_plugins.metrics.delta_t import DeltaT
from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
from xaibench_plugins.metrics.group_statistic import GroupStatistic, permutation_distances
from xaibench_plugins.metrics.insertion import Insertion
from xaibench_plugins.metrics.iou import IoU
from xaibench_plugins.metrics.noise_stability import NoiseStability
from xaibench_plugins.metrics.pointing_game import PointingGame
from xaibench_plugins.metrics.randomization import Randomization
from xaibench_plugins.metrics.rank_accuracy import RankAccuracy
from xaibench_plugins.metrics.road import ROAD
from xaibench_plugins.metrics.seed_stability import SeedStability

gaussian_blur = partial(_blur, border="reflect")  # the removal filler's border

H = W = 24
P = H * W


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def rect_masks(n: int, seed: int = 0) -> torch.Tensor:
    """Rectangles of varied size and position."""
    rng = np.random.default_rng(seed)
    m = torch.zeros(n, H, W, dtype=torch.bool)
    for i in range(n):
        h, w = rng.integers(2, 12, size=2)
        r, c = rng.integers(0, H - h), rng.integers(0, W - w)
        m[i, r:r + h, c:c + w] = True
    return m


def inp(a=None, masks=None, model=None, x=None, y=None, chunk=64, **kw) -> MetricInput:
    n = len(a if a is not None else x)
    x = torch.rand(n, 1, H, W) if x is None else x
    y = torch.zeros(n, dtype=torch.long) if y is None else y
    masks = rect_masks(n) if masks is None else masks
    ctx = ExplainContext(reference=x[:2], seed=0, chunk_size=chunk)
    return MetricInput(model=model, images=x, labels=y, masks=masks, target=Target("logit", y), context=ctx,
                       attributions=a, **kw)


LOCALISATION = [IoU(), IoU(q=[0.05, 0.2]), PointingGame(), PointingGame(tolerance=2), EnergyInROI(),
                EnergyInROI(mode="absolute"), RankAccuracy(), RankAccuracy(k=50), AUPRC()]


# --------------------------------------------------------------------------- localisation


@pytest.mark.parametrize("metric", LOCALISATION, ids=repr)
def test_random_map_scores_at_its_chance_level(metric):
    n = 600
    g = torch.Generator().manual_seed(3)
    a = torch.rand(n, H, W, generator=g)
    for s in metric.score(inp(a, rect_masks(n, 1))):
        se = np.nanstd(s.values) / math.sqrt(np.isfinite(s.values).sum())
        assert abs(np.nanmean(s.values) - s.chance) < 4 * se, s.name
        assert s.higher_is_better


@pytest.mark.parametrize("metric", [m for m in LOCALISATION if not getattr(m, "q", None) and not getattr(m, "k", None)],
                         ids=repr)
def test_the_mask_itself_scores_one_and_empty_masks_score_nan(metric):
    masks = rect_masks(10)
    masks[3] = False
    for s in metric.score(inp(masks.float(), masks)):
        assert np.isnan(s.values[3])
        np.testing.assert_allclose(np.delete(s.values, 3), 1.0)


def test_iou_chance_is_exact():
    total, area, k = 9, 3, 4
    mask = set(range(area))
    ious = [len(mask & set(c)) / len(mask | set(c)) for c in itertools.combinations(range(total), k)]
    assert iou_chance(total, area, k) == pytest.approx(np.mean(ious), abs=1e-12)


def test_auprc_equals_scikit_learn_with_ties_and_its_chance_is_exact():
    g = torch.Generator().manual_seed(0)
    a = (torch.rand(8, P, generator=g) * 5).round()  # many ties
    m = torch.rand(8, P, generator=g) < 0.15
    ref = [average_precision_score(m[i].numpy(), a[i].numpy()) for i in range(8)]
    np.testing.assert_allclose(average_precision(a, m).numpy(), ref, atol=1e-12)
    total, area = 7, 3
    perms = torch.tensor(list(itertools.permutations(range(total)))).float()
    labels = (torch.arange(total) < area).expand(len(perms), -1)
    assert average_precision(perms, labels).mean().item() == pytest.approx(ap_chance(total, np.array([area]))[0])


def test_iou_at_q_and_rank_accuracy_count_the_right_pixels():
    a = torch.arange(P, dtype=torch.float32).flip(0).view(1, H, W)  # pixel 0 ranks first
    masks = torch.zeros(1, H, W, dtype=torch.bool)
    masks[0, 0, :10] = True  # the 10 top-ranked pixels
    s = {x.name: x.values[0] for x in IoU(q=[10 / P, 20 / P]).score(inp(a, masks))}
    assert s[f"iou@{100 * 10 / P:.4g}%"] == 1.0 and s[f"iou@{100 * 20 / P:.4g}%"] == 0.5
    assert RankAccuracy(k=20).score(inp(a, masks))[0].values[0] == 0.5


def test_pointing_game_tolerance_and_ties():
    masks = torch.zeros(2, H, W, dtype=torch.bool)
    masks[:, 10, 10] = True
    a = torch.zeros(2, H, W)
    a[0, 10, 13] = 1  # 3 px away
    a[1, 12, 12] = 1  # 2.83 px away
    hits = lambda t: PointingGame(tolerance=t).score(inp(a, masks))[0].values.tolist()
    assert hits(0) == [0, 0] and hits(2.9) == [0, 1] and hits(3) == [1, 1]
    flat = torch.ones(1, H, W)  # every pixel ties for the maximum: the hit share is the mask's
    assert PointingGame().score(inp(flat, masks[:1]))[0].values[0] == pytest.approx(1 / P)


def test_energy_in_roi_modes():
    masks = torch.zeros(1, H, W, dtype=torch.bool)
    masks[0, :2] = True
    a = torch.zeros(1, H, W)
    a[0, 0, 0], a[0, 5, 5], a[0, 6, 6] = 3.0, 1.0, -2.0
    share = {mode: EnergyInROI(mode=mode).score(inp(a, masks))[0].values[0] for mode in ("positive", "absolute",
                                                                                         "signed")}
    assert share == pytest.approx({"positive": 3 / 4, "absolute": 3 / 6, "signed": 3 / 2})
    assert np.isnan(EnergyInROI().score(inp(-a.abs(), masks))[0].values[0])  # no positive mass


# --------------------------------------------------------------------------- faithfulness


class _Weighted(torch.nn.Module):
    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def linear_model(seed: int = 0) -> Classifier:
    """T (logit of class 0) = mean_p w_p·(x_p − 0.485)/0.229: each pixel's contribution
    is known exactly, so the right removal order is known."""
    w = torch.randn(1, 1, H, W, generator=torch.Generator().manual_seed(seed))
    m = Classifier(_Weighted(w), feature_dim=1, stages={}, num_classes=2, in_chans=1)
    with torch.no_grad():
        m.head.weight.copy_(torch.tensor([[1.0], [-1.0]]))
        m.head.bias.zero_()
    return m.eval()


def oracle(model: Classifier, x: torch.Tensor, canvas: torch.Tensor) -> torch.Tensor:
    """The exact drop of T when each pixel alone is replaced by the canvas."""
    return (model.encoder.w * (x - canvas))[:, 0] / (0.229 * P)


def test_delta_t_matches_the_closed_form_and_random_maps_score_zero():
    n = 40
    model = linear_model()
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(1))
    o = oracle(model, x, x.mean(dim=(1, 2, 3), keepdim=True))
    metric = DeltaT(q=[0.05, 0.2], draws=4)
    scores = metric.score(inp(o, model=model, x=x, chunk=7))
    for s, q in zip(scores, (0.05, 0.2)):
        k = round(q * P)
        top = o.reshape(n, -1).topk(k, dim=1).values.sum(1).double().numpy()
        assert s.extra["delta_top"] == pytest.approx(top.mean(), rel=1e-4)
        assert (s.values > 0).all() and s.chance == 0.0
    # chunking changes nothing
    again = metric.score(inp(o, model=model, x=x, chunk=64))
    np.testing.assert_allclose(again[1].values, scores[1].values, rtol=1e-5, atol=1e-7)
    # a random map is one more random set: mean delta-t is 0 within its standard error
    rnd = metric.score(inp(torch.rand(n, H, W, generator=torch.Generator().manual_seed(2)), model=model, x=x))
    for s in rnd:
        assert abs(s.values.mean()) < 4 * s.values.std() / math.sqrt(n)
    assert metric.passes(n) == n * (1 + 2 * 5)


def test_deletion_and_insertion_rank_the_oracle_above_random_orders():
    n = 12
    model = linear_model(1)
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(3))
    black = x.amin(dim=(1, 2, 3), keepdim=True)
    dele = Deletion(steps=12, draws=3, normalise="none").score(inp(oracle(model, x, black), model=model, x=x))[0]
    assert not dele.higher_is_better and dele.values.mean() < dele.chance
    ins = Insertion(steps=12, draws=3, normalise="none").score(inp(oracle(model, x, gaussian_blur(x, 3.0)), model=model, x=x))[0]
    assert ins.higher_is_better and ins.values.mean() > ins.chance
    # the curve starts at T(x) and ends at T(canvas)
    spec = Deletion(steps=4)
    c, frac, _ = curves(inp(torch.rand(n, H, W), model=model, x=x), spec, spec.check("deletion"), insertion=False)
    with torch.no_grad():
        t = Target("logit", torch.zeros(n, dtype=torch.long))
        np.testing.assert_allclose(c[:, 0], t(model, x).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c[:, -1], t(model, black.expand_as(x)).numpy(), rtol=1e-5, atol=1e-6)
    assert frac.tolist() == [0, 0.25, 0.5, 0.75, 1]


def test_probability_output_stays_in_unit_interval():
    # raw softmax (normalise="none") is a probability at every point, so its AUC is in [0, 1];
    # divided by the clean probability (the default) the curve starts at exactly 1 and may
    # rise above it, so only that start is a property there
    model = linear_model(2)
    a = torch.rand(4, H, W, generator=torch.Generator().manual_seed(5))
    raw = Deletion(steps=5, output="probability", normalise="none").score(inp(a, model=model))[0]
    assert np.all((raw.values >= 0) & (raw.values <= 1))
    assert all(0 <= v <= 1 for v in raw.extra["curve"])
    rel = Deletion(steps=5, output="probability").score(inp(a, model=model))[0]
    assert rel.extra["curve"][0] == pytest.approx(1.0)
    assert np.all(rel.values > 0)


def test_road_prefers_the_oracle_over_its_reverse():
    n = 10
    model = linear_model(3)
    x = gaussian_blur(torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(4)), 1.0)
    o = (model.encoder.w * (x - gaussian_blur(x, 2.0)))[:, 0]
    good = ROAD(percentiles=[10, 30, 50]).score(inp(o, model=model, x=x))
    bad = ROAD(percentiles=[10, 30, 50]).score(inp(-o, model=model, x=x))
    assert good[0].values.mean() > 0 > bad[0].values.mean()
    assert [s.name for s in good] == ["road", "road-morf", "road-lerf"]


# --------------------------------------------------------------------------- agreement and stability


def test_agreement_matrix_and_chance(tmp_path):
    g = torch.Generator().manual_seed(5)
    m = torch.rand(30, H, W, generator=g)
    maps = {"a": m, "same": m.clone(), "neg": -m, "r1": torch.rand(30, H, W, generator=g)}
    scores = Agreement(q=0.1).score(inp(m, maps=maps))
    rho = np.array(scores[0].extra["spearman"])
    assert rho[0, 1] == pytest.approx(1) and rho[0, 2] == pytest.approx(-1) and abs(rho[0, 3]) < 0.05
    iou = {s.explainer: s for s in scores if s.name.startswith("agreement-iou")}
    assert iou["r1"].values.mean() == pytest.approx(iou["r1"].chance, abs=0.02)
    assert plot_matrix(scores[0].extra, tmp_path / "m.png").stat().st_size > 0
    assert Agreement().score(inp(m, maps={"a": m})) == []


class _Fixed:
    """An explainer that ignores both the model and the image."""

    def explain(self, model, x, target, context):
        return torch.linspace(0, 1, H * W).view(1, H, W).expand(len(x), -1, -1).clone()


class _Image:
    """An explainer that returns the image: it ignores the model."""

    def explain(self, model, x, target, context):
        return x[:, 0].clone()


def test_noise_stability_of_a_fixed_map_is_perfect():
    a = _Fixed().explain(None, torch.zeros(6, 1, H, W), None, None)
    s = {x.name: x.values for x in NoiseStability(draws=3).score(inp(a, model=linear_model(), explainer=_Fixed()))}
    np.testing.assert_allclose(s["noise-stability-spearman"], 1)
    np.testing.assert_allclose(s["noise-stability-ssim"], 1)
    np.testing.assert_allclose(s["max-sensitivity"], 0)


def test_seed_stability():
    g = torch.Generator().manual_seed(6)
    m = torch.rand(8, H, W, generator=g)
    same = SeedStability().score(inp(m, seed_maps={0: m, 1: m.clone(), 2: m.clone()}))
    assert all(np.allclose(s.values, 1) for s in same)
    rnd = SeedStability().score(inp(m, seed_maps={0: m, 1: torch.rand(8, H, W, generator=g)}))
    assert abs(rnd[0].values.mean()) < 0.1
    assert SeedStability().score(inp(m, seed_maps={0: m})) == []


def test_randomization_fails_a_model_blind_explainer_and_leaves_the_model_alone(tiny_model):
    x = torch.rand(6, 1, 32, 32, generator=torch.Generator().manual_seed(7))
    masks = torch.zeros(6, 32, 32, dtype=torch.bool)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    rng = torch.get_rng_state()
    scores = Randomization().score(inp(_Image().explain(None, x, None, None), masks, tiny_model, x,
                                       explainer=_Image()))
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    curve = scores[0].extra
    assert curve["layers"] == ["logits", "layer4", "layer3", "layer2", "layer1", "stem"]
    np.testing.assert_allclose(curve["curve"], 1.0)
    assert scores[1].values[0] == 0 and curve["degraded_at"] is None


# --------------------------------------------------------------------------- group statistics


def test_permutation_distances_match_a_loop():
    g = torch.Generator().manual_seed(8)
    emb, y = torch.randn(20, 5, generator=g, dtype=torch.float64), torch.tensor([0, 1] * 10)
    t, null = permutation_distances(emb, y, 7, seed=1)
    assert t == pytest.approx((emb[y == 0].mean(0) - emb[y == 1].mean(0)).norm().item())
    idx = torch.rand(7, 20, generator=torch.Generator().manual_seed(1)).argsort(1)
    loop = [(emb[y[i] == 0].mean(0) - emb[y[i] == 1].mean(0)).norm().item() for i in idx]
    np.testing.assert_allclose(null, loop, rtol=1e-10)


def test_group_statistic_p_values():
    # under the null, p-values are uniform
    rng = np.random.default_rng(0)
    ps = []
    for s in range(120):
        emb = torch.as_tensor(rng.normal(size=(24, 3)))
        t, null = permutation_distances(emb, torch.tensor([0, 1] * 12), 1000, seed=s)
        ps.append((1 + (null >= t).sum()) / 1001)
    assert 0.4 < np.mean(ps) < 0.6 and np.mean(np.array(ps) < 0.05) < 0.12
    # a real difference: the smallest possible p
    model = linear_model(4)
    x = torch.rand(40, 1, H, W, generator=torch.Generator().manual_seed(9)) * 0.5
    y = torch.tensor([0, 1] * 20)
    x[y == 1] += 0.5 * model.encoder.w.sign()  # group B moves along the embedding
    s = {v.name: v for v in GroupStatistic(permutations=1000).score(inp(x=x, y=y, model=model))}
    assert s["group-statistic-p"].values[0] == pytest.approx(1 / 1001)
    assert s["group-statistic"].values[0] > s["group-statistic"].chance and s["group-statistic-z"].values[0] > 5


# roi-volume: tests/test_metrics_roi_volume.py and tests/test_calibration_roi_volume.py


# --------------------------------------------------------------------------- registry and options


SCOPES = {"iou": "explanation", "pointing-game": "explanation", "energy-in-roi": "explanation",
          "rank-accuracy": "explanation", "auprc": "explanation", "delta-t": "explanation",
          "deletion": "explanation", "insertion": "explanation", "road": "explanation",
          "agreement": "explainers", "noise-stability": "explanation", "seed-stability": "seeds",
          "randomization": "explanation", "group-statistic": "model", "roi-volume": "explanation"}

BAD = [("iou", {"q": 5}), ("iou", {"q": []}), ("pointing-game", {"tolerance": -1}), ("energy-in-roi", {"mode": "x"}),
       ("rank-accuracy", {"k": 0}), ("delta-t", {"filler": "zeros"}), ("delta-t", {"draws": 0}),
       ("deletion", {"output": "prob"}), ("insertion", {"steps": 0}), ("road", {"percentiles": [0, 50]}),
       ("agreement", {"q": [0.1, 0.2]}), ("noise-stability", {"noise": "salt"}),
       ("randomization", {"granularity": "block"}), ("group-statistic", {"permutations": 100}),
       ("roi-volume", {"covariates": "age"})]


def test_every_metric_is_registered_with_its_scope(registry):
    for name, scope in SCOPES.items():
        assert registry.get("metric", name).factory().scope == scope


@pytest.mark.parametrize("name,options", BAD, ids=[f"{n}-{next(iter(o))}" for n, o in BAD])
def test_bad_options_raise_one_line_errors(registry, name, options):
    with pytest.raises(XaibenchError) as exc:
        registry.get("metric", name).factory(**options)
    msg = str(exc.value)
    assert name in msg and next(iter(options)) in msg and "\n" not in msg


def test_unknown_option_names_list_the_allowed_ones(registry):
    with pytest.raises(XaibenchError, match=r"metric delta-t: unknown option 'qs'; allowed: q, draws, filler"):
        registry.get("metric", "delta-t").factory(qs=[0.1])


@pytest.mark.parametrize("name", [n for n, s in SCOPES.items() if s == "explanation"])
def test_maps_of_the_wrong_shape_are_refused(registry, name):
    x = torch.rand(3, 1, H, W)
    with pytest.raises(XaibenchError, match=f"metric {name}: attributions must be N×H×W = 3×{H}×{W}"):
        registry.get("metric", name).factory().score(inp(torch.rand(3, H, 5), x=x, model=linear_model(),
                                                         explainer=_Fixed(), meta={"hippocampal_volume": np.ones(3)}))


def test_noise_stability_spearman_and_ssim_match_scipy_and_skimage():
    from skimage.metrics import structural_similarity

    from xaibench.kit.similarity import minmax
    from xaibench_plugins.metrics.noise_stability import noisy_copies

    n, r = 4, 3
    x = torch.rand(n, 1, H, W, generator=torch.Generator().manual_seed(10))
    a = _Image().explain(None, x, None, None)
    s = {v.name: v.values for v in NoiseStability(draws=r, seed=5).score(inp(a, x=x, explainer=_Image()))}
    noisy = noisy_copies(x, r, 0.05, "uniform", 5)[:, 0].view(r, n, H, W)
    rho = [[spearmanr(a[i].flatten(), noisy[d, i].flatten())[0] for d in range(r)] for i in range(n)]
    np.testing.assert_allclose(s["noise-stability-spearman"], np.mean(rho, 1), atol=1e-9)
    ss = [[structural_similarity(minmax(a[i:i + 1])[0].numpy(), minmax(noisy[d, i:i + 1])[0].numpy(), data_range=1.0)
           for d in range(r)] for i in range(n)]
    np.testing.assert_allclose(s["noise-stability-ssim"], np.mean(ss, 1), atol=1e-9)
