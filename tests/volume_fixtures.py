"""Tiny 3-D fixtures shared by the volume tests: a Classifier-compatible Conv3d model and a
two-group volume dataset whose group B carries a bright cube inside the ROI (the 3-D twin of
the toy-blobs fixture)."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from xaibench.contracts import Classifier, DatasetSplits, ExplainContext, ImageSet

VOL = 16  # volume side: 16×16×16 voxels


def _stage(c_in: int, c_out: int, stride: int) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Conv3d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
                               torch.nn.BatchNorm3d(c_out), torch.nn.ReLU())


def tiny_3d_model(seed: int = 0) -> Classifier:
    """Conv3d-BN-ReLU at full resolution (``layer1``, 16³) then at stride 2 (``layer2``, 8³),
    global average pool, linear head; one input channel, so the normalisation buffers
    broadcast over volumes. BatchNorm statistics are random (so merging them is tested); the
    head bias is 1 (positive logits)."""
    torch.manual_seed(seed)
    layer1, layer2 = _stage(1, 4, 1), _stage(4, 8, 2)
    for bn in (layer1[1], layer2[1]):
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 1.5)
        torch.nn.init.uniform_(bn.weight, 0.5, 1.5)
        torch.nn.init.uniform_(bn.bias, -0.1, 0.1)
    encoder = torch.nn.Sequential(layer1, layer2)
    model = Classifier(encoder, 8, {"layer1": layer1, "layer2": layer2}, in_chans=1, mean=(0.3,), std=(0.2,))
    with torch.no_grad():  # positive logits, so ratio-to-clean metrics (deletion) are defined untrained
        model.head.bias.fill_(1.0)
    return model.eval()


def _nd_embed(self: Classifier, x: torch.Tensor) -> torch.Tensor:
    f = self.feature_map(x)
    return f.mean(dim=tuple(range(2, f.ndim)))


def _classifier_pools_volumes() -> bool:
    enc = torch.nn.Identity()
    m = Classifier(enc, 1, {"id": enc}, in_chans=1, mean=(0.0,), std=(1.0,))
    return tuple(m.embed(torch.zeros(1, 1, 2, 3, 4)).shape) == (1, 1)


@contextlib.contextmanager
def volumes_classifier() -> Iterator[None]:
    """Until ``Classifier.embed`` pools every spatial axis (issue #15, the data branch), pool
    volumes over D×H×W for the duration (identical to the stored rule on slices); a no-op once
    it does. Patched on the class, so plugins that insist on ``Classifier.embed`` (CAM, LRP)
    still see it."""
    if _classifier_pools_volumes():
        yield
        return
    saved = Classifier.embed
    Classifier.embed = _nd_embed
    try:
        yield
    finally:
        Classifier.embed = saved


@dataclass(frozen=True)
class ToyVolumes:
    """``n`` volumes ``1×16×16×16`` of uniform noise; a 5³ cube ROI at a random place; group B
    is brighter by ``contrast`` inside it."""

    n: int = 32
    size: int = VOL
    contrast: float = 0.6
    cube: int = 5

    def load(self, *, seed: int, cache_dir=None) -> DatasetSplits:
        rng = np.random.default_rng(seed)
        s, c = self.size, self.cube
        imgs = rng.uniform(0.0, 0.4, size=(self.n, 1, s, s, s)).astype(np.float32)
        labels = np.arange(self.n) % 2
        masks = np.zeros((self.n, s, s, s), bool)
        for i in range(self.n):
            z, y, x = rng.integers(2, s - c - 2, size=3)
            masks[i, z:z + c, y:y + c, x:x + c] = True
            if labels[i] == 1:
                imgs[i, 0, z:z + c, y:y + c, x:x + c] += self.contrast
        imgs = np.clip(imgs, 0, 1)
        ids = tuple(f"v{i:03d}" for i in range(self.n))
        vol = np.where(labels == 1, 3000.0, 4000.0) + rng.normal(0, 100, self.n)
        full = ImageSet(torch.from_numpy(imgs), torch.from_numpy(labels).long(), torch.from_numpy(masks), ids,
                        {"hippocampal_volume": vol})
        a, b = int(self.n * 0.5), int(self.n * 0.75)
        return DatasetSplits("toy-volumes", full.subset(np.arange(a)), full.subset(np.arange(a, b)),
                             full.subset(np.arange(b, self.n)), ("A", "B"))


def volume_context(data: DatasetSplits, seed: int = 0, chunk_size: int = 16) -> ExplainContext:
    """The context the runner gives (reference images and the training ROI prior)."""
    return ExplainContext(reference=data.train.images[:8], seed=seed, chunk_size=chunk_size,
                          mask_priors={"roi": data.train.masks.float().mean(0)})
