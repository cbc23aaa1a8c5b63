"""Calibration of the localisation metrics against their stated nulls, on the embedded data.

For every localisation metric and mask (roi, evidence, one hemisphere): the ``random``
explainer's mean score lands on the metric's stated ``chance`` within 4 standard errors
(over 4000 maps: 200 images × 20 seeds; 20000 for the pointing game, whose per-image
score is a single Bernoulli draw), and the tolerance is tight enough (under a third
of the chance level) that a wrong chance formula would fail: the mask's area share in place
of the hypergeometric IoU expectation is 2× off, the undilated mask for a pointing
tolerance of 2 px about 3× off. ``roi-prior`` lands exactly on the value
computed independently here with numpy / scikit-learn. And the random explainer's
noise-stability sits at its stated chance of 0 (it did not while its noise ignored the input).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench_plugins.datasets.synthetic_hippocampus import make
from xaibench_plugins.explainers.random import RandomMap
from xaibench_plugins.explainers.roi_prior import ROIPrior
from xaibench_plugins.metrics.auprc import AUPRC
from xaibench_plugins.metrics.energy_in_roi import EnergyInROI
from xaibench_plugins.metrics.iou import IoU
from xaibench_plugins.metrics.noise_stability import NoiseStability
from xaibench_plugins.metrics.pointing_game import PointingGame
from xaibench_plugins.metrics.rank_accuracy import RankAccuracy

SEEDS = 20
POINTING_SEEDS = 100  # a hit is one Bernoulli draw at p ≈ 0.035: it needs more maps for the same power
MASKS = ("roi", "evidence", "roi-left")
METRICS = {
    "iou": lambda m: IoU(mask=m), "iou@5%": lambda m: IoU(q=0.05, mask=m),
    "pointing-game": lambda m: PointingGame(mask=m), "pointing-game@tol2": lambda m: PointingGame(tolerance=2, mask=m),
    "energy-in-roi": lambda m: EnergyInROI(mask=m), "rank-accuracy": lambda m: RankAccuracy(mask=m),
    "top-k@40": lambda m: RankAccuracy(k=40, mask=m), "auprc": lambda m: AUPRC(mask=m),
}


def _cat(parts):
    from xaibench.contracts import ImageSet

    return ImageSet(torch.cat([p.images for p in parts]), torch.cat([p.labels for p in parts]),
                    torch.cat([p.masks for p in parts]),
                    named_masks={k: torch.cat([p.named_masks[k] for p in parts]) for k in parts[0].named_masks})


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """(training images, all 200 images): priors come from training, scores from every image."""
    sp = make(n_subjects=200, image_size=32).load(seed=0, cache_dir=tmp_path_factory.mktemp("cal"))
    return sp.train, _cat([sp.train, sp.val, sp.test])


def _input(images, st, maps, ctx):
    return MetricInput(model=None, images=images, labels=st.labels, masks=st.masks, target=None, context=ctx,
                       attributions=maps, named_masks=st.named_masks)


def _ctx(st, seed=0):
    priors = {k: st.mask(k).float().mean(0) for k in ["roi", *st.named_masks]}
    return ExplainContext(reference=st.images[:4], seed=seed, mask_priors=priors)


@pytest.fixture(scope="module")
def random_maps(data):
    st = data[1]
    return [RandomMap().explain(None, st.images, None, _ctx(st, seed)) for seed in range(POINTING_SEEDS)]


@pytest.mark.parametrize("mask", MASKS)
@pytest.mark.parametrize("metric", sorted(METRICS))
def test_random_lands_on_the_stated_chance(data, random_maps, metric, mask):
    st = data[1]
    ctx = _ctx(st)
    values, chances = [], []
    for maps in random_maps[:POINTING_SEEDS if metric.startswith("pointing") else SEEDS]:
        (score,) = METRICS[metric](mask).score(_input(st.images, st, maps, ctx))
        values.append(score.values)
        chances.append(score.chance)
    v = np.concatenate(values)
    v = v[np.isfinite(v)]
    assert len(v) >= 3000, f"{metric}@{mask}: only {len(v)} finite scores"
    chance = float(np.mean(chances))
    tol = 4 * v.std(ddof=1) / np.sqrt(len(v))
    assert tol < chance / 3, f"{metric}@{mask}: tolerance {tol:.4f} too loose to catch a wrong chance {chance:.4f}"
    assert abs(v.mean() - chance) < tol, f"{metric}@{mask}: random {v.mean():.4f} vs stated chance {chance:.4f}"


def _prior_reference(prior: np.ndarray, masks: np.ndarray) -> dict[str, float]:
    """What roi-prior must score, computed without the metric code."""
    p = prior.ravel()
    order = np.argsort(-p, kind="stable")  # ties by pixel index, as the metrics break them
    top = np.flatnonzero(p == p.max())
    out = {k: [] for k in ("iou", "pointing-game", "energy-in-roi", "rank-accuracy", "auprc")}
    for m in masks.reshape(len(masks), -1):
        area = int(m.sum())
        if area == 0:
            continue
        sel = np.zeros_like(m)
        sel[order[:area]] = True
        out["iou"].append((sel & m).sum() / (sel | m).sum())
        out["rank-accuracy"].append((sel & m).sum() / area)
        out["pointing-game"].append(m[top].mean())  # the share of the prior's (tied) argmax inside
        out["energy-in-roi"].append((p * m).sum() / p.sum())
        out["auprc"].append(average_precision_score(m, p))
    return {k: float(np.mean(v)) for k, v in out.items()}


@pytest.mark.parametrize("mask", MASKS)
def test_roi_prior_scores_what_an_independent_computation_says(data, mask):
    train, st = data[0], data[1]
    ctx = _ctx(train)
    maps = ROIPrior(mask=mask).explain(None, st.images, None, ctx)
    got = {}
    for name, factory in (("iou", IoU), ("pointing-game", PointingGame), ("energy-in-roi", EnergyInROI),
                          ("rank-accuracy", RankAccuracy), ("auprc", AUPRC)):
        (score,) = factory(mask=mask).score(_input(st.images, st, maps, ctx))
        got[name] = float(np.nanmean(score.values))
        assert score.name == (name if mask == "roi" else f"{name}@{mask}")
    ref = _prior_reference(ctx.mask_priors[mask].numpy(), st.mask(mask).numpy())
    for name in ref:
        assert got[name] == pytest.approx(ref[name], abs=1e-6), name
    assert got["pointing-game"] > 5 * st.mask(mask).float().mean()  # the prior is far above uniform chance


def test_random_noise_stability_is_at_its_stated_chance(data):
    st = data[1]
    ctx = _ctx(st, seed=0)
    maps = RandomMap().explain(None, st.images, None, ctx)
    inp = MetricInput(model=None, images=st.images, labels=st.labels, masks=st.masks,
                      target=Target("logit", st.labels), context=ctx, attributions=maps, explainer=RandomMap())
    spearman = next(s for s in NoiseStability(draws=4).score(inp) if s.name == "noise-stability-spearman")
    v = spearman.values[np.isfinite(spearman.values)]
    # each value is a mean of 4 Spearman correlations of independent 32×32 maps: sd ≈ 1/(32·2)
    tol = 4 * v.std(ddof=1) / np.sqrt(len(v))
    assert tol < 0.01
    assert abs(v.mean() - spearman.chance) < tol, f"random noise-stability {v.mean():.4f} vs chance {spearman.chance}"


def test_a_missing_mask_is_one_line_naming_metric_and_masks(data):
    from xaibench.errors import XaibenchError

    st = data[0].subset(np.arange(4))
    maps = torch.rand(4, 32, 32)
    inp = MetricInput(model=None, images=st.images, labels=st.labels, masks=st.masks, target=None,
                      context=_ctx(st), attributions=maps, named_masks={})
    with pytest.raises(XaibenchError, match=r"^metric iou: option mask='evidence': .*available: roi$"):
        IoU(mask="evidence").score(inp)
