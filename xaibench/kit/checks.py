"""Input and map checks for any number of spatial dimensions.

The contracts: images are ``N×1×*S`` float, attribution maps and per-image masks ``N×*S``,
a shared mask ``*S``, with ``S`` of length 2 (H×W slices) or 3 (D×H×W volumes). Why here:
explainers, metrics and the runner must agree on one reading of those shapes, and each
error is one line naming the plugin.
"""
from __future__ import annotations

from typing import Any

import torch

from xaibench.errors import XaibenchError

SPATIAL_DIMS = (2, 3)


def spatial_shape(images: torch.Tensor) -> tuple[int, ...]:
    """``S`` of an ``N×C×*S`` batch."""
    return tuple(int(s) for s in images.shape[2:])


def map_shape(images: torch.Tensor) -> tuple[int, ...]:
    """``(N, *S)``: the shape of the maps (or per-image masks) of an ``N×C×*S`` batch."""
    return (int(images.shape[0]), *spatial_shape(images))


def _shape(x: Any) -> str:
    return "×".join(map(str, x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def check_images(x: Any, who: str, channels: int | None = 1) -> None:
    """Raise a one-line :class:`XaibenchError` unless ``x`` is a float ``N×C×*S`` batch
    (``C == channels`` unless ``channels`` is None; ``len(S)`` in :data:`SPATIAL_DIMS`)."""
    ok = (isinstance(x, torch.Tensor) and x.ndim - 2 in SPATIAL_DIMS and x.is_floating_point()
          and (channels is None or x.shape[1] == channels))
    if not ok:
        c = "C" if channels is None else str(channels)
        raise XaibenchError(f"{who}: expected float images N×{c}×H×W (or N×{c}×D×H×W), got {_shape(x)}")


def check_maps(maps: Any, images: torch.Tensor, who: str, what: str = "attributions") -> torch.Tensor:
    """``maps`` as ``N×*S`` matching ``images`` (an ``N×1×*S`` stack is squeezed), or a one-line
    :class:`XaibenchError` naming ``who`` and the expected shape."""
    want = map_shape(images)
    dims = "N×H×W" if len(want) == 3 else "N×D×H×W"
    if maps is None:
        raise XaibenchError(f"{who}: needs {what} ({dims} maps); none were given")
    if not isinstance(maps, torch.Tensor):
        raise XaibenchError(f"{who}: {what} must be a tensor, got {type(maps).__name__}")
    if maps.dim() == len(want) + 1 and maps.shape[1] == 1:
        maps = maps[:, 0]
    if tuple(maps.shape) != want:
        raise XaibenchError(f"{who}: {what} must be {dims} = {'×'.join(map(str, want))} like the images, "
                            f"got {_shape(maps)}")
    return maps
