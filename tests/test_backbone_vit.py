"""The ViT backbones and attention rollout: token maps on the patch grid, CAMs on them,
rollout against a hand computation from timm's own attention, and a short training run."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xaibench.contracts import ExplainContext, ImageSet, Target
from xaibench.errors import XaibenchError
from xaibench.training import train
from xaibench_plugins.backbones.resnet import ResNetBuilder
from xaibench_plugins.backbones.vit import ViTBuilder
from xaibench_plugins.explainers.attention_rollout import AttentionRollout
from xaibench_plugins.explainers.gradcam import GradCAM

CTX = ExplainContext(reference=None, seed=0, chunk_size=8)


def _vit(depth=2, size=64):
    torch.manual_seed(0)
    return ViTBuilder("vit-tiny", depth=depth, width=0.25)(2, (size, size)).eval()


def test_forward_and_stages_are_patch_grids():
    m = _vit(depth=3)
    x = torch.rand(2, 1, 64, 64)
    logits, emb = m.forward_all(x)
    assert logits.shape == (2, 2) and emb.shape == (2, m.head.in_features)
    assert m.stage_names == ("block1", "block2", "block3", "norm")
    acts = {}
    hooks = [m.stage(n).register_forward_hook(lambda mod, a, o, n=n: acts.__setitem__(n, o)) for n in m.stage_names]
    m(x)
    for h in hooks:
        h.remove()
    assert all(a.shape == (2, m.head.in_features, 8, 8) for a in acts.values())
    assert torch.allclose(acts["norm"].mean(dim=(2, 3)), emb, atol=1e-6)  # GAP of the token map is the embedding


def test_patch_size_fits_the_input_and_rejects_a_non_divisor():
    assert ViTBuilder("vit-tiny", depth=1)(2, (32, 32)).encoder.patch_embed.grid_size == (8, 8)
    with pytest.raises(XaibenchError, match="patch_size"):
        ViTBuilder("vit-tiny", depth=1, patch_size=7)(2, (64, 64))


@pytest.mark.parametrize("layer", ["block1", "norm"])
def test_gradcam_runs_on_token_maps(layer):
    m = _vit()
    x = torch.rand(3, 1, 64, 64)
    cam = GradCAM(layer=layer).explain(m, x, Target("logit", torch.tensor([0, 1, 0])), CTX)
    assert cam.shape == (3, 64, 64) and torch.isfinite(cam).all() and cam.abs().sum() > 0


def _timm_attentions(m, x):
    """timm's own softmax (non-fused path), read from attn_drop's output."""
    got = []
    mods = [b.attn for b in m.encoder.blocks]
    for a in mods:
        a.fused_attn = False
    hooks = [a.attn_drop.register_forward_hook(lambda mod, i, o: got.append(o)) for a in mods]
    with torch.no_grad():
        m(x)
    for h in hooks:
        h.remove()
    for a in mods:
        a.fused_attn = True
    return got


def test_rollout_equals_hand_computation_on_two_blocks():
    m = _vit(depth=2)
    x = torch.rand(2, 1, 64, 64)
    r = AttentionRollout().rollout_maps(m, x)
    assert torch.allclose(r.sum(-1), torch.ones(2, 64), atol=1e-5) and (r >= 0).all()
    a1, a2 = _timm_attentions(m, x)
    eye = torch.eye(64)
    s1, s2 = 0.5 * a1.mean(1) + 0.5 * eye, 0.5 * a2.mean(1) + 0.5 * eye
    s1, s2 = s1 / s1.sum(-1, keepdim=True), s2 / s2.sum(-1, keepdim=True)
    hand = (s2 @ s1).mean(1).reshape(2, 1, 8, 8)
    want = F.interpolate(hand, size=(64, 64), mode="bilinear", align_corners=False)[:, 0]
    got = AttentionRollout().explain(m, x, Target("logit", torch.tensor([0, 1])), CTX)
    assert torch.allclose(got, want, atol=1e-5) and (got >= 0).all()
    assert not torch.allclose(got[0], got[0].mean().expand_as(got[0]))  # not a flat map


def test_rollout_on_a_resnet_is_one_line():
    m = ResNetBuilder("resnet18", width=0.125)(2, (32, 32)).eval()
    with pytest.raises(XaibenchError, match="no timm attention") as err:
        AttentionRollout().explain(m, torch.rand(1, 1, 32, 32), Target("logit", torch.tensor([0])), CTX)
    assert "\n" not in str(err.value)


def test_two_epochs_change_the_weights():
    b = ViTBuilder("vit-tiny", depth=2, width=0.25, epochs=2, batch_size=8)
    torch.manual_seed(0)
    m = b(2, (32, 32))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    g = torch.Generator().manual_seed(0)
    imgs, labels = torch.rand(24, 1, 32, 32, generator=g), torch.arange(24) % 2
    masks = torch.zeros(24, 32, 32, dtype=torch.bool)
    data = ImageSet(imgs, labels, masks)
    train(m, data, data, seed=0, builder=b, progress=False)
    changed = [k for k, v in m.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("encoder.blocks.0.attn.qkv") for k in changed) and "head.weight" in changed
