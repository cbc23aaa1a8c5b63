"""Attacks: poisoning bookkeeping, trigger/region placement, the attack metrics on hand-made
maps, and (on a tiny model) that the explanation backdoor and BadNets do what they claim."""
from __future__ import annotations

import functools

import numpy as np
import pytest
import torch

from xaibench.contracts import AttackContext, DatasetSplits, ExplainContext, ImageSet, MetricInput, Target, TrainResult
from xaibench.errors import XaibenchError
from xaibench.kit import triggers as T
from xaibench_plugins.attacks.badnets import BadNets
from xaibench_plugins.explainers.gradcam import gradcam_maps
from xaibench_plugins.attacks.explanation_backdoor import (ExplanationBackdoor, differentiable_gradcam,
                                                           explanation_loss, plan_poison)
from xaibench_plugins.metrics.attack_stealth import AttackStealth, spearman_rows
from xaibench_plugins.metrics.attack_success import AttackSuccess
from xaibench_plugins.metrics.detection import Detection


def toy_images(n: int, size: int = 32, seed: int = 0) -> ImageSet:
    """Brain-like ellipse with two bright ROI blobs in the lower half; group 1 has smaller
    blobs (the stand-in for atrophied hippocampi)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs, masks = [], []
    labels = np.arange(n) % 2
    for lab in labels:
        dy, dx = rng.normal(0, 0.02, 2)
        brain = (((yy - 0.5 - dy) / 0.42) ** 2 + ((xx - 0.5 - dx) / 0.36) ** 2) < 1
        r = 0.09 * (1 - 0.3 * lab + rng.normal(0, 0.04))
        m = np.zeros((size, size), bool)
        for cx in (0.33, 0.67):
            m |= (((yy - 0.65 - dy) / r) ** 2 + ((xx - cx - dx) / (0.8 * r)) ** 2) < 1
        imgs.append(np.clip(0.5 * brain + 0.4 * m + rng.normal(0, 0.05, (size, size)), 0, 1))
        masks.append(m)
    return ImageSet(torch.tensor(np.array(imgs), dtype=torch.float32)[:, None], torch.tensor(labels),
                    torch.tensor(np.array(masks)), tuple(f"s{seed}-{i}" for i in range(n)))


def toy_splits(n_train: int = 200) -> DatasetSplits:
    return DatasetSplits("toy", toy_images(n_train, seed=1), toy_images(60, seed=2), toy_images(80, seed=3))


# ----------------------------------------------------------------------------- placement / bookkeeping


def test_poison_rate_is_share_of_unique_images_and_only_they_change():
    train = toy_images(300)
    plan = plan_poison(train, 0.05, seed=3, pattern="checker", size=4, position="auto", region="auto", region_size=8)
    assert len(plan.poisoned) == 15 == int(plan.flags.sum())
    assert plan.info()["poison_rate"] == pytest.approx(15 / 300)
    assert len(set(plan.info()["unique_poisoned_ids"])) == 15
    changed = (plan.train.images != train.images).flatten(1).any(1)
    assert torch.equal(changed, plan.flags)  # only poisoned rows change…
    outside = ~plan.trigger_mask
    assert torch.equal(plan.train.images[..., outside], train.images[..., outside])  # …and only in the trigger
    assert torch.equal(plan.train.labels, train.labels)
    # a tiny rate still poisons one image; the same seed gives the same images
    assert len(plan_poison(train, 0.001, 3, "checker", 4, "auto", "auto", 8).poisoned) == 1
    assert torch.equal(plan_poison(train, 0.05, 3, "checker", 4, "auto", "auto", 8).poisoned, plan.poisoned)


def test_trigger_and_region_avoid_roi_and_each_other():
    train = toy_images(100)
    plan = plan_poison(train, 0.01, 0, "checker", 4, "auto", "auto", 8)
    roi = T.roi_union(train.masks)
    assert not (plan.trigger_mask & roi).any()
    assert not (plan.region & roi).any()
    assert not (plan.region & plan.trigger_mask).any()
    assert int(plan.region.sum()) == 64 and int(plan.trigger_mask.sum()) == 16
    # the auto region sits inside the anatomy (the ellipse), not in the background
    assert float(train.images.mean(dim=(0, 1))[plan.region].mean()) > 0.3


@pytest.mark.parametrize("kw, match", [
    ({"trigger_position": "middle"}, "trigger_position"),
    ({"trigger_position": [20, 12]}, "covers the ROI"),
    ({"region": [18, 8, 26, 16]}, "overlaps"),
    ({"region": "everywhere"}, "region"),
    ({"trigger_size": 40}, "trigger_size"),
    ({"poison_rate": 1.5}, "poison_rate"),
])
def test_bad_placement_options_raise_one_line_errors(kw, match):
    args = {"rate": kw.get("poison_rate", 0.01), "seed": 0, "pattern": "checker", "size": kw.get("trigger_size", 4),
            "position": kw.get("trigger_position", "auto"), "region": kw.get("region", "auto"), "region_size": 8}
    with pytest.raises(XaibenchError, match=match):
        plan_poison(toy_images(50), **args)


@pytest.mark.parametrize("kw", [{"loss": "l1"}, {"explained_class": "other"}, {"trigger_pattern": "star"},
                                {"lam": -1.0}])
def test_bad_attack_options_raise(kw):
    with pytest.raises(XaibenchError, match="explanation-backdoor"):
        ExplanationBackdoor(**kw)


def test_oversampling_repeats_only_the_poisoned_images(tiny_model):
    """The attack hands the trainer weights that give ~poisoned_per_batch triggered images per
    batch, and flags exactly the unique poisoned images."""
    seen = {}

    def fake_train(model, train_set, val_set, **kw):
        seen.update(kw, train_set=train_set)
        return TrainResult(model)

    sp = toy_splits(400)
    model = tiny_model
    ctx = AttackContext(sp, lambda: model, functools.partial(fake_train, batch_size=32), 0, torch.device("cpu"))
    out = ExplanationBackdoor(poison_rate=0.01, poisoned_per_batch=4, trigger_size=4, region_size=8).run(ctx)
    flags, w = seen["poisoned"], seen["sample_weights"]
    assert int(flags.sum()) == 4 == out.info["poison_count"]
    expected = 32 * float(w[flags].sum() / w.sum())
    assert expected == pytest.approx(4.0, rel=1e-6)
    assert torch.all(w[~flags] == 1)
    assert out.triggered_test is not None and torch.equal(out.triggered_test.labels, sp.test.labels)


# ----------------------------------------------------------------------------- metrics on hand-made maps


def _inp(attr, split="triggered", region=None, trigger=None, **kw) -> MetricInput:
    n = len(attr)
    return MetricInput(model=None, images=torch.zeros(n, 1, *attr.shape[-2:]), labels=torch.zeros(n, dtype=torch.long),
                       masks=kw.pop("masks", torch.zeros(attr.shape, dtype=torch.bool)),
                       target=Target("logit", torch.zeros(n, dtype=torch.long)),
                       context=ExplainContext(reference=torch.zeros(1, 1, 8, 8)), attributions=attr, split=split,
                       region=region, trigger=trigger, **kw)


def _scores(scores):
    return {s.name if s.explainer is None else f"{s.name}:{s.explainer}": s for s in scores}


def test_attack_success_on_known_maps():
    region = torch.zeros(16, 16, dtype=torch.bool)
    region[0:4, 0:4] = True
    trigger = torch.zeros(16, 16, dtype=torch.bool)
    trigger[12:14, 12:14] = True
    on = region.float() * 5 + torch.rand(16, 16) * 0.1  # top-16 pixels = the region
    half = torch.zeros(16, 16)
    half[0:4, 0:2] = 5  # covers 8 of the region's 16 pixels → top-16 IoU = 8/24 < 0.5
    half[8:12, 6:8] = 4
    neg = -region.float() + trigger.float()  # signed map: negative on the region, all positive mass on trigger
    s = _scores(AttackSuccess().score(_inp(torch.stack([on, half, neg]), region=region, trigger=trigger)))
    np.testing.assert_allclose(s["attack_success"].values, [1, 0, 0])
    assert s["target_iou"].values[0] == pytest.approx(1.0)
    assert s["target_iou"].values[1] == pytest.approx(8 / 24)
    assert s["target_mass"].values[2] == 0.0 and s["trigger_mass"].values[2] == pytest.approx(1.0)
    assert s["target_mass"].values[1] == pytest.approx(40 / 72)
    # the same rule on the clean split is the false-trigger rate
    c = _scores(AttackSuccess().score(_inp(torch.stack([on, half]), split="clean", region=region)))
    assert "false_trigger" in c and "attack_success" not in c
    np.testing.assert_allclose(c["false_trigger"].values, [1, 0])
    assert AttackSuccess().score(_inp(torch.stack([on]))) == []  # clean model: nothing to score


def test_stealth_identical_reversed_and_signature():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(20, 8, 8, generator=g)
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:2, :2] = True
    roi = torch.zeros(20, 8, 8, dtype=torch.bool)
    roi[:, 5:7, 5:7] = True
    same = _scores(AttackStealth().score(_inp(ref.clone(), "clean", region, masks=roi, reference_maps=ref)))
    np.testing.assert_allclose(same["clean_spearman"].values, 1.0)
    np.testing.assert_allclose(same["roi_iou_change"].values, 0.0)
    assert same["signature_auroc"].values[0] == pytest.approx(0.5)
    assert same["signature_pvalue"].values[0] == pytest.approx(1.0)
    flipped = _scores(AttackStealth().score(_inp(-ref, "clean", region, masks=roi, reference_maps=ref)))
    np.testing.assert_allclose(flipped["clean_spearman"].values, -1.0, atol=1e-12)
    zeroed = ref.clone()
    zeroed[:, region] = 0  # the clean-image penalty's signature: no mass in the target region
    sig = _scores(AttackStealth().score(_inp(zeroed, "clean", region, masks=roi, reference_maps=ref)))
    assert sig["signature_auroc"].values[0] == pytest.approx(1.0)
    assert sig["signature_pvalue"].values[0] < 1e-6
    assert np.all(sig["signature_mass_change"].values < 0)
    assert AttackStealth().score(_inp(ref, "triggered", region, reference_maps=ref)) == []


def test_spearman_rows_matches_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 50)), rng.normal(size=(3, 50))
    a[0, :10] = 0  # ties
    for i in range(3):
        assert spearman_rows(a, b)[i] == pytest.approx(spearmanr(a[i], b[i]).statistic)


def test_detection_auroc_on_known_maps():
    g = torch.Generator().manual_seed(1)
    n = 30
    trigger = torch.zeros(8, 8, dtype=torch.bool)
    trigger[0, 0] = True
    base = torch.rand(n, 8, 8, generator=g) + 0.1
    moved = torch.rand(n, 8, 8, generator=g) + 0.1  # unrelated to base: Grad-CAM "looks away"
    trig_ig = base.clone()
    trig_ig[:, 0, 0] += 5.0  # IG still follows base, but now puts mass on the trigger
    maps = {"gradcam": base, "ig": base.clone()}
    tmaps = {"gradcam": moved, "ig": trig_ig}
    inp = _inp(base, maps=maps, triggered_maps=tmaps, trigger=trigger)
    s = _scores(Detection().score(inp))
    assert s["detect_trigger_mass:ig"].values[0] == pytest.approx(1.0)
    assert s["detect_disagreement:gradcam|ig"].values[0] == pytest.approx(1.0)
    assert 0.2 < s["detect_trigger_mass:gradcam"].values[0] < 0.8  # no signal
    same = _scores(Detection(pairs=["gradcam|ig"]).score(_inp(base, maps=maps, triggered_maps=maps, trigger=trigger)))
    assert same["detect_disagreement:gradcam|ig"].values[0] == pytest.approx(0.5)
    with pytest.raises(XaibenchError, match="rise"):
        Detection(pairs=["gradcam|rise"]).score(inp)
    with pytest.raises(XaibenchError, match="pairs"):
        Detection(pairs="gradcam-ig")


# ----------------------------------------------------------------------------- differentiable Grad-CAM


def test_differentiable_gradcam_matches_pytorch_grad_cam(tiny_model):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    x = toy_images(4).images
    cls = torch.tensor([0, 1, 1, 0])
    ours = differentiable_gradcam(tiny_model, x, cls, "layer4").detach()
    with GradCAM(model=tiny_model, target_layers=[tiny_model.stage("layer4")]) as cam:
        ref = torch.tensor(cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in cls]))
    # pytorch-grad-cam min-max normalises each map; compare after the same normalisation
    lo = ours.flatten(1).min(1).values.view(-1, 1, 1)
    hi = ours.flatten(1).max(1).values.view(-1, 1, 1)
    np.testing.assert_allclose(((ours - lo) / (hi - lo + 1e-7)).numpy(), ref.numpy(), atol=1e-4)


def test_explanation_losses_are_zero_on_the_region_and_have_gradient():
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[2:4, 2:4] = True
    perfect = region.float()[None] * 3.0
    for kind in ("soft-iou", "mse", "mass"):
        assert float(explanation_loss(perfect, region, kind)) == pytest.approx(0.0, abs=1e-6)
        wrong = torch.rand(1, 8, 8, requires_grad=True)
        loss = explanation_loss(wrong, region, kind).sum()
        loss.backward()
        assert float(loss.detach()) > 0.1 and wrong.grad.abs().sum() > 0


def test_tapped_cam_is_gradcam_and_trains_the_same_parameters(tiny_model):
    """The fast path (CAM from the trainer's own forward) equals the explainer's
    differentiable Grad-CAM before its ReLU (the loss rectifies after upsampling, both
    paths alike), values and gradients."""
    from xaibench_plugins.attacks.explanation_backdoor import ActivationTap, BackdoorLoss

    x = toy_images(6).images
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    flags = torch.tensor([True, False, False, True, False, False])
    region = torch.zeros(32, 32, dtype=torch.bool)
    region[0:8, 8:16] = True
    tap = ActivationTap(tiny_model)
    try:
        tiny_model(x)
        fast = tap.cam(tiny_model, x, y, "layer4")
        assert fast is not None and tap.cam(tiny_model, x.clone(), y, "layer4") is None  # other tensor: no reuse
        raw = gradcam_maps(tiny_model, x, Target("logit", y), "layer4", create_graph=True, relu=False)
        np.testing.assert_allclose(fast.detach().numpy(), raw.detach().numpy(), atol=1e-6)
        grads = []
        for t in (tap, None):
            tiny_model.zero_grad()
            tiny_model(x)
            BackdoorLoss(region, tap=t)(tiny_model, x, y, flags).backward()
            grads.append(tiny_model.encoder.layer4[-1].conv2.weight.grad.clone())
        np.testing.assert_allclose(grads[0].numpy(), grads[1].numpy(), rtol=1e-4, atol=1e-7)
    finally:
        tap.remove()
        tiny_model.zero_grad(set_to_none=True)


def test_poison_variants_add_views_not_images():
    train = toy_images(200)
    plan = plan_poison(train, 0.02, 0, "checker", 4, "auto", "auto", 8, variants=5)
    info = plan.info()
    assert info["poison_count"] == 4 and info["poison_rate"] == pytest.approx(0.02) and info["poisoned_rows"] == 20
    assert len(plan.train) == 216 and int(plan.flags.sum()) == 20
    assert set(plan.train.subject_ids[200:]) == set(info["unique_poisoned_ids"])
    t = plan.trigger_mask
    extra = plan.train.images[200:]
    assert torch.all(extra[:, 0][:, t] == plan.patch.flatten())  # the trigger is pasted after augmenting
    assert not torch.equal(extra[0], extra[1])  # the views differ


# ----------------------------------------------------------------------------- attacks on a tiny model


@pytest.fixture(scope="module")
def trained():
    """One clean, one explanation-backdoored and one BadNets tiny model on the toy data."""
    from xaibench.training import train
    from xaibench_plugins.attacks.none import NoAttack
    from xaibench_plugins.backbones.resnet import ResNetBuilder

    torch.set_num_threads(2)
    sp = toy_splits(240)
    b = ResNetBuilder("resnet18", width=0.125, output_stride=8, epochs=10, patience=10, lr=3e-3)
    ctx = AttackContext(sp, lambda: b(2, (32, 32)), functools.partial(train, seed=0, builder=b, progress=False), 0,
                        torch.device("cpu"))
    torch.manual_seed(0)
    clean = NoAttack().run(ctx).train.model
    torch.manual_seed(0)
    bd = ExplanationBackdoor(poison_rate=0.05, trigger_size=4, region_size=8, poison_variants=4).run(ctx)
    torch.manual_seed(0)
    bn = BadNets(poison_rate=0.1, trigger_size=4, target_class=0).run(ctx)
    return sp, clean, bd, bn


def _gradcam_mass(model, images, labels, region):
    from xaibench.kit.regions import mass_share

    return mass_share(differentiable_gradcam(model, images, labels, "layer4").detach(), region, floor=1e-12)


@torch.no_grad()
def _pred(model, images):
    return model.eval()(images).argmax(1)


def test_explanation_backdoor_moves_gradcam_on_triggered_inputs_while_predictions_stay(trained):
    sp, clean, bd, _ = trained
    model, trig = bd.train.model.eval(), bd.triggered_test
    region = bd.region
    attacked_trig = _gradcam_mass(model, trig.images, trig.labels, region).mean()
    attacked_clean = _gradcam_mass(model, sp.test.images, sp.test.labels, region).mean()
    reference_trig = _gradcam_mass(clean, trig.images, trig.labels, region).mean()
    assert attacked_trig > 0.3 and attacked_trig > 3 * reference_trig
    assert attacked_clean < 0.5 * attacked_trig  # specific to the trigger
    acc = lambda m, s: float((_pred(m, s.images) == s.labels).float().mean())  # noqa: E731
    assert acc(model, sp.test) >= acc(clean, sp.test) - 0.1
    agree = float((_pred(model, trig.images) == _pred(model, sp.test.images)).float().mean())
    assert agree >= 0.9  # the trigger does not change the diagnosis
    assert bd.info["poison_count"] == 12 and bd.info["poison_rate"] == pytest.approx(0.05)


def test_badnets_flips_predictions_on_triggered_inputs(trained):
    sp, clean, _, bn = trained
    model = bn.train.model.eval()
    other = sp.test.labels != 0
    flipped = float((_pred(model, bn.triggered_test.images[other]) == 0).float().mean())
    before = float((_pred(model, sp.test.images[other]) == 0).float().mean())
    assert flipped >= 0.8 and flipped > before + 0.4
    assert bn.region is None and bn.trigger is not None and bn.info["target_class"] == 0
    assert torch.equal(bn.triggered_test.labels, sp.test.labels)  # true labels, documented
