"""``agreement`` — how much explainers agree with each other on the same images.

Why: the research notes ask which methods agree (Spearman on pixel importances, top-q
IoU) before asking which is faithful; disagreement between two popular methods is itself
a warning. Every explainer pair is compared for all images in one batched call.

Options: ``q`` — the top fraction for IoU (default 0.1); ``absolute`` — compare
``|attribution|`` (default false).

Scores, per explainer (``explainer`` set) and per image: ``agreement-spearman`` and
``agreement-iou@Q``, the mean over the other explainers. ``extra`` holds the full
pairwise matrices (mean over images; :func:`plot_matrix` draws one). Chance: 0 for
Spearman; for IoU the exact expectation for two independent random top-q sets
(hypergeometric). With fewer than two explainers there is nothing to score.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import fractions, option_factory, pct, pct_param, require
from xaibench.kit.similarity import spearman, topq_iou
from xaibench.kit.stats import iou_chance, nanmean


@dataclass(frozen=True)
class Agreement:
    q: float = 0.1
    absolute: bool = False
    scope: str = "explainers"

    def __post_init__(self) -> None:
        require(not isinstance(self.q, (list, tuple)), "metric agreement", "q", "one fraction in (0, 1]", self.q)
        fractions(self.q, "metric agreement")
        require(isinstance(self.absolute, bool), "metric agreement", "absolute", "true or false", self.absolute)

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        names = list(inp.maps or {})
        if len(names) < 2:
            return []
        maps = {k: check_maps(v, inp.images, "metric agreement", f"maps[{k!r}]") for k, v in inp.maps.items()}
        maps = {k: (v.abs() if self.absolute else v).float() for k, v in maps.items()}
        e = len(names)
        rho = np.full((e, e, len(maps[names[0]])), np.nan)
        iou = np.full_like(rho, np.nan)
        for i in range(e):
            for j in range(i + 1, e):
                a, b = maps[names[i]], maps[names[j]].to(maps[names[i]].device)
                rho[i, j] = rho[j, i] = spearman(a, b).cpu().numpy()
                iou[i, j] = iou[j, i] = topq_iou(a, b, self.q).cpu().numpy()
        p = int(np.prod(maps[names[0]].shape[1:]))
        k = max(1, int(round(self.q * p)))
        mrho, miou = nanmean(rho, 2), nanmean(iou, 2)
        np.fill_diagonal(mrho, 1.0)
        np.fill_diagonal(miou, 1.0)
        matrix = {"explainers": names, "spearman": mrho.tolist(), f"iou@{pct(self.q)}": miou.tolist()}
        out = []
        for i, name in enumerate(names):
            others = [j for j in range(e) if j != i]
            out.append(Score("agreement-spearman", nanmean(rho[i, others], 0), True, chance=0.0,
                             explainer=name, extra=matrix if i == 0 else {}))
            out.append(Score(f"agreement-iou@{pct(self.q)}", nanmean(iou[i, others], 0), True,
                             chance=iou_chance(p, k, k), explainer=name, param=pct_param(self.q)))
        return out


def plot_matrix(extra: dict, path: str | Path, key: str = "spearman") -> Path:
    """Draw the agreement matrix stored in a score's ``extra`` as a heat map."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names, m = extra["explainers"], np.asarray(extra[key], float)
    fig, ax = plt.subplots(figsize=(1.2 + 0.6 * len(names), 1 + 0.6 * len(names)))
    im = ax.imshow(m, vmin=-1 if key == "spearman" else 0, vmax=1, cmap="RdBu_r" if key == "spearman" else "viridis")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
    ax.set_yticks(range(len(names)), names)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
    fig.colorbar(im, ax=ax, label=key)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("agreement", "pairwise Spearman and top-q IoU between explainers on the same images",
                       option_factory("metric agreement", Agreement), family="agreement", spatial_dims=(2, 3))
