"""What the ``nifti`` dataset reads before touching any voxel: the CSV manifest (rows,
groups, covariates); the research notes' per-group ``.npy`` arrays are read by
``_nifti_arrays``.

Everything here is cheap and checked up front, so a wrong column, a third group or a
missing file is reported in one line before minutes of volume reading, and before
anything is written to the cache.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from xaibench.errors import XaibenchError

REQUIRED = ("subject_id", "group", "image")
MASK_COLUMN = "roi_mask"
SEX_CODES = {"f": 0, "female": 0, "w": 0, "woman": 0, "0": 0, "m": 1, "male": 1, "man": 1, "1": 1}
"""``sex`` is stored as 0 = female, 1 = male (empty cells → NaN)."""


def _fail(what: str) -> XaibenchError:
    return XaibenchError(f"dataset nifti: {what}")


@dataclass(frozen=True)
class Row:
    """One scan (manifest format) or one array image (array format)."""

    where: str  # "manifest.csv line 7 (subject 002_S_0413)" — for messages
    subject: str
    group: str
    image: Path
    mask: Path | None = None
    index: int = -1  # position in the group's array (array format)


@dataclass(frozen=True)
class Source:
    name: str
    groups: tuple[str, str]
    rows: tuple[Row, ...]
    files: tuple[Path, ...]  # every file read; their sizes/mtimes enter the cache key
    digest: str  # sha256 of the manifest's bytes (array format: of the file names)
    covariates: Mapping[str, np.ndarray] = field(default_factory=dict)  # one value per row
    codes: Mapping[str, Mapping[str, int]] = field(default_factory=dict)  # categorical encodings
    dropped: int = 0  # rows of groups not selected by the ``groups`` option
    has_masks: bool = False


def _choose_groups(found: list[str], wanted: tuple[str, str] | None, origin: str) -> tuple[str, str]:
    if wanted is not None:
        missing = [g for g in wanted if g not in found]
        if missing:
            raise _fail(f"{origin}: group {missing[0]!r} from the groups option does not occur "
                        f"(groups found: {', '.join(found)})")
        return wanted
    if len(found) != 2:
        raise _fail(f"{origin}: found {len(found)} group(s) ({', '.join(found) or 'none'}); exactly "
                    "two are needed; choose two with the option groups = [\"A\", \"B\"] in a suite file's "
                    "[[datasets]] entry (--dataset nifti:PATH sets only the manifest; see docs/datasets.md)")
    return found[0], found[1]


def read_manifest(path: Path, groups: tuple[str, str] | None) -> Source:
    """Parse and check the manifest; every listed file must exist."""
    if not path.is_file():
        raise _fail(f"manifest {path} does not exist; give the path of a CSV file")
    raw = path.read_bytes()
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True)
    except Exception as exc:
        raise _fail(f"cannot parse manifest {path} as CSV ({' '.join(str(exc).split())})") from None
    df.columns = [str(c).strip().lower() for c in df.columns]
    for col in REQUIRED:
        if col not in df.columns:
            raise _fail(f"manifest {path.name} has no column {col!r} (required: {', '.join(REQUIRED)}; "
                        f"found: {', '.join(df.columns)})")
    df = df.apply(lambda s: s.str.strip())
    name = path.name
    for col in REQUIRED:
        empty = np.flatnonzero(df[col].to_numpy() == "")
        if empty.size:
            raise _fail(f"{name} line {empty[0] + 2}: empty {col}; every row needs subject_id, group and image")
    found = sorted(df["group"].unique().tolist())
    chosen = _choose_groups(found, groups, f"manifest {name}")
    keep = df["group"].isin(chosen).to_numpy()
    lines = np.flatnonzero(keep) + 2
    df = df[keep].reset_index(drop=True)
    both = df.groupby("subject_id")["group"].nunique()
    if (both > 1).any():
        sid = both[both > 1].index[0]
        at = [int(lines[i]) for i in np.flatnonzero(df["subject_id"].to_numpy() == sid)]
        raise _fail(f"{name}: subject {sid!r} is in both groups (lines {', '.join(map(str, at))}); "
                    "a subject belongs to one group")
    has_masks = MASK_COLUMN in df.columns and bool((df[MASK_COLUMN] != "").any())
    root = path.parent
    rows, files = [], []
    for i, rec in enumerate(df.to_dict("records")):
        where = f"{name} line {lines[i]} (subject {rec['subject_id']})"
        image = (root / Path(rec["image"]).expanduser()).resolve()
        mask = None
        if has_masks:
            if not rec[MASK_COLUMN]:
                raise _fail(f"{where}: empty roi_mask while other rows have one; give every row a mask "
                            "or none")
            mask = (root / Path(rec[MASK_COLUMN]).expanduser()).resolve()
        for kind, f in (("image", image), ("roi_mask", mask)):
            if f is not None and not f.is_file():
                raise _fail(f"{where}: {kind} file {f} does not exist; fix the path (relative paths start "
                            "at the manifest's folder)")
        rows.append(Row(where, rec["subject_id"], rec["group"], image, mask))
        files += [image] + ([mask] if mask else [])
    covariates, codes = _covariates(df.drop(columns=[c for c in (*REQUIRED, MASK_COLUMN) if c in df]),
                                    lines, name)
    return Source(name, chosen, tuple(rows), tuple(files), hashlib.sha256(raw).hexdigest(),
                  covariates, codes, int((~keep).sum()), has_masks)


def _covariates(df: pd.DataFrame, lines: np.ndarray, name: str) -> tuple[dict, dict]:
    """Numeric columns as float64 (empty → NaN); ``sex`` as 0 = female / 1 = male; any other
    text column as integer codes in sorted order of its values (the codes go in the card)."""
    out: dict[str, np.ndarray] = {}
    codes: dict[str, dict[str, int]] = {}
    for col in df.columns:
        vals = df[col].to_numpy(dtype=str)
        present = vals != ""
        if col == "sex":
            low = np.char.lower(vals)
            bad = np.flatnonzero(present & ~np.isin(low, list(SEX_CODES)))
            if bad.size:
                raise _fail(f"{name} line {lines[bad[0]]}: sex {str(vals[bad[0]])!r} is not one of F/female/M/male "
                            "(or 0 = female, 1 = male)")
            out[col] = np.array([SEX_CODES[v] if v else np.nan for v in low], dtype=np.float64)
            codes[col] = {"female": 0, "male": 1}
            continue
        num = pd.to_numeric(pd.Series(vals).where(present), errors="coerce").to_numpy(dtype=np.float64)
        if np.isnan(num[present]).any():
            levels = sorted(set(vals[present].tolist()))
            codes[col] = {v: i for i, v in enumerate(levels)}
            num = np.array([codes[col][v] if v else np.nan for v in vals], dtype=np.float64)
        out[col] = num
    return out, codes
