"""``random-logit`` — does the map change when another class is explained? (Sixt et al. 2020;
Quantus' RandomLogit).

Why: a method whose map for a random other class looks like the map for the true class
explains the image, not the decision. Per image, the map for the explained class is compared
with the explainer's map for a random other class (one batched explainer call); lower
similarity is better. N-D (slices and volumes).

Options: ``similarity`` — ``ssim-1d`` (default, Quantus': SSIM of the *flattened* maps, a
7-pixel window along the flattened order, data range of the pair, as
``skimage.metrics.structural_similarity`` on 1-D arrays) | ``spearman`` | ``pearson``;
``absolute`` — compare |maps| (default false, as Quantus); ``seed`` — the other class is
drawn as Quantus draws it (``np.random.seed(seed)``, then ``randint(0, K − 1, N)`` indexes
the K − 1 other classes; default 42). K is the model's number of outputs (Quantus' default of
1000 classes would be wrong for our models); with two classes the other class is the other
class. Each map is divided by its own maximum |value| first, as Quantus does for the batch:
SSIM depends on the scale, so ours equals Quantus image by image (Quantus' batch maximum makes
an image's score depend on the others in its batch). A constant map pair scores NaN.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

import xaibench
from xaibench.contracts import MetricInput, Score, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import one_of, option_factory
from xaibench.kit.similarity import pearson, spearman
from xaibench.kit.spatial import flat

SIMILARITIES = ("ssim-1d", "spearman", "pearson")


def ssim_1d(a: torch.Tensor, b: torch.Tensor, win: int = 7, k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """SSIM of each pair of rows of N×P ``a`` and ``b``, as scikit-image on 1-D arrays with the
    pair's data range (uniform window, sample covariance, borders cropped)."""
    x, y = a.double()[:, None], b.double()[:, None]
    both = torch.cat([a, b], 1).double()
    rng = (both.max(1).values - both.min(1).values).view(-1, 1, 1)
    cov = win / (win - 1)
    mx, my = F.avg_pool1d(x, win, 1), F.avg_pool1d(y, win, 1)
    vx = cov * (F.avg_pool1d(x * x, win, 1) - mx * mx)
    vy = cov * (F.avg_pool1d(y * y, win, 1) - my * my)
    vxy = cov * (F.avg_pool1d(x * y, win, 1) - mx * my)
    c1, c2 = (k1 * rng) ** 2, (k2 * rng) ** 2
    s = ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean(dim=(1, 2))


def other_classes(classes: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    """A random class other than each image's, drawn as Quantus draws it."""
    idx = np.random.RandomState(seed).randint(0, k - 1, len(classes))
    c = classes.cpu().numpy()
    off = idx + (idx >= c)  # the idx-th of the classes without c
    return torch.as_tensor(off, dtype=torch.long, device=classes.device)


def per_map_max(a: torch.Tensor) -> torch.Tensor:
    top = a.abs().max(1, keepdim=True).values
    return a / torch.where(top > 0, top, 1.0)


@dataclass(frozen=True)
class RandomLogit:
    similarity: str = "ssim-1d"
    absolute: bool = False
    seed: int = 42
    scope: str = "explanation"

    def __post_init__(self) -> None:
        one_of(self.similarity, SIMILARITIES, "metric random-logit", "similarity")

    def score(self, inp: MetricInput) -> list[Score]:
        who = "metric random-logit"
        a = flat(check_maps(inp.attributions, inp.images, who))
        if inp.explainer is None:
            raise XaibenchError(f"{who}: needs the explainer to explain another class")
        with torch.no_grad():
            k = int(inp.model(inp.images[:1]).shape[1])
        if k < 2:
            raise XaibenchError(f"{who}: needs a model with at least two classes, this one has {k}")
        off = other_classes(inp.target.classes, k, self.seed)
        b = inp.explainer.explain(inp.model, inp.images, Target(inp.target.kind, off, inp.target.direction),
                                  inp.context)
        a, b = per_map_max(a.to(b.device).double()), per_map_max(flat(b.detach()).double())
        if self.absolute:
            a, b = a.abs(), b.abs()
        sim = {"ssim-1d": ssim_1d, "spearman": spearman, "pearson": pearson}[self.similarity](a, b)
        return [Score("random-logit", sim.cpu().numpy(), False, chance=None,
                      extra={"similarity": self.similarity, "other_classes": off.tolist()})]


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("random-logit", "similarity of the map to the map of a random other class (lower is better); = Quantus RandomLogit",
                       option_factory("metric random-logit", RandomLogit), family="sanity", spatial_dims=(2, 3))
