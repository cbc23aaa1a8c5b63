"""Dataset ``corrupted-control``: a positive control with a known answer.

Group B is group A with a corruption in a known region, so the only thing a classifier can
learn is that region, and a faithful explanation must point there; the ROI mask of every
image is the corrupted region. It wraps any dataset plugin of the run, installed or from
``--plugin`` (``source``, built with ``source_options``, found through
``xaibench.plugins.current_registry()``); only the source's group ``source_group`` is used.

Corruptions (``strength`` is one value; sweep it with several dataset entries):

* ``zero`` — a hard-edged square patch multiplied by ``1 − strength`` (1 = zero-out, the
  research notes' control; default 1);
* ``blur`` — Gaussian blur with σ = ``strength`` pixels inside the patch, feathered edges
  (default 2);
* ``attenuate`` — the patch multiplied by ``1 − strength``, feathered edges (default 0.5;
  the default corruption, since a small model learns it at moderate strengths);
* ``topk`` — the top ``strength`` fraction of pixels (default 0.05) of a *model-free*
  reference map (``reference``, default ``edge``) zeroed. Model-based references are
  refused: training a model only to choose pixels would make the control depend on it.

Patches have side ``patch_size`` at 224 px (default 32), scaled to the image size; they sit
at ``location`` = ``roi`` (centred on a random pixel of the source ROI, default), ``random``
(anywhere over tissue) or ``fixed`` (``center`` as fractions of height and width). For
``topk``, ``location`` is ``roi`` (pixels chosen inside the source ROI) or ``image``.

``pairing = "copy"`` (default) puts every source image in the dataset twice, clean (label
0) and corrupted (label 1), in the same split: a paired design in which the corruption is
the only difference. ``"disjoint"`` splits each split's subjects in two halves instead.
Cheap to rebuild from the (cached) source, so nothing else is cached.

Masks: ``roi`` is the corrupted region (for group A: the region of its corrupted twin under
``copy``, the region drawn for it under ``disjoint``); ``evidence`` is where the corruption
changes the image by more than 0.01 (for group A: where corrupting it would, i.e. under
``copy`` exactly its twin's evidence): a subset of the region that leaves out what a patch
does not change (background stays zero, flat tissue does not blur, a feathered border
barely changes); ``brain`` is the source's, when it has one.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from scipy import ndimage

import xaibench
from xaibench.contracts import DatasetSplits, ExplainContext, ImageSet, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import DatasetRecord
from xaibench.kit.options import option_factory

NAME = "corrupted-control"
VERSION = "2"
DEFAULT_STRENGTH = {"zero": 1.0, "blur": 2.0, "attenuate": 0.5, "topk": 0.05}
MAX_STRENGTH = {"zero": 1.0, "blur": 20.0, "attenuate": 1.0, "topk": 0.5}
PATCH_LOCATIONS = ("roi", "random", "fixed")
TOPK_LOCATIONS = ("roi", "image")
EVIDENCE_LEVEL = 0.01  # |corrupted − clean| above this is where the corruption changed the image


def _fail(option: str, what: str) -> XaibenchError:
    return XaibenchError(f"dataset {NAME}: option {option!r} {what}")


def _registry():
    """The run's registry (with its ``--plugin`` files), so ``source`` and ``reference`` may
    name plugins from a file."""
    from xaibench.plugins import current_registry

    return current_registry()


@dataclass(frozen=True)
class CorruptedControl:
    source: str = "synthetic-hippocampus"
    source_options: Mapping[str, Any] = field(default_factory=dict)
    corruption: str = "attenuate"
    strength: float | None = None
    location: str = "roi"
    patch_size: float = 32.0
    center: tuple[float, float] = (0.5, 0.5)
    pairing: str = "copy"
    source_group: int = 0
    reference: str = "edge"

    def __post_init__(self) -> None:
        if not isinstance(self.source, str) or self.source == NAME:
            raise _fail("source", f"must name another dataset plugin, not {self.source!r}")
        if not isinstance(self.source_options, Mapping):
            raise _fail("source_options", f"must be a table of the source's options, not {self.source_options!r}")
        if self.corruption not in DEFAULT_STRENGTH:
            raise _fail("corruption", f"must be one of {', '.join(DEFAULT_STRENGTH)}, not {self.corruption!r}")
        s = self.strength
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, float))
                              or not 0 <= s <= MAX_STRENGTH[self.corruption]):
            raise _fail("strength", f"for {self.corruption} must be a number in [0, {MAX_STRENGTH[self.corruption]}], "
                                    f"not {s!r}")
        allowed = TOPK_LOCATIONS if self.corruption == "topk" else PATCH_LOCATIONS
        if self.location not in allowed:
            raise _fail("location", f"for {self.corruption} must be one of {', '.join(allowed)}, not {self.location!r}")
        if isinstance(self.patch_size, bool) or not isinstance(self.patch_size, (int, float)) \
                or not 1 <= self.patch_size <= 224:
            raise _fail("patch_size", f"must be a size in pixels at 224 px, in [1, 224], not {self.patch_size!r}")
        c = self.center
        if not isinstance(c, (tuple, list)) or len(c) != 2 or not all(isinstance(v, (int, float)) and 0 <= v <= 1
                                                                         for v in c):
            raise _fail("center", f"must be two fractions (row, column) in [0, 1], not {c!r}")
        object.__setattr__(self, "center", tuple(float(v) for v in c))
        if self.pairing not in ("copy", "disjoint"):
            raise _fail("pairing", f"must be copy or disjoint, not {self.pairing!r}")
        if self.source_group not in (0, 1) or isinstance(self.source_group, bool):
            raise _fail("source_group", f"must be 0 or 1, not {self.source_group!r}")

    @property
    def level(self) -> float:
        return float(DEFAULT_STRENGTH[self.corruption] if self.strength is None else self.strength)

    # ------------------------------------------------------------------ regions
    def patch_px(self, hw: tuple[int, int]) -> int:
        return max(1, int(round(self.patch_size * min(hw) / 224.0)))

    def _patch_window(self, hw: tuple[int, int], r0: int, c0: int, ps: int) -> np.ndarray:
        """Weight map: 1 inside the patch (feathered inside its border unless ``zero``), 0 outside."""
        w = np.zeros(hw, np.float32)
        if self.corruption == "zero":
            w[r0:r0 + ps, c0:c0 + ps] = 1.0
            return w
        feather = max(1.0, ps / 4.0)
        d = np.arange(ps, dtype=np.float32)
        edge = np.minimum(d, ps - 1 - d) + 0.5  # distance of each row/col from the patch border
        t = np.clip(np.minimum.outer(edge, edge) / feather, 0.0, 1.0)
        w[r0:r0 + ps, c0:c0 + ps] = t * t * (3 - 2 * t)
        return w

    def _corner(self, img: np.ndarray, roi: np.ndarray, ps: int, rng: np.random.Generator) -> tuple[int, int]:
        h, w = img.shape
        if self.location == "fixed":
            r, c = self.center[0] * (h - 1), self.center[1] * (w - 1)
        elif self.location == "roi":
            pts = np.argwhere(roi)
            r, c = pts[rng.integers(len(pts))]
        else:  # random, over tissue when possible
            for _ in range(50):
                r, c = rng.integers(h), rng.integers(w)
                r0, c0 = self._clip(r, c, ps, h, w)
                if (img[r0:r0 + ps, c0:c0 + ps] > 0.05).mean() >= 0.5:
                    break
        return self._clip(r, c, ps, h, w)

    @staticmethod
    def _clip(r: float, c: float, ps: int, h: int, w: int) -> tuple[int, int]:
        r0 = int(np.clip(round(r - (ps - 1) / 2), 0, max(0, h - ps)))
        c0 = int(np.clip(round(c - (ps - 1) / 2), 0, max(0, w - ps)))
        return r0, c0

    def _topk_regions(self, images: torch.Tensor, roi: torch.Tensor, seed: int) -> np.ndarray:
        """Top ``level`` fraction of each image's pixels under the model-free reference map."""
        rec = _registry().get("explainer", self.reference)
        explainer = rec.factory()
        target = Target("logit", torch.zeros(len(images), dtype=torch.long))
        try:
            maps = explainer.explain(None, images, target, ExplainContext(reference=images[:1], seed=seed))
        except (AttributeError, TypeError) as exc:
            raise _fail("reference", f"names explainer {self.reference!r}, which needs a trained model; use a "
                                     f"model-free one such as edge or random ({type(exc).__name__})") from None
        maps = maps.detach().float().cpu().numpy()
        n_pix = images.shape[-2] * images.shape[-1]
        k = int(round(self.level * n_pix))
        out = np.zeros(maps.shape, bool)
        for i, m in enumerate(maps):
            allowed = roi[i].numpy() if self.location == "roi" else np.ones(m.shape, bool)
            cand = np.flatnonzero(allowed.ravel())
            if self.location == "roi" and len(cand) == 0:
                raise XaibenchError(f"dataset {NAME}: source image {i} has an empty ROI; use location = \"image\"")
            order = cand[np.argsort(-m.ravel()[cand], kind="stable")]
            out[i].ravel()[order[:min(k, len(order))]] = True
        return out

    def regions(self, data: ImageSet, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Per image: the corrupted region (bool) and the corruption weight map (float)."""
        imgs, roi = data.images[:, 0].numpy(), data.masks.numpy()
        hw = imgs.shape[-2:]
        if self.corruption == "topk":
            reg = self._topk_regions(data.images, data.masks, seed)
            return reg, reg.astype(np.float32)
        ps = self.patch_px(hw)
        rng = np.random.default_rng([int(seed), 0xC0])
        regions, weights = np.zeros(imgs.shape, bool), np.zeros(imgs.shape, np.float32)
        for i, img in enumerate(imgs):
            if self.location == "roi" and not roi[i].any():
                raise XaibenchError(f"dataset {NAME}: source {self.source!r} has an empty ROI in an image; "
                                    "use location = \"random\" or \"fixed\"")
            r0, c0 = self._corner(img, roi[i], ps, rng)
            regions[i, r0:r0 + ps, c0:c0 + ps] = True
            weights[i] = self._patch_window(hw, r0, c0, ps)
        return regions, weights

    def corrupt(self, images: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """``images`` (N×H×W) with the corruption applied where ``weights`` > 0."""
        s = self.level
        if self.corruption == "blur":
            blurred = np.stack([ndimage.gaussian_filter(x, s, mode="reflect") if s > 0 else x for x in images])
            out = images + weights * (blurred - images)
        elif self.corruption == "topk":
            out = images * (1.0 - weights)
        else:  # zero (hard window) and attenuate (feathered)
            out = images * (1.0 - s * weights)
        return np.clip(out, 0.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ dataset
    def load(self, *, seed: int, cache_dir: Path) -> DatasetSplits:
        from xaibench.plugins import instantiate

        src = instantiate(_registry(), "dataset", self.source, dict(self.source_options))
        splits = src.load(seed=seed, cache_dir=cache_dir)
        parts = [self._part(p, seed * 3 + i) for i, p in enumerate((splits.train, splits.val, splits.test))]
        train, val, test = parts
        card = {
            "dataset": NAME, "version": VERSION, "seed": int(seed),
            "options": {**asdict(self), "source_options": dict(self.source_options)},
            "strength": self.level, "patch_px": self.patch_px(splits.image_size) if self.corruption != "topk" else None,
            "groups": {"0": "clean", "1": f"{self.corruption}-corrupted"},
            "region_area_share": float(torch.cat([p.masks for p in parts]).float().mean()),
            "evidence_area_share": float(torch.cat([p.named_masks["evidence"] for p in parts]).float().mean()),
            "evidence_in_region": _evidence_in_region(parts),
            "evidence_threshold": EVIDENCE_LEVEL,
            "sizes": {n: {"images": len(p), "group_B_images": int(p.labels.sum())}
                      for n, p in zip(("train", "val", "test"), parts)},
            "source_card": dict(splits.card),
        }
        return DatasetSplits(NAME, train, val, test, groups=("clean", f"{self.corruption}-corrupted"),
                             roi_name="corrupted region", card=card)

    def _part(self, data: ImageSet, seed: int) -> ImageSet:
        keep = np.flatnonzero(data.labels.numpy() == self.source_group)
        if len(keep) == 0:
            raise XaibenchError(f"dataset {NAME}: source {self.source!r} has no images of group {self.source_group} "
                                "in a split; set source_group or use a larger source")
        src = data.subset(keep)
        regions, weights = self.regions(src, seed)
        images = src.images[:, 0].numpy()
        meta = {k: np.asarray(v) for k, v in src.meta.items()}
        if self.pairing == "copy":
            a_idx = b_idx = np.arange(len(src))
        else:  # whole subjects to one side or the other
            ids = np.asarray(src.subject_ids) if src.subject_ids else np.arange(len(src)).astype(str)
            subjects = np.random.default_rng([seed, 0xD1]).permutation(np.unique(ids))
            b_subj = set(subjects[: len(subjects) // 2].tolist())
            is_b = np.array([s in b_subj for s in ids])
            a_idx, b_idx = np.flatnonzero(~is_b), np.flatnonzero(is_b)
        corrupted = self.corrupt(images[b_idx], weights[b_idx])
        # evidence: where corrupting the image changes it; for group A the change corrupting
        # it would make (copy pairing: exactly its corrupted twin's evidence)
        changed = np.abs(self.corrupt(images, weights) - images) > EVIDENCE_LEVEL
        named = {"evidence": torch.from_numpy(np.concatenate([changed[a_idx], changed[b_idx]]))}
        if "brain" in src.named_masks:
            brain = src.named_masks["brain"]
            named["brain"] = torch.cat([brain[torch.as_tensor(a_idx)], brain[torch.as_tensor(b_idx)]])
        n_a, n_b = len(a_idx), len(b_idx)
        ids = tuple(src.subject_ids[i] for i in np.r_[a_idx, b_idx]) if src.subject_ids else ()
        meta = {k: np.concatenate([v[a_idx], v[b_idx]]) for k, v in meta.items()}
        meta["corrupted"] = np.r_[np.zeros(n_a, bool), np.ones(n_b, bool)]
        return ImageSet(
            images=torch.from_numpy(np.concatenate([images[a_idx], corrupted])[:, None].astype(np.float32)),
            labels=torch.cat([torch.zeros(n_a, dtype=torch.long), torch.ones(n_b, dtype=torch.long)]),
            masks=torch.from_numpy(np.concatenate([regions[a_idx], regions[b_idx]])),
            subject_ids=ids, meta=meta, named_masks=named,
        )


def _evidence_in_region(parts: list[ImageSet]) -> float | None:
    """Share of evidence pixels inside the corrupted region (1 by construction: a check
    that the corruption stays in its region), or None without evidence."""
    ev = torch.cat([p.named_masks["evidence"] for p in parts])
    roi = torch.cat([p.masks for p in parts])
    return float((ev & roi).sum() / ev.sum()) if ev.any() else None


make = option_factory(f"dataset {NAME}", CorruptedControl)


@xaibench.hookimpl
def xaibench_datasets():
    yield DatasetRecord(NAME, "positive control: group B = group A with a known region corrupted (wraps a dataset)",
                        make, version=VERSION,
                        conformance={"source_options": {"n_subjects": 20, "image_size": 32}})
