"""Field of view and hemispheres of the ``nifti`` dataset.

Why a crop: on whole-brain 64-px slices the hippocampus covers 0.3–0.6 % of the image and
every explainer sits at chance; the embedded data use a 104 mm medial-temporal field of
view. ``crop_mm`` cuts a box of that physical size out of each slice *before* resizing,
centred on the scan's ROI centroid or on fixed RAS (scanner / MNI) coordinates.

Why hemispheres: laterality questions (left vs right hippocampus) need per-side masks. They
come from label values of the ROI mask (``hemisphere_labels``, e.g. FreeSurfer 17 / 53) or
from a split of the ROI at the midline, a plane of constant RAS x (in the RAS voxel grid
axis 0 runs from the patient's left to right, so left is the low-x side).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ._nifti_volume import PLANE_AXIS

MIDLINES = ("brain-centroid", "roi-centroid")


def voxel_of(affine: np.ndarray, xyz: Any) -> np.ndarray:
    """Voxel coordinates (float) of a RAS world point in mm."""
    return (np.linalg.inv(affine) @ np.r_[np.asarray(xyz, dtype=float), 1.0])[:3]


def centroid(mask: np.ndarray) -> np.ndarray:
    """Mean voxel coordinates of a non-empty boolean volume (or image)."""
    return np.array([ix.mean() for ix in np.nonzero(mask)], dtype=float)


def display_point(voxel: np.ndarray, plane: str, shape: tuple[int, ...]) -> tuple[float, float]:
    """(row, column) of a voxel in a slice as :func:`._nifti_volume.cut` shows it."""
    rest = [a for a in range(3) if a != PLANE_AXIS[plane]]
    return shape[rest[1]] - 1 - float(voxel[rest[1]]), float(voxel[rest[0]])


def crop(img: np.ndarray, center: tuple[float, float], box_mm: tuple[float, float],
         spacing: tuple[float, float]) -> np.ndarray:
    """The ``box_mm`` (rows, columns) window of ``img`` centred on ``center`` (pixels);
    parts outside the slice are background (0)."""
    h = max(1, int(round(box_mm[0] / spacing[0])))
    w = max(1, int(round(box_mm[1] / spacing[1])))
    r0 = int(np.floor(center[0] + 0.5 - h / 2))
    c0 = int(np.floor(center[1] + 0.5 - w / 2))
    out = np.zeros((h, w), dtype=img.dtype)
    rs, cs = max(r0, 0), max(c0, 0)
    re, ce = min(r0 + h, img.shape[0]), min(c0 + w, img.shape[1])
    if re > rs and ce > cs:
        out[rs - r0:re - r0, cs - c0:ce - c0] = img[rs:re, cs:ce]
    return out


def midline_x(midline: str | float, brain: np.ndarray, roi: np.ndarray | None,
              affine: np.ndarray | None) -> float:
    """Position of the midline along axis 0 (volumes) or the column axis (2-D arrays), in voxels."""
    axis = 0 if brain.ndim == 3 else 1
    if midline == "brain-centroid":
        return float(centroid(brain)[axis])
    if midline == "roi-centroid":
        assert roi is not None
        return float(centroid(roi)[axis])
    assert affine is not None
    return float(voxel_of(affine, [float(midline), *(affine[1:3, 3] + affine[1:3, :3] @ centroid(brain))])[0])


def split_sides(roi: np.ndarray, mid: float) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) parts of ``roi`` on either side of ``mid`` along the left→right axis."""
    axis = 0 if roi.ndim == 3 else 1
    shape = [1] * roi.ndim
    shape[axis] = roi.shape[axis]
    left = (np.arange(roi.shape[axis]) < mid).reshape(shape)
    return roi & left, roi & ~left
