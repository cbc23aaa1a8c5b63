"""``sparseness`` — the Gini index of |a| (Chalasani et al. 2020; Quantus' Sparseness).

Why: a map that puts its evidence on a few pixels is easier to read and to check; the Gini
index is 0 for a flat map and tends to 1 when one pixel holds everything. N-D (slices and
volumes), one tensor expression for the whole batch.

Computed as Quantus does: |a| scaled to a maximum of 1, plus 1e-7 (so a map with zeros has a
defined index), sorted, Σ (2i − P − 1)·a₍ᵢ₎ / (P·Σa). Quantus scales by the batch's maximum,
we by each map's: the 1e-7 then weighs the same in every image, and an image's score does
not depend on the others in its chunk (equal to Quantus image by image to 1e-9; on a batch
whose map maxima are 30× apart, to 1e-5).
An all-zero map scores NaN. Higher is sparser; chance: none (a property of the map alone).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory
from xaibench.kit.spatial import flat


def scaled_abs(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """|a| of N×P maps divided by each row's maximum, and which rows are all zero."""
    x = a.abs().double()
    top = x.max(1, keepdim=True).values
    return x / torch.where(top > 0, top, 1.0), top[:, 0] == 0


def gini(a: torch.Tensor) -> torch.Tensor:
    """Gini index of each row of the non-negative N×P ``a`` (Quantus' formula)."""
    p = a.shape[1]
    s = torch.sort(a + 1e-7, dim=1).values
    i = torch.arange(1, p + 1, device=a.device, dtype=s.dtype)
    return ((2 * i - p - 1) * s).sum(1) / (p * s.sum(1))


@dataclass(frozen=True)
class Sparseness:
    scope: str = "explanation"

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        a, zero = scaled_abs(flat(check_maps(inp.attributions, inp.images, "metric sparseness")))
        vals = gini(a).masked_fill(zero, float("nan"))
        return [Score("sparseness", vals.cpu().numpy(), True, extra={"n_nan": int(zero.sum())})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("sparseness", "Gini index of |map|: evidence on few pixels (higher is sparser); = Quantus Sparseness",
                       option_factory("metric sparseness", Sparseness), family="complexity", spatial_dims=(2, 3))
