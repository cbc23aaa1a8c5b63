"""The ``nifti`` dataset: a synthetic cohort of small NIfTI volumes written with nibabel.

Group ``CN`` has a large "hippocampus" ellipsoid, group ``AD`` a small one; each scan has
its ROI mask. Checks: the contract (shapes, dtypes, ranges, labels, covariates), RAS
reorientation, slice position, the subject-level split, the cache, and every bad input.
"""
from __future__ import annotations

import json
import runpy
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from xaibench.errors import XaibenchError
from xaibench_plugins.datasets import nifti
from xaibench_plugins.datasets._nifti_volume import Window, resize, slice_indices, window

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


def assert_fails_cleanly(tmp_path: Path, match: str, **options) -> None:
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
    assert json.loads(json.dumps(s.card))["split"]["test"] == sorted(s.test.subject_ids)  # storable as JSON
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
    with pytest.warns(UserWarning, match="12 of 12 slices do not cut the ROI"):
        off = _by_subject(_load(tmp_path, manifest=str(manifest), slice=HIP_CENTER[1] + 6))
    centre = _by_subject(_load(tmp_path, manifest=str(manifest), slice="center"))
    for sid in auto:
        assert torch.equal(auto[sid][0], at[sid][0]) and torch.equal(auto[sid][1], at[sid][1])
        assert not off[sid][1].any()  # 6 voxels away the slice misses the ROI (radius 4)
        assert not torch.equal(centre[sid][0], auto[sid][0])
    s = _load(tmp_path, manifest=str(manifest), slices=3)
    assert s.train.meta["slice_index"].tolist() == [HIP_CENTER[1] - 1, HIP_CENTER[1], HIP_CENTER[1] + 1] * 8

    with pytest.raises(XaibenchError, match=r"slices 30..32 fall outside the volume \(0..31"):
        _load(tmp_path, manifest=str(manifest), slice=31, slices=3)


def test_centroid_between_two_rois_takes_the_largest_cross_section():
    mask = np.zeros((30, 10, 10), bool)
    mask[4:6, 2:5, 2:5] = True  # left: 3×3 per sagittal slice
    mask[22:25, 2:6, 2:6] = True  # right: 4×4 per slice, three slices
    assert slice_indices(mask.shape, "sagittal", "roi-centroid", 1, mask, "t") == [22]
    assert slice_indices(mask.shape, "coronal", "roi-centroid", 3, mask, "t") == [2, 3, 4]
    assert slice_indices(mask.shape, "axial", "center", 2, None, "t") == [4, 5]


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
    manifest.write_text(manifest.read_text().replace("60,F", "61,F", 1))  # edited manifest: rebuild
    with pytest.raises(XaibenchError):
        _load(tmp_path, manifest=str(manifest))
    assert len(list((tmp_path / "cache").iterdir())) == 1  # nothing half-written


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


# --------------------------------------------------------------------------- masks, intensities, size


def test_mask_on_a_coarser_grid_is_resampled_to_the_image(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path)
    ref = _by_subject(_load(tmp_path / "a", manifest=str(manifest), slice=HIP_CENTER[1]))
    new = []
    for i, r in enumerate(rows):
        m = nib.load(r["roi_mask"])
        coarse_aff = m.affine @ np.diag([2.0, 2.0, 2.0, 1.0])  # 2× voxels, same origin
        path = _save(np.asarray(m.dataobj)[::2, ::2, ::2].copy(), tmp_path / f"c{i}.nii.gz", coarse_aff)
        new.append(dict(r, roi_mask=str(path)))
    coarse = _write(tmp_path, new, "coarse.csv")
    got = _by_subject(_load(tmp_path / "b", manifest=str(coarse), slice=HIP_CENTER[1]))
    for sid, (img, mask) in got.items():
        assert torch.equal(img, ref[sid][0])
        inter = (mask & ref[sid][1]).sum().item()
        union = (mask | ref[sid][1]).sum().item()
        assert inter / union > 0.6, sid
    assert_fails_cleanly(tmp_path / "c", "does not share the image's shape", manifest=str(coarse), mask_resample="never")


def test_mask_outside_the_image_cannot_be_matched(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path)
    m = nib.load(rows[2]["roi_mask"])
    far = m.affine.copy()
    far[:3, 3] += 500  # same grid size, 50 cm away
    _save(np.asarray(m.dataobj), tmp_path / "far.nii.gz", far)
    bad = _write(tmp_path, [dict(r, roi_mask=str(tmp_path / "far.nii.gz")) if i == 2 else r
                            for i, r in enumerate(rows)])
    assert_fails_cleanly(tmp_path, r"manifest.csv line 4 \(subject S02\): roi_mask .*far.nii.gz cannot be matched",
         manifest=str(bad))


def test_non_binary_mask_is_thresholded_with_a_warning(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path)
    ref = _by_subject(_load(tmp_path / "a", manifest=str(manifest)))
    m = nib.load(rows[0]["roi_mask"])
    binary = np.asarray(m.dataobj).astype(np.float32)
    prob = np.where(binary > 0, 0.8, 0.3).astype(np.float32)  # a probability map
    _save(prob, tmp_path / "prob.nii.gz", m.affine)
    labels = (binary * 17).astype(np.int16)  # a label map (17 = left hippocampus)
    labels[0, 0, 0] = 3  # another structure: not in mask_labels
    _save(labels, tmp_path / "lab.nii.gz", m.affine)
    edit = lambda path: _write(tmp_path, [dict(r, roi_mask=str(path)) if i == 0 else r  # noqa: E731
                                          for i, r in enumerate(rows)])
    with pytest.warns(UserWarning, match="1 ROI mask.*not binary.*prob.nii.gz.*>= 0.5"):
        got = _by_subject(_load(tmp_path / "b", manifest=str(edit(tmp_path / "prob.nii.gz"))))
    assert torch.equal(got["S00"][1], ref["S00"][1])
    got = _by_subject(_load(tmp_path / "c", manifest=str(edit(tmp_path / "lab.nii.gz")), mask_labels=[1, 17]))
    assert torch.equal(got["S00"][1], ref["S00"][1])
    assert got["S00"][1].sum() == ref["S00"][1].sum()


def test_window_zscore_and_minmax():
    rng = np.random.default_rng(1)
    vol = np.zeros((20, 20, 20), np.float32)
    vol[4:16, 4:16, 4:16] = rng.normal(200, 30, (12, 12, 12))
    z = window(vol, "zscore-brain", (1, 99), "t")
    out = z.apply(vol)
    brain = vol > 0
    assert (out[~brain] == 0).all() and 0 <= out.min() and out.max() <= 1
    assert abs(out[brain].mean() - 0.5) < 0.01  # brain mean ↦ 0.5
    assert abs(out[brain].std() - 1 / 6) < 0.01  # one brain SD ↦ 1/6 (z in [-3, 3] ↦ [0, 1])
    mm = window(vol, "minmax", (1, 99), "t").apply(vol)
    lo, hi = np.percentile(vol[brain], [1, 99])
    assert mm.min() == 0 and mm.max() == 1
    assert np.isclose(mm[brain].mean(), (np.clip(vol[brain], lo, hi).mean() - lo) / (hi - lo), atol=1e-5)
    assert isinstance(window(out, "none", (1, 99), "t"), Window)
    with pytest.raises(XaibenchError, match=r"normalise = \"none\" needs intensities in \[0, 1\]"):
        window(vol, "none", (1, 99), "file x")
    with pytest.raises(XaibenchError, match="constant"):
        window(np.ones((4, 4, 4), np.float32), "minmax", (1, 99), "file x")


def test_resize_keeps_the_physical_aspect_ratio():
    img = np.ones((20, 40), np.float32)
    out, mask = resize(img, img > 0, 32)
    rows = out[0].sum(1)
    assert (rows[:8] == 0).all() and (rows[24:] == 0).all()
    assert torch.allclose(out[0, 8:24], torch.ones(16, 32))
    assert torch.equal(mask, out[0] > 0)
    out, _ = resize(img, None, 32, spacing=(2.0, 1.0))  # 40 mm × 40 mm: fills the square
    assert torch.allclose(out, torch.ones(1, 32, 32))


# --------------------------------------------------------------------------- bad input


def _replace_image(cohort, tmp_path: Path, row: int, data, affine=None, name="bad.nii.gz",
                   column="image") -> Path:
    manifest, rows = _copy(cohort, tmp_path)
    ref = nib.load(rows[row][column])
    path = _save(data, tmp_path / name, ref.affine if affine is None else affine)
    return _write(tmp_path, [dict(r, **{column: str(path)}) if i == row else r for i, r in enumerate(rows)])


def test_bad_missing_file(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path, lambda rs: [dict(r, image="nowhere/x.nii.gz") if i == 5 else r
                                                           for i, r in enumerate(rs)])
    assert_fails_cleanly(tmp_path, r"manifest.csv line 7 \(subject S05\): image file .*nowhere/x.nii.gz does not exist",
         manifest=str(manifest))
    assert_fails_cleanly(tmp_path, "manifest .*missing.csv does not exist", manifest=str(tmp_path / "missing.csv"))


def test_bad_truncated_and_corrupt_files(cohort, tmp_path):
    manifest, rows = _copy(cohort, tmp_path)
    good = Path(rows[3]["image"]).read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(good[: len(good) // 2])
    (tmp_path / "junk.nii.gz").write_bytes(b"this is not a NIfTI file" * 20)
    for name in ("cut.nii.gz", "junk.nii.gz"):
        bad = _write(tmp_path, [dict(r, image=str(tmp_path / name)) if i == 3 else r for i, r in enumerate(rows)])
        assert_fails_cleanly(tmp_path, rf"line 5 \(subject S03\): cannot read image .*{name} .*is the file complete",
             manifest=str(bad))


def test_bad_empty_mask(cohort, tmp_path):
    m = _replace_image(cohort, tmp_path, 1, np.zeros(SHAPE, np.uint8), column="roi_mask")
    assert_fails_cleanly(tmp_path, r"line 3 \(subject S01\): roi_mask .*bad.nii.gz is empty", manifest=str(m))


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_bad_nan_or_inf_voxels(cohort, tmp_path, value):
    vol = np.asarray(nib.load(str(cohort[0].parent / cohort[1][2]["image"])).dataobj).copy()
    vol[5, 5, 5] = value
    m = _replace_image(cohort, tmp_path, 2, vol)
    assert_fails_cleanly(tmp_path, r"line 4 \(subject S02\): image .*bad.nii.gz has 1 NaN/inf voxels", manifest=str(m))


def test_bad_4d_image_but_singleton_4th_axis_is_fine(cohort, tmp_path):
    vol = np.asarray(nib.load(str(cohort[0].parent / cohort[1][2]["image"])).dataobj)
    m = _replace_image(cohort, tmp_path, 2, np.stack([vol, vol, vol], axis=-1))
    assert_fails_cleanly(tmp_path, r"line 4 \(subject S02\): image .* has shape \(32, 32, 32, 3\); a 3-D volume is needed",
         manifest=str(m))
    ok = _replace_image(cohort, tmp_path, 2, vol[..., None], name="single.nii.gz")
    assert len(_by_subject(_load(tmp_path / "ok", manifest=str(ok)))) == 12


def test_bad_manifest_missing_a_required_column(cohort, tmp_path):
    manifest, _ = _copy(cohort, tmp_path, lambda rs: [{k: v for k, v in r.items() if k != "group"} for r in rs])
    assert_fails_cleanly(tmp_path, "manifest.csv has no column 'group' .*required: subject_id, group, image", manifest=str(manifest))

    manifest, _ = _copy(cohort, tmp_path, lambda rs: [dict(r, image="") if i == 2 else r for i, r in enumerate(rs)])
    assert_fails_cleanly(tmp_path, "manifest.csv line 4: empty image", manifest=str(manifest))


@pytest.mark.parametrize("groups, found", [(("CN", "AD", "MCI"), "3 group"), (("CN",), "1 group")])
def test_bad_not_two_groups(cohort, tmp_path, groups, found):
    manifest, _ = _copy(cohort, tmp_path, lambda rs: [dict(r, group=groups[i % len(groups)])
                                                        for i, r in enumerate(rs)])
    assert_fails_cleanly(tmp_path, f"found {found}.* exactly two are needed; choose two with the option groups",
         manifest=str(manifest))
    assert_fails_cleanly(tmp_path, "group 'XX' from the groups option does not occur", manifest=str(manifest), groups=["CN", "XX"])


def test_bad_subject_in_both_groups(cohort, tmp_path):
    manifest, _ = _copy(cohort, tmp_path, lambda rs: rs + [dict(rs[0], group="AD")])
    assert_fails_cleanly(tmp_path, r"subject 'S00' is in both groups \(lines 2, 14\)", manifest=str(manifest))


def test_bad_sex_value_names_the_line(cohort, tmp_path):
    manifest, _ = _copy(cohort, tmp_path, lambda rs: [dict(r, sex="x") if i == 1 else r for i, r in enumerate(rs)])
    assert_fails_cleanly(tmp_path, "line 3: sex 'x' is not one of", manifest=str(manifest))


@pytest.mark.parametrize("options, match", [
    ({"plane": "oblique"}, "option plane = 'oblique' is invalid; allowed: sagittal, coronal, axial"),
    ({"split": [0.5, 0.5]}, "option split"),
    ({"split": [0.7, 0.2, 0.2]}, "summing to 1"),
    ({"slice": "middle"}, "option slice"),
    ({"slices": 0}, "option slices"),
    ({"image_size": 4}, "option image_size"),
    ({"normalise": "zscore"}, "allowed: zscore-brain, minmax, none"),
    ({"clip_percentiles": [99, 1]}, "option clip_percentiles"),
    ({"mode": "3d"}, "a 3-D mode is not implemented"),
    ({"mask_resample": "linear"}, "allowed: nearest, never"),
    ({"groups": ["A", "A"]}, "two different group names"),
    ({"colour": "red"}, "unknown option 'colour'; allowed: manifest"),
])
def test_bad_options(cohort, options, match):
    with pytest.raises(XaibenchError, match=match):
        nifti.make(manifest=str(cohort[0]), **options)


def test_bad_source_choice_and_centroid_without_masks(cohort, tmp_path):
    with pytest.raises(XaibenchError, match="exactly one of the options manifest"):
        nifti.make()
    with pytest.raises(XaibenchError, match="exactly one of the options manifest"):
        nifti.make(manifest="m.csv", arrays={"A": "a.npy", "B": "b.npy"})
    manifest, _ = _copy(cohort, tmp_path, lambda rs: [{k: v for k, v in r.items() if k != "roi_mask"} for r in rs])
    assert_fails_cleanly(tmp_path, "roi-centroid\" needs ROI masks", manifest=str(manifest), slice="roi-centroid")
    s = _load(tmp_path, manifest=str(manifest))  # no masks: centre slice, all-False masks
    assert not s.train.masks.any() and s.card["preprocessing"]["slice"] == "center"
    assert "roi_volume_mm3" not in s.train.meta


# --------------------------------------------------------------------------- arrays, plugin, example


def test_array_format(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.uniform(0, 1, (5, 1, 16, 16)).astype(np.float32)  # N×1×H×W
    b = rng.uniform(0, 1, (4, 16, 16)).astype(np.float32)  # N×H×W
    ma, mb = np.zeros((5, 16, 16), np.float32), np.zeros((4, 1, 16, 16), np.float32)
    ma[:, 4:8, 4:8] = 1
    mb[:, :, 8:12, 8:12] = 1
    for name, arr in {"a": a, "b": b, "ma": ma, "mb": mb}.items():
        np.save(tmp_path / f"{name}.npy", arr)
    opts = {"arrays": {"young": str(tmp_path / "b.npy"), "old": str(tmp_path / "a.npy")},
            "mask_arrays": {"young": str(tmp_path / "mb.npy"), "old": str(tmp_path / "ma.npy")},
            "image_size": 32, "normalise": "none"}
    s = _load(tmp_path, **opts)
    assert s.groups == ("old", "young") and s.image_size == (32, 32)
    every = _by_subject(s)
    assert len(every) == 9 and "old-00004" in every and "young-00003" in every
    img, mask = every["old-00002"]
    ref = torch.nn.functional.interpolate(torch.from_numpy(a[2:3]), size=32, mode="bilinear",
                                          align_corners=False, antialias=True)[0]
    assert torch.allclose(img, ref.clamp(0, 1), atol=1e-6)
    assert mask[8:16, 8:16].all() and mask.sum() == 64
    labels = {sid: int(p.labels[i]) for p in (s.train, s.val, s.test) for i, sid in enumerate(p.subject_ids)}
    assert labels["old-00000"] == 0 and labels["young-00000"] == 1
    assert s.card["source"] == "arrays"
    np.save(tmp_path / "wide.npy", np.full((4, 16, 16), 300.0, np.float32))
    assert_fails_cleanly(tmp_path / "x", "needs intensities in \\[0, 1\\]", **dict(opts, arrays={"young": str(tmp_path / "wide.npy"),
                                                                              "old": str(tmp_path / "a.npy")}))
    assert_fails_cleanly(tmp_path / "y", "mask_arrays.young .* has shape", **dict(opts, mask_arrays={
        "young": str(tmp_path / "ma.npy"), "old": str(tmp_path / "ma.npy")}))
    assert_fails_cleanly(tmp_path / "z", "found 1 group", arrays={"old": str(tmp_path / "a.npy")})


def test_registered_with_a_path_option():
    from importlib import metadata

    (ep,) = [ep for ep in metadata.entry_points(group="xaibench") if ep.name == "nifti"]
    assert ep.load() is nifti
    (rec,) = list(nifti.xaibench_datasets())
    assert rec.name == "nifti" and rec.factory is nifti.make and nifti.PATH_OPTION == "manifest"


def test_example_manifest_script_makes_a_loadable_cohort(tmp_path):
    ns = runpy.run_path(str(EXAMPLE))
    manifest = ns["make_cohort"](tmp_path / "cohort", n_per_group=3, size=24)
    s = _load(tmp_path, manifest=str(manifest), image_size=32)
    assert sum(len(p) for p in (s.train, s.val, s.test)) == 6 and s.train.masks.any()


# --------------------------------------------------------------------------- paired arrays, ids, covariates


def _parts(s):
    return {"train": s.train, "val": s.val, "test": s.test}


def _paired_arrays(tmp_path: Path, n: int = 20) -> dict:
    """Group B image i is group A image i with a corrupted patch (the research notes' control)."""
    rng = np.random.default_rng(1)
    a = rng.uniform(0.2, 0.8, (n, 16, 16)).astype(np.float32)
    b = a.copy()
    b[:, 4:8, 4:8] = 0.0
    np.save(tmp_path / "clean.npy", a)
    np.save(tmp_path / "corrupt.npy", b[:, None])  # N×1×H×W beside N×H×W
    rows = ["group,index,pair,site,sex,age"] + [f"{g},{i},{i},{'UCSD' if i % 2 else 'MAYO'},{'FM'[i % 2]},{50 + i}"
                                               for g in ("A", "B") for i in range(n)]
    (tmp_path / "cov.csv").write_text("\n".join(rows) + "\n")
    return {"arrays": {"A": str(tmp_path / "clean.npy"), "B": str(tmp_path / "corrupt.npy")},
            "covariates": str(tmp_path / "cov.csv"), "image_size": 16, "normalise": "none"}


def _straddling_pairs(s) -> int:
    where = {}
    for name, part in _parts(s).items():
        for p in part.meta["pair"].tolist():
            where.setdefault(p, set()).add(name)
    return sum(len(v) > 1 for v in where.values())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_paired_arrays_keep_both_copies_of_a_pair_in_one_split(tmp_path, seed):
    opts = _paired_arrays(tmp_path)
    assert _straddling_pairs(_load(tmp_path, seed=seed, **opts)) > 0  # the leak without pairing
    s = _load(tmp_path, seed=seed, pairing="index", **opts)
    assert _straddling_pairs(s) == 0
    for part in _parts(s).values():
        pairs = part.meta["pair"]
        assert sorted(pairs[part.labels.numpy() == 0].tolist()) == sorted(pairs[part.labels.numpy() == 1].tolist())
        for sid, p in zip(part.subject_ids, pairs.tolist()):
            assert sid == f"pair-{int(p):05d}"
    assert sum(len(p) for p in _parts(s).values()) == 40 and len(s.test) == 8
    assert s.card["pairing"] == "index"


def test_array_covariates_keep_text_as_strings_and_code_sex(tmp_path):
    s = _load(tmp_path, **_paired_arrays(tmp_path))
    part = s.train
    assert part.meta["site"].dtype.kind == "U" and set(part.meta["site"].tolist()) == {"UCSD", "MAYO"}
    assert part.meta["age"].dtype == np.float64 and part.meta["sex"].dtype == np.float64
    idx = part.meta["pair"].astype(int)
    assert np.array_equal(part.meta["age"], 50 + idx) and np.array_equal(part.meta["sex"], idx % 2)


def test_array_subject_ids_group_images_of_one_subject(tmp_path):
    opts = _paired_arrays(tmp_path)
    for g, n in (("A", 20), ("B", 20)):
        (tmp_path / f"{g}.txt").write_text("".join(f"{g}{i // 2}\n" for i in range(n)))  # 2 images per subject
    s = _load(tmp_path, subject_ids={"A": str(tmp_path / "A.txt"), "B": str(tmp_path / "B.txt")}, **opts)
    seen = {}
    for name, part in _parts(s).items():
        for sid in part.subject_ids:
            seen.setdefault(sid, set()).add(name)
    assert len(seen) == 20 and all(len(v) == 1 for v in seen.values())
    assert sum(len(p) for p in _parts(s).values()) == 40
    (tmp_path / "B.txt").write_text("".join(f"A{i // 2}\n" for i in range(20)))
    ids = {"A": str(tmp_path / "A.txt"), "B": str(tmp_path / "B.txt")}
    assert_fails_cleanly(tmp_path / "x", "subject 'A0' is in both groups.*pairing = \"index\"", subject_ids=ids, **opts)
    (tmp_path / "short.txt").write_text("a\nb\n")
    assert_fails_cleanly(tmp_path / "y", "subject_ids.A: short.txt has 2 ids for 20 images",
                         subject_ids={"A": str(tmp_path / "short.txt"), "B": ids["B"]}, **opts)


def test_bad_array_covariates_pairing_and_shapes(tmp_path):
    opts = _paired_arrays(tmp_path)
    lines = (tmp_path / "cov.csv").read_text().splitlines()
    (tmp_path / "gap.csv").write_text("\n".join(lines[:-1]) + "\n")
    assert_fails_cleanly(tmp_path / "a", "no row for group 'B' index 19", **dict(opts, covariates=str(tmp_path / "gap.csv")))
    (tmp_path / "dup.csv").write_text("\n".join(lines + [lines[1]]) + "\n")
    assert_fails_cleanly(tmp_path / "b", "dup.csv line 42: index '0' of group 'A' is not a new image index",
                         **dict(opts, covariates=str(tmp_path / "dup.csv")))
    np.save(tmp_path / "short.npy", np.zeros((19, 16, 16), np.float32))
    assert_fails_cleanly(tmp_path / "c", "they have 19 and 20 images", pairing="index", **dict(
        opts, covariates=None, arrays={"A": opts["arrays"]["A"], "B": str(tmp_path / "short.npy")}))
    for shape, hint in (((4, 16, 16, 1), "channels last"), ((4, 3, 16, 16), "N×H×W or N×1×H×W"),
                        ((16, 16), "N×H×W or N×1×H×W"), ((0, 16, 16), "N ≥ 1")):
        np.save(tmp_path / "odd.npy", np.zeros(shape, np.float32))
        assert_fails_cleanly(tmp_path / "d", f"arrays.B: odd.npy has shape .*{hint}", **dict(
            opts, covariates=None, arrays={"A": opts["arrays"]["A"], "B": str(tmp_path / "odd.npy")}))
    with pytest.raises(XaibenchError, match="pairing = 'pairs' is invalid"):
        nifti.make(pairing="pairs", **opts)
    with pytest.raises(XaibenchError, match="covariates .* applies to arrays"):
        nifti.make(manifest="m.csv", covariates="c.csv")


# --------------------------------------------------------------------------- field of view


def test_crop_around_the_roi_centroid_enlarges_the_roi_and_centres_it(cohort, tmp_path):
    manifest, _ = cohort
    whole = _by_subject(_load(tmp_path, manifest=str(manifest), image_size=32))
    fov = _by_subject(_load(tmp_path, manifest=str(manifest), image_size=32, crop_mm=12))
    for sid, (img, mask) in fov.items():
        assert mask.float().mean() > 4 * whole[sid][1].float().mean()
        rows, cols = torch.nonzero(mask, as_tuple=True)
        # centred to within half a source voxel (a 10-voxel box cannot centre a 5-voxel ROI exactly:
        # 0.5 × 32 px / 10 = 1.6 px) plus nearest-neighbour rounding of the mask
        assert abs(rows.float().mean() - 15.5) <= 2.0 and abs(cols.float().mean() - 15.5) <= 2.0
    # the same box given in RAS mm (the ROI centre of every scan: voxel (10, 14, 12) of the
    # affine diag(1, 1, 1.2) + (-16, -16, -19)) gives the same images, flipped files included
    fixed = _by_subject(_load(tmp_path, manifest=str(manifest), image_size=32, crop_mm=[12, 12],
                              crop_center=[-6.0, -2.0, -4.6]))
    for sid, (img, mask) in fov.items():
        assert torch.equal(fixed[sid][0], img) and torch.equal(fixed[sid][1], mask)
    card = _load(tmp_path, manifest=str(manifest), image_size=32, crop_mm=12).card
    assert card["preprocessing"]["crop_mm"] == [12.0, 12.0]


def test_bad_crop_options(cohort, tmp_path):
    manifest, _ = cohort
    assert_fails_cleanly(tmp_path, "crop around .* holds no brain", manifest=str(manifest), crop_mm=10,
                         crop_center=[500, 0, 0])
    for bad, match in (({"crop_mm": -3}, "crop_mm = -3 is invalid"), ({"crop_center": "middle"}, "crop_center"),
                       ({"crop_mm": 50, "arrays": {"A": "a", "B": "b"}}, "not arrays")):
        with pytest.raises(XaibenchError, match=match):
            nifti.make(**({"manifest": str(manifest)} if "arrays" not in bad else {}), **bad)


def test_three_groups_error_points_to_the_suite_file(cohort, tmp_path):
    manifest, _ = _copy(cohort, tmp_path, lambda rs: [dict(r, group="CN AD MCI".split()[i % 3]) for i, r in enumerate(rs)])
    assert_fails_cleanly(tmp_path, r"in a suite file's \[\[datasets\]\] entry \(--dataset nifti:PATH sets only",
                         manifest=str(manifest))


# --------------------------------------------------------------------------- hemispheres


@pytest.fixture(scope="module")
def bilateral(tmp_path_factory) -> Path:
    """6 subjects, both hippocampi labelled FreeSurfer-style: 17 left (x = 9), 53 right (x = 23)."""
    root = tmp_path_factory.mktemp("bilateral")
    rng = np.random.default_rng(2)
    g = np.mgrid[:32, :32, :32].astype(np.float32)
    rows = []
    for i in range(6):
        vol = np.where(((g - 16) ** 2).sum(0) < 14 ** 2, 100 + rng.normal(0, 5, SHAPE), 0).astype(np.float32)
        labels = np.zeros(SHAPE, np.int16)
        for x, lab, rx in ((9, 17, 3), (23, 53, 2 + i % 2)):
            labels[(((g[0] - x) / rx) ** 2 + ((g[1] - 14) / 4) ** 2 + ((g[2] - 12) / 3) ** 2) < 1] = lab
        vol[labels > 0] = 60
        _save(vol, root / f"s{i}.nii.gz")
        _save(labels, root / f"s{i}_seg.nii.gz")
        rows.append({"subject_id": f"S{i}", "group": "AB"[i % 2], "image": f"s{i}.nii.gz", "roi_mask": f"s{i}_seg.nii.gz"})
    return _write(root, rows)


def _all(s, name):
    return torch.cat([p.mask(name) for p in _parts(s).values()])


def test_hemispheres_from_labels_and_from_the_midline_agree(bilateral, tmp_path):
    by_label = _load(tmp_path, manifest=str(bilateral), image_size=32, hemisphere_labels={"left": [17], "right": 53})
    by_mid = _load(tmp_path, manifest=str(bilateral), image_size=32, mask_labels=[17, 53])
    for s in (by_label, by_mid):
        left, right, roi = _all(s, "roi-left"), _all(s, "roi-right"), _all(s, "roi")
        assert left.any(1).any(1).all() and right.any(1).any(1).all()
        assert not left[..., 16:].any() and not right[..., :16].any()  # patient's left on the image's left
        assert torch.equal(left | right, roi) and not (left & right).any()
    for name in ("roi", "roi-left", "roi-right", "brain"):
        assert torch.equal(_all(by_label, name), _all(by_mid, name))
    meta = {k: np.concatenate([p.meta[k] for p in _parts(by_label).values()]) for k in by_label.train.meta}
    assert np.allclose(meta["roi_volume_mm3_left"] + meta["roi_volume_mm3_right"], meta["roi_volume_mm3"])
    assert meta["roi_volume_mm3_left"].min() > 0 and meta["roi_volume_mm3_right"].max() > meta["roi_volume_mm3_right"].min()
    assert set(by_label.card["masks"]) == {"roi", "roi-left", "roi-right", "brain"}


def test_midline_at_an_ras_coordinate_and_the_brain_mask(bilateral, tmp_path):
    # with an identity affine voxel x = RAS mm: a midline at x = 5 puts both hippocampi (x = 9, 23)
    # on the right (larger x), one at x = 30 on the left
    for mid, side, other in ((5.0, "roi-right", "roi-left"), (30.0, "roi-left", "roi-right")):
        s = _load(tmp_path, manifest=str(bilateral), image_size=32, mask_labels=[17, 53], midline=mid)
        assert torch.equal(_all(s, side), _all(s, "roi")) and not _all(s, other).any()
    brain, images = _all(s, "brain"), torch.cat([p.images[:, 0] for p in _parts(s).values()])
    roi = _all(s, "roi")  # the hippocampi (60 vs 100) fall below the z-window and are 0 in the image
    assert (images[~brain] == 0).all() and ((images > 0) | roi)[brain].float().mean() > 0.98
    assert abs(brain.float().mean() - np.pi * (14 ** 2 - 2 ** 2) / 32 ** 2) < 0.02  # the r = 14 sphere at y = 14
    with pytest.raises(XaibenchError, match="hemisphere_labels"):
        nifti.make(manifest=str(bilateral), hemisphere_labels={"left": [17]})
    with pytest.raises(XaibenchError, match="midline = 'middle' is invalid"):
        nifti.make(manifest=str(bilateral), midline="middle")


def test_array_masks_get_sides_and_brain(tmp_path):
    s = _load(tmp_path, **_conformance(tmp_path))
    left, right, roi = _all(s, "roi-left"), _all(s, "roi-right"), _all(s, "roi")
    assert torch.equal(left | right, roi) and left.any() and right.any()


def _conformance(tmp_path: Path) -> dict:
    return nifti._conformance_options(tmp_path / "arrays")
