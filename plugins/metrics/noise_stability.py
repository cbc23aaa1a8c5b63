"""``noise-stability`` — do the maps stay put when the image changes imperceptibly?

Why: a map that moves under noise the model ignores cannot be trusted pixel by pixel.
All N·R perturbed images are re-explained in **one** batched explainer call (Quantus'
MaxSensitivity calls the explainer once per draw), then compared to the clean maps.

Options: ``draws`` R (default 8); ``noise`` — ``uniform`` (U(−r, r), Quantus' default) or
``gaussian`` (σ = r); ``radius`` r in image units (default 0.05 on [0, 1] images);
``seed``. Noise is drawn with NumPy's generator in Quantus' order, so on the same seed the
perturbed images are Quantus' exactly; images are not clipped (as Quantus).

Scores per image: ``noise-stability-spearman`` and ``noise-stability-ssim`` (mean over
draws; SSIM on maps min-max scaled to [0, 1]; higher is better, chance 0 for Spearman)
and ``max-sensitivity`` = max over draws of ‖a − a′‖ / ‖a‖ (Quantus' MaxSensitivity with
its defaults; lower is better).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory, require
from xaibench.kit.similarity import average_ranks, minmax, pearson, ssim
from xaibench.kit.stats import nanmax, nanmean


NOISES = ("uniform", "gaussian")


def noisy_copies(x: torch.Tensor, draws: int, radius: float, noise: str, seed: int) -> torch.Tensor:
    """R noisy copies of every image, R·N×C×H×W (draw-major, as Quantus draws them)."""
    rng = np.random.RandomState(seed)
    n = x.shape[0]
    flat = x.detach().reshape(n, -1).double().cpu().numpy()
    out = []
    for _ in range(draws):
        eps = rng.uniform(-radius, radius, flat.shape) if noise == "uniform" else rng.normal(0, radius, flat.shape)
        out.append(flat + eps)
    return torch.from_numpy(np.concatenate(out)).float().view(draws * n, *x.shape[1:]).to(x.device)


@dataclass(frozen=True)
class NoiseStability:
    draws: int = 8
    noise: str = "uniform"
    radius: float = 0.05
    seed: int = 0
    scope: str = "explanation"

    def __post_init__(self) -> None:
        require(isinstance(self.draws, int) and self.draws >= 1, "metric noise-stability", "draws",
                "an integer >= 1", self.draws)
        require(self.noise in NOISES, "metric noise-stability", "noise", " | ".join(NOISES), self.noise)
        require(isinstance(self.radius, (int, float)) and self.radius > 0, "metric noise-stability", "radius",
                "a number > 0", self.radius)

    def score(self, inp: MetricInput) -> list[Score]:
        if inp.explainer is None:
            raise XaibenchError("metric noise-stability: needs the explainer to re-explain noisy images")
        x = inp.images
        a = check_maps(inp.attributions, x, "metric noise-stability").to(x.device).float()
        n, r = x.shape[0], self.draws
        xn = noisy_copies(x, r, float(self.radius), self.noise, int(inp.context.seed) * 1_000_003 + self.seed)
        idx = torch.arange(n, device=x.device).repeat(r)
        an = inp.explainer.explain(inp.model, xn, inp.target.subset(idx.to(inp.target.classes.device)),
                                  inp.context).detach().float()
        ar = a[idx]
        ranks = average_ranks(a.reshape(n, -1))  # the clean maps are ranked once, not once per draw
        rho = pearson(ranks[idx], average_ranks(an.reshape(r * n, -1))).view(r, n)
        ss = ssim(minmax(ar), minmax(an)).view(r, n)
        num = (ar - an).reshape(r * n, -1).double().norm(dim=1).view(r, n)
        den = a.reshape(n, -1).double().norm(dim=1)
        sens = torch.where(den > 0, num / den, torch.nan).cpu().numpy()  # an all-zero map: undefined
        return [Score("noise-stability-spearman", nanmean(rho.cpu().numpy(), 0), True, chance=0.0,
                      extra={"noise": self.noise, "radius": float(self.radius), "draws": r}),
                Score("noise-stability-ssim", nanmean(ss.cpu().numpy(), 0), True),
                Score("max-sensitivity", nanmax(sens, 0), False)]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("noise-stability", "similarity of maps under small input noise, and max-sensitivity",
                       option_factory("metric noise-stability", NoiseStability), family="stability",
                       spatial_dims=(2, 3))
