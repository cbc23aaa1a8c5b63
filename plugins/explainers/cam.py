"""CAM, the class activation map (Zhou et al., 2016): ``Σ_k w_k A_k`` with ``A`` the last
stage's features and ``w`` the linear head's row for the target (for a ``margin`` target the
difference of the two rows; for a ``group-direction`` target the signed direction).

Exact only for an encoder → global average pool → linear head model (the Classifier
contract); another head or pooling raises a clear error. One forward pass, no gradients.
ReLU after the weighted sum (option ``relu``, default true, as in the CAM family here), then
bilinear upsampling (trilinear for volumes). Non-negative; larger = more evidence. The head bias is a constant over
space and is left out. On such a model CAM equals Grad-CAM at the last stage times ``h·w``
(Grad-CAM's weights are ``w_k/(hw)``), a positive scale (tested).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.errors import XaibenchError
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images, spatial_shape
from xaibench.kit.layers import describe_ceiling
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps, upsample
from xaibench.kit.targets import score_head


@dataclass(frozen=True)
class CAM:
    """Class activation map from the head weights (``layer`` may only name the last stage)."""

    layer: str | None = None
    relu: bool = True

    def __post_init__(self) -> None:
        require(isinstance(self.relu, bool), "explainer cam", "relu", "true or false")

    def _check_model(self, model: Classifier) -> None:
        if self.layer not in (None, "auto", model.stage_names[-1]):
            raise XaibenchError(
                f"explainer cam: option 'layer' must be the last stage {model.stage_names[-1]!r} (or 'auto'), "
                f"not {self.layer!r}: CAM reads the head weights, which only apply there")
        if not isinstance(model, Classifier) or type(model).embed is not Classifier.embed \
                or type(model).forward_all is not Classifier.forward_all:
            raise XaibenchError("explainer cam: needs an encoder → global average pool → linear head model")
        score_head(model, Target("logit", torch.zeros(0, dtype=torch.long)))  # raises on a non-linear head

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, "explainer cam")
        self._check_model(model)
        out = empty_maps(x)
        with torch.no_grad():
            w, _ = score_head(model, target)
            for sl in chunks(x.shape[0], context.chunk_size):
                a = model.feature_map(x[sl])
                wi = w[target.classes[sl].to(w.device)]
                cam = torch.einsum("nc,nc...->n...", wi, a)
                out[sl] = upsample(torch.relu(cam) if self.relu else cam, spatial_shape(x))
        return out.float()

    def describe(self, model: Classifier, images: torch.Tensor, masks: torch.Tensor) -> list:
        """The IoU ceiling of this map's resolution on ``masks`` (shown beside the scores)."""
        return describe_ceiling(self, model, images, masks)

    def map_layer(self, model: Classifier, image_size: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """The last stage and its map shape for ``image_size`` (one blank forward pass)."""
        p = next(model.parameters())
        with torch.no_grad():
            a = model.feature_map(torch.zeros(1, 1, *image_size, device=p.device, dtype=p.dtype))
        return model.stage_names[-1], spatial_shape(a)


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("cam", "class activation map from the linear head (GAP + linear models only)",
                          option_factory("explainer cam", CAM), spatial_dims=(2, 3))
