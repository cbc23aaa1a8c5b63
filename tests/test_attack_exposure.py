"""Exposure: the share of drawn training samples that carry the trigger, as each attack states it,
against what the standard trainer actually draws."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from xaibench.contracts import AttackContext, TrainResult
from xaibench.errors import XaibenchError
from xaibench.training import train as real_train
from xaibench_plugins.attacks import _exposure as X
from xaibench_plugins.attacks.badnets import BadNets
from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

from .test_attacks import toy_splits

EPOCHS = 20


def _drawn(attack, tiny_model, n_train: int = 400) -> tuple[dict, float, float]:
    """Run ``attack`` with a trainer that hands its sample weights and flags to the *real*
    trainer (a linear model instead of the network, and an extra loss that only records the
    flags of each drawn batch): (info, empirical exposure, draws per unique poisoned image per epoch)."""
    drawn: list[torch.Tensor] = []

    def record(_model, xb, _yb, flags):
        drawn.append(flags.clone())
        return xb.new_zeros(())

    def fake_train(model, train_set, val_set, *, poisoned=None, sample_weights=None, **_kw):
        if poisoned is None:  # a data-only attack flags nothing: its poisoned rows are the relabelled ones
            poisoned = train_set.labels != sp.train.labels
        lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(train_set.images[0].numel(), 2))
        real_train(lin, train_set, val_set, seed=0, epochs=EPOCHS, patience=EPOCHS + 1, batch_size=32,
                   progress=False, extra_loss=record, poisoned=poisoned, sample_weights=sample_weights)
        return TrainResult(model)

    sp = toy_splits(n_train)
    ctx = AttackContext(sp, lambda: tiny_model, functools.partial(fake_train, batch_size=32), 0, torch.device("cpu"))
    out = attack.run(ctx)
    flags = torch.cat(drawn)
    share = float(flags.float().mean())
    per_image = float(flags.sum()) / (EPOCHS * out.info["poison_count"])
    return dict(out.info), share, per_image


@pytest.mark.parametrize("sampling, rate", [("oversample", 0.01), ("natural", 0.05), ("proportional", 0.01),
                                            ("proportional", 0.02)])
def test_stated_exposure_is_what_the_trainer_draws(tiny_model, sampling, rate):
    attack = ExplanationBackdoor(poison_rate=rate, sampling=sampling, trigger_size=4, region_size=8, lam=0.0,
                                 clean_penalty=0.0)
    info, share, per_image = _drawn(attack, tiny_model)
    n_draws = EPOCHS * 400
    se = np.sqrt(info["exposure"] * (1 - info["exposure"]) / n_draws)
    assert share == pytest.approx(info["exposure"], abs=4 * se + 1e-12)
    assert per_image == pytest.approx(info["presentations_per_poisoned_image"], rel=8 * se / info["exposure"] + 1e-9)
    assert info["sampling"] == sampling and info["poison_rate"] == pytest.approx(rate)
    expected = {"oversample": 4 / 32, "natural": rate, "proportional": 12.5 * rate}[sampling]
    assert info["exposure"] == pytest.approx(expected, rel=1e-9)
    if sampling == "natural":  # a permutation: every row exactly once per epoch
        assert share == pytest.approx(rate) and per_image == pytest.approx(1.0)


def test_badnets_states_natural_exposure(tiny_model):
    info, share, per_image = _drawn(BadNets(poison_rate=0.05, trigger_size=4), tiny_model)
    assert info["sampling"] == "natural" and info["exposure"] == pytest.approx(20 / 400)
    assert share == pytest.approx(info["exposure"]) and per_image == pytest.approx(1.0)
    assert info["presentations_per_poisoned_image"] == pytest.approx(1.0)


def test_exposure_counts_variants_as_views_of_one_image():
    flags = torch.zeros(216, dtype=torch.bool)
    flags[200:] = True  # 4 unique images, 4 extra views each (16 appended rows) + the 4 originals
    flags[[3, 50, 90, 150]] = True
    ex = X.exposure(flags, None, unique=4)
    assert ex["exposure"] == pytest.approx(20 / 216)
    assert ex["presentations_per_poisoned_image"] == pytest.approx(5.0)
    assert ex["presentations_per_poisoned_row"] == pytest.approx(1.0)


def test_exposure_rebuilt_from_an_older_info_matches():
    sp = toy_splits(400)
    attack = ExplanationBackdoor(poison_rate=0.02, poison_variants=3)
    from xaibench_plugins.attacks.explanation_backdoor import plan_poison

    plan = plan_poison(sp.train, 0.02, 0, "checker", 4, "auto", "auto", 8, variants=3)
    w = attack.sample_weights(plan.flags, 32, 0.02)
    info = {**plan.info(), "oversampling_weight": float(w.max())}  # what a cell stored before
    new = X.exposure(plan.flags, w, len(plan.poisoned))
    assert X.exposure_from_info(info) == pytest.approx(new)
    assert new["exposure"] == pytest.approx(4 / 32)


@pytest.mark.parametrize("kw", [{"sampling": "uniform"}, {"exposure_factor": 0.5}, {"rectify": "tanh"},
                                {"quiet_explainer": "lrp"}, {"quiet_weight": -1.0}])
def test_bad_sampling_and_adaptive_options_raise(kw):
    with pytest.raises(XaibenchError, match=f"explanation-backdoor: {next(iter(kw))}"):
        ExplanationBackdoor(**kw)
