"""Finer-CAM (Zhang et al., 2025), plugin name ``finercam``.

Grad-CAM of a contrastive target: the image's class score minus ``alpha`` × the scores of the
classes closest to it (the library's ``FinerWeightedTarget``, softmax-weighted; the library's
default comparisons, the 1st–3rd closest). On a two-class model: ``s_c − alpha · s_other``.
Through pytorch-grad-cam (see ``_library_cams``): the library's maps, **min-max normalised to
[0, 1] per image**, resized bilinearly; 2-D models only. Non-negative; larger = more evidence.

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory, require
from ._library_cams import LibraryCAM


@dataclass(frozen=True)
class FinerCAM(LibraryCAM):
    """Finer-CAM through pytorch-grad-cam."""

    alpha: float = 1.0
    """weight of the comparison classes' scores"""

    variant = "finercam"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.alpha, (int, float)), "explainer finercam", "alpha", "a number")


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("finercam",
                          "Finer-CAM at a feature stage (pytorch-grad-cam; Grad-CAM of class minus closest classes)",
                          option_factory("explainer finercam", FinerCAM))
