"""``xaibench pretrain``: the SimCLR loss against its definition, the augmentations, the
content-hash cache, and a probe backbone that loads the result."""
from __future__ import annotations

import math

import pytest
import torch

from xaibench import pretrain as pt
from xaibench.cli import main
from xaibench_plugins.backbones.resnet import ResNetBuilder


def _nt_xent_by_hand(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    n, b, total = len(z), len(z1), 0.0
    for i in range(n):
        j = (i + b) % n
        num = math.exp(float(z[i] @ z[j]) / t)
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(n) if k != i)
        total -= math.log(num / den)
    return total / n


def test_nt_xent_matches_the_definition():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    assert pt.nt_xent(z1, z2, 0.3).item() == pytest.approx(_nt_xent_by_hand(z1, z2, 0.3), rel=1e-5)
    same = pt.nt_xent(z1, z1 + 1e-4, 0.05).item()
    assert same < pt.nt_xent(z1, z2, 0.05).item()  # matching views: lower loss


def test_augment_is_seeded_in_range_and_never_flips_left_right():
    x = torch.zeros(4, 1, 32, 32)
    x[:, :, 8:24, 2:10] = 0.8  # bright on the image's left only
    a = pt.augment(x, torch.Generator().manual_seed(1))
    b = pt.augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == x.shape and a.min() >= 0 and a.max() <= 1
    assert not torch.equal(a, pt.augment(x, torch.Generator().manual_seed(2)))
    assert (a[..., :16].mean((1, 2, 3)) > a[..., 16:].mean((1, 2, 3)) + 0.1).all()


SUITE = """
name = "pt"
seeds = [0]
attacks = ["none"]
explainers = ["random"]
metrics = ["accuracy"]

[[datasets]]
name = "synthetic-hippocampus"
options = { n_subjects = 24, image_size = 32 }

[[backbones]]
name = "resnet18"
options = { width = 0.125, output_stride = 8, epochs = 2 }
"""


def test_pretrain_writes_weights_a_probe_loads_and_caches_them(tmp_path, monkeypatch, capsys):
    suite = tmp_path / "pt.toml"
    suite.write_text(SUITE)
    argv = ["pretrain", "--suite", str(suite), "--epochs", "1", "--batch-size", "8", "--cache-dir",
            str(tmp_path / "cache"), "--out", str(tmp_path / "enc.pt"), "--device", "cpu", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "trained" in out and 'mode = "probe"' in out
    torch.manual_seed(0)
    fresh = ResNetBuilder("resnet18", width=0.125, output_stride=8)(2, (32, 32)).encoder.state_dict()
    probe = ResNetBuilder("resnet18", width=0.125, output_stride=8, mode="probe", weights=str(tmp_path / "enc.pt"))
    loaded = probe(2, (32, 32)).encoder.state_dict()
    saved = torch.load(tmp_path / "enc.pt", weights_only=True)
    assert all(torch.equal(loaded[k], v) for k, v in saved.items() if not k.endswith("num_batches_tracked"))
    assert not torch.equal(loaded["layer1.0.conv1.weight"], fresh["layer1.0.conv1.weight"])

    def no_training(*a, **k):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(pt, "train_simclr", no_training)
    assert main(argv) == 0
    assert "found in the cache" in capsys.readouterr().out
    with pytest.raises(AssertionError, match="cache was not used"):
        main(argv[:3] + ["--epochs", "2"] + argv[5:])
