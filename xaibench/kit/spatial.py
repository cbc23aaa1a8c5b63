"""Resampling, blurring and allocation of maps for any number of spatial dimensions.

Why one place: a layer map is upsampled to the input, an image is blurred for a baseline or a
filler, an empty map is allocated, in 2-D and in 3-D alike; written once here, each with its
border rule stated (and pinned by ``tests/test_kit.py``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

BORDERS = ("replicate", "reflect")
_MODES = {1: "linear", 2: "bilinear", 3: "trilinear"}
_CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def empty_maps(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Zero maps ``N×*S`` for an ``N×C×*S`` batch, on its device."""
    return torch.zeros((x.shape[0], *x.shape[2:]), device=x.device, dtype=dtype)


def flat(a: torch.Tensor) -> torch.Tensor:
    """``N×*S`` (or ``N×1×*S``) → ``N×P`` float, ``P`` the number of pixels or voxels."""
    return a.reshape(a.shape[0], -1).float()


def upsample(maps: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``N×*s`` → ``N×*S`` (bi/trilinear, half-pixel centres as cv2.resize / skimage);
    returned unchanged when already of that size."""
    size = tuple(int(v) for v in size)
    if tuple(maps.shape[1:]) == size:
        return maps
    return F.interpolate(maps[:, None], size=size, mode=_MODES[len(size)], align_corners=False)[:, 0]


def gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """The normalised 1-D Gaussian of radius ``max(1, round(3σ))`` and that radius."""
    r = max(1, int(round(3 * sigma)))
    t = torch.arange(-r, r + 1, device=device, dtype=dtype)
    k = torch.exp(-t ** 2 / (2 * sigma ** 2))
    return k / k.sum(), r


def _axis_weight(k: torch.Tensor, c: int, axis: int, nd: int) -> torch.Tensor:
    """The 1-D kernel laid along spatial ``axis`` (0 = first) as a depthwise conv weight."""
    shape = [1] * nd
    shape[axis] = -1
    return k.view(1, 1, *shape).expand(c, 1, *[-1 if s == -1 else 1 for s in shape])


def gaussian_blur(x: torch.Tensor, sigma: float, border: str = "replicate") -> torch.Tensor:
    """Separable Gaussian blur of an ``N×C×*S`` batch (``sigma`` in pixels, radius 3σ).

    Borders: ``replicate`` repeats the edge pixel (pad and blur one axis at a time, last
    axis first); ``reflect`` mirrors the image without repeating the edge (pad every axis,
    then blur), and falls back to ``replicate`` padding when an axis is shorter than the
    radius + 1 (mirroring is impossible there). ``sigma <= 0`` returns ``x`` unchanged.
    """
    if border not in BORDERS:
        raise ValueError(f"gaussian_blur: border must be one of {', '.join(BORDERS)}, not {border!r}")
    if sigma <= 0:
        return x
    nd, c = x.ndim - 2, x.shape[1]
    k, r = gaussian_kernel(sigma, x.device, x.dtype)
    conv = _CONV[nd]
    axes = list(range(nd - 1, -1, -1))  # last spatial axis first
    if border == "reflect":
        mode = "reflect" if all(r <= s - 1 for s in x.shape[2:]) else "replicate"
        y = F.pad(x, (r, r) * nd, mode=mode)
        for a in axes:
            y = conv(y, _axis_weight(k, c, a, nd), groups=c)
        return y
    for a in axes:
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - a):2 * (nd - 1 - a) + 2] = [r, r]
        x = conv(F.pad(x, tuple(pad), mode="replicate"), _axis_weight(k, c, a, nd), groups=c)
    return x
