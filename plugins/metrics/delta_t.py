"""``delta-t`` — the drop of the target when the top-q attributed pixels are removed,
minus the drop when q random pixels are removed (the research notes' ΔT top-q vs random).

Why: removing *any* q pixels lowers T a little (the image leaves the data distribution);
only the excess over random removal says the map found pixels the model uses. Every q,
the top-q removal and all R random draws of an image are scored in the same chunked
passes: N·|q|·(1+R) forwards plus N for the unperturbed T.

Options:

* ``q`` — fractions removed (default ``[0.01, 0.05, 0.1, 0.2]``), one score ``delta-t@Q`` each;
* ``draws`` — random removal sets per image and q (default 8), seeded by the run's seed
  plus ``seed``;
* ``filler`` — ``mean`` (default) | ``blur`` | ``road`` | ``black`` (see ``_perturb``), with
  ``blur_sigma`` and ``road_noise``;
* ``absolute`` — rank ``|attribution|`` (default false: most positive first).

Per image the value is ΔT_top − mean ΔT_random with ΔT = T(x) − T(x with pixels removed),
in the units of T (logit, margin or group direction). Chance: 0 (a random map's top-q set
is one more random set). ``extra`` holds the mean ΔT_top and ΔT_random per q.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.hookspecs import MetricRecord

from ._common import check, check_maps, factory, flat, fractions, pct, ranks_desc
from ._perturb import Filler, random_ranks, removal_scores, target_scores


@dataclass(frozen=True)
class DeltaT:
    q: Any = (0.01, 0.05, 0.1, 0.2)
    draws: int = 8
    filler: str = "mean"
    blur_sigma: float = 3.0
    road_noise: float = 0.01
    absolute: bool = False
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        fractions(self.q, "delta-t")
        check(isinstance(self.draws, int) and self.draws >= 1, "delta-t", "draws", "an integer >= 1", self.draws)
        Filler.make("delta-t", self.filler, self.blur_sigma, self.road_noise)

    def passes(self, n: int) -> int:
        """Model forwards this metric needs for ``n`` images (for the efficiency benchmark)."""
        return n * (1 + len(fractions(self.q, "delta-t")) * (1 + self.draws))

    @torch.no_grad()
    def score(self, inp: MetricInput) -> list[Score]:
        qs = fractions(self.q, "delta-t")
        filler = Filler.make("delta-t", self.filler, self.blur_sigma, self.road_noise)
        x = inp.images
        n, _, h, w = x.shape
        a = flat(check_maps("delta-t", inp.attributions, x).to(x.device))
        ranks = ranks_desc(a.abs() if self.absolute else a)
        seed = int(inp.context.seed) * 1_000_003 + self.seed
        rand = random_ranks(n, self.draws, h * w, seed, x.device)
        ks = torch.tensor([max(1, int(round(q * h * w))) for q in qs], device=x.device)
        per_q = 1 + self.draws

        def removed(i: torch.Tensor, lev: torch.Tensor) -> torch.Tensor:
            d = lev % per_q
            r = torch.where((d == 0).view(-1, 1), ranks[i], rand[i, (d - 1).clamp_min(0)])
            return (r < ks[lev // per_q].view(-1, 1)).view(-1, h, w)

        chunk = int(inp.context.chunk_size)
        t0 = target_scores(inp.model, inp.target, x, chunk)
        t = removal_scores(inp.model, inp.target, x, removed, len(qs) * per_q, filler, chunk, seed + 1)
        drop = (t0.view(-1, 1) - t).view(n, len(qs), per_q).double().cpu().numpy()
        out = []
        for j, q in enumerate(qs):
            top, rnd = drop[:, j, 0], drop[:, j, 1:].mean(1)
            out.append(Score(f"delta-t@{pct(q)}", top - rnd, True, chance=0.0,
                             extra={"delta_top": float(np.mean(top)), "delta_random": float(np.mean(rnd)),
                                    "filler": self.filler, "draws": self.draws}))
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("delta-t", "target drop removing the top-q attributed pixels minus removing random ones",
                       factory("delta-t", DeltaT), family="faithfulness")
