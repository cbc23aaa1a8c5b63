"""The p-values the leaderboard and the attack metrics print, under nulls simulated here.

Each test draws many data sets in which the null holds (two explainers with the same
distribution of scores on the same images; methods that do not differ; clean and attacked
maps from the same distribution) and checks that the test rejects at 5% about 5% of the
time; a companion case with a real difference checks that it can reject at all.
"""
from __future__ import annotations

import numpy as np

from xaibench.leaderboard.stats import friedman, holm, paired_greater
from xaibench_plugins.metrics.attack_stealth import separability


def _rate(ps) -> float:
    return float(np.mean(np.asarray(ps) <= 0.05))


def test_paired_wilcoxon_is_calibrated_under_exchangeable_pairs():
    rng = np.random.default_rng(0)
    ps = []
    for _ in range(600):
        img = rng.normal(size=96)  # the image effect both explainers share (the pairing)
        ps.append(paired_greater(img + rng.normal(size=96), img + rng.normal(size=96)))
    assert 0.02 <= _rate(ps) <= 0.08, _rate(ps)
    shifted = [paired_greater(rng.normal(size=96) + 0.4, rng.normal(size=96)) for _ in range(100)]
    assert _rate(shifted) > 0.8


def test_holm_keeps_the_familywise_rate_over_a_table():
    rng = np.random.default_rng(1)
    any_reject = []
    for _ in range(400):  # 12 methods compared with the best of them: all nulls true
        ps = rng.uniform(size=12)
        any_reject.append(bool(np.any(holm(ps) <= 0.05)))
    assert np.mean(any_reject) <= 0.08, np.mean(any_reject)
    unadjusted = np.mean([np.any(rng.uniform(size=12) <= 0.05) for _ in range(400)])
    assert unadjusted > 0.3  # what the correction is for


def test_friedman_is_calibrated_when_methods_do_not_differ():
    rng = np.random.default_rng(2)
    ps = []
    for _ in range(400):
        block = rng.normal(size=(60, 1))  # images differ, methods do not
        r = friedman(block + rng.normal(size=(60, 5)), list("abcde"))
        ps.append(r.p)
    assert 0.02 <= _rate(ps) <= 0.08, _rate(ps)
    r = friedman(rng.normal(size=(60, 5)) + np.arange(5) * 0.5, list("abcde"))
    assert r.p < 1e-3


def test_attack_signature_p_is_calibrated_when_maps_do_not_differ():
    rng = np.random.default_rng(3)
    ps = [separability(rng.uniform(size=32), rng.uniform(size=32))[1] for _ in range(600)]
    assert 0.02 <= _rate(ps) <= 0.08, _rate(ps)
