"""Build the ``nifti`` dataset's preprocessed arrays (what the cache stores) from scans or
from the array format: images, the ROI, its left / right parts and the brain mask.

Why one place: every mask must go through exactly the cut → crop → resize steps of its
image, or the masks and the pixels they mark drift apart.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

from xaibench.errors import XaibenchError

from ._nifti_fov import centroid, crop, display_point, midline_x, split_sides, voxel_of
from ._nifti_source import Row, Source
from ._nifti_volume import cut, in_plane_spacing, read_mask, read_volume, resize, resize_mask, slice_indices, window

MASKS = ("masks", "left", "right", "brain")  # cache arrays: the ROI, its sides, the brain


def _warn_nonbinary(files: list[str], o: Any) -> None:
    if files:
        warnings.warn(f"dataset nifti: {len(files)} ROI mask(s) are not binary (e.g. {files[0]}); "
                      f"thresholded at values >= {o.mask_threshold} (set mask_threshold, or mask_labels "
                      "for label maps)", UserWarning, stacklevel=4)


def _binarise(raw: np.ndarray, labels: tuple[int, ...] | None, threshold: float) -> np.ndarray:
    return np.isin(np.rint(raw), labels) if labels else raw >= threshold


class _Out:
    """Accumulates slices; ``pack`` gives the arrays the cache stores."""

    def __init__(self, n_rows: int) -> None:
        self.images: list[torch.Tensor] = []
        self.masks: dict[str, list[torch.Tensor]] = {k: [] for k in MASKS}
        self.rows: list[int] = []
        self.slices: list[int] = []
        self.mm3 = {k: np.full(n_rows, np.nan) for k in ("roi_mm3", "left_mm3", "right_mm3")}
        self.nonbinary: list[str] = []

    def add(self, image: torch.Tensor, masks: dict[str, torch.Tensor], row: int, index: int = -1) -> None:
        self.images.append(image)
        empty = torch.zeros(image.shape[-2:], dtype=torch.bool)
        for k in MASKS:
            self.masks[k].append(masks.get(k, empty))
        self.rows.append(row)
        self.slices.append(index)

    def pack(self) -> dict[str, np.ndarray]:
        out = {"images": torch.stack(self.images).numpy(), "row": np.asarray(self.rows, dtype=np.int64),
               "slice": np.asarray(self.slices, dtype=np.int64), **self.mm3}
        out.update({k: torch.stack(v).numpy() for k, v in self.masks.items()})
        return out


def _scan_masks(row: Row, vol: np.ndarray, img: Any, o: Any, out: _Out, r: int) -> dict[str, np.ndarray]:
    """The scan's 3-D masks on its voxel grid: brain always; roi, left, right with a mask file."""
    brain = vol > vol.min()
    if row.mask is None:
        return {"brain": brain}
    kw = {"threshold": o.mask_threshold, "resample": o.mask_resample}
    if o.hemisphere_labels:
        left = read_mask(row.mask, img, row.where, labels=o.hemisphere_labels["left"], **kw)[0]
        right = read_mask(row.mask, img, row.where, labels=o.hemisphere_labels["right"], **kw)[0]
        roi = left | right if o.mask_labels is None else read_mask(row.mask, img, row.where,
                                                                   labels=o.mask_labels, **kw)[0]
    else:
        roi, nonbinary = read_mask(row.mask, img, row.where, labels=o.mask_labels, **kw)
        if nonbinary:
            out.nonbinary.append(str(row.mask))
        left, right = split_sides(roi, midline_x(o.midline, brain, roi, img.affine))
    voxel = float(abs(np.linalg.det(img.affine[:3, :3])))
    for key, m in (("roi_mm3", roi), ("left_mm3", left), ("right_mm3", right)):
        out.mm3[key][r] = float(m.sum()) * voxel
    return {"brain": brain, "masks": roi, "left": left, "right": right}


def _crop_center(o: Any, masks: dict, img: Any, shape: tuple[int, ...], where: str) -> tuple[float, float] | None:
    if o.crop_mm is None:
        return None
    if o.crop_center == "roi-centroid":
        if "masks" not in masks:
            raise XaibenchError(f"dataset nifti: {where}: crop_center = \"roi-centroid\" needs ROI masks; give "
                                "roi_mask files or crop_center = [x, y, z] in RAS/MNI mm")
        vox = centroid(masks["masks"])
    else:
        vox = voxel_of(img.affine, o.crop_center)
    return display_point(vox, o.plane, shape)


def from_volumes(src: Source, o: Any) -> dict[str, np.ndarray]:
    position = o.slice if o.slice is not None else ("roi-centroid" if src.has_masks else "center")
    out = _Out(len(src.rows))
    for r, row in enumerate(src.rows):
        vol, img = read_volume(row.image, row.where)
        zooms = tuple(float(z) for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0)))
        masks = _scan_masks(row, vol, img, o, out, r)
        win = window(vol, o.normalise, o.clip_percentiles, row.where)
        spacing = in_plane_spacing(zooms, o.plane)
        center = _crop_center(o, masks, img, vol.shape, row.where)
        for i in slice_indices(vol.shape, o.plane, position, o.slices, masks.get("masks"), row.where):
            image = win.apply(cut(vol, o.plane, i))
            cuts = {k: cut(m, o.plane, i) for k, m in masks.items()}
            if center is not None:
                image = crop(image, center, o.crop_mm, spacing)
                cuts = {k: crop(m, center, o.crop_mm, spacing) for k, m in cuts.items()}
                if not cuts["brain"].any():
                    raise XaibenchError(f"dataset nifti: {row.where}: the {o.crop_mm[0]:g}×{o.crop_mm[1]:g} mm "
                                        f"crop around {o.crop_center} holds no brain in slice {i}; check "
                                        "crop_center (RAS mm of this scan's space)")
            out.add(resize(image, None, o.image_size, spacing)[0],
                    {k: resize_mask(m, o.image_size, spacing) for k, m in cuts.items()}, r, i)
    _warn_nonbinary(out.nonbinary, o)
    return out.pack()


def _image_masks(x: np.ndarray, raw: np.ndarray | None, o: Any) -> dict[str, np.ndarray]:
    brain = x > x.min()
    if raw is None:
        return {"brain": brain}
    roi = _binarise(raw, o.mask_labels, o.mask_threshold)
    if o.hemisphere_labels:
        left, right = (np.isin(np.rint(raw), o.hemisphere_labels[s]) for s in ("left", "right"))
        roi = roi if o.mask_labels else left | right
    else:
        ref = roi if o.midline == "roi-centroid" and roi.any() else brain
        left, right = split_sides(roi, midline_x("brain-centroid", ref, None, None) if ref.any() else x.shape[1] / 2)
    return {"brain": brain, "masks": roi, "left": left, "right": right}


def from_arrays(src: Source, arrays: dict, mask_arrays: dict, o: Any) -> dict[str, np.ndarray]:
    out = _Out(len(src.rows))
    for g in src.groups:
        if not np.isfinite(arrays[g]).all():
            raise XaibenchError(f"dataset nifti: arrays.{g} has NaN/inf values; fix or replace them first")
        if g in mask_arrays:
            raw = np.asarray(mask_arrays[g], dtype=np.float32)
            if not o.mask_labels and not o.hemisphere_labels and np.any((raw != 0) & (raw != 1)):
                out.nonbinary.append(f"mask_arrays.{g}")
            if not _binarise(raw, o.mask_labels or _all_labels(o), o.mask_threshold).any():
                raise XaibenchError(f"dataset nifti: mask_arrays.{g} is empty; give masks that mark the ROI")
    for r, row in enumerate(src.rows):
        x = np.asarray(arrays[row.group][row.index], dtype=np.float32)
        win = window(x, o.normalise, o.clip_percentiles, row.where)
        raw = np.asarray(mask_arrays[row.group][row.index], dtype=np.float32) if row.group in mask_arrays else None
        masks = _image_masks(x, raw, o)
        out.add(resize(win.apply(x), None, o.image_size)[0],
                {k: resize_mask(m, o.image_size) for k, m in masks.items()}, r)
    _warn_nonbinary(out.nonbinary, o)
    return out.pack()


def _all_labels(o: Any) -> tuple[int, ...] | None:
    if not o.hemisphere_labels:
        return None
    return tuple(o.hemisphere_labels["left"]) + tuple(o.hemisphere_labels["right"])
