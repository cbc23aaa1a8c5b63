"""Can a defender tell triggered inputs from clean ones by looking at explanations?

Scope ``attack``: the runner hands every explainer's maps on the clean test images and on
the same images with the trigger. Each per-input score below becomes a detector, and its
AUROC for separating triggered (positive) from clean inputs is reported (0.5 = chance):

* ``detect_trigger_mass`` (one per explainer) — the share of the map's positive mass on
  the trigger footprint. It assumes the defender knows where a trigger would be, so it is
  an *upper bound* for a footprint-agnostic defender; its point is to show which
  explainers still "see" the trigger when Grad-CAM has been made to look away.
* ``detect_disagreement`` (one per explainer pair ``a|b``) — 1 − Spearman correlation
  between the two explainers' maps of the same input. No knowledge of the trigger is
  needed: an explanation backdoor that moves Grad-CAM but not IG/RISE makes them disagree.

The explanation-backdoor prototype saw IG and gradients keep pointing at the ROI on
triggered inputs while putting ~10× more attribution on the trigger; this metric measures
whether that is enough to detect the backdoor input by input.

Slices and volumes: trigger footprints are 2-D or 3-D boxes (``kit.triggers``).
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

import xaibench
from xaibench.contracts import MetricInput, Score
from xaibench.errors import XaibenchError
from xaibench.hookspecs import MetricRecord
from xaibench.kit.checks import check_maps
from xaibench.kit.options import option_factory
from xaibench.kit.regions import mass_share

from .attack_stealth import spearman_rows
from .attack_success import MASS_FLOOR


def _auroc(clean: np.ndarray, triggered: np.ndarray) -> float:
    y = np.r_[np.zeros(len(clean)), np.ones(len(triggered))]
    s = np.r_[clean, triggered]
    if not np.isfinite(s).all() or len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, s))


@dataclass(frozen=True)
class Detection:
    pairs: Any = "all"  # "all", or a list of "a|b" explainer labels
    scope: str = "attack"

    def __post_init__(self) -> None:
        ok = self.pairs == "all" or (isinstance(self.pairs, (list, tuple)) and all(
            isinstance(p, str) and p.count("|") == 1 for p in self.pairs))
        if not ok:
            raise XaibenchError(f"metric detection: pairs must be \"all\" or a list of \"explainer_a|explainer_b\", "
                                f"not {self.pairs!r}")

    def _pairs(self, names: list[str]) -> list[tuple[str, str]]:
        if self.pairs == "all":
            return list(itertools.combinations(names, 2))
        out = []
        for p in self.pairs:
            a, b = p.split("|")
            for x in (a, b):
                if x not in names:
                    raise XaibenchError(f"metric detection: pair {p!r} names {x!r}, which is not an explainer of "
                                        f"this suite ({', '.join(names)})")
            out.append((a, b))
        return out

    def score(self, inp: MetricInput) -> list[Score]:
        if not inp.maps or not inp.triggered_maps:
            return []
        names = [n for n in inp.maps if n in inp.triggered_maps]
        for n in names:
            check_maps(inp.maps[n], inp.images, "metric detection", f"maps[{n!r}]")
            check_maps(inp.triggered_maps[n], inp.images, "metric detection", f"triggered_maps[{n!r}]")
        out: list[Score] = []
        if inp.trigger is not None:
            for n in names:
                trig = inp.trigger.bool().to(inp.maps[n].device)
                c = mass_share(inp.maps[n].float(), trig, floor=MASS_FLOOR).cpu().numpy()
                t = mass_share(inp.triggered_maps[n].float(), trig, floor=MASS_FLOOR).cpu().numpy()
                out.append(Score("detect_trigger_mass", np.array([_auroc(c, t)]), True, chance=0.5, explainer=n,
                                 extra={"clean_mean": float(c.mean()), "triggered_mean": float(t.mean())}))
        flat = {}
        for n in names:
            flat[n] = (inp.maps[n].float().flatten(1).cpu().numpy(), inp.triggered_maps[n].float().flatten(1).cpu().numpy())
        for a, b in self._pairs(names):
            dc = 1.0 - spearman_rows(flat[a][0], flat[b][0])
            dt = 1.0 - spearman_rows(flat[a][1], flat[b][1])
            out.append(Score("detect_disagreement", np.array([_auroc(dc, dt)]), True, chance=0.5,
                             explainer=f"{a}|{b}",
                             extra={"clean_mean": float(dc.mean()), "triggered_mean": float(dt.mean())}))
        return out


@xaibench.hookimpl
def xaibench_metrics():
    yield MetricRecord("detection",
                       "AUROC of telling triggered from clean inputs by trigger mass and explainer disagreement",
                       option_factory("metric detection", Detection), family="detection", spatial_dims=(2, 3))
