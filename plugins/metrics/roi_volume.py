"""``roi-volume`` — is attribution in the ROI associated with the ROI's volume?

Why: in the hippocampus use case, a map that tracks atrophy should put more (or less)
evidence in the hippocampus the smaller it is; an association that survives the
covariates (age, sex, head size … whatever the dataset provides) ties the explanation to
anatomy rather than to a confounder. The permutation test is one matrix product.

Per image, ROI energy is ``energy-in-roi``'s share (``mode`` as there, default
``positive``); the volume is ``meta[volume_key]`` (default ``hippocampal_volume``).

Options: ``mode``; ``volume_key``; ``covariates`` — meta columns to partial out (default:
every numeric meta column present except the volume, subject/label columns and constant
columns); ``permutations`` (default 2000); ``seed``.

Scores (aggregates over the images with finite values): ``roi-volume-pearson``,
``roi-volume-spearman``, ``roi-volume-partial`` (Pearson of the residuals after
regressing both on the covariates; equals Pearson without covariates) and
``roi-volume-p``, the two-sided permutation p-value of the partial correlation
(permuting the volume residuals). Correlations are signed (their sign is the finding);
chance 0, and 0.5 for the p-value. ``extra`` names the covariates used.
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

from ._common import as_masks, check, check_maps, factory, flat
from .energy_in_roi import MODES, mass_share

NOT_COVARIATES = ("group", "groups", "label", "labels", "subject", "subject_id", "subject_ids", "split")


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 0 else float("nan")


def residualise(v: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """``v`` minus its least-squares fit on [1, covariates]."""
    design = np.column_stack([np.ones(len(v)), cov]) if cov.size else np.ones((len(v), 1))
    beta, *_ = np.linalg.lstsq(design, v, rcond=None)
    return v - design @ beta


def permutation_p(a: np.ndarray, b: np.ndarray, perms: int, seed: int) -> float:
    """Two-sided permutation p-value of Pearson's r (all permutations in one product)."""
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    if den == 0:
        return float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.permuted(np.tile(np.arange(len(b)), (perms, 1)), axis=1)
    r0 = abs((a * b).sum() / den)
    rp = np.abs(b[idx] @ a / den)
    return float((1 + np.sum(rp >= r0 - 1e-12)) / (1 + perms))


@dataclass(frozen=True)
class ROIVolume:
    mode: str = "positive"
    volume_key: str = "hippocampal_volume"
    covariates: Any = None
    permutations: int = 2000
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        check(self.mode in MODES, "roi-volume", "mode", " | ".join(MODES), self.mode)
        check(isinstance(self.permutations, int) and self.permutations >= 1000, "roi-volume", "permutations",
              "an integer >= 1000", self.permutations)
        ok = self.covariates is None or (isinstance(self.covariates, (list, tuple))
                                         and all(isinstance(c, str) for c in self.covariates))
        check(ok, "roi-volume", "covariates", "omitted (all numeric meta columns) or a list of meta column names",
              self.covariates)

    def _covariates(self, meta: dict[str, np.ndarray], n: int) -> list[str]:
        if self.covariates is not None:
            missing = [c for c in self.covariates if c not in meta]
            if missing:
                raise XaibenchError(f"metric roi-volume: covariates {missing} are not in the dataset's meta "
                                    f"(it has: {', '.join(sorted(meta)) or 'nothing'})")
            return list(self.covariates)
        out = []
        for k, v in meta.items():
            v = np.asarray(v)
            if (k == self.volume_key or k.lower() in NOT_COVARIATES or v.shape != (n,)
                    or not np.issubdtype(v.dtype, np.number) or np.nanstd(v.astype(float)) == 0):
                continue
            out.append(k)
        return sorted(out)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        meta = dict(inp.meta or {})
        if self.volume_key not in meta:
            raise XaibenchError(f"metric roi-volume: the dataset gives no per-image {self.volume_key!r} "
                                f"(meta has: {', '.join(sorted(meta)) or 'nothing'}); set volume_key")
        a = flat(check_maps("roi-volume", inp.attributions, inp.images))
        m = flat(as_masks(inp.masks, a.shape[0]).to(a.device))
        energy = mass_share(a, m, self.mode).cpu().numpy()
        vol = np.asarray(meta[self.volume_key], float)
        covs = self._covariates(meta, len(vol))
        cov = np.column_stack([np.asarray(meta[c], float) for c in covs]) if covs else np.zeros((len(vol), 0))
        ok = np.isfinite(energy) & np.isfinite(vol) & np.isfinite(cov).all(1)
        e, v, c = energy[ok], vol[ok], cov[ok]
        nan = np.array([np.nan])
        if len(e) < max(4, c.shape[1] + 3):
            return [Score(n, nan, True, chance=0.0) for n in ("roi-volume-pearson", "roi-volume-spearman",
                                                                "roi-volume-partial")] + [
                Score("roi-volume-p", nan, False, chance=0.5)]
        re, rv = residualise(e, c), residualise(v, c)
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        extra = {"covariates": covs, "n": int(len(e)), "volume_key": self.volume_key, "mode": self.mode}
        return [Score("roi-volume-pearson", np.array([_corr(e, v)]), True, chance=0.0, extra=extra),
                Score("roi-volume-spearman", np.array([_corr(rankdata(e), rankdata(v))]), True, chance=0.0),
                Score("roi-volume-partial", np.array([_corr(re, rv)]), True, chance=0.0),
                Score("roi-volume-p", np.array([permutation_p(re, rv, self.permutations, seed)]), False, chance=0.5)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("roi-volume", "association of ROI attribution with ROI volume (partial r, permutation p)",
                       factory("roi-volume", ROIVolume), family="group")
