"""Batched removal for faithfulness metrics: fillers and chunked model passes (2-D and 3-D).

Why: every faithfulness metric asks the same question — what is T when some pixels of
an image are replaced? — for many (image, level) pairs: every q, every curve step and
every random draw. Here all of them are one flat list of rows, perturbed and scored in
chunks of ``context.chunk_size`` images on the model's device, so the cost is the model
passes the metric needs and little else.

Fillers (what a removed pixel becomes):

* ``mean`` — the image's mean intensity;
* ``black`` — the image's minimum (Quantus' ``perturb_baseline="black"``);
* ``blur`` — the same pixel of a Gaussian-blurred copy (RISE's insertion canvas);
* ``road`` — ROAD's noisy linear imputation (Rong et al. 2022): each removed pixel is
  the weighted mean of its 8 neighbours (1/6 edge, 1/12 diagonal), solved jointly, plus
  Gaussian noise, so the removal mask's shape does not leak into T. On volumes the same
  construction gives the 26 neighbours (1/14 face, 1/28 edge, 1/56 corner; see ``_neighbours``).

ROAD by hand: the reference implementation (the one pytorch-grad-cam ships) builds a
sparse system per image and calls ``scipy.sparse.linalg.spsolve`` on the CPU — ~90% of its
run time, one image at a time. The system is a weighted graph Laplacian restricted to the
removed pixels (symmetric positive definite whenever every hole touches a kept pixel),
so here it is solved for a whole chunk at once with conjugate gradients whose
matrix-vector product is a 3×3 (3×3×3) neighbour sum, on the model's device, started from the
same problem solved on a 2× coarser grid (nested iteration), so few iterations are
needed at full resolution; images leave the batch as they converge. It is the same
linear system: solved to a relative residual of 3e-5 by default (under 1e-3 absolute
error, more than ten times below ROAD's noise) or as tightly as asked (tested to 1e-5
against the sparse solve).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, Target
from xaibench.errors import XaibenchError

from .options import require
from .spatial import gaussian_blur

FILLERS = ("mean", "black", "blur", "road")


@dataclass(frozen=True)
class Filler:
    """How removed pixels are filled (see the module docstring)."""

    kind: str = "mean"
    sigma: float = 3.0  # blur
    noise: float = 0.01  # road: noise std (absolute, images are in [0, 1])
    tol: float = 3e-5  # road: relative residual of the solve (error < 1e-3, >10× below the noise)
    max_iter: int = 400

    @staticmethod
    def make(who: str, kind: str, sigma: float = 3.0, noise: float = 0.01) -> "Filler":
        """A checked filler; ``who`` (``"metric NAME"``) names the plugin in the one-line error."""
        require(kind in FILLERS, who, "filler", " | ".join(FILLERS), kind)
        require(isinstance(sigma, (int, float)) and sigma > 0, who, "blur_sigma", "a number > 0", sigma)
        require(isinstance(noise, (int, float)) and noise >= 0, who, "road_noise", "a number >= 0", noise)
        return Filler(kind, float(sigma), float(noise))

    def canvas(self, x: torch.Tensor) -> torch.Tensor | None:
        """Per-image fill values that do not depend on the mask (``None`` for road)."""
        dims = tuple(range(1, x.ndim))
        if self.kind == "mean":
            return x.mean(dim=dims, keepdim=True).expand_as(x)
        if self.kind == "black":
            return x.amin(dim=dims, keepdim=True).expand_as(x)
        if self.kind == "blur":
            return gaussian_blur(x, self.sigma, border="reflect")
        return None

    def apply(self, x: torch.Tensor, removed: torch.Tensor, canvas: torch.Tensor | None,
              generator: torch.Generator | None = None) -> torch.Tensor:
        """``x`` (B×C×*S) with pixels ``removed`` (B×*S bool) filled."""
        rm = removed.unsqueeze(1)
        if self.kind != "road":
            return torch.where(rm, canvas, x)
        if x.ndim not in (4, 5):
            raise XaibenchError(f"filler 'road' imputes slices (B×C×H×W) or volumes (B×C×D×H×W), got {x.ndim}-D "
                                "images; use filler = mean, black or blur")
        out = road_impute(x, removed, tol=self.tol, max_iter=self.max_iter)
        if self.noise > 0:
            eps = torch.randn(out.shape, generator=generator, device="cpu").to(out.device)
            out = out + self.noise * eps * rm
        return out


def _neighbours(u: torch.Tensor) -> torch.Tensor:
    """Σ_n w_n u(p + n) over the 3^d − 1 neighbours of each pixel of ``u`` (B×C×*S, d = 2 or
    3), zero outside the image. The stencil is ([1 2 1]^⊗d − 2^d δ) / (4^d − 2^d): ROAD's 8
    neighbours (1/6 edge, 1/12 diagonal) on slices and, why 26 rather than the 6 faces on
    volumes, the same construction one axis further (ROAD chose diagonals too). Applied
    separably in place, last axis first: several times faster than a 1-channel conv."""
    d = u.ndim - 2
    c = F.pad(u, (1, 1) * d)
    for ax in reversed(range(d)):
        dim = 2 + ax
        n = c.shape[dim]
        r = c.narrow(dim, 0, n - 2) + c.narrow(dim, 2, n - 2)
        r.add_(c.narrow(dim, 1, n - 2), alpha=2)
        c = r
    return c.sub_(u, alpha=2 ** d).div_(4 ** d - 2 ** d)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image inner product, shaped to broadcast over B×C×*S."""
    eq = "nchw,nchw->n" if a.ndim == 4 else "ncdhw,ncdhw->n"
    return torch.einsum(eq, a, b).view(-1, *(1,) * (a.ndim - 1))


def _cg(x: torch.Tensor, m: torch.Tensor, u: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """Conjugate gradients on the removed pixels ``m`` (B×C×*S, 1 = removed) from ``u``.

    In-place updates (the loop is bound by memory traffic, not arithmetic), and images
    that have converged leave the batch, so a chunk costs what its hard images need."""
    s = _neighbours(torch.ones_like(x[:1]))  # in-bounds weight of each pixel
    b = _neighbours(x * (1 - m)).mul_(m)
    out = u * m
    idx = torch.arange(len(x), device=x.device)
    m_a, u_a = m, out.clone()

    def op(v: torch.Tensor) -> torch.Tensor:  # (S − W) v on the removed pixels (v is 0 elsewhere)
        return _neighbours(v).neg_().addcmul_(s, v).mul_(m_a)

    r = b - op(u_a)
    p = r.clone()
    rr = _dot(r, r)
    stop = (tol ** 2) * _dot(b, b).clamp_min(1e-30)
    for _ in range(max_iter):
        done = (rr <= stop).view(-1)
        if bool(done.any()):
            out[idx[done]] = u_a[done]
            if bool(done.all()):
                return out
            if int(done.sum()) * 4 >= len(done):  # compact when a quarter has converged
                keep = ~done
                idx, m_a, u_a, r, p, rr, stop = (t[keep] for t in (idx, m_a, u_a, r, p, rr, stop))
        ap = op(p)
        alpha = rr / _dot(p, ap).clamp_min(1e-30)
        u_a.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1)
        rr_new = _dot(r, r)
        p.mul_(rr_new / rr.clamp_min(1e-30)).add_(r)
        rr = rr_new
    out[idx] = u_a
    return out


def road_impute(x: torch.Tensor, removed: torch.Tensor, tol: float = 3e-5, max_iter: int = 400,
                min_size: int = 8, coarse_tol: float = 1e-4) -> torch.Tensor:
    """Noise-free linear imputation of ``removed`` pixels, all images at once.

    Nested iteration: the same problem is solved on a 2× coarser grid first (a cell is
    removed when any of its pixels is), its solution upsampled as the starting point, and
    conjugate gradients finish at full resolution; low-frequency error is then already
    gone, so a few iterations per level suffice whatever the size of the holes."""
    m = removed.unsqueeze(1).to(x.dtype).expand_as(x).contiguous()
    spatial = x.shape[2:]
    d = len(spatial)
    if min(spatial) >= 2 * min_size and bool(m.any()):
        pad = tuple(p for s in reversed(spatial) for p in (0, s % 2))
        pool = F.avg_pool2d if d == 2 else F.avg_pool3d
        known = pool(F.pad(1 - m, pad, mode="replicate"), 2)
        xc = pool(F.pad(x * (1 - m), pad, mode="replicate"), 2) / known.clamp_min(1e-12)
        coarse = road_impute(xc, known[:, 0] == 0, coarse_tol, max_iter, min_size, coarse_tol)
        up = F.interpolate(coarse, scale_factor=2, mode="bilinear" if d == 2 else "trilinear", align_corners=False)
        u = up[(..., *(slice(0, s) for s in spatial))]
    else:
        u = torch.where(m > 0, x.mean(dim=tuple(range(2, x.ndim)), keepdim=True).expand_as(x), x)
    return x * (1 - m) + _cg(x, m, u, tol, max_iter)


# --------------------------------------------------------------------------- passes


@torch.no_grad()
def removal_scores(model: Classifier, target: Target, images: torch.Tensor,
                   removed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], n_levels: int,
                   filler: Filler, chunk: int, seed: int = 0, canvas: torch.Tensor | None = None) -> torch.Tensor:
    """T of every (image, level) pair, N×L, in chunks of ``chunk`` perturbed images.

    ``removed(img_idx, level_idx)`` returns the B×*S bool removal masks of those rows, so
    the N×L×*S stack is never materialised. ``canvas`` overrides the filler's fill values
    (insertion starts from it)."""
    dev = images.device
    n = images.shape[0]
    if canvas is None:
        canvas = filler.canvas(images)
    gen = torch.Generator().manual_seed(int(seed))
    rows = torch.arange(n * n_levels, device=dev)
    out = torch.empty(n * n_levels, device=dev)
    for start in range(0, len(rows), chunk):
        r = rows[start:start + chunk]
        i, lev = r // n_levels, r % n_levels
        x = images[i]
        xp = filler.apply(x, removed(i, lev), None if canvas is None else canvas[i], gen)
        out[start:start + chunk] = target.subset(i.to(target.classes.device))(model, xp).float()
    return out.view(n, n_levels)


def ordered_units(a: torch.Tensor, patch: int = 1) -> tuple[torch.Tensor, int]:
    """Rank of every pixel's unit and the number of units.

    ``a`` is N×*S. With ``patch`` > 1 pixels are grouped into non-overlapping patches
    (``patch`` pixels along every axis) on a grid padded as Quantus pads (floor/ceil halves)
    and ranked by their attribution sum. Returns ``(unit_rank N×*S, n_units)``: 0 = most
    attributed unit, ties by unit index (row-major)."""
    n, spatial = a.shape[0], tuple(a.shape[1:])
    if patch == 1:
        flat = a.reshape(n, -1)
        order = torch.sort(flat, dim=1, descending=True, stable=True).indices
        rank = torch.empty_like(order)
        rank.scatter_(1, order, torch.arange(flat.shape[1], device=a.device).expand_as(order))
        return rank.view(n, *spatial), math.prod(spatial)
    unit = torch.zeros((1,) * len(spatial), dtype=torch.long, device=a.device)
    n_units = 1
    for axis, s in enumerate(spatial):  # row-major unit ids: unit · g + index along this axis
        g = -(-(s + (-s) % patch) // patch)
        idx = (torch.arange(s, device=a.device) + ((-s) % patch) // 2) // patch
        unit = unit * g + idx.view([-1 if k == axis else 1 for k in range(len(spatial))])
        n_units *= g
    unit = unit.reshape(-1)
    sums = torch.zeros(n, n_units, device=a.device, dtype=a.dtype).index_add_(1, unit, a.reshape(n, -1))
    order = torch.sort(sums, dim=1, descending=True, stable=True).indices
    urank = torch.empty_like(order)
    urank.scatter_(1, order, torch.arange(n_units, device=a.device).expand_as(order))
    return urank[:, unit].view(n, *spatial), n_units


@dataclass(frozen=True)
class ProbabilityTarget:
    """The softmax probability of the explained class (RISE's deletion/insertion score)."""

    classes: torch.Tensor

    def subset(self, index: slice | torch.Tensor) -> "ProbabilityTarget":
        return ProbabilityTarget(self.classes[index])

    def __call__(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        p = model(x).float().softmax(1)
        return p.gather(1, self.classes.to(p.device).view(-1, 1)).squeeze(1)


def random_ranks(n: int, draws: int, p: int, seed: int, device: torch.device) -> torch.Tensor:
    """``draws`` independent uniformly random pixel rankings per image, N×R×P (seeded, CPU
    generator so the draws are the same on every device)."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(n, draws, p, generator=g).argsort(dim=2).argsort(dim=2).to(device, torch.int32)
