"""Vision transformers (timm ``VisionTransformer``, built locally, nothing downloaded) behind
the :class:`~xaibench.contracts.Classifier` contract.

Why this shape: the contract is encoder → global average pool → linear head over ``N×C×h×w``
maps. The trunk here has no class token; its patch tokens are reshaped to the patch grid
(``h×w`` = image / patch) after chosen blocks, so the CAM family hooks ``N×C×h×w`` maps and
the pooled tokens feed the head (timm's ``global_pool='avg'``). Each reshape module's output
is reshaped back to tokens for the next block, so it stays on the graph (gradients reach it).
Attention rollout (``attention-rollout``) reads the blocks' ``attn`` modules. 2-D only.

Options: ``embed_dim`` (192), ``depth`` (6), ``num_heads`` (3), ``patch_size`` (default: the
image side / 8, at most 16: an 8×8 grid at 64 px), ``width`` (multiplier of ``embed_dim``),
``mode`` finetune | partial (last block at lr/10 + head) | probe (needs ``weights``),
``weights`` / ``key_map`` (a local timm ViT state dict without class token, ``weights_only``),
training ``lr``, ``epochs``, ``batch_size``, ``patience``, ``weight_decay``, ``dropout``.

From scratch on the embedded synthetic-hippocampus slices (defaults, 20 epochs, CPU, ~3 min)
``vit-tiny`` stays at chance (test accuracy 0.48, AUROC 0.51; training loss falls, validation
does not): a ViT needs more data or pretrained weights than the embedded set offers, so use
it with your own ``weights`` (or as the model the attention explainers are checked on).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import torch
from timm.models.vision_transformer import VisionTransformer

import xaibench
from xaibench.contracts import Classifier
from xaibench.errors import XaibenchError
from xaibench.hookspecs import BackboneRecord

from ._checkpoints import load_encoder


class TokenGrid(torch.nn.Module):
    """``N×L×C`` tokens → ``N×C×h×w`` map (the module the CAM family hooks)."""

    def __init__(self, grid: tuple[int, int]) -> None:
        super().__init__()
        self.grid = grid

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, _, c = tokens.shape
        return tokens.transpose(1, 2).reshape(n, c, *self.grid)


class ViTTrunk(VisionTransformer):
    """timm's ViT whose ``forward`` returns the final (normed) patch tokens as an ``N×C×h×w`` map."""

    def add_grids(self, grid: tuple[int, int]) -> None:
        self.grids = torch.nn.ModuleList(TokenGrid(grid) for _ in range(len(self.blocks) + 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm_pre(self.patch_drop(self._pos_embed(self.patch_embed(x))))
        for blk, grid in zip(self.blocks, self.grids):
            x = grid(blk(x)).flatten(2).transpose(1, 2)  # through the grid module: hooks see the map
        return self.grids[-1](self.norm(x))


@dataclass(frozen=True)
class ViTBuilder:
    arch: str
    embed_dim: int = 192
    """Token width before ``width`` (rounded to a multiple of num_heads)."""
    depth: int = 6
    """Number of transformer blocks."""
    num_heads: int = 3
    """Attention heads per block."""
    patch_size: int | None = None
    """Patch side; default image side / 8 (at most 16), i.e. an 8×8 token grid."""
    width: float = 1.0
    """Multiplier of embed_dim (0.125 keeps CPU runs fast)."""
    mode: Literal["finetune", "partial", "probe"] = "finetune"
    """finetune (all layers), partial (last block at lr/10 + head) or probe (frozen encoder)."""
    weights: str | None = None
    """Local timm ViT state dict (no class token; read with weights_only=True)."""
    key_map: Mapping[str, str] | None = None
    """Checkpoint key prefixes to rename first."""
    dropout: float = 0.0
    """Dropout before the linear head."""
    lr: float = 5e-4
    """AdamW learning rate."""
    epochs: int = 30
    """Maximum training epochs."""
    batch_size: int = 32
    """Training batch size."""
    patience: int = 5
    """Early stopping: epochs without a better validation loss."""
    weight_decay: float = 0.05
    """AdamW weight decay (ViTs from scratch train with more than CNNs)."""

    def __post_init__(self) -> None:
        who = f"backbone {self.arch}"
        if self.mode not in ("finetune", "partial", "probe"):
            raise XaibenchError(f"{who}: mode {self.mode!r} is not one of finetune, partial, probe")
        if self.mode == "probe" and not self.weights:
            raise XaibenchError(f"{who}: mode 'probe' trains only the head and needs pretrained encoder weights; "
                                "set weights = \"path/to/checkpoint.pt\" (nothing is downloaded)")
        for k in ("embed_dim", "depth", "num_heads"):
            if not isinstance(getattr(self, k), int) or getattr(self, k) < 1:
                raise XaibenchError(f"{who}: {k} must be a positive integer, not {getattr(self, k)!r}")

    def _patch(self, size: tuple[int, int]) -> int:
        p = self.patch_size or max(1, min(16, min(size) // 8))
        if any(s % p for s in size):
            raise XaibenchError(f"backbone {self.arch}: patch_size {p} does not divide the image size "
                                f"{'×'.join(map(str, size))}; set patch_size to a divisor")
        return p

    def __call__(self, num_classes: int = 2, image_size: tuple[int, ...] = (64, 64)) -> Classifier:
        if len(image_size) != 2:
            raise XaibenchError(f"backbone {self.arch} takes H×W slices, not shape {'×'.join(map(str, image_size))}")
        size = tuple(int(s) for s in image_size)
        p = self._patch(size)
        h = self.num_heads
        dim = max(h * 4, round(self.embed_dim * self.width / h) * h)
        enc = ViTTrunk(img_size=size, patch_size=p, in_chans=3, num_classes=0, embed_dim=dim, depth=self.depth,
                       num_heads=h, class_token=False, global_pool="avg")
        enc.add_grids((size[0] // p, size[1] // p))
        if self.weights:
            load_encoder(enc, Path(self.weights).expanduser(), f"backbone {self.arch}", self.key_map)
        stages = {f"block{i + 1}": g for i, g in enumerate(enc.grids[:-1])}
        stages["norm"] = enc.grids[-1]
        model = Classifier(enc, dim, stages, num_classes=num_classes, mean=(0.5,) * 3, std=(0.5,) * 3,
                           dropout=self.dropout)
        model.train_mode = self.mode
        return model

    def param_groups(self, model: Classifier) -> list[dict]:
        """Optimiser groups for the training mode (the trainer calls this)."""
        if self.mode == "finetune":
            return [{"params": list(model.parameters()), "lr": self.lr}]
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        groups = [{"params": list(model.head.parameters()), "lr": self.lr}]
        if self.mode == "partial":
            last = [*model.encoder.blocks[-1].parameters(), *model.encoder.norm.parameters()]
            for p in last:
                p.requires_grad_(True)
            groups.append({"params": last, "lr": self.lr / 10})
        return groups

    def set_train(self, model: Classifier) -> None:
        """train() for what learns; a frozen encoder stays in eval mode (no dropout)."""
        model.train()
        if self.mode != "finetune":
            model.encoder.eval()
            if self.mode == "partial":
                model.encoder.blocks[-1].train()


def _factory(arch: str, **defaults):
    def make(**options) -> ViTBuilder:
        return ViTBuilder(arch=arch, **{**defaults, **options})

    return make


@xaibench.hookimpl
def xaibench_backbones():
    yield BackboneRecord("vit-tiny", "timm ViT, 192-d, 6 blocks, 3 heads, 8×8 patch grid (no class token)",
                         _factory("vit-tiny"), conformance={"depth": 2})
    yield BackboneRecord("vit-small", "timm ViT-S/DeiT-S layout: 384-d, 12 blocks, 6 heads",
                         _factory("vit-small", embed_dim=384, depth=12, num_heads=6), conformance={"depth": 2})
