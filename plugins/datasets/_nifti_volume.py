"""Volume-level steps of the ``nifti`` dataset: read, check, match the mask, cut slices,
normalise intensities and resize.

Why by hand: nibabel reads and reorients, scipy (through ``nibabel.processing``)
resamples masks, torch resizes; what is left — the checks that turn a bad scan into a
one-line message naming the file, the slice position and the intensity window — is
specific to this benchmark's contract (``N×1×H×W`` in ``[0, 1]``, boolean ROI).

Slices are returned in the neurological display convention of the RAS grid: the
patient's left on the image's left, superior (coronal, sagittal) or anterior (axial) on top.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F

from xaibench.errors import XaibenchError

PLANE_AXIS = {"sagittal": 0, "coronal": 1, "axial": 2}  # voxel axis of the RAS grid cut by the plane
Z_WINDOW = 3.0  # zscore-brain maps z in [-3, 3] linearly onto [0, 1]
MASK_KEEP = 0.5  # a resampled mask must keep at least half of its volume (mm³)


def _fail(where: str, what: str) -> XaibenchError:
    return XaibenchError(f"dataset nifti: {where}: {what}")


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def read_volume(path: Path, where: str, kind: str = "image") -> tuple[np.ndarray, nib.Nifti1Image]:
    """The volume as float32 in RAS orientation (closest canonical) and its reoriented image.

    A trailing singleton 4th axis (X×Y×Z×1) is dropped; real 4-D series are refused.
    """
    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asarray(img.get_fdata(dtype=np.float32))
    except Exception as exc:  # nibabel raises many types for truncated / foreign files
        raise _fail(where, f"cannot read {kind} {path} ({_one_line(exc)}); is the file complete "
                           "and a NIfTI .nii/.nii.gz?") from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise _fail(where, f"{kind} {path} has shape {data.shape}; a 3-D volume is needed "
                           "(pick one volume of a 4-D series, e.g. with fslroi, before listing it)")
    bad = int(np.size(data) - np.count_nonzero(np.isfinite(data)))
    if bad:
        raise _fail(where, f"{kind} {path} has {bad} NaN/inf voxels; fix or replace them "
                           "(e.g. with 0) before loading")
    return data, img


def read_mask(path: Path, image: nib.Nifti1Image, where: str, *, threshold: float,
              labels: tuple[int, ...] | None, resample: str) -> tuple[np.ndarray, bool]:
    """The ROI as a boolean array on the image's voxel grid, and whether it was non-binary.

    Binarisation: ``labels`` given → voxels whose (rounded) value is one of them; otherwise
    voxels ≥ ``threshold`` (values other than 0/1 are reported to the caller, who warns).
    A mask on another grid is resampled to the image with nearest neighbour unless
    ``resample == "never"``; a mask that then loses more than half its volume does not lie
    in the image's space and is refused.
    """
    data, mimg = read_volume(path, where, kind="roi_mask")
    if labels is not None:
        mask = np.isin(np.rint(data), np.asarray(labels))
        nonbinary = False
    else:
        nonbinary = bool(np.any((data != 0) & (data != 1)))
        mask = data >= threshold
    if not mask.any():
        what = f"labels {list(labels)}" if labels is not None else f"voxels >= {threshold}"
        raise _fail(where, f"roi_mask {path} is empty (no {what}); give a mask that marks the ROI")
    shape = image.shape[:3]
    if mask.shape == shape and np.allclose(mimg.affine, image.affine, atol=1e-3):
        return mask, nonbinary
    if resample == "never":
        raise _fail(where, f"roi_mask {path} (shape {mask.shape}) does not share the image's shape "
                           f"{shape} and affine; resample it to the image or set mask_resample = \"nearest\"")
    import nibabel.processing as nproc

    src = nib.Nifti1Image(mask.astype(np.uint8), mimg.affine)
    res = np.asarray(nproc.resample_from_to(src, (shape, image.affine), order=0).dataobj) > 0
    before = mask.sum() * abs(np.linalg.det(mimg.affine[:3, :3]))
    after = res.sum() * abs(np.linalg.det(image.affine[:3, :3]))
    if after < MASK_KEEP * before:
        raise _fail(where, f"roi_mask {path} cannot be matched to the image: resampled onto the "
                           f"image's grid it keeps {after / before:.0%} of its volume; is it in the same "
                           "space (registered to this scan)?")
    return res, nonbinary


def slice_indices(shape: tuple[int, ...], plane: str, position: str | int, k: int,
                  mask: np.ndarray | None, where: str) -> list[int]:
    """The ``k`` voxel indices (along the plane's axis) of the slices to cut."""
    axis = PLANE_AXIS[plane]
    n = shape[axis]
    if position == "center":
        c = n // 2
    elif position == "roi-centroid":
        assert mask is not None
        other = tuple(a for a in range(3) if a != axis)
        area = mask.sum(axis=other)
        c = int(np.rint((area * np.arange(n)).sum() / area.sum()))
        if area[c] == 0:  # e.g. both hippocampi cut sagittally: the centroid is the midline
            best = np.flatnonzero(area == area.max())  # → the largest ROI cross-section,
            c = int(best[np.argmin(np.abs(best - c))])  # nearest the centroid on ties
    else:
        c = int(position)
    idx = [c + o for o in range(-(k // 2), k - k // 2)]
    if idx[0] < 0 or idx[-1] >= n:
        raise _fail(where, f"{plane} slices {idx[0]}..{idx[-1]} fall outside the volume "
                           f"(0..{n - 1} along that axis); choose another slice or fewer slices")
    return idx


def cut(volume: np.ndarray, plane: str, index: int) -> np.ndarray:
    """One slice in display orientation (rows top→bottom, columns patient left→right)."""
    s = np.take(volume, index, axis=PLANE_AXIS[plane])
    return np.ascontiguousarray(np.flipud(s.T))


def in_plane_spacing(zooms: tuple[float, ...], plane: str) -> tuple[float, float]:
    """(row, column) pixel spacing in mm of a slice returned by :func:`cut`."""
    rest = [a for a in range(3) if a != PLANE_AXIS[plane]]
    return float(zooms[rest[1]]), float(zooms[rest[0]])


@dataclass(frozen=True)
class Window:
    """Per-volume intensity statistics; ``apply`` maps any slice of it into [0, 1]."""

    method: str
    floor: float  # the volume's minimum: voxels at it are background
    lo: float
    hi: float
    mean: float = 0.0
    std: float = 1.0

    def apply(self, x: np.ndarray) -> np.ndarray:
        if self.method == "none":
            return x.astype(np.float32)
        c = np.clip(x, self.lo, self.hi)
        if self.method == "minmax":
            out = (c - self.lo) / max(self.hi - self.lo, 1e-12)
        else:
            out = np.clip(((c - self.mean) / self.std + Z_WINDOW) / (2 * Z_WINDOW), 0.0, 1.0)
            out[x <= self.floor] = 0.0
        return out.astype(np.float32)


def window(volume: np.ndarray, method: str, clip: tuple[float, float], where: str) -> Window:
    """Statistics over the brain, i.e. the voxels above the volume's minimum (background)."""
    floor = float(volume.min())
    if method == "none":
        if floor < 0 or float(volume.max()) > 1:
            raise _fail(where, f"normalise = \"none\" needs intensities in [0, 1], found "
                               f"[{floor:.3g}, {float(volume.max()):.3g}]; use minmax or zscore-brain")
        return Window("none", floor, 0.0, 1.0)
    brain = volume[volume > floor]
    if brain.size == 0:
        raise _fail(where, "the image is constant (no brain voxels above the background)")
    lo, hi = (float(v) for v in np.percentile(brain, clip))
    if method == "minmax":
        return Window("minmax", floor, lo, hi)
    c = np.clip(brain, lo, hi)
    std = float(c.std())
    return Window("zscore-brain", floor, lo, hi, float(c.mean()), std if std > 0 else 1.0)


def _fit(shape: tuple[int, int], size: int, spacing: tuple[float, float]) -> tuple[tuple[int, int], tuple[int, ...]]:
    """Output size and padding that keep the physical aspect ratio inside ``size×size``."""
    h_mm, w_mm = shape[0] * spacing[0], shape[1] * spacing[1]
    scale = size / max(h_mm, w_mm)
    oh, ow = max(1, min(size, round(h_mm * scale))), max(1, min(size, round(w_mm * scale)))
    top, left = (size - oh) // 2, (size - ow) // 2
    return (oh, ow), (left, size - ow - left, top, size - oh - top)


def resize_mask(mask: np.ndarray, size: int, spacing: tuple[float, float] = (1.0, 1.0)) -> torch.Tensor:
    """``size×size`` bool mask, on the same grid as :func:`resize` puts the image."""
    out, pad = _fit(mask.shape, size, spacing)
    m = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    return F.pad(F.interpolate(m, size=out, mode="nearest-exact"), pad)[0, 0] > 0.5


def resize(img: np.ndarray, mask: np.ndarray | None, size: int,
           spacing: tuple[float, float] = (1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """``size×size`` float image and bool mask keeping the slice's physical aspect ratio:
    the longer side fills the square, the shorter one is padded with background (0)."""
    out, pad = _fit(img.shape, size, spacing)
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32))[None, None]
    t = F.interpolate(t, size=out, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
    image = F.pad(t, pad)[0]
    if mask is None:
        return image, torch.zeros(size, size, dtype=torch.bool)
    return image, resize_mask(mask, size, spacing)
