"""Write a tiny synthetic NIfTI cohort and its manifest, to try the ``nifti`` dataset
without real scans.

    python make_example.py [FOLDER]        # default: this script's folder

Each scan is a 1 mm head-like volume stored in LAS orientation (as FSL writes it, so the
loader's reorientation to RAS is exercised) with two hippocampus-like ellipsoids; group
``CN`` has larger ones than group ``AD``. ``roi_mask`` marks both. Nothing here is real
anatomy: it only shows the file layout a manifest points at.
"""
from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np


def _scan(rng: np.random.Generator, size: int, big: bool) -> tuple[np.ndarray, np.ndarray]:
    g = np.mgrid[:size, :size, :size].astype(np.float32) / size  # RAS voxel grid in [0, 1)
    head = (((g - 0.5) / np.array([0.42, 0.46, 0.40]).reshape(3, 1, 1, 1)) ** 2).sum(0) < 1
    r = 0.09 if big else 0.06
    hip = np.zeros(head.shape, bool)
    for x in (0.33, 0.67):  # left and right hippocampus
        hip |= (((g[0] - x) / r) ** 2 + ((g[1] - 0.45) / 0.12) ** 2 + ((g[2] - 0.4) / 0.05) ** 2) < 1
    vol = np.where(head, 90 + rng.normal(0, 6, head.shape), 0).astype(np.float32)
    vol[hip] = 60 + rng.normal(0, 4, int(hip.sum()))
    return vol, hip.astype(np.uint8)


def make_cohort(folder: Path, n_per_group: int = 3, size: int = 48, seed: int = 0) -> Path:
    """Write ``scans/`` and ``manifest.csv`` into ``folder``; returns the manifest path."""
    folder = Path(folder)
    (folder / "scans").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    las = np.diag([-1.0, 1.0, 1.0, 1.0])
    las[:3, 3] = (size / 2, -size / 2, -size / 2)
    lines = ["subject_id,group,image,roi_mask,age,sex,site"]
    for i in range(2 * n_per_group):
        group = "CN" if i % 2 == 0 else "AD"
        vol, hip = _scan(rng, size, big=group == "CN")
        sid = f"sub-{i + 1:02d}"
        for data, name in ((vol, f"{sid}_T1w.nii.gz"), (hip, f"{sid}_hippocampus.nii.gz")):
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data[::-1]), las), str(folder / "scans" / name))
        lines.append(f"{sid},{group},scans/{sid}_T1w.nii.gz,scans/{sid}_hippocampus.nii.gz,"
                     f"{65 + 3 * i},{'FM'[i % 2]},site-{'AB'[i // 3 % 2]}")
    manifest = folder / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


if __name__ == "__main__":
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent
    print(f"wrote {make_cohort(out)}")
