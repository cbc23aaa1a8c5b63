"""FEM, the feature explanation method (Ahmed Asif et al., 2023), plugin name ``fem``.

Channel weights: the share of each channel's positions above its mean + ``k``·std (the
k-sigma rule), times the activations, summed over channels. Gradient-free and
class-agnostic (the target is not used).
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
class FEM(LibraryCAM):
    """FEM, the feature explanation method through pytorch-grad-cam."""

    k: float = 2.0
    """the k of the k-sigma threshold"""

    variant = "fem"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.k, (int, float)), "explainer fem", "k", "a number")

    def library_kwargs(self) -> dict:
        return {"k": self.k}


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("fem", "FEM at a feature stage (pytorch-grad-cam; k-sigma channel weights, class-agnostic)",
                          option_factory("explainer fem", FEM))
