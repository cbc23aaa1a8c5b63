"""Volumes for ``synthetic-hippocampus`` with ``dims = 3``: the same subjects and the same
simulation as the 2-D slices (:mod:`._hippocampus_sim`), rendered on a 3-D box of points
around both medial temporal lobes instead of a slice window.

Why a box of points rather than warping the template: as in 2-D, only the output voxels are
pushed through the subject's transforms (a 24×32×32 volume is 25 k points, a full 1 mm
template 8.7 M), so a volume costs tens of milliseconds and the masks come from the same points.

Axes ``D×H×W``: rows and columns as the 2-D plane shows them (patient left on the image's
left; superior or anterior on top), depth along the plane's normal with increasing RAS
coordinate (coronal: posterior → anterior). Voxels are isotropic, ``field_of_view / image_size`` mm.
Pose jitter shifts the box by up to ``shift`` mm along all three axes and turns it in-plane
(about the normal) by up to ``rotation`` degrees; the smooth displacement and the bias field
are 3-D fields of the same coarseness as the 2-D ones.
"""
from __future__ import annotations

import numpy as np

from . import _hippocampus_sim as sim


def box_grid(plane: str, shape: tuple[int, int, int], voxel: float,
             pose: tuple[float, float, float, float]) -> np.ndarray:
    """``D×H×W×3`` native points (mm) of the box centred on the plane's window and its default
    normal position, shifted by ``pose[:3]`` (row, column, depth) and turned in-plane by ``pose[3]``°."""
    normal, row_ax, col_ax, (rc, cc), pos0 = sim.PLANES[plane]
    lin = [(np.arange(n) - (n - 1) / 2) * voxel for n in shape]
    t, u, v = np.meshgrid(*lin, indexing="ij")
    a = np.deg2rad(pose[3])
    u2, v2 = np.cos(a) * u - np.sin(a) * v, np.sin(a) * u + np.cos(a) * v
    p = np.zeros((*shape, 3))
    p[..., row_ax] = rc + pose[0] - u2  # top row = superior / anterior, as in 2-D
    p[..., col_ax] = cc + pose[1] + v2
    p[..., normal] = pos0 + pose[2] + t
    return p


def smooth_volume(rng: np.random.Generator, channels: int, shape: tuple[int, int, int], coarse: int) -> np.ndarray:
    """``channels×D×H×W`` smooth random field: a ``coarse³`` normal grid, cubic-spline upsampled per axis."""
    g = rng.normal(0.0, 1.0, (channels, coarse, coarse, coarse))
    bd, bh, bw = (sim._upsampler(n, coarse) for n in shape)
    return np.einsum("ai,bj,ck,nijk->nabc", bd, bh, bw, g, optimize=True)


def render_volume(subj: sim.Subject, plane: str, shape: tuple[int, int, int], fov: float, noise: float,
                  deform: float, jitter: tuple[float, float] = (0.0, 0.0)) -> sim.Slice:
    """One subject's volume with every mask (``Slice`` fields, ``D×H×W``); ``position`` is the
    box centre along the plane normal (mm). Noise-free renders as it is and in the other group
    give the evidence mask, exactly as for slices."""
    voxel = fov / shape[1]
    vol, affine = sim.painted_template(round(0.45 * voxel, 2))
    rng = np.random.default_rng(subj.seed)
    pose_rng = np.random.default_rng([subj.seed, 0x9053])
    pose = (*pose_rng.uniform(-jitter[0], jitter[0], 3), pose_rng.uniform(-jitter[1], jitter[1]))
    p = box_grid(plane, shape, voxel, pose)
    p += np.moveaxis(smooth_volume(rng, 3, shape, 4), 0, -1) * deform
    pos = sim.PLANES[plane][4] + pose[2]
    return sim.shade(subj, p, lambda: smooth_volume(rng, 1, shape, 3)[0], rng, noise, deform, pos, vol, affine)
