"""The simulator behind ``synthetic-hippocampus``: one subject = one set of 2-D slices cut
from a warped MNI152 template with an explicit hippocampus per hemisphere.

Why by hand: no library simulates hippocampal atrophy on a template, and a full 3-D
registration-style warp per subject would cost seconds. Instead every output pixel is a
3-D point in the subject's space; we push only those points (a few thousand per slice)
through the subject's transforms back into template space and sample the template there
(``scipy.ndimage.map_coordinates``). The ROI mask is evaluated on the same points, so image
and mask are deformed together and the hippocampal volume stays analytic.

Chain for a pixel at native point ``P`` (mm, RAS):
``P`` → smooth random displacement → inverse head scale, small rotation and shift → ``Q``
(template space, where the reference hippocampi live) → per-hemisphere atrophy map
(the subject's hippocampus, thinner or thicker in cross-section than the reference, is
mapped onto the reference ellipsoid; tissue around it follows smoothly) → sample.
A thinner hippocampus gets a CSF shell over its upper half and sides, thicker the thinner
it is (the widened temporal horn and choroid fissure that radiologists score as medial
temporal atrophy; the parahippocampal white matter below stays).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
from scipy import ndimage

# Anatomical facts (MNI152 mm, RAS): centroids and long axis head → tail per hemisphere.
CENTROIDS = {"left": (-25.0, -22.0, -14.0), "right": (27.0, -21.0, -14.0)}
AXES = {"left": ((-24.0, -9.0, -23.0), (-22.0, -37.0, 0.0)), "right": ((24.0, -9.0, -23.0), (22.0, -37.0, 0.0))}
SEMI_AXES = (21.0, 9.5, 5.7)  # mm: half-length along the axis, medio-lateral, perpendicular
REF_VOLUME = 4.0 / 3.0 * np.pi * np.prod(SEMI_AXES)  # ≈ 4.76 cm³ per side (the reference)
SIDE_FACTOR = {"left": 0.985, "right": 1.015}  # right hippocampus slightly larger (known asymmetry)
GM_LEVEL, CSF_LEVEL = 0.55, 0.12  # template intensities painted for hippocampus / CSF
PAINT = 0.6  # blend weight of the painted hippocampus over the template
CSF_GAIN = 2.5  # CSF shell thickness (in ellipsoid radii) per unit of relative thinning
WHITE_LEVEL = 0.85  # each image is rescaled so its 99th percentile sits here (before noise)
TIV_REF = 1.45e6  # mm³, total intracranial volume at head scale 1

# Field of view per plane: the two in-plane axes (RAS index, sign of the image's row/col
# direction) and the default centre. Display: patient's left on the image's left,
# superior (coronal, sagittal) or anterior (axial) on top.
PLANES = {
    # plane: (normal axis, row axis, col axis, centre of (row, col) in mm, default normal position)
    "coronal": (1, 2, 0, (-6.0, 1.0), -22.0),
    "axial": (2, 1, 0, (-22.0, 1.0), -14.0),
    "sagittal": (0, 2, 1, (-6.0, -22.0), -25.0),  # through the left hippocampus
}
SLICE_SPAN = {"coronal": 6.0, "axial": 4.0, "sagittal": 3.0}  # mm either side for several slices


def _frame(side: str) -> np.ndarray:
    """Rows = unit vectors (long axis, medio-lateral, perpendicular) of the ellipsoid."""
    head, tail = (np.asarray(p) for p in AXES[side])
    e1 = (tail - head) / np.linalg.norm(tail - head)
    lat = np.array([1.0, 0.0, 0.0])
    e2 = lat - (lat @ e1) * e1
    e2 /= np.linalg.norm(e2)
    return np.stack([e1, e2, np.cross(e1, e2)])


FRAMES = {s: _frame(s) for s in CENTROIDS}


TEMPLATE_FILE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"  # what load_mni152_template reads


@lru_cache(maxsize=1)
def _raw_template() -> tuple[np.ndarray, np.ndarray]:
    """nilearn's skull-stripped 1 mm MNI152 T1 template, rescaled to [0, 1] exactly as
    ``nilearn.datasets.load_mni152_template`` does. The file ships with nilearn (no network);
    we read it with nibabel when we can find it, because importing ``nilearn.datasets``
    alone costs seconds, and fall back to nilearn's loader otherwise."""
    import importlib.util

    import nibabel as nib

    spec = importlib.util.find_spec("nilearn")
    path = None
    if spec is not None and spec.submodule_search_locations:
        candidate = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / TEMPLATE_FILE
        path = candidate if candidate.is_file() else None
    if path is not None:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float32)
        data /= data.max()
        return data, np.asarray(img.affine)
    from nilearn.datasets import load_mni152_template

    img = load_mni152_template(resolution=1)
    return np.asarray(img.get_fdata(), dtype=np.float32), np.asarray(img.affine)


@lru_cache(maxsize=4)
def painted_template(smooth_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """The template with the reference hippocampi painted in, pre-smoothed against aliasing."""
    vol, affine = _raw_template()
    vol = vol.copy()
    for side in CENTROIDS:  # only touch a box around each hippocampus
        c = np.asarray(CENTROIDS[side])
        lo = np.floor(c - 30 - affine[:3, 3]).astype(int)
        hi = np.ceil(c + 30 - affine[:3, 3]).astype(int)
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        pts = np.stack(np.meshgrid(*[np.arange(a, b) for a, b in zip(lo, hi)], indexing="ij"), -1)
        rho = ellipsoid_radius(pts + affine[:3, 3], side, 1.0)
        w = PAINT * np.clip((1.15 - rho) / 0.3, 0.0, 1.0)
        vol[box] = vol[box] * (1 - w) + GM_LEVEL * w
    if smooth_mm > 0:
        vol = ndimage.gaussian_filter(vol, smooth_mm, truncate=2.5)
    return vol, affine


def ellipsoid_radius(q: np.ndarray, side: str, k: float) -> np.ndarray:
    """Normalised radius of points ``q`` (…×3, template mm) w.r.t. the hippocampus of
    ``side`` whose cross-section is scaled by ``k`` (1 = reference); ≤ 1 means inside."""
    u = (q - np.asarray(CENTROIDS[side])) @ FRAMES[side].T / np.asarray(SEMI_AXES)
    return np.sqrt(u[..., 0] ** 2 + (u[..., 1] ** 2 + u[..., 2] ** 2) / (k * k))


def atrophy_map(q: np.ndarray, side: str, k: float, reach: float = 1.0) -> np.ndarray:
    """Where template point should be sampled so that the reference hippocampus appears
    with cross-section scaled by ``k``; identity beyond ``reach`` (normalised radius) outside."""
    c, f, s = np.asarray(CENTROIDS[side]), FRAMES[side], np.asarray(SEMI_AXES)
    u = (q - c) @ f.T / s
    rho = np.sqrt(u[..., 0] ** 2 + (u[..., 1] ** 2 + u[..., 2] ** 2) / (k * k))
    h = np.clip(1.0 - (rho - 1.0) / reach, 0.0, 1.0)
    h = h * h * (3 - 2 * h)  # smoothstep: 1 inside, 0 beyond reach
    scale = 1.0 + (1.0 / k - 1.0) * h
    u2 = u.copy()
    u2[..., 1] *= scale
    u2[..., 2] *= scale
    return (u2 * s) @ f + c


@dataclass(frozen=True)
class Subject:
    """Everything random about one subject (drawn by :func:`draw_subject`)."""

    label: int
    age: float
    sex: str
    head_scale: float
    volume: dict[str, float]  # mm³ per side, native space
    k: dict[str, float]  # cross-section scale of each hippocampus vs the reference
    rotation: np.ndarray  # 3×3
    shift: np.ndarray  # mm
    seed: int  # for the per-slice fields
    # the same subject in the other group (atrophy added or removed): the counterfactual
    # whose rendering tells where the group effect changes this subject's image
    k_other: dict[str, float] = field(default_factory=dict)


def draw_subject(rng: np.random.Generator, label: int, atrophy: float, deform: float) -> Subject:
    sex = "M" if rng.random() < 0.5 else "F"
    age = float(np.clip(rng.normal(73.0, 7.0), 55.0, 92.0))
    head = float(np.exp(rng.normal(0.03 if sex == "M" else -0.03, 0.03)))
    shared = rng.normal(0.0, 0.08)  # between-subject biological spread of hippocampal size
    volume, k, k_other = {}, {}, {}
    for side in ("left", "right"):
        ratio = (1 - atrophy * label) * (1 - 0.004 * (age - 73.0)) * np.exp(shared + rng.normal(0.0, 0.03))
        v = REF_VOLUME * SIDE_FACTOR[side] * head**3 * ratio
        volume[side] = float(v)
        k[side] = float(np.sqrt(v / (REF_VOLUME * head**3)))
        k_other[side] = float(k[side] * np.sqrt((1 - atrophy * (1 - label)) / (1 - atrophy * label)))
    angles = np.deg2rad(rng.normal(0.0, 1.0 + deform, 3))
    rot = _rotation(*angles)
    shift = rng.normal(0.0, 0.5 + 0.5 * deform, 3)
    return Subject(label, age, sex, head, volume, k, rot, shift, int(rng.integers(2**31)), k_other)


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rx = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rz = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return rz @ ry @ rx


@lru_cache(maxsize=16)
def _upsampler(size: int, coarse: int) -> np.ndarray:
    """``size×coarse`` matrix that cubic-spline-upsamples a coarse grid (separable, so a
    field is ``B @ g @ B.T``: much cheaper than ``ndimage.zoom`` per field)."""
    eye = np.eye(coarse)
    return np.stack([ndimage.zoom(e, size / coarse, order=3, mode="nearest")[:size] for e in eye], 1)


def _smooth_field(rng: np.random.Generator, channels: int, size: int, coarse: int) -> np.ndarray:
    """``channels×size×size`` smooth random field with unit-ish amplitude."""
    g = rng.normal(0.0, 1.0, (channels, coarse, coarse))
    b = _upsampler(size, coarse)
    return b @ g @ b.T


EVIDENCE_LEVEL = 0.02  # |image(own group) − image(other group)| above this (noise-free) is evidence
BRAIN_LEVEL = 0.05  # noise-free intensity above this is brain (the template is skull-stripped)


@dataclass(frozen=True)
class Slice:
    """One rendered slice (or volume, :mod:`._hippocampus_vol`): the image and every mask the simulator knows."""

    image: np.ndarray  # size×size (or D×H×W) float32 in [0, 1], with noise
    roi_left: np.ndarray  # bool: the left hippocampus
    roi_right: np.ndarray  # bool: the right hippocampus
    evidence: np.ndarray  # bool: where the other group's version of this subject differs
    brain: np.ndarray  # bool: brain (noise-free intensity above BRAIN_LEVEL)
    position: float  # mm along the plane normal
    difference: np.ndarray  # float32: noise-free image minus the other group's version of it

    @property
    def roi(self) -> np.ndarray:
        return self.roi_left | self.roi_right


def _grid(plane: str, size: int, fov: float, pos: float, pose: tuple[float, float, float]) -> np.ndarray:
    """``size×size×3`` native points of the slice window, shifted by ``pose[:2]`` mm (row,
    column) and rotated in-plane by ``pose[2]`` degrees about its centre."""
    normal, row_ax, col_ax, (rc, cc), _ = PLANES[plane]
    lin = (np.arange(size) - (size - 1) / 2) * (fov / size)
    u, v = np.meshgrid(lin, lin, indexing="ij")  # u: down the rows, v: along the columns
    t = np.deg2rad(pose[2])
    u2, v2 = np.cos(t) * u - np.sin(t) * v, np.sin(t) * u + np.cos(t) * v
    p = np.zeros((size, size, 3))
    p[..., row_ax] = rc + pose[0] - u2  # top row = superior / anterior
    p[..., col_ax] = cc + pose[1] + v2
    p[..., normal] = pos
    return p


def _tissue(q: np.ndarray, k: dict[str, float], vol: np.ndarray, affine: np.ndarray
            ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Noise-free, unbiased intensity at template points ``q`` for hippocampi of
    cross-section ``k``, and the hippocampus mask per side (``q``: ``*S×3``, slice or volume)."""
    size = q.shape[:-1]
    masks = {}
    csf = np.zeros(size)
    src = q.copy()
    for side in ("left", "right"):
        rho_s = ellipsoid_radius(q, side, k[side])
        masks[side] = rho_s <= 1.0
        width = CSF_GAIN * max(0.0, 1.0 / k[side] - 1.0)  # widened CSF shell around a thin hippocampus
        if width > 0:
            shell = np.clip((rho_s - 1.0) / 0.1, 0, 1) * np.clip((1.0 + width - rho_s) / 0.1 + 0.5, 0, 1)
            rel = q - np.asarray(CENTROIDS[side])
            up = rel[..., 2] / np.maximum(np.linalg.norm(rel, axis=-1), 1e-6)
            shell = shell * np.clip((up + 0.3) / 0.6, 0, 1)  # above and beside it, not below
            csf = np.maximum(csf, shell)
        near = ellipsoid_radius(q, side, 1.0) < 2.5
        src[near] = atrophy_map(q[near], side, k[side])
    ijk = (src - affine[:3, 3]) / np.diag(affine)[:3]
    img = ndimage.map_coordinates(vol, ijk.reshape(-1, 3).T, order=1, mode="constant").reshape(size)
    return img * (1 - 0.85 * csf) + CSF_LEVEL * 0.85 * csf, masks


def _gain(img: np.ndarray) -> np.ndarray:
    """Per-image gain, as scanners differ: the 99th percentile goes to WHITE_LEVEL."""
    return img * (WHITE_LEVEL / max(float(np.percentile(img, 99)), 1e-6))


def render(subj: Subject, plane: str, offsets: list[float], size: int, fov: float,
           noise: float, deform: float, jitter: tuple[float, float] = (0.0, 0.0)) -> list[Slice]:
    """The slices of one subject. ``jitter`` = (shift mm, rotation degrees): each slice
    window is moved by U(−shift, shift) along both in-plane axes and turned by
    U(−rotation, rotation) in-plane, drawn from a stream of its own (so ``(0, 0)`` gives
    exactly the unjittered data). The subject is rendered twice, as it is and as it would
    be in the other group, on the same points with the same bias field; the noise-free
    difference above EVIDENCE_LEVEL is the evidence mask."""
    pos0 = PLANES[plane][4]
    vol, affine = painted_template(round(0.45 * fov / size, 2))
    rng = np.random.default_rng(subj.seed)
    pose_rng = np.random.default_rng([subj.seed, 0x9053])
    out = []
    for off in offsets:
        pos = pos0 + off + rng.normal(0.0, 1.0)
        pose = (*pose_rng.uniform(-jitter[0], jitter[0], 2), pose_rng.uniform(-jitter[1], jitter[1]))
        p = _grid(plane, size, fov, pos, pose)
        p += np.moveaxis(_smooth_field(rng, 3, size, 4), 0, -1) * deform
        out.append(shade(subj, p, lambda: _smooth_field(rng, 1, size, 3)[0], rng, noise, deform, pos, vol, affine))
    return out


def shade(subj: Subject, p: np.ndarray, bias_field, rng: np.random.Generator, noise: float, deform: float,
          pos: float, vol: np.ndarray, affine: np.ndarray) -> Slice:
    """Image and masks at native points ``p`` (``*S×3``, already displaced): tissue as it is
    and in the other group, one bias field (``bias_field()``, drawn after the displacement
    and before the noise: the order of the 2-D stream), gain, Rician noise."""
    q = (p - subj.shift) @ subj.rotation.T / subj.head_scale
    img, masks = _tissue(q, subj.k, vol, affine)
    other = _tissue(q, subj.k_other, vol, affine)[0] if subj.k_other else img
    bias = np.exp(0.08 * (1 + deform / 3) * bias_field())
    img, other = _gain(img * bias), _gain(other * bias)
    n1, n2 = rng.normal(0.0, noise, (2, *img.shape))
    noisy = np.sqrt((img + n1) ** 2 + n2**2)  # Rician magnitude noise, as in MR magnitude images
    return Slice(np.clip(noisy, 0.0, 1.0).astype(np.float32), masks["left"], masks["right"],
                 np.abs(img - other) > EVIDENCE_LEVEL, img > BRAIN_LEVEL, float(pos),
                 (img - other).astype(np.float32))
