"""Dataset ``nifti``: the user's own brain MRI (ADNI or any NIfTI cohort) as 2-D slices.

Why: the users' science happens on data they hold under licence and we cannot ship; this
plugin turns a CSV manifest of NIfTI scans (or the research notes' per-group ``.npy``
arrays) into the benchmark's :class:`~xaibench.contracts.DatasetSplits`, with a seeded,
group-balanced, subject-level split that is stored in the dataset card.

Steps (details and every option in ``docs/datasets.md``): nibabel reads each scan and
reorients it to RAS (closest canonical); the ROI mask is binarised and, if it lies on
another grid, resampled to the image with nearest neighbour; ``slices`` slices of the
chosen ``plane`` are cut at the ROI centroid, the centre or a given index; intensities
are clipped at brain percentiles and z-scored inside the brain (or min-max scaled); each
slice is resized to ``image_size`` keeping its physical aspect ratio. Preprocessed slices
are cached under ``cache_dir`` (see ``_nifti_cache``).

Command line: ``--dataset nifti:PATH`` passes PATH as the option named by
:data:`PATH_OPTION` (``manifest``), all other options at their defaults.
"""
from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

import xaibench
from xaibench.atomic import save_arrays
from xaibench.contracts import DatasetSplits, ImageSet
from xaibench.errors import XaibenchError
from xaibench.hookspecs import DatasetRecord
from xaibench.kit.options import option_factory

from ._nifti_arrays import read_arrays
from ._nifti_build import from_arrays, from_volumes
from ._nifti_checks import bad_option, check_arrays, check_fov
from ._nifti_cache import cache_key, load_cached, subject_split
from ._nifti_source import Source, read_manifest
from ._nifti_volume import PLANE_AXIS

PATH_OPTION = "manifest"
"""The option that ``--dataset nifti:PATH`` sets to PATH."""

VERSION = "2"  # enters the cache key: bump when preprocessing changes
NORMALISE = ("zscore-brain", "minmax", "none")


@dataclass(frozen=True)
class NiftiOptions:
    """The options of a ``[[datasets]]`` entry ``name = "nifti"`` (see ``docs/datasets.md``)."""

    manifest: str | None = None
    """CSV of scans (subject_id, group, image, optional roi_mask and covariates); or use arrays."""
    arrays: Mapping[str, str] | None = None
    """The array format: {A = "a.npy", B = "b.npy"}, N×H×W or N×1×H×W slices per group."""
    mask_arrays: Mapping[str, str] | None = None
    """ROI masks for arrays, one .npy per group with the images' shape."""
    groups: tuple[str, str] | None = None
    """Two group names: label order (first = 0) and which groups to keep."""
    plane: str = "coronal"
    """Slice plane: coronal, axial or sagittal."""
    slice: str | int | None = None
    """roi-centroid (default with masks), center (default without) or a voxel index."""
    slices: int = 1
    """Neighbouring slices per scan, each its own image of the same subject."""
    image_size: int = 64
    """Side of the square output images in pixels."""
    clip_percentiles: tuple[float, float] = (1.0, 99.0)
    """Brain intensity percentiles clipped before normalising."""
    normalise: str = "zscore-brain"
    """zscore-brain, minmax or none (values already in [0, 1])."""
    split: tuple[float, float, float] = (0.6, 0.2, 0.2)
    """Train/val/test fractions of each group's subjects."""
    mask_threshold: float = 0.5
    """ROI mask voxels >= this value are inside."""
    mask_labels: tuple[int, ...] | None = None
    """Label values of a label-map ROI mask, e.g. [17, 53]."""
    mask_resample: str = "nearest"
    """nearest (resample masks on another grid) or never (refuse them)."""
    mode: str = "2d"
    """Only 2d: explainers and metrics take 2-D slices."""
    roi_name: str = "roi"
    """The ROI's name in tables, e.g. hippocampus."""
    crop_mm: float | tuple[float, float] | None = None
    """Field of view: a box of this size in mm (or [rows, columns]) cut before resizing."""
    crop_center: str | tuple[float, float, float] = "roi-centroid"
    """Centre of the crop: roi-centroid (per scan) or [x, y, z] in RAS / MNI mm."""
    hemisphere_labels: Mapping[str, tuple[int, ...]] | None = None
    """Label values of each side for roi-left / roi-right, e.g. {left = [17], right = [53]}."""
    midline: str | float = "brain-centroid"
    """Without hemisphere_labels, split the ROI at brain-centroid, roi-centroid or RAS x in mm."""
    pairing: str = "none"
    """Arrays: index = image i of B is derived from image i of A (pairs stay in one split)."""
    subject_ids: Mapping[str, str] | None = None
    """Arrays: per-group file of subject ids (one per line, or a 1-D .npy)."""
    covariates: str | None = None
    """Arrays: CSV with group, index (and optional subject_id) plus covariate columns."""

    def __post_init__(self) -> None:  # noqa: C901 - one check per option
        put = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731
        if (self.manifest is None) == (self.arrays is None):
            raise XaibenchError("dataset nifti: give exactly one of the options manifest (a CSV of NIfTI "
                                "scans) or arrays ({A = \"a.npy\", B = \"b.npy\"})")
        if self.arrays is not None and not isinstance(self.arrays, Mapping):
            raise bad_option("arrays", self.arrays, "use a table {A = \"a.npy\", B = \"b.npy\"}")
        if self.mask_arrays is not None and (self.arrays is None or not isinstance(self.mask_arrays, Mapping)):
            raise bad_option("mask_arrays", self.mask_arrays, "use a table like arrays, together with arrays")
        if self.groups is not None:
            g = tuple(str(x) for x in self.groups) if isinstance(self.groups, (list, tuple)) else ()
            if len(g) != 2 or g[0] == g[1]:
                raise bad_option("groups", self.groups, "give two different group names, e.g. [\"CN\", \"AD\"]")
            put("groups", g)
        if self.plane not in PLANE_AXIS:
            raise bad_option("plane", self.plane, f"allowed: {', '.join(PLANE_AXIS)}")
        if self.slice is not None and self.slice not in ("roi-centroid", "center") and not (
                isinstance(self.slice, int) and not isinstance(self.slice, bool) and self.slice >= 0):
            raise bad_option("slice", self.slice, "allowed: \"roi-centroid\", \"center\" or a voxel index >= 0")
        for name, low in (("slices", 1), ("image_size", 8)):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < low:
                raise bad_option(name, v, f"give an integer >= {low}")
        cp = self.clip_percentiles
        if not (isinstance(cp, (list, tuple)) and len(cp) == 2 and 0 <= float(cp[0]) < float(cp[1]) <= 100):
            raise bad_option("clip_percentiles", cp, "give [low, high] with 0 <= low < high <= 100")
        put("clip_percentiles", (float(cp[0]), float(cp[1])))
        if self.normalise not in NORMALISE:
            raise bad_option("normalise", self.normalise, f"allowed: {', '.join(NORMALISE)}")
        sp = self.split
        if not (isinstance(sp, (list, tuple)) and len(sp) == 3 and all(float(x) > 0 for x in sp)
                and abs(sum(map(float, sp)) - 1) < 1e-6):
            raise bad_option("split", sp, "give three positive train/val/test fractions summing to 1, e.g. [0.6, 0.2, 0.2]")
        put("split", tuple(float(x) for x in sp))
        if not 0 < float(self.mask_threshold) <= 1:
            raise bad_option("mask_threshold", self.mask_threshold, "give a number in (0, 1]")
        if self.mask_labels is not None:
            if not (isinstance(self.mask_labels, (list, tuple)) and self.mask_labels
                    and all(isinstance(x, int) for x in self.mask_labels)):
                raise bad_option("mask_labels", self.mask_labels, "give a list of integer labels, e.g. [17, 53]")
            put("mask_labels", tuple(int(x) for x in self.mask_labels))
        if self.mask_resample not in ("nearest", "never"):
            raise bad_option("mask_resample", self.mask_resample, "allowed: nearest, never")
        if self.mode != "2d":
            raise bad_option("mode", self.mode, "only \"2d\" is supported: the explainers and metrics take "
                                          "N×1×H×W slices (a 3-D mode is not implemented)")
        check_fov(self, put)
        check_arrays(self)


class NiftiDataset:
    """``load`` reads (or finds in the cache) the slices and splits them by subject."""

    def __init__(self, options: NiftiOptions) -> None:
        self.o = options

    def _source(self) -> tuple[Source, dict, dict]:
        o = self.o
        if o.manifest is not None:
            return read_manifest(Path(o.manifest).expanduser().resolve(), o.groups), {}, {}
        return read_arrays(o.arrays, o.mask_arrays, o.groups, pairing=o.pairing, subject_ids=o.subject_ids,
                           covariates=o.covariates)

    def load(self, *, seed: int, cache_dir: Path) -> DatasetSplits:
        o = self.o
        src, arrays, mask_arrays = self._source()
        if o.slice == "roi-centroid" and not src.has_masks:
            raise bad_option("slice", o.slice, "\"roi-centroid\" needs ROI masks (a roi_mask column); use \"center\" "
                                         "or an index")
        prep = {k: v for k, v in dataclasses.asdict(o).items() 
                if k not in ("split", "roi_name", "pairing", "subject_ids", "covariates")}
        key = cache_key({"version": VERSION, "digest": src.digest, "options": prep}, src.files)
        path = Path(cache_dir) / f"nifti-{key[:24]}.npz"
        data = load_cached(path)
        if data is None:
            data = from_arrays(src, arrays, mask_arrays, o) if arrays else from_volumes(src, o)
            save_arrays(path, data)
        return _splits(src, data, o, seed)


def _meta(src: Source, data: Mapping[str, np.ndarray], o: NiftiOptions) -> dict[str, np.ndarray]:
    row = data["row"]
    meta = {k: np.asarray(v)[row] for k, v in src.covariates.items()}
    if src.has_masks and np.isfinite(data["roi_mm3"]).any():
        meta["roi_volume_mm3"] = data["roi_mm3"][row]
        if np.isfinite(data["left_mm3"]).any():  # per side: known for scans (voxel sizes), not arrays
            meta["roi_volume_mm3_left"] = data["left_mm3"][row]
            meta["roi_volume_mm3_right"] = data["right_mm3"][row]
    if o.manifest is not None:
        meta["slice_index"] = data["slice"]  # voxel index along the plane's axis (RAS grid)
    return meta


def _named(src: Source, data: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    named = {"brain": torch.from_numpy(data["brain"])}
    if src.has_masks:
        named.update({"roi-left": torch.from_numpy(data["left"]), "roi-right": torch.from_numpy(data["right"])})
    return named


def _splits(src: Source, data: Mapping[str, np.ndarray], o: NiftiOptions, seed: int) -> DatasetSplits:
    row = data["row"]
    label_of = {g: i for i, g in enumerate(src.groups)}
    labels = np.array([label_of[src.rows[r].group] for r in row], dtype=np.int64)
    ids = np.array([src.rows[r].subject for r in row], dtype=object)
    meta, named = _meta(src, data, o), _named(src, data)
    subjects = {g: sorted({r.subject for r in src.rows if r.group == g}) for g in src.groups}
    # paired: pair i is one subject in both groups, so split the pairs once (both copies follow)
    split = subject_split({src.groups[0]: subjects[src.groups[0]]} if o.pairing == "index" else subjects,
                          o.split, seed)
    images, masks = torch.from_numpy(data["images"]), torch.from_numpy(data["masks"])
    sets, counts = {}, {}
    for name, members in split.items():
        idx = np.flatnonzero(np.isin(ids, members))
        sets[name] = ImageSet(images[idx], torch.from_numpy(labels[idx]), masks[idx],
                              tuple(ids[idx].tolist()), {k: v[idx] for k, v in meta.items()},
                              {k: v[idx] for k, v in named.items()})
        counts[name] = {g: {"subjects": sum(s in set(members) for s in subjects[g]),
                            "images": int((labels[idx] == label_of[g]).sum())} for g in src.groups}
    empty_roi = int((~masks.flatten(1).any(1)).sum()) if src.has_masks else 0
    if empty_roi:
        warnings.warn(f"dataset nifti: {empty_roi} of {len(row)} slices do not cut the ROI (their mask is "
                      "empty); use fewer slices or slice = \"roi-centroid\"", UserWarning, stacklevel=3)
    card = {
        "source": "arrays" if o.arrays is not None else "manifest",
        "manifest": src.name, "source_sha256": src.digest,
        "groups": {g: label_of[g] for g in src.groups}, "pairing": o.pairing,
        "split_seed": seed, "split_fractions": list(o.split), "split": split, "counts": counts,
        "scans": len(src.rows), "rows_of_other_groups_dropped": src.dropped,
        "images_with_empty_roi": empty_roi,
        "covariate_codes": {k: dict(v) for k, v in src.codes.items()},
        "masks": ["roi", *sorted(named)] if src.has_masks else sorted(named),
        "preprocessing": _preprocessing(src, o),
    }
    return DatasetSplits(f"nifti:{src.name}", sets["train"], sets["val"], sets["test"],
                         groups=src.groups, roi_name=o.roi_name, card=card)


def _preprocessing(src: Source, o: NiftiOptions) -> dict[str, Any]:
    return {"plane": o.plane, "orientation": "RAS (closest canonical), neurological display",
            "slice": o.slice if o.slice is not None else ("roi-centroid" if src.has_masks else "center"),
            "slices": o.slices, "image_size": o.image_size, "normalise": o.normalise,
            "clip_percentiles": list(o.clip_percentiles), "mask_threshold": o.mask_threshold,
            "mask_labels": list(o.mask_labels) if o.mask_labels else None,
            "mask_resample": o.mask_resample, "version": VERSION,
            "crop_mm": list(o.crop_mm) if o.crop_mm else None,
            "crop_center": o.crop_center if isinstance(o.crop_center, str) else list(o.crop_center),
            "hemispheres": ({k: list(v) for k, v in o.hemisphere_labels.items()} if o.hemisphere_labels
                            else f"split at the midline ({o.midline})")}


_options = option_factory("dataset nifti", NiftiOptions)


def make(**options: Any) -> NiftiDataset:
    return NiftiDataset(_options(**options))


@xaibench.hookimpl
def xaibench_datasets():
    yield DatasetRecord("nifti", "your NIfTI cohort (e.g. ADNI) from a CSV manifest, as 2-D slices",
                        make, version=VERSION, conformance=_conformance_options)


def _conformance_options(folder: Path) -> dict:
    """Options for the conformance test: a tiny cohort in the research notes' array format."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for g in ("A", "B"):
        img = rng.uniform(0, 1, size=(8, 24, 24)).astype(np.float32)
        mask = np.zeros_like(img, dtype=bool)
        mask[:, 8:14, 8:14] = True
        np.save(folder / f"{g}.npy", img)
        np.save(folder / f"{g}-mask.npy", mask)
        paths[g] = (str(folder / f"{g}.npy"), str(folder / f"{g}-mask.npy"))
    return {"arrays": {g: p[0] for g, p in paths.items()}, "mask_arrays": {g: p[1] for g, p in paths.items()},
            "image_size": 32}
