"""Shared engine of ``deletion`` and ``insertion``: the target along a removal order.

Why shared: the two metrics differ only in which side of the order is replaced (the top
units for deletion; everything but the top units for insertion, which starts from a
canvas). Steps, patches and random reference orders are stacked into one list of rows
and scored in chunked passes (:func:`xaibench.kit.perturb.removal_scores`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from xaibench.contracts import MetricInput, Score

from .checks import check_maps
from .options import require
from .perturb import Filler, ProbabilityTarget, ordered_units, random_ranks, removal_scores
from .stats import nanmean

OUTPUTS = ("target", "probability")
NORMALISE = ("clean", "none")


@dataclass(frozen=True)
class CurveSpec:
    """Options common to deletion and insertion (validated by :meth:`check`)."""

    steps: int = 20
    patch: int = 1
    units_per_step: int | None = None
    filler: str = "black"
    blur_sigma: float = 3.0
    road_noise: float = 0.01
    output: str = "target"
    absolute: bool = False
    draws: int = 3
    normalise: str = "clean"
    seed: int = 0

    def check(self, who: str) -> Filler:
        """Raise the one-line error for the first bad option (``who`` = ``"metric NAME"``); the filler."""
        require(isinstance(self.steps, int) and self.steps >= 1, who, "steps", "an integer >= 1", self.steps)
        require(isinstance(self.patch, int) and self.patch >= 1, who, "patch", "a patch side in pixels >= 1",
              self.patch)
        ok = self.units_per_step is None or (isinstance(self.units_per_step, int) and self.units_per_step >= 1)
        require(ok, who, "units_per_step", "omitted (from steps) or an integer >= 1", self.units_per_step)
        require(self.output in OUTPUTS, who, "output", " | ".join(OUTPUTS), self.output)
        require(isinstance(self.draws, int) and self.draws >= 0, who, "draws", "an integer >= 0", self.draws)
        require(self.normalise in NORMALISE, who, "normalise", " | ".join(NORMALISE), self.normalise)
        return Filler.make(who, self.filler, self.blur_sigma, self.road_noise)

    def counts(self, n_units: int) -> list[int]:
        """Units removed (deletion) or inserted (insertion) at each curve point, from 0."""
        per = self.units_per_step or math.ceil(n_units / self.steps)
        return [min(n_units, j * per) for j in range(math.ceil(n_units / per) + 1)]


def curves(inp: MetricInput, spec: CurveSpec, filler: Filler, insertion: bool,
           canvas: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(curves N×(S+1), x-axis fractions S+1, random-order curves N×R×(S+1) or None)."""
    x = inp.images
    n, spatial = x.shape[0], tuple(x.shape[2:])
    name = "insertion" if insertion else "deletion"
    a = check_maps(inp.attributions, x, f"metric {name}").to(x.device).float()
    rank, n_units = ordered_units(a.abs() if spec.absolute else a, spec.patch)
    rank = rank.reshape(n, -1)
    if spec.draws:
        # a random order of the same units: permute unit ranks per image and draw
        perm = random_ranks(n, spec.draws, n_units, int(inp.context.seed) * 1_000_003 + spec.seed, x.device)
        rand = perm.gather(2, rank.unsqueeze(1).expand(-1, spec.draws, -1))
    counts = torch.tensor(spec.counts(n_units), device=x.device)
    s1 = len(counts)
    orders = 1 + spec.draws

    def removed(i: torch.Tensor, lev: torch.Tensor) -> torch.Tensor:
        o, step = lev // s1, lev % s1
        r = rank[i] if not spec.draws else torch.where(
            (o == 0).view(-1, 1), rank[i], rand[i, (o - 1).clamp_min(0)])
        top = r < counts[step].view(-1, 1)
        return (~top if insertion else top).view(-1, *spatial)

    target = ProbabilityTarget(inp.target.classes) if spec.output == "probability" else inp.target
    t = removal_scores(inp.model, target, x, removed, orders * s1, filler, int(inp.context.chunk_size),
                       int(inp.context.seed) * 1_000_003 + spec.seed + 1, canvas=canvas)
    t = t.view(n, orders, s1).double().cpu().numpy()
    frac = counts.double().cpu().numpy() / n_units
    return t[:, 0], frac, (t[:, 1:] if spec.draws else None)


def auc(curve: np.ndarray, frac: np.ndarray) -> np.ndarray:
    """Trapezoidal area under the curve(s) over the removed fraction [0, 1]."""
    return np.trapezoid(curve, frac, axis=-1)


def by_clean(t: np.ndarray, clean: np.ndarray) -> np.ndarray:
    """Curves (N×…×S) divided by each image's clean score; NaN where it is not positive
    (a ratio to a non-positive score has no meaning: undefined for that image)."""
    ok = clean > 0
    scale = np.where(ok, clean, np.nan).reshape(-1, *([1] * (t.ndim - 1)))
    return t / scale


def curve_scores(name: str, inp: MetricInput, spec: CurveSpec, filler: Filler, insertion: bool,
                 higher_is_better: bool, canvas: torch.Tensor | None = None) -> list[Score]:
    c, frac, rnd = curves(inp, spec, filler, insertion, canvas)
    clean = c[:, -1] if insertion else c[:, 0]  # T(x): everything inserted / nothing removed
    if spec.normalise == "clean":
        c = by_clean(c, clean)
        rnd = by_clean(rnd, clean) if rnd is not None else None
    vals = auc(c, frac)
    chance = float(nanmean(auc(rnd, frac))) if rnd is not None else None
    extra: dict[str, Any] = {"fraction": frac.tolist(), "curve": nanmean(c, 0).tolist(), "output": spec.output,
                             "filler": spec.filler, "patch": spec.patch, "normalise": spec.normalise,
                             "n": int(len(vals)), "n_nan": int(np.isnan(vals).sum())}
    if rnd is not None:
        extra["random_curve"] = nanmean(rnd, (0, 1)).tolist()
    return [Score(name, vals, higher_is_better, chance=chance, extra=extra)]
