"""``xaibench pretrain``: a SimCLR encoder from a dataset's unlabelled training images, so
``mode = "probe"`` runs on data where no pretrained weights can be downloaded.

SimCLR (Chen et al., 2020): two augmented views of each image, an MLP projector on the
pooled encoder features, and the NT-Xent loss (each view must pick its partner among the
2B − 1 other views of the batch). Only the encoder is saved, as a plain state dict that the
resnet backbones' ``weights`` option loads.

Why not lightly: its SimCLR is the same few lines of loss and projector used here, but the
package brings PyTorch Lightning and further dependencies into every install, and its
default augmentations are for natural RGB photographs (colour jitter, grayscale, horizontal
flips). MRI slices need other ones (:func:`augment`): small rotations, scalings and shifts
(head pose), gamma and contrast changes (scanner and sequence), blur and Rician-like noise;
no colour, and no left-right flip, which would swap the hemispheres and erase laterality.

Cached by content: the key hashes the training images and every setting, so a second run
with the same inputs returns the stored file at once. Training images only, labels unused.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from .atomic import atomic_write, save_torch
from .errors import XaibenchError


@dataclass(frozen=True)
class PretrainSettings:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 1e-6
    temperature: float = 0.2  # small batches: a lower temperature than the paper's 0.5 learns faster
    projection_dim: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "projection_dim"):
            if getattr(self, name) < (2 if name == "batch_size" else 1):
                raise XaibenchError(f"pretrain: --{name.replace('_', '-')} {getattr(self, name)} is too small")
        if not (self.lr > 0 and self.temperature > 0):
            raise XaibenchError("pretrain: --lr and --temperature must be positive")


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """One MRI-appropriate random view of each ``N×1×H×W`` image in [0, 1]."""
    n = x.shape[0]
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(n, generator=gen)  # noqa: E731
    angle, scale = u(-math.pi / 18, math.pi / 18), u(0.8, 1.15)  # ±10°, zoom
    shift = torch.stack([u(-0.08, 0.08), u(-0.08, 0.08)], 1)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False).clamp(0, 1)
    v = v ** u(0.7, 1.4).view(-1, 1, 1, 1).to(x)  # gamma
    v = (v - 0.5) * u(0.8, 1.2).view(-1, 1, 1, 1).to(x) + 0.5 + u(-0.1, 0.1).view(-1, 1, 1, 1).to(x)
    blur = (torch.rand(n, generator=gen) < 0.3).view(-1, 1, 1, 1).to(x)
    k = torch.tensor([0.25, 0.5, 0.25], dtype=x.dtype, device=x.device)
    smooth = F.conv2d(F.pad(v, (1, 1, 1, 1), mode="replicate"), (k[:, None] * k[None, :]).view(1, 1, 3, 3))
    v = blur * smooth + (1 - blur) * v
    sigma = u(0.0, 0.04).view(-1, 1, 1, 1).to(x)
    noise = torch.randn(v.shape, generator=gen).to(x) * sigma, torch.randn(v.shape, generator=gen).to(x) * sigma
    v = torch.sqrt((v + noise[0]) ** 2 + noise[1] ** 2)  # Rician, as magnitude MRI
    return v.clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's loss: cross-entropy of each view against its partner over the other 2B − 1."""
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    b = z1.shape[0]
    partner = torch.cat([torch.arange(b, 2 * b), torch.arange(b)]).to(z.device)
    return F.cross_entropy(sim, partner)


def cache_key(images: torch.Tensor, backbone: dict[str, Any], settings: PretrainSettings) -> str:
    h = hashlib.sha256(images.contiguous().cpu().numpy().tobytes())
    h.update(json.dumps({"backbone": backbone, "settings": asdict(settings), "v": 1}, sort_keys=True,
                        default=str).encode())
    return h.hexdigest()[:24]


def train_simclr(model: torch.nn.Module, images: torch.Tensor, s: PretrainSettings, device: str,
                 progress: bool = False) -> list[float]:
    """Train ``model``'s encoder in place (``model.embed`` gives the pooled features)."""
    torch.manual_seed(s.seed)
    gen = torch.Generator().manual_seed(s.seed)
    model.to(device).train()
    dim = model.embed(images[:2].to(device)).shape[1]
    projector = torch.nn.Sequential(torch.nn.Linear(dim, dim), torch.nn.ReLU(),
                                    torch.nn.Linear(dim, s.projection_dim)).to(device)
    params = list(model.encoder.parameters()) + list(projector.parameters())
    opt = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    batch = min(s.batch_size, len(images))
    losses = []
    from tqdm import tqdm

    for _ in tqdm(range(s.epochs), desc="pretrain", disable=not progress, leave=False, unit="ep"):
        order, total, seen = torch.randperm(len(images), generator=gen), 0.0, 0
        for i in range(0, len(images) - batch + 1, batch):
            x = images[order[i:i + batch]]
            v1, v2 = augment(x, gen).to(device), augment(x, gen).to(device)
            loss = nt_xent(projector(model.embed(v1)), projector(model.embed(v2)), s.temperature)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, seen = total + loss.item() * len(x), seen + len(x)
        losses.append(total / max(seen, 1))
    model.eval()
    return losses


def pretrain(build, images: torch.Tensor, backbone: dict[str, Any], settings: PretrainSettings,
             out: Path | None, cache_dir: Path, device: str, progress: bool = False) -> tuple[Path, bool]:
    """The encoder file for these images and settings: from the cache, or trained now.
    Returns the path and whether it was trained; ``out`` also gets a copy."""
    key = cache_key(images, backbone, settings)
    cached = Path(cache_dir) / "pretrain" / f"simclr-{key}.pt"
    trained = not cached.is_file()
    if trained:
        model = build()
        losses = train_simclr(model, images, settings, device, progress)
        save_torch({k: v.detach().cpu() for k, v in model.encoder.state_dict().items()}, cached)
        atomic_write(cached.with_suffix(".json"), json.dumps(
            {"backbone": backbone, "settings": asdict(settings), "images": int(len(images)),
             "loss_per_epoch": losses}, indent=2, default=str))
    if out is not None and Path(out).resolve() != cached.resolve():
        atomic_write(out, cached.read_bytes())
        return Path(out), trained
    return cached, trained
