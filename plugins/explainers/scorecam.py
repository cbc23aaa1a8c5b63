"""Score-CAM (Wang et al., 2020), plugin name ``scorecam``.

Channel weights from the model itself: each channel of the stage, upsampled and min-max
normalised, masks the image; the weights are the softmax over channels of the masked images'
scores. Gradient-free; one pass per channel and image (``chunk_size`` rows per pass).
Through pytorch-grad-cam (see ``_library_cams``): the library's maps, **min-max normalised to
[0, 1] per image**, resized bilinearly; 2-D models only. Non-negative; larger = more evidence.

Options: ``layer`` — a stage name or ``auto`` (default: the deepest stage whose map is at least
8×8 cells, as ``gradcam``).
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory
from ._library_cams import LibraryCAM


@dataclass(frozen=True)
class ScoreCAM(LibraryCAM):
    """Score-CAM through pytorch-grad-cam."""

    variant = "scorecam"


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("scorecam",
                          "Score-CAM at a feature stage (pytorch-grad-cam; channel-masked scores, softmax weights)",
                          option_factory("explainer scorecam", ScoreCAM))
