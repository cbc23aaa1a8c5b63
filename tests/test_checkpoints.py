"""Encoder checkpoints in the layouts users have (torchvision, timm, nn.Sequential children,
lightly / solo-learn / reference SimCLR / MoCo / BYOL), loaded through the resnet backbone's
``weights`` option, and probe / partial training runs that start from them."""
from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from xaibench.cli import main
from xaibench.errors import XaibenchError
from xaibench_plugins.backbones.resnet import ResNetBuilder

W = 0.125  # resnet50 at 1/8 width: 318 encoder tensors, a few hundred kB


def _encoder(seed: int, arch: str = "resnet50", width: float = W) -> nn.Module:
    """A timm encoder whose every tensor is random (so a load is visible in every tensor)."""
    torch.manual_seed(seed)
    enc = ResNetBuilder(arch, width=width)(2, (32, 32)).encoder
    with torch.no_grad():
        for k, t in enc.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in k else torch.randn_like(t))
    return enc


def _loaded(path: Path, arch: str = "resnet50", **options) -> dict[str, torch.Tensor]:
    return ResNetBuilder(arch, width=W, weights=str(path), **options)(2, (32, 32)).encoder.state_dict()


def _assert_same(loaded: dict, source: nn.Module) -> None:
    ref = source.state_dict()
    assert set(loaded) == set(ref)
    for k, v in ref.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(loaded[k], v), k


def _sequential(enc: nn.Module) -> nn.Sequential:
    """The research notes' encoder: ResNet children without the classifier, ending in pooling."""
    return nn.Sequential(*list(enc.children())[:-1])


def _prefixed(state: dict, prefix: str) -> dict:
    return {prefix + k: v for k, v in state.items()}


def _head(dim: int = 16) -> nn.Module:
    return nn.Sequential(nn.Linear(256, dim), nn.ReLU(), nn.Linear(dim, 8))


def test_torchvision_state_dict_loads_with_its_classifier_dropped(tmp_path):
    tv = pytest.importorskip("torchvision.models")
    torch.manual_seed(3)
    net = tv.resnet18(num_classes=1000)
    torch.save(net.state_dict(), tmp_path / "tv.pt")
    loaded = ResNetBuilder("resnet18", weights=str(tmp_path / "tv.pt"))(2, (32, 32)).encoder.state_dict()
    ref = net.state_dict()
    assert "fc.weight" not in loaded
    for k, v in loaded.items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, ref[k]), k


def test_timm_state_dict_in_a_ddp_training_checkpoint(tmp_path):
    enc = _encoder(1)
    state = {"module." + k: v for k, v in enc.state_dict().items()}
    state["module.fc.weight"] = torch.randn(10, 256)
    torch.save({"epoch": 90, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}},
               tmp_path / "timm.pt")
    _assert_same(_loaded(tmp_path / "timm.pt"), enc)


def test_sequential_children_state_dict_maps_numeric_keys_onto_named_layers(tmp_path):
    enc = _encoder(2)
    seq = _sequential(enc)
    keys = list(seq.state_dict())
    assert keys[0] == "0.weight" and "4.0.conv1.weight" in keys
    torch.save(seq.state_dict(), tmp_path / "seq.pt")
    _assert_same(_loaded(tmp_path / "seq.pt"), enc)


class _SimCLRNotes(nn.Module):
    """The research notes' SimCLR module: ``encoder.0.0.weight`` keys, a projector."""

    def __init__(self, enc: nn.Module) -> None:
        super().__init__()
        self.encoder = nn.Sequential(_sequential(enc), nn.Flatten())
        self.projector = _head()


def test_simclr_module_with_nested_sequential_encoder(tmp_path):
    enc = _encoder(3)
    model = _SimCLRNotes(enc)
    assert "encoder.0.0.weight" in model.state_dict()
    torch.save(model.state_dict(), tmp_path / "simclr.pt")
    _assert_same(_loaded(tmp_path / "simclr.pt"), enc)


def test_lightly_moco_takes_the_online_backbone_not_the_momentum_copy(tmp_path):
    enc, slow = _encoder(4), _encoder(5)
    state = {**_prefixed(_sequential(enc).state_dict(), "backbone."),
             **_prefixed(_head().state_dict(), "projection_head.layers."),
             **_prefixed(_sequential(slow).state_dict(), "backbone_momentum."),
             **_prefixed(_head().state_dict(), "projection_head_momentum.layers.")}
    torch.save(state, tmp_path / "lightly.pt")
    _assert_same(_loaded(tmp_path / "lightly.pt"), enc)


def test_solo_learn_lightning_checkpoint_with_hyperparameters(tmp_path):
    enc, slow = _encoder(6), _encoder(7)
    state = {**_prefixed(enc.state_dict(), "backbone."), **_prefixed(_head().state_dict(), "projector."),
             **_prefixed(slow.state_dict(), "momentum_backbone."), "classifier.weight": torch.randn(10, 256),
             "prototypes.weight": torch.randn(30, 8)}
    torch.save({"epoch": 399, "global_step": 1, "state_dict": state,
                "hyper_parameters": {"method": "byol", "backbone": {"name": "resnet50"}}}, tmp_path / "solo.ckpt")
    _assert_same(_loaded(tmp_path / "solo.ckpt"), enc)


def test_reference_simclr_checkpoint_with_argparse_namespace(tmp_path):
    enc = _encoder(8)
    state = {**_prefixed(enc.state_dict(), "backbone."), **_prefixed(_head().state_dict(), "backbone.fc.")}
    args = argparse.Namespace(arch="resnet50", lr=3e-4, out_dim=128)
    torch.save({"epoch": 100, "arch": "resnet50", "args": args, "state_dict": state}, tmp_path / "ref.pth.tar")
    _assert_same(_loaded(tmp_path / "ref.pth.tar"), enc)


def test_moco_and_byol_layouts(tmp_path):
    q, k = _encoder(9), _encoder(10)
    moco = {**_prefixed(q.state_dict(), "module.encoder_q."), **_prefixed(k.state_dict(), "module.encoder_k."),
            "module.queue": torch.randn(128, 64)}
    torch.save({"arch": "resnet50", "state_dict": moco}, tmp_path / "moco.pth.tar")
    _assert_same(_loaded(tmp_path / "moco.pth.tar"), q)
    byol = {"online": {"net": q.state_dict(), "projector": _head().state_dict()},
            "target": {"net": k.state_dict()}, "predictor": _head().state_dict()}
    torch.save(byol, tmp_path / "byol.pt")
    _assert_same(_loaded(tmp_path / "byol.pt"), q)


def test_key_map_renames_an_unknown_layout_and_its_absence_names_the_option(tmp_path):
    enc = _encoder(11)
    names = {"conv1.": "stem.conv.", "bn1.": "stem.norm.", "layer1.": "stages.0.", "layer2.": "stages.1.",
             "layer3.": "stages.2.", "layer4.": "stages.3."}
    state = {}
    for key, v in enc.state_dict().items():
        old = next(p for p in names if key.startswith(p))
        state["trunk." + names[old] + key[len(old):]] = v
    torch.save(state, tmp_path / "odd.pt")
    with pytest.raises(XaibenchError) as err:
        _loaded(tmp_path / "odd.pt")
    msg = str(err.value)
    assert "\n" not in msg and "key_map" in msg
    assert "conv1.weight" in msg and "trunk.stem.conv.weight" in msg  # first unmatched on both sides
    key_map = {"trunk." + new: old for old, new in names.items()}
    _assert_same(_loaded(tmp_path / "odd.pt", key_map=key_map), enc)


def test_pickled_module_is_refused_in_one_line_that_says_how_to_resave(tmp_path):
    torch.save(_SimCLRNotes(_encoder(12)), tmp_path / "module.pt")
    with pytest.raises(XaibenchError) as err:
        _loaded(tmp_path / "module.pt")
    msg = str(err.value)
    assert "\n" not in msg and "torch.save(model.state_dict(), path)" in msg and len(msg) < 400


def test_other_width_or_arch_is_a_one_line_mismatch(tmp_path):
    torch.save(_encoder(13, width=0.25).state_dict(), tmp_path / "wide.pt")
    with pytest.raises(XaibenchError, match="width") as err:
        _loaded(tmp_path / "wide.pt")
    assert "\n" not in str(err.value)
    torch.save(_encoder(14, arch="resnet18").state_dict(), tmp_path / "r18.pt")
    with pytest.raises(XaibenchError, match="not found"):
        _loaded(tmp_path / "r18.pt")
    with pytest.raises(XaibenchError, match="does not exist"):
        _loaded(tmp_path / "nope.pt")
    with pytest.raises(XaibenchError, match="key_map must be a table"):
        ResNetBuilder("resnet50", key_map=["a"])


# --------------------------------------------------------------------------- training runs

SUITE = """
name = "{name}"
seeds = [0]
n_eval = 8
attacks = ["none"]
explainers = ["random"]
metrics = ["accuracy"]

[[datasets]]
name = "synthetic-hippocampus"
options = {{ n_subjects = 24, image_size = 32 }}

[[backbones]]
name = "resnet18"
options = {{ width = 0.125, output_stride = 8, epochs = 2, mode = "{mode}", weights = "{weights}" }}
"""


def _trained(tmp_path: Path, mode: str) -> tuple[dict, dict, dict]:
    enc = _encoder(20, arch="resnet18")
    weights = tmp_path / "encoder.pt"
    torch.save(_sequential(enc).state_dict(), weights)  # the research notes' layout
    suite = tmp_path / f"{mode}.toml"
    suite.write_text(SUITE.format(name=mode, mode=mode, weights=weights))
    out = tmp_path / "out"
    assert main(["run", "--suite", str(suite), "--out", str(out), "--device", "cpu", "--quiet",
                 "--no-leaderboard"]) == 0
    (model,) = (out / "cache" / "models").glob("*.pt")
    state = torch.load(model, weights_only=True)["state_dict"]
    torch.manual_seed(0)
    init = ResNetBuilder("resnet18", width=0.125, output_stride=8, mode=mode, weights=str(weights))(2, (32, 32))
    return state, {k: v for k, v in init.state_dict().items()}, enc.state_dict()


@pytest.mark.parametrize("mode", ["probe", "partial"])
def test_training_from_a_checkpoint_keeps_the_frozen_encoder(tmp_path, mode):
    state, init, source = _trained(tmp_path, mode)
    frozen = [k for k in source if not (mode == "partial" and k.startswith("layer4."))]
    for k in frozen:  # parameters and BatchNorm statistics of the frozen part: untouched
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(state[f"encoder.{k}"], source[k]), k
    assert not torch.equal(state["head.weight"], init["head.weight"])  # the head learned
    l4 = [k for k in source if k.startswith("layer4.") and k.endswith("conv1.weight")]
    changed = any(not torch.equal(state[f"encoder.{k}"], source[k]) for k in l4)
    assert changed == (mode == "partial")
