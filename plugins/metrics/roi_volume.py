"""``roi-volume`` — is attribution in the ROI associated with the ROI's volume, beyond
what the ROI's size alone and the covariates explain?

Why: in the hippocampus use case, a map that tracks atrophy should put more (or less)
evidence in the hippocampus the smaller it is. The share of a map's mass inside the ROI
is the wrong score for that: it grows with the ROI's area in the slice, which itself
follows the volume, so even a uniformly random map "correlates" with volume (r ≈ 0.8).
The scores here have the same expectation whatever the ROI's area:

* ``ratio`` — the mass share inside the ROI divided by the ROI's share of the image
  (= the mean attribution in the ROI over the mean in the image; 1 for a uniform map);
* ``mean`` — S̃, the mean attribution inside the ROI (the research notes' mean-ROI score).

Attribution is taken as ``mode`` says (``positive`` part, default; ``absolute``; ``signed``).
For each score and region the volume is regressed on the score plus the covariates:
β, SE and ΔR² over a covariates-only model, the partial correlation, and its two-sided
permutation p-value (the volume residuals permuted; exact under "no association").
Regions: ``roi`` with ``meta[volume_key]``, and, when the images carry ``roi-left`` /
``roi-right`` masks and meta ``<volume_key>_left`` / ``_right``, each hemisphere with its
own volume. Every region has a **negative control**: the same mask rotated/flipped and
moved to a random place in the brain that misses the ROI (``_regions``), scored the same
way — an association the control shares is not about the ROI. With several tests (regions
× scores) the p-values are Benjamini–Hochberg adjusted (``-q``).

Options: ``scores`` (default ``["ratio", "mean"]``); ``mode``; ``volume_key`` (default
``hippocampal_volume``); ``hemispheres`` (default true: use them when present);
``covariates`` — meta columns (default: every per-image meta column except volumes, ids,
labels and constants); numeric columns enter as they are, string/object columns and those
listed in ``categorical`` as fixed effects (one indicator per level); ``permutations``
(default 2000); ``seed``.

Score names: ``roi-volume[-mean]-<stat>[-left|-right]`` with stat ``partial`` (chance 0),
``beta`` (0), ``se``, ``delta-r2`` (chance: its null mean), ``p`` (0.5), ``q`` (several
tests only), ``control-partial`` (0) and ``control-p`` (0.5). ``extra`` of each
``partial`` holds Pearson and Spearman without covariates, n, and the covariate columns.
Calibrated under uniformly random maps on data whose ROI area follows the volume (tested).

Slices and volumes: the control region is moved by the rotations/flips that keep the image's
shape (8 on a square slice, 48 on a cubic volume; ``_regions``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps, spatial_shape
from xaibench.kit.options import option_factory, require
from xaibench.kit.regions import as_masks
from xaibench.kit.spatial import flat

from ._regions import brain_masks, random_placements
from ._regression import bh, corr, covariate_columns, design, ols_effect, permutation_p, residualise
from .energy_in_roi import MODES

KINDS = ("ratio", "mean")
STR_LIST = "a list of meta column names"


def region_scores(a: torch.Tensor, m: torch.Tensor, mode: str, kind: str) -> np.ndarray:
    """Per-image ``ratio`` or ``mean`` score of the N×P maps ``a`` in N×P masks ``m``
    (NaN where the mask is empty or the map has no mass)."""
    a = (a.clamp_min(0) if mode == "positive" else a.abs() if mode == "absolute" else a).double()
    area = m.sum(1).double()
    inside = (a * m).sum(1) / area.clamp_min(1)
    if kind == "ratio":
        whole = a.mean(1)
        inside = torch.where(whole != 0, inside / torch.where(whole != 0, whole, 1.0), torch.nan)
    out = inside.cpu().numpy()
    out[(area == 0).cpu().numpy()] = np.nan
    return out


def _str_list(ok: Any) -> bool:
    return ok is None or (isinstance(ok, (list, tuple)) and all(isinstance(c, str) for c in ok))


@dataclass(frozen=True)
class ROIVolume:
    scores: Any = KINDS
    mode: str = "positive"
    volume_key: str = "hippocampal_volume"
    hemispheres: bool = True
    covariates: Any = None
    categorical: Any = ()
    permutations: int = 2000
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        kinds = list(self.scores) if isinstance(self.scores, (list, tuple)) else [self.scores]
        require(bool(kinds) and all(k in KINDS for k in kinds), "metric roi-volume", "scores",
                "a non-empty list of " + " | ".join(KINDS), self.scores)
        require(self.mode in MODES, "metric roi-volume", "mode", " | ".join(MODES), self.mode)
        require(isinstance(self.permutations, int) and self.permutations >= 1000, "metric roi-volume",
                "permutations", "an integer >= 1000", self.permutations)
        require(_str_list(self.covariates), "metric roi-volume", "covariates",
                "omitted (all meta columns) or " + STR_LIST, self.covariates)
        require(_str_list(self.categorical), "metric roi-volume", "categorical", STR_LIST, self.categorical)

    def _covariates(self, meta: dict[str, np.ndarray], n: int) -> list[str]:
        if self.covariates is None:
            vols = [k for k in meta if k.startswith(self.volume_key)]
            return covariate_columns(meta, n, vols)
        missing = [c for c in self.covariates if c not in meta]
        if missing:
            raise XaibenchError(f"metric roi-volume: covariates {missing} are not in the dataset's meta "
                                f"(it has: {', '.join(sorted(meta)) or 'nothing'})")
        return list(self.covariates)

    def _regions(self, inp: MetricInput, meta: dict[str, np.ndarray], n: int) -> list[tuple[str, torch.Tensor, str]]:
        """(score-name suffix, N×*S mask, volume column) of every tested region."""
        if self.volume_key not in meta:
            raise XaibenchError(f"metric roi-volume: the dataset gives no per-image {self.volume_key!r} "
                                f"(meta has: {', '.join(sorted(meta)) or 'nothing'}); set volume_key")
        out = [("", as_masks(inp.masks, n, spatial_shape(inp.images)), self.volume_key)]
        named = inp.named_masks or {}
        for side in ("left", "right"):
            key = f"{self.volume_key}_{side}"
            if self.hemispheres and f"roi-{side}" in named and key in meta:
                out.append((f"-{side}", as_masks(named[f"roi-{side}"], n, spatial_shape(inp.images)), key))
        return out

    def _test(self, e: np.ndarray, v: np.ndarray, cov: np.ndarray, ok: np.ndarray, seed: int) -> dict[str, Any]:
        """Statistics of one score against one volume on the images ``ok``."""
        ok = ok & np.isfinite(e)
        e, v, c = e[ok], v[ok], cov[ok]
        if len(e) < max(4, c.shape[1] + 3) or np.ptp(e) == 0:
            return {"n": int(len(e))}
        re, rv = residualise(e, c), residualise(v, c)
        return {"n": int(len(e)), "partial": corr(re, rv), "p": permutation_p(re, rv, self.permutations, seed),
                "pearson": corr(e, v), "spearman": corr(rankdata(e), rankdata(v)), **ols_effect(v, e, c)}

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        meta = dict(inp.meta or {})
        a = flat(check_maps(inp.attributions, inp.images, "metric roi-volume"))
        n = a.shape[0]
        regions = self._regions(inp, meta, n)
        covs = self._covariates(meta, n)
        cov, cov_names = design(meta, covs, n, tuple(self.categorical or ()))
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        brain = brain_masks(inp.images, inp.named_masks).to(a.device)
        gen = torch.Generator().manual_seed(seed)
        kinds = list(self.scores) if isinstance(self.scores, (list, tuple)) else [self.scores]
        tests = []
        for j, (suffix, mask, vkey) in enumerate(regions):
            mask = mask.to(a.device)
            control = random_placements(mask, brain, 1, gen, avoid=mask)[:, 0]
            v = np.asarray(meta[vkey], float)
            ok = np.isfinite(v) & np.isfinite(cov).all(1)
            for i, kind in enumerate(kinds):
                s = seed + 7919 * (j * len(KINDS) + i)
                main = self._test(region_scores(a, flat(mask), self.mode, kind), v, cov, ok, s)
                ctrl = self._test(region_scores(a, flat(control), self.mode, kind), v, cov, ok, s + 1)
                tests.append((("roi-volume" if kind == "ratio" else "roi-volume-mean"), suffix, vkey, main, ctrl))
        q = bh([t[3].get("p", np.nan) for t in tests]) if len(tests) > 1 else None
        return [s for i, t in enumerate(tests)
                for s in self._scores(*t, None if q is None else q[i], cov_names, len(tests))]

    def _scores(self, prefix: str, suffix: str, vkey: str, main: dict, ctrl: dict, q: float | None,
                cov_names: list[str], n_tests: int) -> list[Score]:
        def val(d: dict, k: str) -> np.ndarray:
            return np.array([d.get(k, np.nan)], float)

        extra = {"covariates": cov_names, "n": main["n"], "volume_key": vkey, "mode": self.mode,
                 "pearson": main.get("pearson"), "spearman": main.get("spearman"), "fdr_tests": n_tests}
        out = [Score(f"{prefix}-partial{suffix}", val(main, "partial"), True, chance=0.0, extra=extra),
               Score(f"{prefix}-beta{suffix}", val(main, "beta"), True, chance=0.0),
               Score(f"{prefix}-se{suffix}", val(main, "se"), False),
               Score(f"{prefix}-delta-r2{suffix}", val(main, "delta_r2"), True, chance=main.get("delta_r2_null")),
               Score(f"{prefix}-p{suffix}", val(main, "p"), False, chance=0.5)]
        if q is not None:
            out.append(Score(f"{prefix}-q{suffix}", np.array([q]), False))
        return out + [Score(f"{prefix}-control-partial{suffix}", val(ctrl, "partial"), True, chance=0.0,
                            extra={"n": ctrl["n"]}),
                      Score(f"{prefix}-control-p{suffix}", val(ctrl, "p"), False, chance=0.5)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("roi-volume", "area-free ROI attribution (ratio, mean) vs ROI volume: partial r, β, ΔR², "
                       "permutation p, same-shape control region, BH q", option_factory("metric roi-volume", ROIVolume),
                       version="2", family="group", spatial_dims=(2, 3))
