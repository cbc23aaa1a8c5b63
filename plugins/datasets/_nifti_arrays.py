"""The ``nifti`` dataset's array format: the research notes' per-group ``.npy`` slices, with
optional subject ids, covariates and a paired design.

Why subject ids and pairing matter: the split is by subject. In a paired design (group B
image i is derived from group A image i, e.g. a corrupted copy) both copies are one
subject; splitting the groups independently would put the clean twin of most test images
into training, and a classifier could then learn the pair rather than the difference.
``pairing = "index"`` gives pair i one subject id in both groups, so the split keeps them
together.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from ._nifti_source import SEX_CODES, Row, Source, _choose_groups, _fail

PAIRINGS = ("none", "index")


def load_array(path: Path, what: str) -> np.ndarray:
    """An ``N×H×W`` view of an ``N×H×W`` or ``N×1×H×W`` ``.npy`` file (memory-mapped)."""
    if not path.is_file():
        raise _fail(f"option {what}: file {path} does not exist")
    try:
        a = np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise _fail(f"option {what}: cannot read {path} as .npy ({' '.join(str(exc).split())})") from None
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 3 or a.shape[0] == 0 or min(a.shape[1:]) < 2:
        hint = " (channels last: save a[..., 0] or np.moveaxis(a, -1, 1))" if a.ndim == 4 and a.shape[-1] == 1 else ""
        raise _fail(f"option {what}: {path.name} has shape {a.shape}; expected N×H×W or N×1×H×W "
                    f"(N ≥ 1 grayscale slices){hint}")
    return a


def _read_ids(path: Path, n: int, what: str) -> list[str]:
    """Ids from a ``.npy`` (1-D) or a text file with one id per line."""
    if not path.is_file():
        raise _fail(f"option {what}: file {path} does not exist")
    if path.suffix == ".npy":
        ids = [str(x) for x in np.load(path, allow_pickle=False).reshape(-1)]
    else:
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(ids) != n:
        raise _fail(f"option {what}: {path.name} has {len(ids)} ids for {n} images; give one id per image")
    return ids


def _subjects(chosen: tuple[str, str], n: dict[str, int], pairing: str,
              subject_ids: Mapping[str, str] | None) -> tuple[dict[str, list[str]], list[Path]]:
    ids = {g: [f"{g}-{i:05d}" for i in range(n[g])] for g in chosen}
    files: list[Path] = []
    if pairing == "index":
        if n[chosen[0]] != n[chosen[1]]:
            raise _fail(f"pairing = \"index\" pairs image i of {chosen[1]} with image i of {chosen[0]}, but "
                        f"they have {n[chosen[1]]} and {n[chosen[0]]} images; give arrays of equal length")
        ids = {g: [f"pair-{i:05d}" for i in range(n[g])] for g in chosen}
    if subject_ids:
        missing = [g for g in chosen if g not in subject_ids]
        if missing and not (pairing == "index" and chosen[0] in subject_ids):
            raise _fail(f"option subject_ids has no file for group {missing[0]!r}; give one per group")
        for g in chosen:
            if g in subject_ids:
                path = Path(str(subject_ids[g])).expanduser().resolve()
                ids[g] = _read_ids(path, n[g], f"subject_ids.{g}")
                files.append(path)
        if pairing == "index":
            if chosen[1] in subject_ids and ids[chosen[1]] != ids[chosen[0]]:
                raise _fail("pairing = \"index\": subject_ids of both groups must be equal (pair i is one "
                            "subject); give them for the first group only")
            ids[chosen[1]] = ids[chosen[0]]
    if pairing == "none":
        both = sorted(set(ids[chosen[0]]) & set(ids[chosen[1]]))
        if both:
            raise _fail(f"subject {both[0]!r} is in both groups; if group {chosen[1]}'s images are derived "
                        f"from group {chosen[0]}'s (a paired design), set pairing = \"index\"")
    return ids, files


def _covariates(path: Path, chosen: tuple[str, str], n: dict[str, int]) -> tuple[dict[str, np.ndarray], str | None]:
    """One value per image (rows ordered as the arrays), keyed by the CSV's columns; numeric
    columns as float64 (empty = NaN), ``sex`` as 0 = female / 1 = male, other text as strings."""
    if not path.is_file():
        raise _fail(f"option covariates: file {path} does not exist")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    df.columns = [str(c).strip().lower() for c in df.columns]
    for col in ("group", "index"):
        if col not in df.columns:
            raise _fail(f"covariates {path.name} has no column {col!r} (required: group, index; found: "
                        f"{', '.join(df.columns)})")
    df = df.apply(lambda s: s.str.strip())
    df = df[df["group"].isin(chosen)]
    pos: dict[tuple[str, int], int] = {}
    for line, (g, i) in zip(df.index + 2, zip(df["group"], df["index"])):
        if not i.isdigit() or int(i) >= n[g] or (g, int(i)) in pos:
            raise _fail(f"covariates {path.name} line {line}: index {i!r} of group {g!r} is not a new image "
                        f"index in 0..{n[g] - 1}")
        pos[(g, int(i))] = len(pos)
    order = [pos.get((g, i)) for g in chosen for i in range(n[g])]
    if None in order:
        g, i = next(k for k in ((g, i) for g in chosen for i in range(n[g])) if k not in pos)
        raise _fail(f"covariates {path.name} has no row for group {g!r} index {i}; give one row per image")
    out = {}
    sid = df["subject_id"].to_numpy(dtype=str)[order] if "subject_id" in df.columns else None
    for col in df.columns.drop([c for c in ("group", "index", "subject_id") if c in df.columns]):
        vals = df[col].to_numpy(dtype=str)[order]
        num = pd.to_numeric(pd.Series(vals).where(vals != ""), errors="coerce").to_numpy(dtype=np.float64)
        if col == "sex" and np.isin(np.char.lower(vals[vals != ""]), list(SEX_CODES)).all():
            out[col] = np.array([SEX_CODES[v] if v else np.nan for v in np.char.lower(vals)], dtype=np.float64)
        elif np.isnan(num[vals != ""]).any():
            out[col] = vals  # categorical: kept as text (empty cells stay "")
        else:
            out[col] = num
    return out, sid


def _ids_from_column(sid: np.ndarray, chosen: tuple[str, str], n: dict[str, int], name: str,
                     given: bool) -> dict[str, list[str]]:
    if given:
        raise _fail(f"covariates {name} has a subject_id column; with subject_ids or pairing = \"index\" "
                    "give subject ids only once (drop the column)")
    ids = {chosen[0]: [str(x) for x in sid[:n[chosen[0]]]], chosen[1]: [str(x) for x in sid[n[chosen[0]]:]]}
    both = sorted(set(ids[chosen[0]]) & set(ids[chosen[1]]))
    if both or "" in sid.tolist():
        raise _fail(f"covariates {name}: subject_id {(both or [''])[0]!r} is empty or in both groups; "
                    "for a paired design set pairing = \"index\" and drop the column")
    return ids


def read_arrays(arrays: Mapping[str, str], mask_arrays: Mapping[str, str] | None,
                groups: tuple[str, str] | None, *, pairing: str = "none",
                subject_ids: Mapping[str, str] | None = None, covariates: str | None = None,
                ) -> tuple[Source, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The array format: ``{group: path.npy}`` (N×H×W or N×1×H×W) and optional masks of the
    same shape. Without ids each image is its own subject (``<group>-<index>``)."""
    chosen = _choose_groups(sorted(map(str, arrays)), groups, "option arrays")
    mask_arrays = {str(k): v for k, v in (mask_arrays or {}).items()}
    if mask_arrays and set(mask_arrays) != set(chosen):
        raise _fail(f"option mask_arrays has groups {sorted(mask_arrays)}; it needs one array per group "
                    f"({', '.join(chosen)})")
    imgs, masks, files, paths = {}, {}, [], {}
    for g in chosen:
        paths[g] = Path(str(arrays[g])).expanduser().resolve()
        imgs[g] = load_array(paths[g], f"arrays.{g}")
        files.append(paths[g])
        if mask_arrays:
            mpath = Path(str(mask_arrays[g])).expanduser().resolve()
            masks[g] = load_array(mpath, f"mask_arrays.{g}")
            files.append(mpath)
            if masks[g].shape != imgs[g].shape:
                raise _fail(f"mask_arrays.{g} {mpath.name} has shape {masks[g].shape}, the images "
                            f"{imgs[g].shape}; masks need one H×W mask per image")
    n = {g: int(imgs[g].shape[0]) for g in chosen}
    ids, id_files = _subjects(chosen, n, pairing, subject_ids)
    covs: dict[str, np.ndarray] = {}
    if covariates is not None:
        cpath = Path(str(covariates)).expanduser().resolve()
        covs, sid = _covariates(cpath, chosen, n)
        files.append(cpath)
        if sid is not None:
            ids = _ids_from_column(sid, chosen, n, cpath.name, bool(subject_ids) or pairing == "index")
    rows = [Row(f"arrays.{g} {paths[g].name} image {i}", ids[g][i], g, paths[g], None, i)
            for g in chosen for i in range(n[g])]
    h = hashlib.sha256(repr([(g, str(arrays[g]), mask_arrays.get(g)) for g in chosen]).encode())
    for f in files[len(chosen) * (1 + bool(mask_arrays)):] + id_files:
        h.update(f.read_bytes())
    src = Source(f"arrays:{'+'.join(chosen)}", chosen, tuple(rows), tuple(files + id_files), h.hexdigest(),
                 covs, {}, has_masks=bool(mask_arrays))
    return src, imgs, masks
