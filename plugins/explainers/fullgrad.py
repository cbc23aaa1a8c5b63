"""FullGrad (Srinivas & Fleuret, 2019), plugin name ``fullgrad``.

|input gradient × input| plus, for every convolution and BatchNorm with a bias, |bias ×
∂score/∂(its output)|, each min-max normalised and resized, summed. Uses every layer, so it
takes no ``layer`` (the option is refused) and is not a single-layer map.
Through pytorch-grad-cam (see ``_library_cams``): the library's maps, **min-max normalised to
[0, 1] per image**, resized bilinearly; 2-D models only. Non-negative; larger = more evidence.
"""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.hookspecs import ExplainerRecord

from xaibench.kit.options import option_factory, require
from ._library_cams import LibraryCAM


@dataclass(frozen=True)
class FullGrad(LibraryCAM):
    """FullGrad through pytorch-grad-cam."""

    layer: str | None = None
    """must stay unset (or auto): FullGrad uses the biases of every layer"""

    variant = "fullgrad"
    describe = None  # no single layer, so no IoU ceiling of a layer's resolution

    def __post_init__(self) -> None:
        require(self.layer in (None, "auto"), "explainer fullgrad", "layer", "unset: FullGrad uses every layer")


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("fullgrad",
                          "FullGrad (pytorch-grad-cam; input-gradient and bias-gradient maps of every layer)",
                          option_factory("explainer fullgrad", FullGrad))
