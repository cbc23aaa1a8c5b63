"""Frozen copies of the 2-D shape-matched placement (``plugins/metrics/_regions.py``) and ROAD
imputation (``xaibench/kit/perturb.py``) as they were before they became N-D: the N-D code
must reproduce them exactly on slices (tests/test_volumes_controls.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _shift(v: torch.Tensor, dr: torch.Tensor, dc: torch.Tensor) -> torch.Tensor:
    """``v`` (…×H×W) with out[…, y, x] = v[…, y + dr, x + dc] (False outside)."""
    h, w = v.shape[-2:]
    ys = torch.arange(h, device=v.device) + dr.unsqueeze(-1)  # …×H
    xs = torch.arange(w, device=v.device) + dc.unsqueeze(-1)  # …×W
    oky, okx = (ys >= 0) & (ys < h), (xs >= 0) & (xs < w)
    g = v.gather(-2, ys.clamp(0, h - 1).unsqueeze(-1).expand(*v.shape))
    g = g.gather(-1, xs.clamp(0, w - 1).unsqueeze(-2).expand(*v.shape))
    return g & oky.unsqueeze(-1) & okx.unsqueeze(-2)


def _kernels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Each mask's rotations/flips moved to the top-left corner: N×T×H×W, and the height
    and width (N×T) of their bounding boxes. T = 8 for square images, else the 4 that
    keep the image's shape."""
    h, w = masks.shape[-2:]
    ks = range(4) if h == w else (0, 2)
    v = torch.stack([torch.rot90(m, k, (1, 2)) for m in (masks, masks.flip(2)) for k in ks], 1)
    rows, cols = v.any(3), v.any(2)
    r0, c0 = rows.int().argmax(2), cols.int().argmax(2)
    kh = h - r0 - rows.flip(2).int().argmax(2)
    kw = w - c0 - cols.flip(2).int().argmax(2)
    empty = ~rows.any(2)
    return _shift(v, r0, c0), torch.where(empty, 0, kh).cpu(), torch.where(empty, 0, kw).cpu()


def _overlap(img: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """N×T×H×W: pixels of ``img`` (N×H×W) under each kernel placed with its corner at
    (r, c). Circular FFT correlation, exact (no wrap-around) wherever the kernel fits."""
    h, w = img.shape[-2:]
    fi = torch.fft.rfft2(img.float())  # counts ≤ H·W: float32 error is far below the 0.5 rounding
    fk = torch.fft.rfft2(kernels.float())
    return torch.fft.irfft2(fi.unsqueeze(1) * fk.conj(), s=(h, w)).round()


def random_placements(masks: torch.Tensor, brain: torch.Tensor, draws: int, generator: torch.Generator,
                      avoid: torch.Tensor | None = None) -> torch.Tensor:
    """N×draws×H×W: each mask moved ``draws`` times to a random place in its brain — among
    the placements that fit best, those missing ``avoid`` (N×H×W) if any do; all equally
    likely (``generator`` is a CPU generator, so the draws are the same on every device)."""
    n, h, w = masks.shape
    dev = masks.device
    kern, kh, kw = _kernels(masks.bool())
    area = masks.flatten(1).sum(1).double().view(n, 1, 1, 1)
    rr, cc = torch.arange(h).view(1, 1, h, 1), torch.arange(w).view(1, 1, 1, w)
    inside = ((rr <= h - kh.view(n, -1, 1, 1)) & (cc <= w - kw.view(n, -1, 1, 1)) & (kh.view(n, -1, 1, 1) > 0)).to(dev)
    # the set itself is no control: placements that reproduce it are out (unless nothing else fits)
    same = _overlap(masks.bool(), kern) >= area - 0.5
    other = inside & ~same
    inside = torch.where(other.flatten(1).any(1).view(n, 1, 1, 1), other, inside)
    fit = torch.where(inside, _overlap(brain.bool(), kern), torch.tensor(-1.0))
    best = torch.minimum(area, fit.flatten(1).amax(1).view(n, 1, 1, 1))
    ok = inside & (fit >= best - 0.5)
    if avoid is not None:
        clear = ok & (_overlap(avoid.bool(), kern) < 0.5)
        ok = torch.where(clear.flatten(1).any(1).view(n, 1, 1, 1), clear, ok)
    has = ok.flatten(1).any(1)
    if not bool(has.any()):
        return torch.zeros(n, draws, h, w, dtype=torch.bool, device=dev)
    cs = ok.flatten(1).cumsum(1).cpu()  # the u-th allowed placement, u uniform
    u = (torch.rand(n, draws, generator=generator, dtype=torch.float64) * cs[:, -1:]).long().clamp_max(
        (cs[:, -1:] - 1).clamp_min(0))
    idx = torch.searchsorted(cs, u + 1).clamp_max(cs.shape[1] - 1)
    t, rem = idx // (h * w), idx % (h * w)
    chosen = kern[torch.arange(n, device=dev).view(-1, 1), t.to(dev)]  # N×draws×H×W
    out = _shift(chosen, -(rem // w).to(dev), -(rem % w).to(dev))
    return out & has.view(n, 1, 1, 1)


def _neighbours(u: torch.Tensor) -> torch.Tensor:
    """Σ_n w_n u(p + n) over the 8 neighbours, zero outside the image. The stencil is
    ([1 2 1]ᵀ[1 2 1] − 4δ) / 12, applied separably in place: several times faster than
    a 1-channel conv2d on the CPU."""
    p = F.pad(u, (1, 1, 1, 1))
    r = p[..., :, :-2] + p[..., :, 2:]
    r.add_(p[..., :, 1:-1], alpha=2)
    c = r[..., :-2, :] + r[..., 2:, :]
    c.add_(r[..., 1:-1, :], alpha=2)
    return c.sub_(u, alpha=4).div_(12)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.einsum("nchw,nchw->n", a, b).view(-1, 1, 1, 1)


def _cg(x: torch.Tensor, m: torch.Tensor, u: torch.Tensor, tol: float, max_iter: int) -> torch.Tensor:
    """Conjugate gradients on the removed pixels ``m`` (B×C×H×W, 1 = removed) from ``u``.

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
    h, w = x.shape[-2:]
    if min(h, w) >= 2 * min_size and bool(m.any()):
        pad = (0, w % 2, 0, h % 2)
        known = F.avg_pool2d(F.pad(1 - m, pad, mode="replicate"), 2)
        xc = F.avg_pool2d(F.pad(x * (1 - m), pad, mode="replicate"), 2) / known.clamp_min(1e-12)
        coarse = road_impute(xc, known[:, 0] == 0, coarse_tol, max_iter, min_size, coarse_tol)
        u = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)[..., :h, :w]
    else:
        u = torch.where(m > 0, x.mean(dim=(2, 3), keepdim=True).expand_as(x), x)
    return x * (1 - m) + _cg(x, m, u, tol, max_iter)
