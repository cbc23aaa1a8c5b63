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


# ----------------------------------------------------------------------------- inner-layer Grad-CAM, adaptive attacker


def _steps(model, loss_fn, x, y, flags, steps: int = 12, lr: float = 1e-2) -> list[float]:
    """A few Adam steps on ``loss_fn`` alone; the loss before each step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    seen = []
    for _ in range(steps):
        model.train()
        model(x)  # the trainer's forward (the tap sees it; at an inner layer it cannot use it)
        loss = loss_fn(model, x, y, flags)
        seen.append(float(loss.detach()))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return seen


def _triggered_batch(n: int = 16):
    from xaibench.kit import triggers as T

    from .test_attacks import toy_images

    data = toy_images(n, seed=5)
    trig = (28, 2, 32, 6)  # bottom-left, off the ROI
    x = T.stamp(data.images, T.pattern("checker", 4), trig)
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[0:8, 8:16] = True  # one 8-px cell of the 4×4 maps, above the ROI
    return x, data.labels, region, T.box_mask(trig, (32, 32))


def test_inner_layer_gradcam_attack_goes_through_double_backward_and_moves_that_map(tiny_model):
    import copy

    from xaibench.contracts import Target
    from xaibench_plugins.attacks.explanation_backdoor import ActivationTap, BackdoorLoss
    from xaibench_plugins.explainers.gradcam import gradcam_maps
    from xaibench.kit.regions import mass_share

    model = copy.deepcopy(tiny_model)
    x, y, region, _ = _triggered_batch()
    flags = torch.ones(len(x), dtype=torch.bool)
    before = mass_share(gradcam_maps(model.eval(), x, Target("logit", y), "layer3", create_graph=False).detach(), region,
                    floor=1e-12).mean()
    tap = ActivationTap(model)
    try:
        losses = _steps(model, BackdoorLoss(region, layer="layer3", clean_penalty=0.0, tap=tap), x, y, flags)
        assert tap.used == {"cam-shortcut": 0, "double-backward": 12}
        assert tap.path(model, "layer3") == "double-backward"
    finally:
        tap.remove()
    after = mass_share(gradcam_maps(model.eval(), x, Target("logit", y), "layer3", create_graph=False).detach(), region,
                   floor=1e-12).mean()
    # soft IoU of a bilinearly upsampled 4×4 map with one cell plateaus near 0.72
    assert losses[-1] < 0.85 * losses[0]
    assert float(after) > 3 * float(before) and float(after) > float(before) + 0.15  # the layer-3 map moved there


def test_last_stage_uses_the_cam_shortcut(tiny_model):
    import copy

    from xaibench_plugins.attacks.explanation_backdoor import ActivationTap, BackdoorLoss

    model = copy.deepcopy(tiny_model)
    x, y, region, _ = _triggered_batch(8)
    tap = ActivationTap(model)
    try:
        _steps(model, BackdoorLoss(region, layer="layer4", tap=tap), x, y, torch.ones(8, dtype=torch.bool), steps=2)
        assert tap.used == {"cam-shortcut": 2, "double-backward": 0} and tap.path(model, "layer4") == "cam-shortcut"
    finally:
        tap.remove()


def test_adaptive_attacker_penalises_gradcampp_on_trigger_and_region(tiny_model):
    """The quiet term adds Grad-CAM++'s mass on trigger ∪ region of triggered images to the
    loss, and minimising it alone takes that mass down."""
    import copy

    from xaibench.contracts import Target
    from xaibench_plugins.attacks.explanation_backdoor import BackdoorLoss
    from xaibench_plugins.explainers.gradcam import gradcampp_maps
    from xaibench.kit.regions import mass_share

    model = copy.deepcopy(tiny_model).train()
    x, y, region, trig = _triggered_batch()
    flags = torch.zeros(len(x), dtype=torch.bool)
    flags[:8] = True
    quiet = region | trig
    plain = BackdoorLoss(region)
    adaptive = BackdoorLoss(region, quiet="gradcam++", quiet_weight=2.0, quiet_region=quiet)
    pp = gradcampp_maps(model, x[:8], Target("logit", y[:8]), "layer4", create_graph=False)
    expected = 2.0 * float(mass_share(pp, quiet, floor=1e-12).mean())
    gap = float(adaptive(model, x, y, flags, create_graph=False) - plain(model, x, y, flags, create_graph=False))
    assert expected > 0.01 and gap == pytest.approx(expected, rel=1e-4)
    only = BackdoorLoss(region, lam=0.0, clean_penalty=0.0, quiet="gradcam++", quiet_weight=1.0, quiet_region=quiet)
    losses = _steps(model, only, x, y, flags)
    assert losses[-1] < 0.7 * losses[0]


def test_adaptive_attack_runs_through_the_trainer(tiny_model):
    from xaibench_plugins.backbones.resnet import ResNetBuilder

    b = ResNetBuilder("resnet18", width=0.125, output_stride=8, epochs=1, patience=2)
    sp = toy_splits(64)
    ctx = AttackContext(sp, lambda: b(2, (32, 32)), functools.partial(real_train, seed=0, builder=b, progress=False),
                        0, torch.device("cpu"))
    out = ExplanationBackdoor(poison_rate=0.1, trigger_size=4, region_size=8, quiet_explainer="gradcam++").run(ctx)
    assert out.info["quiet_explainer"] == "gradcam++" and out.info["gradcam_path"] == "cam-shortcut"
    assert np.isfinite(out.train.history["val_extra"]).all()


def test_relu_region_that_went_negative_has_no_gradient_softplus_keeps_one():
    """The state the 5% seed may have stuck in (docs/attacks.md): when a class's map is ≤ 0
    over the whole target region, soft IoU of its ReLU-rectified map is constant, so that
    group's triggered images give the attack no gradient; ``rectify = "softplus"`` keeps one."""
    from xaibench_plugins.attacks.explanation_backdoor import BackdoorLoss, explanation_loss

    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :2] = True
    raw = torch.rand(3, 8, 8)
    raw[:, region] = -0.5  # every map negative in the region
    grads = {}
    for rect in ("relu", "softplus"):
        r = raw.clone().requires_grad_(True)
        explanation_loss(BackdoorLoss(region, rectify=rect)._rectify(r), region, "soft-iou").sum().backward()
        grads[rect] = r.grad
    assert float(grads["relu"].abs().sum()) == 0.0
    assert float(grads["softplus"][:, region].sum()) < 0  # descending raises the map inside the region
    assert BackdoorLoss(region, loss="mse")._rectify(raw).min() > 0  # auto: mse was already softplus
