"""Calibration of ``roi-volume`` under the null it claims: uniformly random maps on data
whose ROI area follows the volume as in the embedded data (r ≈ 0.8). The p-values must
reject at their nominal rate and the correlations must centre on 0 — which the version-1
score (the mass share inside the ROI) fails by construction (checked, so the test can fail)."""
from __future__ import annotations

import numpy as np
import torch

from xaibench.contracts import ExplainContext, MetricInput, Target
from xaibench.kit.regions import mass_share
from xaibench_plugins.metrics.roi_volume import ROIVolume

S = 32
N = 64


def cohort(seed: int = 0, n: int = N):
    """Two elliptic 'hippocampi' per image whose areas follow their volumes, a disk brain,
    numeric and categorical covariates that shift the volume."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(55, 85, n)
    site = rng.choice(["A", "B", "C"], n)
    site_fx = {"A": 0.0, "B": 0.25, "C": -0.2}
    yy, xx = np.mgrid[:S, :S]
    masks, vols = {}, {}
    for side, cx in (("left", 10), ("right", 22)):
        vol = 3.6 - 0.02 * (age - 70) + np.array([site_fx[s] for s in site]) + rng.normal(0, 0.3, n)
        # area follows volume (slice of a smaller structure is smaller) plus slice-position noise
        r = np.clip(2.2 + 1.1 * (vol - 3.6) + rng.normal(0, 0.35, n), 1.0, 5.0)
        m = np.stack([((xx - cx) / r[i]) ** 2 + ((yy - 16) / (1.5 * r[i])) ** 2 <= 1 for i in range(n)])
        masks[side], vols[side] = torch.as_tensor(m), vol
    brain = torch.as_tensor((xx - 15.5) ** 2 + (yy - 15.5) ** 2 <= 15 ** 2).expand(n, -1, -1)
    roi = masks["left"] | masks["right"]
    meta = {"hippocampal_volume": vols["left"] + vols["right"], "hippocampal_volume_left": vols["left"],
            "hippocampal_volume_right": vols["right"], "age": age, "site": site.astype(object),
            "subject_id": np.arange(n)}
    named = {"roi-left": masks["left"], "roi-right": masks["right"], "brain": brain}
    return roi, meta, named


def _inp(a, roi, meta, named, seed=0):
    n = len(a)
    x = torch.rand(n, 1, S, S)
    y = torch.zeros(n, dtype=torch.long)
    return MetricInput(model=None, images=x, labels=y, masks=roi, target=Target("logit", y),
                       context=ExplainContext(reference=x[:2], seed=seed, chunk_size=64), attributions=a,
                       meta=meta, named_masks=named)


def test_random_maps_are_calibrated_where_the_mass_share_is_not():
    roi, meta, named = cohort(0)
    area = roi.flatten(1).sum(1).numpy()
    assert np.corrcoef(area, meta["hippocampal_volume"])[0, 1] > 0.7  # as in the embedded data
    g = torch.Generator().manual_seed(1)
    metric = ROIVolume(hemispheres=False, permutations=1000)
    reps = 250
    stats: dict[str, list[float]] = {}
    share_r = []
    for rep in range(reps):
        a = torch.rand(N, S, S, generator=g)
        scores = metric.score(_inp(a, roi, meta, named, seed=rep))
        for s in scores:
            stats.setdefault(s.name, []).append(float(s.values[0]))
        stats.setdefault("pearson", []).append(scores[0].extra["pearson"])
        share = mass_share(a.flatten(1).double(), roi.flatten(1), "positive").numpy()
        share_r.append(np.corrcoef(share, meta["hippocampal_volume"])[0, 1])
    # the version-1 score is mechanically tied to area: these data expose it
    assert np.mean(share_r) > 0.5
    for name in ("roi-volume-p", "roi-volume-mean-p", "roi-volume-control-p", "roi-volume-mean-control-p"):
        fpr = np.mean(np.array(stats[name]) <= 0.05)
        assert 0.02 <= fpr <= 0.08, (name, fpr)
        assert 0.43 < np.mean(stats[name]) < 0.57, name
    for name in ("pearson", "roi-volume-partial", "roi-volume-mean-partial", "roi-volume-control-partial"):
        assert abs(np.mean(stats[name])) < 0.05, name
    beta = np.array(stats["roi-volume-beta"])
    assert abs(beta.mean()) < 3 * beta.std() / np.sqrt(reps)
    r2 = np.array(stats["roi-volume-delta-r2"])
    assert abs(r2.mean() - scores[3].chance) < 3 * r2.std() / np.sqrt(reps)  # ΔR² at its stated null mean
