"""``group-statistic`` — how far apart the two groups are in the model's embedding space:
T = ‖μ_A − μ_B‖ with a permutation p-value.

Why: the research notes' group-level view ("backprop a group statistic"): before asking
where a map points, check that the encoder separates the groups at all, and by how much
more than chance. All permutations are one matrix product (B×N group indicators times
the N×D embeddings), so ≥1000 permutations cost about as much as one.

Options: ``permutations`` (default 2000, at least 1000); ``split`` — ``given`` (the images
the runner passes: the whole clean or triggered test split; default), or ``train`` /
``val`` / ``test`` / ``all`` of the dataset; ``seed``; ``batch_size`` for the embedding
passes.

Scores (aggregates): ``group-statistic`` T (chance: the mean of T under permutation),
``group-statistic-p`` = (1 + #{T_perm ≥ T}) / (1 + B) (lower is better; chance 0.5) and
``group-statistic-z`` = (T − mean T_perm) / sd T_perm (chance 0). NaN if a group is empty.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.options import option_factory, require


SPLITS = ("given", "train", "val", "test", "all")


def permutation_distances(emb: torch.Tensor, labels: torch.Tensor, perms: int, seed: int) -> tuple[float, np.ndarray]:
    """‖μ_0 − μ_1‖ for the true labels and for ``perms`` label permutations (vectorised)."""
    y = labels.to(emb.device).double()
    e = emb.double()
    g = torch.Generator().manual_seed(seed)
    idx = torch.rand(perms, len(y), generator=g).argsort(1).to(emb.device)
    groups = torch.cat([y.view(1, -1), y[idx]])  # (1+B)×N, row 0 = the true labels
    n1 = groups.sum(1, keepdim=True)
    n0 = len(y) - n1
    diff = (groups @ e) / n1 - ((1 - groups) @ e) / n0
    d = diff.norm(dim=1).cpu().numpy()
    return float(d[0]), d[1:]


@dataclass(frozen=True)
class GroupStatistic:
    permutations: int = 2000
    split: str = "given"
    seed: int = 0
    batch_size: int = 128
    scope: str = "model"

    def __post_init__(self) -> None:
        require(isinstance(self.permutations, int) and self.permutations >= 1000, "metric group-statistic",
                "permutations", "an integer >= 1000", self.permutations)
        require(self.split in SPLITS, "metric group-statistic", "split", " | ".join(SPLITS), self.split)

    def _data(self, inp: MetricInput) -> tuple[torch.Tensor, torch.Tensor]:
        if self.split == "given" or inp.splits is None:
            return inp.images, inp.labels
        sets = [inp.splits.train, inp.splits.val, inp.splits.test] if self.split == "all" else [
            getattr(inp.splits, self.split)]
        return torch.cat([s.images for s in sets]), torch.cat([s.labels for s in sets])

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        x, y = self._data(inp)
        dev = next(inp.model.parameters()).device
        emb = torch.cat([inp.model.embed(x[i:i + self.batch_size].to(dev)) for i in range(0, len(x), self.batch_size)])
        if int((y == 0).sum()) == 0 or int((y == 1).sum()) == 0:
            nan = np.array([np.nan])
            return [Score("group-statistic", nan), Score("group-statistic-p", nan, False)]
        t, null = permutation_distances(emb, y, self.permutations, int(inp.context.seed) * 1_000_003 + self.seed)
        p = (1 + np.sum(null >= t)) / (1 + len(null))
        z = (t - null.mean()) / max(null.std(), 1e-30)
        extra = {"null_mean": float(null.mean()), "null_sd": float(null.std()), "permutations": len(null),
                 "n": [int((y == 0).sum()), int((y == 1).sum())]}
        return [Score("group-statistic", np.array([t]), True, chance=float(null.mean()), extra=extra),
                Score("group-statistic-p", np.array([p]), False, chance=0.5),
                Score("group-statistic-z", np.array([z]), True, chance=0.0)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("group-statistic", "distance between group means of the embeddings, permutation p-value",
                       option_factory("metric group-statistic", GroupStatistic), family="group", spatial_dims=(2, 3))
