"""Ablation-CAM (Desai & Ramaswamy, 2020), plugin name ``ablationcam``.

Channel weights ``(s − s_k) / s``: the relative drop of the score when channel ``k`` of the
stage is zeroed (the library's ablation layer). Gradient-free; one pass per channel and image.
The division by the image's score ``s`` is the library's: a negative score flips the weights.
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
class AblationCAM(LibraryCAM):
    """Ablation-CAM through pytorch-grad-cam."""

    ratio: float = 1.0
    """fraction of channels to ablate (the library's ``ratio_channels_to_ablate``; the rest keep the original score)"""

    variant = "ablationcam"

    def __post_init__(self) -> None:
        super().__post_init__()
        require(isinstance(self.ratio, (int, float)) and 0 < self.ratio <= 1, "explainer ablationcam", "ratio", "a number in (0, 1]")

    def library_kwargs(self) -> dict:
        return {"ratio_channels_to_ablate": float(self.ratio)}


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("ablationcam",
                          "Ablation-CAM at a feature stage (pytorch-grad-cam; score drop per zeroed channel)",
                          option_factory("explainer ablationcam", AblationCAM))
