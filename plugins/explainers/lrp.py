"""Layer-wise Relevance Propagation (Bach et al., 2015) through zennit.

The model is copied and canonised for LRP: BatchNorm merged into the preceding convolution,
the residual additions of timm ResNet blocks made explicit ``Sum`` modules (zennit's own
``ResNetCanonizer`` only recognises torchvision blocks, hence :class:`TimmResNetCanonizer`),
global average pooling as an ``AdaptiveAvgPool2d`` module (``AdaptiveAvgPool3d`` on volumes; zennit's
rules cover ``Conv3d`` and ``BatchNorm3d`` alike) and a linear score head (the head's
row for a ``logit`` target, the row difference for ``margin``, ``±direction`` for
``group-direction``). Relevance starts as the explained score of the image's class and is
propagated with a composite (``composite``): ``epsilon-plus-flat`` (default: ε for the head,
z⁺ for convolutions, flat for the first layer), ``epsilon-gamma-box`` (γ, z^B with the
[0, 1] intensity box), ``epsilon-alpha2-beta1``.

Relevance is computed at the model's normalised 3-channel input (the three channels are
copies of the grayscale image) and **summed over the channels**: that is the relevance of
the pixel. Signed: positive = evidence for the target. Conservation: the map sums to the
score minus what the head bias and ε absorb (tested: within 2% of score − bias for the
default composite). The caller's model is never modified (canonizers act on a copy).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from zennit.attribution import Gradient
from zennit.canonizers import AttributeCanonizer, CompositeCanonizer, SequentialMergeBatchNorm
from zennit.composites import EpsilonAlpha2Beta1, EpsilonGammaBox, EpsilonPlusFlat
from zennit.layer import Sum

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps
from xaibench.kit.targets import score_head


COMPOSITES = ("epsilon-plus-flat", "epsilon-gamma-box", "epsilon-alpha2-beta1")


class TimmBlockCanonizer(AttributeCanonizer):
    """Give timm ``BasicBlock``/``Bottleneck`` an explicit ``Sum`` for the residual addition."""

    def __init__(self) -> None:
        super().__init__(self._attribute_map)

    @classmethod
    def _attribute_map(cls, name: str, module: torch.nn.Module):
        kind = type(module).__name__
        if kind in ("BasicBlock", "Bottleneck") and hasattr(module, "act2") and type(module).__module__.startswith("timm"):
            return {"forward": (cls._bottleneck if kind == "Bottleneck" else cls._basic).__get__(module),
                    "canonizer_sum": Sum()}
        return None

    @staticmethod
    def _basic(self, x: torch.Tensor) -> torch.Tensor:
        out = self.aa(self.act1(self.drop_block(self.bn1(self.conv1(x)))))
        out = self.bn2(self.conv2(out))
        if self.se is not None:
            out = self.se(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.act2(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))

    @staticmethod
    def _bottleneck(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act1(self.bn1(self.conv1(x)))
        out = self.aa(self.act2(self.drop_block(self.bn2(self.conv2(out)))))
        out = self.bn3(self.conv3(out))
        if self.se is not None:
            out = self.se(out)
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.act3(self.canonizer_sum(torch.stack([shortcut, out], dim=-1)))


class TimmResNetCanonizer(CompositeCanonizer):
    """BatchNorm merging and explicit residual sums for timm ResNets (zennit's leaf-order
    merge finds every conv → BatchNorm pair, since timm registers them in forward order)."""

    def __init__(self) -> None:
        super().__init__((SequentialMergeBatchNorm(), TimmBlockCanonizer()))


class LRPNet(torch.nn.Module):
    """encoder → AdaptiveAvgPool2d (3d for volumes) → flatten → linear score head, on the
    normalised input."""

    def __init__(self, model: Classifier, target: Target, spatial_dims: int = 2) -> None:
        super().__init__()
        self.encoder = copy.deepcopy(model.encoder)
        self.pool = torch.nn.AdaptiveAvgPool3d(1) if spatial_dims == 3 else torch.nn.AdaptiveAvgPool2d(1)
        w, b = score_head(model, target)
        self.head = torch.nn.Linear(w.shape[1], w.shape[0]).to(w.device, w.dtype)
        with torch.no_grad():
            self.head.weight.copy_(w)
            self.head.bias.copy_(b)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.encoder(z)).flatten(1))


@dataclass(frozen=True)
class LRP:
    """LRP with a zennit composite (``composite``), ``epsilon``, ``gamma``."""

    composite: str = "epsilon-plus-flat"
    epsilon: float = 1e-6
    gamma: float = 0.25

    def __post_init__(self) -> None:
        require(self.composite in COMPOSITES, "explainer lrp", "composite", f"one of {', '.join(COMPOSITES)}")
        require(isinstance(self.epsilon, (int, float)) and self.epsilon > 0, "explainer lrp", "epsilon", "a number > 0")
        require(isinstance(self.gamma, (int, float)) and self.gamma >= 0, "explainer lrp", "gamma", "a number ≥ 0")

    def _composite(self, model: Classifier, z: torch.Tensor):
        canon = [TimmResNetCanonizer()]
        if self.composite == "epsilon-plus-flat":
            return EpsilonPlusFlat(epsilon=self.epsilon, canonizers=canon)
        if self.composite == "epsilon-alpha2-beta1":
            return EpsilonAlpha2Beta1(epsilon=self.epsilon, canonizers=canon)
        low = model.prepare(torch.zeros_like(z[:, :1])).expand_as(z).contiguous()
        high = model.prepare(torch.ones_like(z[:, :1])).expand_as(z).contiguous()
        return EpsilonGammaBox(low=low, high=high, epsilon=self.epsilon, gamma=self.gamma, canonizers=canon)

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer lrp")
        if not isinstance(model, Classifier) or type(model).embed is not Classifier.embed:
            raise XaibenchError("explainer lrp: needs an encoder → global average pool → linear head model")
        net = LRPNet(model, target, x.ndim - 2).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        cls = target.classes.to(x.device)
        out = empty_maps(x)
        with torch.enable_grad():
            for sl in chunks(x.shape[0], context.chunk_size):
                z = model.prepare(x[sl]).detach().contiguous().requires_grad_(True)
                onehot = torch.nn.functional.one_hot(cls[sl], net.head.out_features).to(z.dtype)
                with Gradient(model=net, composite=self._composite(model, z)) as attributor:
                    _, rel = attributor(z, lambda y: y * onehot)
                out[sl] = rel.detach().sum(dim=1)
        return out.float()


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("lrp", "LRP (zennit composites, timm ResNet canonizer)", option_factory("explainer lrp", LRP),
                          spatial_dims=(2, 3))
