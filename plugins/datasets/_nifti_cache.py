"""The ``nifti`` dataset's on-disk cache of preprocessed slices and its subject-level split.

The cache key hashes the manifest's bytes, every listed file's path, size and
modification time, and the preprocessing options, so editing the manifest, replacing a
scan or changing the slice plane rebuilds it, while a second run with the same inputs
reads one ``.npz`` instead of thousands of volumes. The file is written to a temporary
name and renamed, so an interrupted run never leaves a half-written cache behind.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from xaibench.errors import XaibenchError


def cache_key(parts: Mapping[str, Any], files: Iterable[Path]) -> str:
    stamps = []
    for f in files:
        st = f.stat()
        stamps.append([str(f), st.st_size, st.st_mtime_ns])
    blob = json.dumps({"parts": parts, "files": stamps}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def load_cached(path: Path) -> dict[str, np.ndarray] | None:
    """The cached arrays, or ``None`` when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except Exception:
        return None


def subject_split(subjects: Mapping[str, Sequence[str]], fractions: Sequence[float],
                  seed: int) -> dict[str, list[str]]:
    """Train/val/test subject ids: each group's subjects (sorted, then shuffled with a
    generator seeded by ``(seed, group position)``) are cut by ``fractions``, so each split
    keeps the groups' proportions, every split gets at least one subject of each group,
    and the result does not depend on the manifest's row order."""
    out: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    for gi, (group, ids) in enumerate(subjects.items()):
        ids = sorted(set(ids))
        n = len(ids)
        n_val = max(1, round(n * fractions[1]))
        n_test = max(1, round(n * fractions[2]))
        if n - n_val - n_test < 1:
            raise XaibenchError(f"dataset nifti: group {group!r} has {n} subject(s); a train/val/test "
                                "split needs at least 3 per group")
        order = np.random.default_rng([seed, gi]).permutation(n)
        shuffled = [ids[i] for i in order]
        out["test"] += shuffled[:n_test]
        out["val"] += shuffled[n_test:n_test + n_val]
        out["train"] += shuffled[n_test + n_val:]
    return {k: sorted(v) for k, v in out.items()}
