"""Every permutation p-value the group metrics print, under a null simulated here:
``group-statistic-p`` (no group difference in the embeddings) and the studentized
correlation test behind ``roi-volume-p`` when the noise of the score depends on the
covariate (heteroscedastic null), where the plain permutation of r rejects too often."""
from __future__ import annotations

import numpy as np
import torch

from xaibench_plugins.metrics._regression import permutation_p
from xaibench_plugins.metrics.group_statistic import permutation_distances


def test_group_statistic_p_is_uniform_under_no_difference():
    rng = np.random.default_rng(0)
    ps = []
    for s in range(300):
        emb = torch.as_tensor(rng.normal(size=(32, 4)))
        t, null = permutation_distances(emb, torch.tensor([0, 1] * 16), 1000, seed=s)
        ps.append((1 + (null >= t).sum()) / 1001)
    ps = np.array(ps)
    assert 0.02 <= np.mean(ps <= 0.05) <= 0.08
    assert 0.45 < ps.mean() < 0.55


def _plain_p(a, b, perms, seed):
    a, b = a - a.mean(), b - b.mean()
    rng = np.random.default_rng(seed)
    idx = rng.permuted(np.tile(np.arange(len(b)), (perms, 1)), axis=1)
    return (1 + np.sum(np.abs(b[idx] @ a) >= abs(a @ b))) / (1 + perms)


def test_studentized_permutation_p_holds_under_heteroscedastic_noise():
    rng = np.random.default_rng(1)
    n, reps = 60, 400
    stud, plain = [], []
    for s in range(reps):
        v = rng.normal(size=n)
        e = rng.normal(size=n) * np.exp(1.2 * np.abs(v))  # uncorrelated, but the spread follows |v|
        stud.append(permutation_p(e, v, 1000, s))
        plain.append(_plain_p(e, v, 1000, s))
    fpr_stud, fpr_plain = np.mean(np.array(stud) <= 0.05), np.mean(np.array(plain) <= 0.05)
    assert 0.02 <= fpr_stud <= 0.08, fpr_stud
    assert fpr_plain > fpr_stud + 0.03, (fpr_plain, fpr_stud)  # the case the studentized form exists for
