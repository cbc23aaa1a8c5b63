"""Data randomisation (Adebayo et al.'s second test): the ``permuted-labels`` attack
shuffles the training labels by subject, and ``data-randomization`` compares maps of two
models: an explainer that ignores the model scores 1, gradients of a trained vs a freshly
initialised model score lower."""
from __future__ import annotations


import numpy as np
import pytest
import torch

from xaibench.contracts import AttackContext, ExplainContext, MetricInput, Target, TrainResult
from xaibench.errors import XaibenchError
from xaibench.training import train
from xaibench_plugins.attacks.permuted_labels import PermutedLabels, permute_labels
from xaibench_plugins.backbones.resnet import ResNetBuilder
from xaibench_plugins.metrics.data_randomization import DataRandomization

SIZE = 32


@pytest.fixture(scope="module")
def toy(registry):
    return registry.get("dataset", "toy-blobs").factory(n=64, size=SIZE).load(seed=0, cache_dir=None)


def test_permuted_labels_shuffle_subjects_and_train_on_them(toy):
    tr = toy.train
    ids = np.array([f"s{i // 2}" for i in range(len(tr))])  # two slices per subject, one label each
    labels = torch.as_tensor(np.repeat(np.arange(len(tr) // 2 + 1) % 2, 2)[:len(tr)])
    from dataclasses import replace

    tr = replace(tr, labels=labels, subject_ids=tuple(ids))
    out, changed = permute_labels(tr, 1.0, seed=3)
    assert sorted(out.labels.tolist()) == sorted(labels.tolist())  # the same labels, reassigned
    for s in set(ids):
        assert len(set(out.labels[torch.as_tensor(ids == s)].tolist())) == 1  # a subject keeps one label
    assert changed == int((out.labels != labels).sum()) and changed >= len(tr) // 4
    assert torch.equal(permute_labels(tr, 1.0, seed=3)[0].labels, out.labels)
    half = permute_labels(tr, 0.25, seed=3)[1]
    assert half <= len(tr) // 4 + 1
    seen = {}

    def fake_train(model, train_set, val_set, **kw):
        seen.update(train=train_set, val=val_set, kw=kw)
        return TrainResult(model=model)

    ctx = AttackContext(splits=replace(toy, train=tr), build_model=lambda: ResNetBuilder(
        "resnet18", width=0.125)(2, (SIZE, SIZE)), train=fake_train, seed=0, device=torch.device("cpu"))
    result = PermutedLabels(epochs=7).run(ctx)
    assert result.triggered_test is None and result.info["labels_changed"] == seen["train"].labels.ne(labels).sum()
    assert seen["val"] is seen["train"] and seen["kw"] == {"epochs": 7}
    with pytest.raises(XaibenchError, match="fraction"):
        PermutedLabels(fraction=0)


def _inp(x, y, a, ref, split="clean"):
    return MetricInput(model=None, images=x, labels=y, masks=torch.zeros(len(x), SIZE, SIZE, dtype=torch.bool),
                       target=Target("logit", y), context=ExplainContext(reference=x[:2], seed=0, chunk_size=16),
                       attributions=a, reference_maps=ref, split=split)


def test_model_blind_maps_score_one_and_gradients_of_an_untrained_model_score_lower(registry, toy):
    builder = ResNetBuilder("resnet18", width=0.125, output_stride=8, epochs=4)
    torch.manual_seed(0)
    fresh = builder(2, (SIZE, SIZE)).eval()
    torch.manual_seed(0)
    trained = train(builder(2, (SIZE, SIZE)), toy.train, toy.val, seed=0, builder=builder, progress=False).model.eval()
    x, y = toy.test.images[:16], toy.test.labels[:16]
    tgt = Target("logit", y)
    ctx = ExplainContext(reference=toy.train.images[:8], seed=0, chunk_size=16)
    maps = {}
    for name in ("edge", "saliency"):
        ex = registry.get("explainer", name).factory()
        maps[name] = [ex.explain(m, x, tgt, ctx).detach() for m in (fresh, trained)]
    edge = DataRandomization().score(_inp(x, y, *maps["edge"]))[0]
    np.testing.assert_allclose(edge.values, 1.0, atol=1e-9)
    grad = DataRandomization().score(_inp(x, y, *maps["saliency"]))[0]
    assert grad.values.mean() < 0.8 and grad.extra["n_nan"] == 0 and grad.chance == 0.0
    assert np.isfinite(grad.extra["baseline"])
    ssim = DataRandomization(similarity="ssim").score(_inp(x, y, *maps["saliency"]))[0]
    assert ssim.values.mean() < DataRandomization(similarity="ssim").score(_inp(x, y, *maps["edge"]))[0].values.mean()
    # only an attacked model's clean split has reference maps
    assert DataRandomization().score(_inp(x, y, maps["edge"][0], None)) == []
    assert DataRandomization().score(_inp(x, y, *maps["edge"], split="triggered")) == []
