"""Bounded model passes and reproducible randomness.

Why: the contract asks every plugin to push at most ``context.chunk_size`` images through the
model at once and to draw randomness from ``context.seed`` only; these are the pieces that
make both one line in a plugin instead of a hand-written loop.
"""
from __future__ import annotations

import contextlib
import zlib
from collections.abc import Callable, Iterator

import numpy as np
import torch

from xaibench.contracts import Classifier, Target


def chunks(n: int, size: int) -> Iterator[slice]:
    """Slices ``[0, size), [size, 2·size), …`` covering ``range(n)`` (``size`` at least 1)."""
    size = max(1, int(size))
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def per_chunk(fn: Callable[[torch.Tensor, Target], torch.Tensor], x: torch.Tensor, target: Target,
              size: int) -> torch.Tensor:
    """``fn(x[sl], target.subset(sl))`` over :func:`chunks`, concatenated along the batch."""
    return torch.cat([fn(x[sl], target.subset(sl)) for sl in chunks(x.shape[0], size)])


def input_gradient(model: Classifier, x: torch.Tensor, target: Target, chunk_size: int) -> torch.Tensor:
    """d target / d x (the shape of ``x``), chunked; parameters are not differentiated."""
    out = torch.empty_like(x)
    with torch.enable_grad():
        for sl in chunks(x.shape[0], chunk_size):
            xi = x[sl].detach().requires_grad_(True)
            (g,) = torch.autograd.grad(target.subset(sl)(model, xi).sum(), xi)
            out[sl] = g
    return out


@torch.no_grad()
def target_scores(model: Classifier, target: Target, x: torch.Tensor, chunk: int) -> torch.Tensor:
    """The explained scalar of every image of ``x`` (rows aligned with ``target``), chunked."""
    out = [target.subset(slice(i, i + chunk))(model, x[i:i + chunk]) for i in range(0, len(x), chunk)]
    return torch.cat(out).float()


def image_seed(seed: int, index: int, block: int = 0) -> int:
    """A per-image (and per sample block) seed, so an image's random draws do not depend on
    which other images share its batch."""
    key = f"{seed}:{index}" if block == 0 else f"{seed}:{index}:{block}"
    return zlib.crc32(key.encode()) & 0x7FFFFFFF


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch (CPU and ``device`` if CUDA) and numpy's global generators, and restore the
    caller's states on exit (for libraries such as captum that draw from the global state)."""
    devices = [device] if device is not None and device.type == "cuda" else []
    np_state = np.random.get_state()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)


class RowBatcher:
    """Collect per-image rows (``K×…`` tensors tagged with their image index) and hand them
    out in batches of exactly ``size`` rows (the last may be smaller), across image
    boundaries, so sampling methods fill every model pass whatever the samples per image."""

    def __init__(self, size: int) -> None:
        self.size = max(1, int(size))
        self._idx: list[torch.Tensor] = []
        self._rows: list[tuple[torch.Tensor, ...]] = []
        self._n = 0

    def add(self, image: int, *rows: torch.Tensor) -> Iterator[tuple[torch.Tensor, ...]]:
        """Add rows of one image; yield every full batch ``(image_index, *rows)``."""
        self._idx.append(torch.full((rows[0].shape[0],), image, dtype=torch.long, device=rows[0].device))
        self._rows.append(rows)
        self._n += rows[0].shape[0]
        while self._n >= self.size:
            yield self._take(self.size)

    def flush(self) -> Iterator[tuple[torch.Tensor, ...]]:
        """Yield what is left, in batches of at most ``size`` rows."""
        while self._n > 0:
            yield self._take(min(self._n, self.size))

    def _take(self, k: int) -> tuple[torch.Tensor, ...]:
        idx = torch.cat(self._idx)
        cols = [torch.cat(c) for c in zip(*self._rows)]
        self._idx = [idx[k:]] if idx.shape[0] > k else []
        self._rows = [tuple(c[k:] for c in cols)] if idx.shape[0] > k else []
        self._n -= k
        return (idx[:k], *(c[:k] for c in cols))
