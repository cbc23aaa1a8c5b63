"""Attention rollout (Abnar & Zuidema, 2020) for vision transformers. 2-D only (the ViT backbones are).

Map: per block, the attention ``A`` averaged over heads, mixed with the residual as
``0.5·A + 0.5·I`` and row-normalised; the rollout is their product from the first block to
the last. With no class token (the ``vit-*`` backbones) the map is the **mean over query
tokens** of the rollout to each patch token; with a class token, its row. Reshaped to the
patch grid and upsampled bilinearly. Non-negative, sums to 1 over the grid; **class-agnostic**
(the target is ignored: rollout explains where attention flows, not a logit).

The attention is recomputed from each timm ``Attention`` module's input (its ``qkv``, q/k
norms and scale; tested equal to timm's own softmax), because timm's fused kernel never
materialises it. A model without such modules (a ResNet) gets a one-line error.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from timm.models.vision_transformer import Attention

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images, spatial_shape
from xaibench.kit.options import option_factory
from xaibench.kit.spatial import empty_maps, upsample

WHO = "explainer attention-rollout"


def attention_of(mod: Attention, x: torch.Tensor) -> torch.Tensor:
    """Softmax attention ``N×heads×L×L`` of ``mod`` on its input tokens ``x`` (``N×L×C``)."""
    n, length, _ = x.shape
    qkv = mod.qkv(x).reshape(n, length, 3, mod.num_heads, mod.head_dim).permute(2, 0, 3, 1, 4)
    q, k = mod.q_norm(qkv[0]), mod.k_norm(qkv[1])
    return ((q * mod.scale) @ k.transpose(-2, -1)).softmax(dim=-1)


def rollout(attentions: list[torch.Tensor]) -> torch.Tensor:
    """``N×L×L`` product of row-normalised ``0.5·mean_heads(A) + 0.5·I``, first block first."""
    out = None
    for a in attentions:
        m = a.mean(dim=1)
        m = 0.5 * m + 0.5 * torch.eye(m.shape[-1], dtype=m.dtype, device=m.device)
        m = m / m.sum(dim=-1, keepdim=True)
        out = m if out is None else m @ out
    return out


def _attention_modules(model: Classifier) -> list[Attention]:
    mods = [m for m in model.modules() if isinstance(m, Attention)]
    if not mods:
        raise XaibenchError(f"{WHO}: the model has no timm attention blocks ({type(model.encoder).__name__}); "
                            "use a transformer backbone (vit-tiny) or a gradient explainer")
    return mods


@dataclass(frozen=True)
class AttentionRollout:
    """Rollout of head-averaged attention with the residual (no options)."""

    needs_backbone = "vit-tiny"  # the conformance test runs it on this backbone (a ResNet has no attention)

    def rollout_maps(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        """``N×L×L`` rollout of ``x`` (``N×1×H×W``)."""
        mods = _attention_modules(model)
        atts: list[torch.Tensor] = []
        hooks = [m.register_forward_hook(lambda mod, args, out: atts.append(attention_of(mod, args[0])))
                 for m in mods]
        try:
            with torch.no_grad():
                model(x)
        finally:
            for h in hooks:
                h.remove()
        return rollout(atts)

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, WHO)
        _attention_modules(model)  # fails on a model without attention before anything else
        enc = model.encoder
        prefix = int(getattr(enc, "num_prefix_tokens", 0))
        grid = tuple(enc.patch_embed.grid_size)
        out = empty_maps(x)
        for sl in chunks(x.shape[0], context.chunk_size):
            r = self.rollout_maps(model, x[sl])
            to_patch = r[:, 0, prefix:] if prefix else r.mean(dim=1)
            out[sl] = upsample(to_patch.reshape(-1, *grid), spatial_shape(x)).float()
        return out


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("attention-rollout", "attention rollout of a ViT (Abnar & Zuidema 2020; class-agnostic)",
                          option_factory(WHO, AttentionRollout))
