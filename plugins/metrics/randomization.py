"""``randomization`` — Adebayo et al. (2018)'s cascading model-parameter randomisation,
judged by Arun et al. (2021)'s criterion.

Why: a map that barely changes when the model's weights are replaced by random ones
explains the image, not the model. Layers are re-initialised from the logits down; after
each step the explainer re-explains all images in one batched call and the maps are
compared to the trained model's. The method *passes* when the similarity falls below
that of random pairs of the trained model's maps (maps of two different images; Arun et
al.'s "randomization baseline", there from 50 pairs, here from every image paired with
``baseline_draws`` random others).

Options: ``granularity`` — ``stage`` (default: logits, then each ResNet stage, then the
stem; one explainer call each) or ``module`` (every module with parameters, Quantus' MPRT
order, one call each); ``similarity`` — ``spearman`` (default) | ``ssim`` (maps min-max
scaled); ``absolute`` — compare |maps| (default true, as Quantus' MPRT); ``seed`` — every
re-initialisation runs under ``torch.manual_seed(seed + 1)`` as Quantus does (default 42:
the same randomised weights as Quantus), without touching the caller's random state;
``baseline_draws`` (default 5).

Scores: ``randomization`` — per image, the similarity to the fully randomised model's map
(lower is better; chance 0 for Spearman), NaN where it is undefined (a constant map has
no ranking: Grad-CAM of a randomised model is often all zero) — kept as NaN, not dropped,
so the store and the tables count it; ``randomization-nan`` — per image 1 where that
similarity is undefined (its mean is the undefined share); ``randomization-pass`` — 1 if
the mean curve falls below the baseline at some layer, else 0. ``extra``: the curve (mean
similarity per randomised layer over the images where it is defined), the baseline, the
first layer below it, ``n``, ``n_nan`` and ``n_nan_per_layer``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import Classifier, MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.similarity import SIMILARITIES
from xaibench.kit.stats import nanmean


GRANULARITIES = ("stage", "module")


def cascade(model: torch.nn.Module, granularity: str, seed: int):
    """Yield ``(label, model)`` with one more group of layers re-initialised each time,
    top-down; the model is a copy (the caller's is untouched)."""
    rnd = copy.deepcopy(model)
    modules = [(n, m) for n, m in rnd.named_modules() if hasattr(m, "reset_parameters")][::-1]
    owner: dict[int, str] = {}
    if granularity == "stage":
        if isinstance(rnd, Classifier):
            for m in rnd.head.modules():
                owner[id(m)] = "logits"
            for s in rnd.stage_names:
                for m in rnd.stage(s).modules():
                    owner[id(m)] = s
        labels = [owner.get(id(m), "stem") for _, m in modules]
    else:
        labels = [n for n, _ in modules]
    dev = next(rnd.parameters()).device
    for i, (_, m) in enumerate(modules):
        with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
            torch.manual_seed(seed + 1)
            m.reset_parameters()
        if i + 1 == len(modules) or labels[i + 1] != labels[i]:
            yield labels[i], rnd


def random_pair_baseline(maps: torch.Tensor, sim, draws: int, seed: int) -> float:
    """Mean similarity between maps of different images (each image with ``draws`` others)."""
    n = maps.shape[0]
    if n < 2:
        return float("nan")
    g = torch.Generator().manual_seed(seed)
    vals = []
    for _ in range(draws):
        order = torch.randperm(n, generator=g).to(maps.device)
        partner = torch.empty_like(order)
        partner[order] = order.roll(-1)  # a random cycle: nobody is paired with itself
        vals.append(sim(maps, maps[partner]).cpu().numpy())
    return float(nanmean(np.concatenate(vals)))


@dataclass(frozen=True)
class Randomization:
    granularity: str = "stage"
    similarity: str = "spearman"
    absolute: bool = True
    seed: int = 42
    baseline_draws: int = 5
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(self.granularity in GRANULARITIES, "metric randomization", "granularity", " | ".join(GRANULARITIES),
                self.granularity)
        require(self.similarity in SIMILARITIES, "metric randomization", "similarity", " | ".join(SIMILARITIES),
                self.similarity)
        require(isinstance(self.baseline_draws, int) and self.baseline_draws >= 1, "metric randomization",
                "baseline_draws", "an integer >= 1", self.baseline_draws)

    def curve(self, inp: MetricInput) -> tuple[list[str], np.ndarray]:
        """Layer labels and the N×L similarities to the trained model's maps."""
        if inp.explainer is None:
            raise XaibenchError("metric randomization: needs the explainer to re-explain under randomised models")
        sim = SIMILARITIES[self.similarity]
        prep = (lambda t: t.abs()) if self.absolute else (lambda t: t)
        a = prep(check_maps(inp.attributions, inp.images, "metric randomization").to(inp.images.device).float())
        labels, sims = [], []
        for label, rnd in cascade(inp.model, self.granularity, self.seed):
            ar = inp.explainer.explain(rnd, inp.images, inp.target, inp.context).detach().float()
            labels.append(label)
            sims.append(sim(a, prep(ar)).cpu().numpy())
        return labels, np.stack(sims, 1)

    def score(self, inp: MetricInput) -> list[Score]:
        labels, sims = self.curve(inp)
        sim = SIMILARITIES[self.similarity]
        a = check_maps(inp.attributions, inp.images, "metric randomization").to(inp.images.device).float()
        base = random_pair_baseline(a.abs() if self.absolute else a, sim, self.baseline_draws,
                                    int(inp.context.seed) + self.seed)
        curve = nanmean(sims, 0)
        below = [lab for lab, v in zip(labels, curve) if v < base]
        undefined = np.isnan(sims[:, -1])
        extra = {"layers": labels, "curve": curve.tolist(), "baseline": base, "similarity": self.similarity,
                 "degraded_at": below[0] if below else None, "n": int(len(undefined)),
                 "n_nan": int(undefined.sum()), "n_nan_per_layer": np.isnan(sims).sum(0).astype(int).tolist()}
        return [Score("randomization", sims[:, -1], False, chance=0.0 if self.similarity == "spearman" else None,
                      extra=extra),
                Score("randomization-nan", undefined.astype(float), False, chance=None,
                      extra={"n": extra["n"], "n_nan": extra["n_nan"]}),
                Score("randomization-pass", np.array([1.0 if below else 0.0]), True)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("randomization", "cascading parameter randomisation: do maps degrade below random pairs?",
                       option_factory("metric randomization", Randomization), version="2", family="sanity",
                       spatial_dims=(2, 3))
