"""3-D ResNets from MONAI (``monai.networks.nets.ResNet``, spatial_dims=3), wrapped in the
:class:`~xaibench.contracts.Classifier` contract for ``N×1×D×H×W`` volumes.

Why MONAI: it is the network medical-imaging users know (MedicalNet's layout: ``conv1``,
``bn1``, ``layer1`` … ``layer4``), pure Python, and its pretrained 3-D checkpoints load by
key. MONAI's ``forward`` pools and flattens; the encoder here is the same module with a
``forward`` that stops after ``layer4`` (the Classifier pools and owns the head), so the
state-dict keys stay MONAI's and the CAM family hooks ``layer1`` … ``layer4``. One input
channel (MRI), normalised inside the model with mean 0.5 / std 0.25 (intensities in [0, 1]).

Options (suite file ``[[backbones]]`` entries):

* ``mode`` — ``finetune`` (default), ``partial`` (layer4 at lr/10 + head) or ``probe``
  (frozen encoder, linear head; needs ``weights``), as for the 2-D ``resnet`` backbones;
* ``weights`` — a local checkpoint (MONAI / MedicalNet state dicts, ``module.`` prefixes and
  the ``fc`` head are handled), read with ``weights_only=True``; nothing is downloaded;
  ``key_map`` renames checkpoint key prefixes first;
* ``width`` — channel multiplier of (64, 128, 256, 512) (MONAI's ``widen_factor``; 0.25 keeps CPU runs quick);
* ``stem_stride`` — stride of the 7³ stem convolution (1, MONAI's default; 2 halves every
  stage's resolution, 8× fewer voxels); ``max_pool`` — the stem's max pool (true);
* ``last_stride`` — 2 (MONAI's) or 1: layer4 keeps layer3's resolution (as ``output_stride``
  does for the 2-D ResNets), so CAM-family maps of a 24×32×32 volume are 3×4×4, not 2×2×2;
* ``bias_downsample`` — bias in the shortcut convolutions (false: MedicalNet's checkpoints);
* training: ``lr``, ``epochs``, ``batch_size``, ``patience``, ``weight_decay``, ``dropout``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Mapping

import torch
from monai.networks.nets.resnet import ResNet, ResNetBlock

import xaibench
from xaibench.contracts import Classifier
from xaibench.errors import XaibenchError
from xaibench.hookspecs import BackboneRecord

from ._checkpoints import load_encoder
from .resnet import STAGES, ResNetBuilder

LAYERS = {"resnet10": (1, 1, 1, 1), "resnet18": (2, 2, 2, 2)}  # MONAI's resnet10 / resnet18
PLANES = (64, 128, 256, 512)


class Trunk3d(ResNet):
    """MONAI's ResNet without pooling and head: ``forward`` returns layer4's ``N×C×d×h×w``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


class Block3d(ResNetBlock):
    """MONAI's basic block with its second activation a module of its own (``act_out``).

    Why: MONAI calls one ``act`` module twice per block; captum's DeepLIFT (and any per-module
    rule) needs each nonlinearity applied once. ReLU has no parameters, so the state dict
    and MONAI's keys are unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        residual = x if self.downsample is None else self.downsample(x)
        return self.act_out(out + residual)


def _unshare_activations(enc: torch.nn.Module) -> None:
    for m in enc.modules():
        if type(m) is ResNetBlock:
            m.__class__ = Block3d
            m.act_out = copy.deepcopy(m.act)


@dataclass(frozen=True)
class ResNet3dBuilder:
    arch: str
    mode: Literal["finetune", "partial", "probe"] = "finetune"
    """finetune (all layers train), partial (layer4 at lr/10 + head) or probe (frozen encoder, linear head)."""
    weights: str | None = None
    """Local encoder checkpoint (MONAI / MedicalNet state dict; read with weights_only=True)."""
    key_map: Mapping[str, str] | None = None
    """Checkpoint key prefixes to rename first, e.g. {"module." = ""}, for layouts not found automatically."""
    width: float = 1.0
    """Channel multiplier of (64, 128, 256, 512) (1.0 = the published network; 0.25 keeps CPU runs quick)."""
    stem_stride: int = 1
    """Stride of the 7³ stem convolution: 1 (MONAI's default) or 2 (8× fewer voxels in every stage)."""
    max_pool: bool = True
    """The stem's 3³ max pool (stride 2)."""
    last_stride: int = 2
    """Stride of layer4: 2 (MONAI's) or 1 (layer4 keeps layer3's resolution: finer CAM maps on small volumes)."""
    bias_downsample: bool = False
    """Bias in the shortcut convolutions (false matches MedicalNet's checkpoints)."""
    dropout: float = 0.0
    """Dropout before the linear head."""
    lr: float = 3e-4
    """AdamW learning rate of the head (and of everything in finetune mode)."""
    epochs: int = 30
    """Maximum training epochs."""
    batch_size: int = 16
    """Training batch size."""
    patience: int = 5
    """Early stopping: epochs without a better validation loss."""
    weight_decay: float = 1e-4
    """AdamW weight decay."""

    def __post_init__(self) -> None:
        who = f"backbone {self.arch}-3d"
        if self.mode not in ("finetune", "partial", "probe"):
            raise XaibenchError(f"{who}: mode {self.mode!r} is not one of finetune, partial, probe")
        if self.mode == "probe" and not self.weights:
            raise XaibenchError(f"{who}: mode 'probe' trains only the head and needs pretrained encoder weights; "
                                "set weights = \"path/to/checkpoint.pt\" (nothing is downloaded)")
        for name in ("stem_stride", "last_stride"):
            if getattr(self, name) not in (1, 2):
                raise XaibenchError(f"{who}: {name} must be 1 or 2, not {getattr(self, name)!r}")
        if not isinstance(self.width, (int, float)) or isinstance(self.width, bool) or not 0.05 <= self.width <= 4:
            raise XaibenchError(f"{who}: width must be a number in [0.05, 4], not {self.width!r}")

    def __call__(self, num_classes: int = 2, image_size: tuple[int, ...] = (32, 32, 32)) -> Classifier:
        if len(image_size) != 3:
            raise XaibenchError(f"backbone {self.arch}-3d takes D×H×W volumes, not images of shape "
                                f"{'×'.join(map(str, image_size))}; use a 2-D backbone (resnet18) for slices")
        enc = Trunk3d(ResNetBlock, list(LAYERS[self.arch]), [max(8, round(c * self.width)) for c in PLANES],
                      spatial_dims=3, n_input_channels=1, conv1_t_stride=self.stem_stride,
                      no_max_pool=not self.max_pool, feed_forward=False, bias_downsample=self.bias_downsample,
                      act=("relu", {"inplace": False}))
        for m in enc.modules():  # MONAI's blocks build in-place ReLUs, which break hooks and double backward
            if isinstance(m, torch.nn.ReLU):
                m.inplace = False
        _unshare_activations(enc)
        if self.last_stride == 1:  # the first block's strided convolutions (main path and shortcut)
            for conv in (enc.layer4[0].conv1, *(enc.layer4[0].downsample or [])[:1]):
                conv.stride = (1, 1, 1)
        if self.weights:
            load_encoder(enc, Path(self.weights).expanduser(), f"backbone {self.arch}-3d", self.key_map)
        stages = {name: getattr(enc, name) for name in STAGES}
        feature_dim = enc.layer4[-1].conv2.out_channels
        model = Classifier(enc, feature_dim, stages, num_classes=num_classes, mean=(0.5,), std=(0.25,),
                           dropout=self.dropout, in_chans=1)
        model.train_mode = self.mode  # read by the trainer
        return model

    # the training rules of the 2-D ResNets apply unchanged (they read mode, lr and encoder.layer4)
    param_groups = ResNetBuilder.param_groups
    set_train = ResNetBuilder.set_train


def _factory(arch: str):
    def make(**options) -> ResNet3dBuilder:
        return ResNet3dBuilder(arch=arch, **options)

    return make


@xaibench.hookimpl
def xaibench_backbones():
    yield BackboneRecord("resnet10-3d", "MONAI 3-D ResNet-10 for D×H×W volumes", _factory("resnet10"),
                         spatial_dims=(3,), conformance={"width": 0.125, "stem_stride": 2})
    yield BackboneRecord("resnet18-3d", "MONAI 3-D ResNet-18 for D×H×W volumes", _factory("resnet18"),
                         spatial_dims=(3,), conformance={"width": 0.125, "stem_stride": 2})
