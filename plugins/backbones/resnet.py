"""ResNet backbones from timm, wrapped in the :class:`~xaibench.contracts.Classifier`
contract (grayscale → 3 channels and ImageNet normalisation inside the model).

Options (suite file ``[[backbones]]`` entries):

* ``mode`` — ``finetune`` (everything trains; the default, since no pretrained weights can
  be downloaded), ``partial`` (last stage unfrozen at 10× lower LR than the head) or
  ``probe`` (frozen encoder with BatchNorm in eval mode, linear head only; needs
  ``weights``);
* ``weights`` — a local checkpoint: torchvision / timm state dicts, ``nn.Sequential`` of
  ResNet children (``0.weight``, ``4.0.conv1.weight``), SimCLR / MoCo / BYOL checkpoints of
  lightly, solo-learn or the reference SimCLR code (heads and momentum copies dropped);
  read with ``weights_only=True``; nothing is ever downloaded (see :mod:`._checkpoints`);
* ``key_map`` — ``{"their.prefix." = "layer1."}``: renames checkpoint keys first, for
  layouts the automatic search does not find;
* ``output_stride`` — 32 (timm default), 16 or 8: dilates the last stages so layer
  explainers get finer maps (8×8 at 64 px with stride 8);
* ``width`` — channel multiplier (1.0 = the published network; 0.25 keeps CPU runs fast);
* training: ``lr``, ``epochs``, ``batch_size``, ``patience``, ``weight_decay``, ``dropout``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import timm
import torch

import xaibench
from xaibench.contracts import Classifier
from xaibench.errors import XaibenchError
from xaibench.hookspecs import BackboneRecord

from ._checkpoints import load_encoder

STAGES = ("layer1", "layer2", "layer3", "layer4")


@dataclass(frozen=True)
class ResNetBuilder:
    arch: str
    mode: Literal["finetune", "partial", "probe"] = "finetune"
    """finetune (all layers train), partial (layer4 at lr/10 + head) or probe (frozen encoder, linear head)."""
    weights: str | None = None
    """Local encoder checkpoint (torchvision, timm, nn.Sequential, lightly, solo-learn, SimCLR, MoCo, BYOL)."""
    key_map: Mapping[str, str] | None = None
    """Checkpoint key prefixes to rename first, e.g. {"trunk." = ""}, for layouts not found automatically."""
    output_stride: int = 32
    """32, 16 or 8: dilate the last stages for finer layer maps (8×8 at 64 px with 8)."""
    width: float = 1.0
    """Channel multiplier (1.0 = the published network; 0.25 keeps CPU runs fast)."""
    dropout: float = 0.0
    """Dropout before the linear head."""
    lr: float = 3e-4  # from scratch at 1e-3 validation loss swings and early stopping keeps near-chance checkpoints
    """AdamW learning rate of the head (and of everything in finetune mode)."""
    epochs: int = 30
    """Maximum training epochs."""
    batch_size: int = 32
    """Training batch size."""
    patience: int = 5
    """Early stopping: epochs without a better validation loss."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""

    def __post_init__(self) -> None:
        if self.mode not in ("finetune", "partial", "probe"):
            raise XaibenchError(f"backbone {self.arch}: mode {self.mode!r} is not one of finetune, partial, probe")
        if self.mode == "probe" and not self.weights:
            raise XaibenchError(
                f"backbone {self.arch}: mode 'probe' trains only the head and needs pretrained "
                "encoder weights; set weights = \"path/to/checkpoint.pt\" (nothing is downloaded)"
            )
        if self.key_map is not None and not (isinstance(self.key_map, Mapping) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in self.key_map.items())):
            raise XaibenchError(f"backbone {self.arch}: key_map must be a table of prefix = prefix strings, "
                                f"e.g. {{\"trunk.\" = \"\"}}, not {self.key_map!r}")
        if self.output_stride not in (8, 16, 32):
            raise XaibenchError(f"backbone {self.arch}: output_stride must be 8, 16 or 32, not {self.output_stride}")

    def __call__(self, num_classes: int = 2, image_size: tuple[int, int] = (64, 64)) -> Classifier:
        kwargs: dict = {"pretrained": False, "num_classes": 0, "global_pool": "", "output_stride": self.output_stride}
        if self.width != 1.0:
            base = (64, 128, 256, 512)
            kwargs["channels"] = tuple(max(8, int(round(c * self.width))) for c in base)
            kwargs["stem_width"] = max(8, int(round(64 * self.width)))
        enc = timm.create_model(self.arch, **kwargs)
        for m in enc.modules():  # in-place ReLU breaks hooks and double backward
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        if self.weights:
            load_encoder(enc, Path(self.weights).expanduser(), f"backbone {self.arch}", self.key_map)
        stages = {name: getattr(enc, name) for name in STAGES}
        model = Classifier(enc, enc.num_features, stages, num_classes=num_classes, dropout=self.dropout)
        model.train_mode = self.mode  # read by the trainer
        return model

    def param_groups(self, model: Classifier) -> list[dict]:
        """Optimiser groups for the training mode (the trainer calls this)."""
        head = list(model.head.parameters())
        if self.mode == "finetune":
            return [{"params": list(model.parameters()), "lr": self.lr}]
        for p in model.encoder.parameters():
            p.requires_grad_(False)
        groups = [{"params": head, "lr": self.lr}]
        if self.mode == "partial":
            last = list(model.encoder.layer4.parameters())
            for p in last:
                p.requires_grad_(True)
            groups.append({"params": last, "lr": self.lr / 10})
        return groups

    def set_train(self, model: Classifier) -> None:
        """train() for what learns; frozen encoder parts keep BatchNorm statistics fixed."""
        model.train()
        if self.mode != "finetune":
            model.encoder.eval()
            if self.mode == "partial":
                model.encoder.layer4.train()


def _factory(arch: str):
    def make(**options) -> ResNetBuilder:
        return ResNetBuilder(arch=arch, **options)

    return make


@xaibench.hookimpl
def xaibench_backbones():
    yield BackboneRecord("resnet18", "timm ResNet-18 (CPU default)", _factory("resnet18"))
    yield BackboneRecord("resnet34", "timm ResNet-34", _factory("resnet34"))
    yield BackboneRecord("resnet50", "timm ResNet-50 (the research setting)", _factory("resnet50"))
