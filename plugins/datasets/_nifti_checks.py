"""Checks of the ``nifti`` options added for the field of view, hemispheres and the array
format; each bad value is one line naming the option and what is allowed."""
from __future__ import annotations

from typing import Any, Callable, Mapping

from xaibench.errors import XaibenchError

from ._nifti_arrays import PAIRINGS
from ._nifti_fov import MIDLINES


def bad_option(option: str, value: Any, allowed: str) -> XaibenchError:
    return XaibenchError(f"dataset nifti: option {option} = {value!r} is invalid; {allowed}")


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def check_fov(o: Any, put: Callable[[str, Any], None]) -> None:
    """crop_mm, crop_center, hemisphere_labels, midline."""
    if o.crop_mm is not None:
        c = (o.crop_mm, o.crop_mm) if _number(o.crop_mm) else o.crop_mm
        if not (isinstance(c, (list, tuple)) and len(c) == 2 and all(_number(x) and x > 0 for x in c)):
            raise bad_option("crop_mm", o.crop_mm, "give a box size in mm, e.g. 104 or [104, 104] (rows, columns)")
        if o.arrays is not None:
            raise bad_option("crop_mm", o.crop_mm, "cropping in mm needs voxel sizes: it applies to manifest scans, "
                                            "not arrays (crop the arrays before saving them)")
        put("crop_mm", (float(c[0]), float(c[1])))
    cc = o.crop_center
    if cc != "roi-centroid":
        if not (isinstance(cc, (list, tuple)) and len(cc) == 3 and all(map(_number, cc))):
            raise bad_option("crop_center", cc, "\"roi-centroid\" or [x, y, z] in RAS (scanner or MNI) mm")
        put("crop_center", tuple(float(x) for x in cc))
    hl = o.hemisphere_labels
    if hl is not None:
        ok = isinstance(hl, Mapping) and set(hl) == {"left", "right"}
        sides = {k: (v,) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in hl.items()} if ok else {}
        if not ok or not all(isinstance(v, (list, tuple)) and v and all(isinstance(x, int) for x in v)
                             for v in sides.values()):
            raise bad_option("hemisphere_labels", hl, "give {left = [17], right = [53]} (label values of the ROI mask)")
        put("hemisphere_labels", {k: tuple(int(x) for x in v) for k, v in sorted(sides.items())})
    if o.midline not in MIDLINES and not _number(o.midline):
        raise bad_option("midline", o.midline, f"allowed: {', '.join(MIDLINES)}, or the RAS x of the midline in mm "
                                         "(0 for MNI space)")
    if _number(o.midline) and o.arrays is not None:
        raise bad_option("midline", o.midline, "arrays have no coordinates; use brain-centroid or roi-centroid")


def check_arrays(o: Any) -> None:
    """pairing, subject_ids, covariates (array format only)."""
    if o.pairing not in PAIRINGS:
        raise bad_option("pairing", o.pairing, "allowed: none, index (image i of group B derived from image i of A)")
    for name in ("subject_ids", "covariates"):
        if getattr(o, name) is not None and o.arrays is None:
            raise bad_option(name, getattr(o, name), "applies to arrays; a manifest has subject_id and covariate columns")
    if o.pairing != "none" and o.arrays is None:
        raise bad_option("pairing", o.pairing, "applies to arrays; in a manifest give paired scans one subject_id")
    if o.subject_ids is not None and not isinstance(o.subject_ids, Mapping):
        raise bad_option("subject_ids", o.subject_ids, "use a table {A = \"a_ids.txt\", B = \"b_ids.txt\"} "
                                                 "(one id per line, or a 1-D .npy)")
