"""``faithfulness-correlation`` — per image, the correlation between the attribution mass
of random pixel subsets and the drop of the target when those subsets are removed
(Bhatt et al., IJCAI 2020; Quantus' ``FaithfulnessCorrelation``).

Why: ΔT asks whether one set (the top-q pixels) matters more than a control; this asks
whether the map's *amounts* predict the model's response across many sets. It is one
number per image, so "which method best predicts ΔT" can be answered with a paired test
over images rather than by comparing means. All subsets of all images are removed and
scored in chunked batched passes: N·(1 + draws) forwards.

Options: ``subset`` — pixels per subset, a fraction of the image in (0, 1) (default 0.05)
or a count ≥ 1; ``draws`` — subsets per image (default 50; Quantus' ``nr_runs`` = 100);
``similarity`` — ``pearson`` (default, as Quantus) | ``spearman``; ``filler`` — ``black``
(default: the image minimum, Quantus' ``perturb_baseline="black"``) | ``mean`` | ``blur`` |
``road`` (see ``xaibench.kit.perturb``), with ``blur_sigma`` and ``road_noise``; ``absolute`` — use
``|attribution|``; ``seed``.

Value per image: the correlation over the draws of (Σ attribution over the subset,
T(x) − T(x with the subset removed)); NaN where either is constant. Chance 0: a random
map's subset sums are independent of the drops (and the sign of a symmetric noise map is
arbitrary); tested. Equal to Quantus on the same subsets (tested).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import Classifier, MetricInput, Score, Target
from xaibench.hookspecs import MetricRecord
from xaibench.kit.batching import target_scores
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.perturb import Filler, random_ranks, removal_scores
from xaibench.kit.similarity import pearson, spearman


SIMILARITIES = ("pearson", "spearman")


def subset_correlation(model: Classifier, target: Target, x: torch.Tensor, a: torch.Tensor, subsets: torch.Tensor,
                       filler: Filler, chunk: int, similarity: str = "pearson", seed: int = 0) -> np.ndarray:
    """Per-image correlation of subset attribution sums with the drops they cause.

    ``a`` is N×*S, ``subsets`` N×R×*S bool (the R subsets of each image)."""
    n, r = subsets.shape[:2]
    t0 = target_scores(model, target, x, chunk)
    t = removal_scores(model, target, x, lambda i, lev: subsets[i, lev], r, filler, chunk, seed)
    drop = (t0.view(-1, 1) - t).double()
    mass = (a.double().unsqueeze(1) * subsets).flatten(2).sum(2)
    fn = pearson if similarity == "pearson" else spearman
    return fn(mass, drop).cpu().numpy()


@dataclass(frozen=True)
class FaithfulnessCorrelation:
    subset: Any = 0.05
    draws: int = 50
    similarity: str = "pearson"
    filler: str = "black"
    blur_sigma: float = 3.0
    road_noise: float = 0.01
    absolute: bool = False
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        s = self.subset
        ok = not isinstance(s, bool) and ((isinstance(s, float) and 0 < s < 1) or (isinstance(s, int) and s >= 1))
        require(ok, "metric faithfulness-correlation", "subset", "a fraction in (0, 1) or a pixel count >= 1", s)
        require(isinstance(self.draws, int) and self.draws >= 3, "metric faithfulness-correlation", "draws",
                "an integer >= 3", self.draws)
        require(self.similarity in SIMILARITIES, "metric faithfulness-correlation", "similarity",
                " | ".join(SIMILARITIES), self.similarity)
        Filler.make("metric faithfulness-correlation", self.filler, self.blur_sigma, self.road_noise)

    def passes(self, n: int) -> int:
        """Model forwards this metric needs for ``n`` images."""
        return n * (1 + self.draws)

    def size(self, pixels: int) -> int:
        k = int(round(self.subset * pixels)) if isinstance(self.subset, float) else int(self.subset)
        return min(max(k, 1), pixels)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        x = inp.images
        n, spatial = x.shape[0], tuple(x.shape[2:])
        pixels = math.prod(spatial)
        a = check_maps(inp.attributions, x, "metric faithfulness-correlation").to(x.device).float()
        a = a.abs() if self.absolute else a
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        k = self.size(pixels)
        subsets = (random_ranks(n, self.draws, pixels, seed, x.device) < k).view(n, self.draws, *spatial)
        filler = Filler.make("metric faithfulness-correlation", self.filler, self.blur_sigma, self.road_noise)
        vals = subset_correlation(inp.model, inp.target, x, a, subsets, filler, int(inp.context.chunk_size),
                                  self.similarity, seed + 1)
        return [Score("faithfulness-correlation", vals, True, chance=0.0,
                      extra={"subset_pixels": k, "draws": self.draws, "similarity": self.similarity,
                             "filler": self.filler, "n": int(n), "n_nan": int(np.isnan(vals).sum())})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("faithfulness-correlation",
                       "per-image correlation of random subsets' attribution mass with the target drop they cause",
                       option_factory("metric faithfulness-correlation", FaithfulnessCorrelation),
                       family="faithfulness", spatial_dims=(2, 3), conformance={"draws": 8})
