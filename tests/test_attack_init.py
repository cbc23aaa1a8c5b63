"""Attacks that fine-tune the victim's clean model (``init = "clean"``): they start from a
copy of the clean model of the same seed, which is trained once, cached, and never altered."""
from __future__ import annotations

import functools

import pytest
import torch

from xaibench.cells import RunConfig
from xaibench.contracts import AttackContext, TrainResult
from xaibench.errors import XaibenchError
from xaibench.runner import run_local
from xaibench.suite import parse
from xaibench_plugins.attacks.badnets import BadNets
from xaibench_plugins.attacks.explanation_backdoor import ExplanationBackdoor

from .conftest import TOY_PLUGIN
from .test_attacks import toy_splits


def _ctx(clean, seen):
    def fake_train(model, train_set, val_set, **kw):
        seen.update(kw, model=model)
        return TrainResult(model)

    from xaibench_plugins.backbones.resnet import ResNetBuilder

    fresh = ResNetBuilder("resnet18", width=0.125, output_stride=8)(2, (32, 32))
    return AttackContext(toy_splits(200), lambda: fresh, functools.partial(fake_train, batch_size=32), 0,
                         torch.device("cpu"), clean_model=clean), fresh


@pytest.mark.parametrize("make", [lambda **kw: ExplanationBackdoor(trigger_size=4, region_size=8, **kw),
                                  lambda **kw: BadNets(trigger_size=4, **kw)])
def test_init_chooses_the_starting_model_and_passes_epochs_and_lr(make, tiny_model):
    seen: dict = {}
    ctx, fresh = _ctx(lambda: tiny_model, seen)
    make(init="scratch").run(ctx)
    assert seen["model"] is fresh and "lr" not in seen
    out = make(init="clean", epochs=3, lr=1e-4).run(ctx)
    assert seen["model"] is tiny_model and seen["epochs"] == 3 and seen["lr"] == 1e-4
    assert out.info["init"] == "clean"


def test_init_clean_without_a_clean_model_and_unknown_init_are_one_line_errors(tiny_model):
    ctx, _ = _ctx(None, {})
    with pytest.raises(XaibenchError, match="init = 'clean' needs the clean model"):
        BadNets(init="clean", trigger_size=4).run(ctx)
    with pytest.raises(XaibenchError, match="init 'warm' is not one of scratch, clean"):
        ExplanationBackdoor(init="warm")


def test_runner_fine_tunes_a_copy_of_the_cached_clean_model(tmp_path):
    """With a learning rate of ~0 the fine-tuned model *is* the clean one; the clean model is
    trained once (two model files: clean and attacked) and its cache is left unchanged."""
    suite = {"name": "init", "seeds": [0], "n_eval": 8, "datasets": ["toy-blobs"], "explainers": ["toy-grad"],
             "metrics": ["accuracy"],
             "attacks": ["none", {"name": "badnets", "options": {"init": "clean", "epochs": 1, "lr": 1e-12,
                                                                  "poison_rate": 0.1, "trigger_size": 4}}],
             "backbones": [{"name": "resnet18", "options": {"width": 0.125, "output_stride": 8, "epochs": 2}}]}
    cfg = RunConfig(parse(suite, "test"), tmp_path / "out", (str(TOY_PLUGIN),), "cpu", progress=False)
    res = run_local(cfg)
    assert not res.failed
    files = sorted((cfg.out / "cache" / "models").glob("*.pt"))
    assert len(files) == 2
    states = [torch.load(f, weights_only=True) for f in files]
    attacked = next(s for s in states if '"init": "clean"' in s["info"])
    clean = next(s for s in states if s is not attacked)
    for k, v in clean["state_dict"].items():
        if v.is_floating_point() and "running" not in k:
            torch.testing.assert_close(attacked["state_dict"][k], v, rtol=0, atol=1e-6, msg=k)
