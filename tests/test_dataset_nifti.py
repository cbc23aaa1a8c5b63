"""The ``nifti`` dataset: a synthetic cohort of small NIfTI volumes written with nibabel.

Group ``CN`` has a large "hippocampus" ellipsoid, group ``AD`` a small one; each scan has
its ROI mask. Checks: the contract (shapes, dtypes, ranges, labels, covariates), RAS
reorientation, slice position, the subject-level split, the cache, and every bad input.
"""
from __future__ import annotations

import runpy
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from xaibench.errors import XaibenchError
from xaibench_plugins.datasets import nifti
from xaibench_plugins.datasets._nifti_volume import Window, resize, window

SHAPE = (32, 32, 32)
HIP_CENTER = (10, 14, 12)  # voxel; the coronal (y) centroid is 14
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "nifti-manifest" / "make_example.py"


def _volume(rng: np.random.Generator, big: bool) -> tuple[np.ndarray, np.ndarray]:
    g = np.mgrid[:32, :32, :32].astype(np.float32)
    brain = ((g - 16) ** 2).sum(0) < 13 ** 2
    rx = 5 if big else 3
    hip = (((g[0] - HIP_CENTER[0]) / rx) ** 2 + ((g[1] - HIP_CENTER[1]) / 4) ** 2
           + ((g[2] - HIP_CENTER[2]) / 3) ** 2) < 1
    vol = np.where(brain, 100 + rng.normal(0, 5, SHAPE), 0).astype(np.float32)
    vol[hip] = 60
    return vol, hip


def _save(data: np.ndarray, path: Path, affine: np.ndarray | None = None) -> Path:
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), str(path))
    return path


def _flip_x(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same image in world space, stored left-right flipped (an LAS-like file)."""
    f = np.eye(4)
    f[0, 0], f[0, 3] = -1, data.shape[0] - 1
    return np.ascontiguousarray(data[::-1]), affine @ f


def _write(folder: Path, rows: list[dict], name: str = "manifest.csv") -> Path:
    cols = list(rows[0])
    text = ",".join(cols) + "\n" + "".join(",".join(str(r[c]) for c in cols) + "\n" for r in rows)
    (folder / name).write_text(text)
    return folder / name


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> tuple[Path, list[dict]]:
    """12 subjects (6 CN, 6 AD), one 32³ scan + mask each; some stored flipped."""
    root = tmp_path_factory.mktemp("cohort")
    (root / "scans").mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(12):
        group = "CN" if i % 2 == 0 else "AD"
        vol, hip = _volume(rng, big=group == "CN")
        aff = np.diag([1.0, 1.0, 1.2, 1.0])
        aff[:3, 3] = (-16, -16, -19)
        mask = hip.astype(np.uint8)
        if i % 3 == 0:
            vol, aff2 = _flip_x(vol, aff)
            mask, aff = _flip_x(mask, aff)[0], aff2
        _save(vol, root / "scans" / f"s{i:02d}.nii.gz", aff)
        _save(mask, root / "scans" / f"s{i:02d}_hip.nii.gz", aff)
        rows.append({"subject_id": f"S{i:02d}", "group": group, "image": f"scans/s{i:02d}.nii.gz",
                     "roi_mask": f"scans/s{i:02d}_hip.nii.gz", "age": 60 + i, "sex": "FM"[i % 2],
                     "site": f"site{i % 3}"})
    return _write(root, rows), rows


def _load(tmp_path: Path, seed: int = 0, **options):
    return nifti.make(**options).load(seed=seed, cache_dir=tmp_path / "cache")


def _bad(tmp_path: Path, match: str, **options) -> None:
    """The load fails with one XaibenchError line matching ``match`` and writes no cache."""
    with pytest.raises(XaibenchError, match=match) as info:
        _load(tmp_path, **options)
    assert "\n" not in str(info.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())


def _copy(cohort, tmp_path: Path, edit=None) -> tuple[Path, list[dict]]:
    """The cohort's manifest rewritten into ``tmp_path`` (absolute paths), optionally edited."""
    manifest, rows = cohort
    rows = [dict(r, image=str(manifest.parent / r["image"]), roi_mask=str(manifest.parent / r["roi_mask"]))
            for r in rows]
    if edit:
        rows = edit(rows)
    return _write(tmp_path, rows), rows


# --------------------------------------------------------------------------- contract


def test_contract_shapes_labels_and_covariates(cohort, tmp_path):
    manifest, rows = cohort
    s = _load(tmp_path, manifest=str(manifest))
    assert s.groups == ("AD", "CN") and s.card["groups"] == {"AD": 0, "CN": 1}  # sorted order
    for part in (s.train, s.val, s.test):
        assert part.images.dtype == torch.float32 and part.images.shape[1:] == (1, 64, 64)
        assert part.labels.dtype == torch.int64 and part.masks.dtype == torch.bool
        assert part.masks.shape == (len(part), 64, 64)
        assert 0 <= part.images.min() and part.images.max() <= 1
        assert part.masks.flatten(1).any(1).all()  # the ROI centroid slice cuts every ROI
        by_id = {r["subject_id"]: r for r in rows}
        for i, sid in enumerate(part.subject_ids):
            r = by_id[sid]
            assert part.labels[i] == (0 if r["group"] == "AD" else 1)
            assert part.meta["age"][i] == r["age"]
            assert part.meta["sex"][i] == (0 if r["sex"] == "F" else 1)
            assert part.meta["site"][i] == int(r["site"][-1])
    assert s.card["covariate_codes"]["sex"] == {"female": 0, "male": 1}
    # the big (CN) hippocampus is larger in mm³ and in the slice
    vol = s.train.meta["roi_volume_mm3"]
    assert vol[s.train.labels == 1].min() > vol[s.train.labels == 0].max()
    area = s.train.masks.flatten(1).sum(1)
    assert area[s.train.labels == 1].float().mean() > area[s.train.labels == 0].float().mean()


def test_groups_option_orders_labels_and_selects_two_of_three(cohort, tmp_path):
    _, rows = cohort

    def third_group(rs):
        return rs + [dict(rs[0], subject_id="X1", group="MCI"), dict(rs[1], subject_id="X2", group="MCI")]

    manifest, _ = _copy(cohort, tmp_path, third_group)
    s = _load(tmp_path, manifest=str(manifest), groups=["CN", "AD"])
    assert s.groups == ("CN", "AD")
    assert s.card["rows_of_other_groups_dropped"] == 2
    ids = set(s.train.subject_ids + s.val.subject_ids + s.test.subject_ids)
    assert "X1" not in ids and len(ids) == 12
    cn = s.train.labels[[i for i, x in enumerate(s.train.subject_ids) if int(x[1:]) % 2 == 0]]
    assert (cn == 0).all()


def _by_subject(s) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {sid: (p.images[i], p.masks[i]) for p in (s.train, s.val, s.test)
            for i, sid in enumerate(p.subject_ids)}


def test_ras_reorientation_flipped_copy_gives_the_same_slice(cohort, tmp_path):
    manifest, rows = cohort
    src = manifest.parent / rows[1]["image"], manifest.parent / rows[1]["roi_mask"]
    vol, mask = nib.load(str(src[0])), nib.load(str(src[1]))
    assert vol.affine[0, 0] > 0  # row 1 is stored RAS; write a left-right flipped twin
    data, aff = _flip_x(np.asarray(vol.dataobj), vol.affine)
    _save(data, tmp_path / "flip.nii.gz", aff)
    _save(_flip_x(np.asarray(mask.dataobj), mask.affine)[0], tmp_path / "flip_hip.nii.gz", aff)
    assert not np.array_equal(data, np.asarray(vol.dataobj))
    _, more = _copy(cohort, tmp_path)
    m = _write(tmp_path, [dict(more[1], subject_id="orig"),
                          dict(more[1], subject_id="flip", image="flip.nii.gz", roi_mask="flip_hip.nii.gz"),
                          *more[2:7]])
    for plane in ("coronal", "axial", "sagittal"):
        got = _by_subject(_load(tmp_path, manifest=str(m), plane=plane))
        assert torch.equal(got["orig"][0], got["flip"][0]) and torch.equal(got["orig"][1], got["flip"][1])
        assert got["orig"][1].any()
        assert not torch.equal(got["orig"][0], got["orig"][0].flip(-1))  # the test can see a flip


def test_roi_centroid_is_the_index_through_the_mask_centre(cohort, tmp_path):
    manifest, _ = cohort
    auto = _by_subject(_load(tmp_path, manifest=str(manifest)))
    at = _by_subject(_load(tmp_path, manifest=str(manifest), slice=HIP_CENTER[1]))
    off = _by_subject(_load(tmp_path, manifest=str(manifest), slice=HIP_CENTER[1] + 6))
    centre = _by_subject(_load(tmp_path, manifest=str(manifest), slice="center"))
    for sid in auto:
        assert torch.equal(auto[sid][0], at[sid][0]) and torch.equal(auto[sid][1], at[sid][1])
        assert not off[sid][1].any()  # 6 voxels away the slice misses the ROI (radius 4)
        assert not torch.equal(centre[sid][0], auto[sid][0])


def test_k_slices_and_repeated_scans_stay_with_their_subject(cohort, tmp_path):
    def second_visit(rs):
        return rs + [dict(rs[0], age=99), dict(rs[3], age=98)]

    manifest, _ = _copy(cohort, tmp_path, second_visit)
    s = _load(tmp_path, manifest=str(manifest), slices=3)
    assert sum(len(p) for p in (s.train, s.val, s.test)) == 14 * 3
    ids = [set(p.subject_ids) for p in (s.train, s.val, s.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    allids = [sid for p in (s.train, s.val, s.test) for sid in p.subject_ids]
    assert allids.count("S00") == 6 and allids.count("S03") == 6 and allids.count("S01") == 3
    one = _by_subject(_load(tmp_path, manifest=str(manifest)))
    p = next(p for p in (s.train, s.val, s.test) if "S05" in p.subject_ids)
    k = p.subject_ids.index("S05")
    assert torch.equal(p.images[k + 1], one["S05"][0])  # the middle of the 3 is the single slice
    assert not torch.equal(p.images[k], p.images[k + 1])


def test_split_is_subject_level_balanced_seeded_and_order_free(cohort, tmp_path):
    manifest, _ = cohort
    a = _load(tmp_path, seed=0, manifest=str(manifest))
    for part, n in ((a.train, 8), (a.val, 2), (a.test, 2)):
        assert len(part) == n and part.labels.sum() == n // 2  # 4/1/1 subjects per group
    assert a.card["split"] == {"train": sorted(a.train.subject_ids), "val": sorted(a.val.subject_ids),
                               "test": sorted(a.test.subject_ids)}
    assert a.card["counts"]["val"] == {"AD": {"subjects": 1, "images": 1}, "CN": {"subjects": 1, "images": 1}}
    assert _load(tmp_path, seed=0, manifest=str(manifest)).card["split"] == a.card["split"]
    others = [_load(tmp_path, seed=s, manifest=str(manifest)).card["split"] for s in (1, 2, 3)]
    assert any(o != a.card["split"] for o in others)
    shuffled, _ = _copy(cohort, tmp_path, lambda rs: rs[::-1])
    assert _load(tmp_path, seed=0, manifest=str(shuffled)).card["split"] == a.card["split"]
    with pytest.raises(XaibenchError, match="at least 3 per group"):
        small, _ = _copy(cohort, tmp_path, lambda rs: rs[:4])
        _load(tmp_path, manifest=str(small))


# --------------------------------------------------------------------------- cache


def test_second_load_reads_the_cache_not_the_volumes(cohort, tmp_path, monkeypatch):
    manifest, _ = _copy(cohort, tmp_path)
    first = _load(tmp_path, manifest=str(manifest))
    files = list((tmp_path / "cache").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz"

    def no_reading(*a, **k):
        raise AssertionError("nibabel.load called on a cache hit")

    monkeypatch.setattr(nib, "load", no_reading)
    again = _load(tmp_path, seed=0, manifest=str(manifest), roi_name="hippocampus")  # split option only
    assert torch.equal(again.train.images, first.train.images) and again.roi_name == "hippocampus"
    assert torch.equal(again.test.masks, first.test.masks)
    with pytest.raises(XaibenchError, match="cannot read image"):  # another plane: a new key
        _load(tmp_path, manifest=str(manifest), plane="axial")
    monkeypatch.undo()
    img = Path(_copy(cohort, tmp_path)[1][4]["image"])
    monkeypatch.setattr(nib, "load", no_reading)
    manifest.write_text(manifest.read_text().replace("60,F", "61,F", 1))  # edited manifest: rebuild
    with pytest.raises(XaibenchError):
        _load(tmp_path, manifest=str(manifest))
    assert img.is_file() and len(list((tmp_path / "cache").iterdir())) == 1  # no half cache


def test_a_replaced_scan_invalidates_the_cache(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path)
    img = tmp_path / "s04.nii.gz"
    img.write_bytes(Path(rows[4]["image"]).read_bytes())
    manifest = _write(tmp_path, [dict(r, image=str(img)) if i == 4 else r for i, r in enumerate(rows)])
    first = _by_subject(_load(tmp_path, manifest=str(manifest)))
    vol = nib.load(str(img))
    _save(np.asarray(vol.dataobj)[::-1].copy(), img, vol.affine)  # same size, new content
    second = _by_subject(_load(tmp_path, manifest=str(manifest)))
    assert not torch.equal(first["S04"][0], second["S04"][0])
    assert torch.equal(first["S05"][0], second["S05"][0])


def test_corrupt_cache_file_is_rebuilt(cohort, tmp_path):
    manifest, _ = cohort
    first = _load(tmp_path, manifest=str(manifest))
    (f,) = list((tmp_path / "cache").iterdir())
    f.write_bytes(f.read_bytes()[:100])
    again = _load(tmp_path, manifest=str(manifest))
    assert torch.equal(first.val.images, again.val.images)
