"""``data-randomization`` — Adebayo et al. (2018)'s second sanity check: do the maps of a
model trained on permuted labels differ from those of the model trained on the real ones?

Why: a model fitted to shuffled labels has learned nothing about the groups; if an
explainer's maps are as they were, they come from the images (edges, intensity), not from
what the model learned. Run with the ``permuted-labels`` attack: on an attacked model's
clean split the runner passes the same explainer's maps of the un-attacked model as
``reference_maps``, and this metric compares them image by image. (Under another attack
it would compare that attack's model with the clean one: read it in the
``permuted-labels`` rows, or give it a suite whose only attack is ``permuted-labels``.)

Options: ``similarity`` — ``spearman`` (default) | ``ssim`` (maps min-max scaled);
``absolute`` — compare |maps| (default true, as ``randomization``); ``baseline_draws``.

Scores: ``data-randomization`` — per image, the similarity (lower is better: the maps
depend on the labels; chance 0 for Spearman), NaN where undefined (a constant map) and
counted in ``extra`` (``n``, ``n_nan``); ``extra["baseline"]`` is the similarity of the
clean model's maps of *different* images (random pairs), the level below which the maps
carry no more of the image than unrelated images share. Nothing is scored without
reference maps.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.similarity import SIMILARITIES

from .randomization import random_pair_baseline


@dataclass(frozen=True)
class DataRandomization:
    similarity: str = "spearman"
    absolute: bool = True
    baseline_draws: int = 5
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(self.similarity in SIMILARITIES, "metric data-randomization", "similarity", " | ".join(SIMILARITIES),
                self.similarity)
        require(isinstance(self.baseline_draws, int) and self.baseline_draws >= 1, "metric data-randomization",
                "baseline_draws", "an integer >= 1", self.baseline_draws)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        if inp.split != "clean" or inp.reference_maps is None or inp.attributions is None:
            return []
        prep = (lambda t: t.abs()) if self.absolute else (lambda t: t)
        a = prep(check_maps(inp.attributions, inp.images, "metric data-randomization").float())
        ref = prep(check_maps(inp.reference_maps, inp.images, "metric data-randomization", "reference_maps").float()
                   .to(a.device))
        sim = SIMILARITIES[self.similarity]
        vals = sim(a, ref).double().cpu().numpy()
        base = random_pair_baseline(ref, sim, self.baseline_draws, int(inp.context.seed) + self.seed)
        extra = {"baseline": base, "similarity": self.similarity, "n": int(len(vals)),
                 "n_nan": int(np.isnan(vals).sum())}
        return [Score("data-randomization", vals, False, chance=0.0 if self.similarity == "spearman" else None,
                      extra=extra)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("data-randomization", "similarity of maps of a model trained on permuted labels to the "
                       "clean model's (lower = the maps depend on the labels)",
                       option_factory("metric data-randomization", DataRandomization), family="sanity",
                       spatial_dims=(2, 3))
