"""Grad-CAM (Selvaraju et al., 2017), plus the differentiable map function attacks train through.

Map: ``ReLU(Σ_k α_k A_k)`` with ``α_k`` the spatial mean of ∂score/∂A_k over the chosen
stage's activations ``A`` (channels reduced by this weighted sum), upsampled bilinearly to the
input size (for volumes: the mean over d×h×w, trilinear upsampling). Non-negative; larger =
more evidence for the target. The same computation as pytorch-grad-cam (tested against it),
written here because that library works on numpy arrays behind tensor hooks: no batching
control, no CUDA-resident output, and no second derivative, which the Grad-CAM backdoor needs.

Options: ``layer`` — a stage name (``layer1`` … ``layer4``) or ``auto`` (default): the deepest
stage whose map is at least 8×8 cells for the input size (coarser maps cap localisation; see
:func:`~xaibench.kit.layers.iou_ceiling`); if no stage is that fine, the
deepest of the finest ones. ``relu`` (default true) — the ReLU of the paper.

:func:`gradcam_maps` (``create_graph=True``) keeps the graph: activations come from a forward
hook that only records the stage output and the weights from
``torch.autograd.grad(score.sum(), A, create_graph=True)``, so a loss on the map
back-propagates into every parameter, including those that act only through ∂score/∂A.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

import xaibench
from xaibench.contracts import Classifier, ExplainContext, Target
from xaibench.hookspecs import ExplainerRecord
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images, spatial_shape
from xaibench.kit.layers import describe_ceiling, pick_layer, resolve_layer, stage_outputs
from xaibench.kit.options import option_factory, require
from xaibench.kit.spatial import empty_maps, upsample


_EPS_PP = 1e-6  # pytorch-grad-cam's Grad-CAM++ denominator guard


def cam_weights(acts: torch.Tensor, grads: torch.Tensor, variant: str) -> torch.Tensor:
    """Channel weights ``N×C`` from activations and gradients ``N×C×*s`` (2-D or 3-D)."""
    space = tuple(range(2, grads.ndim))
    if variant == "gradcam":
        return grads.mean(dim=space)
    # Grad-CAM++ closed form (Chattopadhay et al., 2018, eq. 19 with an exponential score:
    # higher derivatives are powers of the first), as pytorch-grad-cam computes it.
    g2 = grads * grads
    g3 = g2 * grads
    s = acts.sum(dim=space, keepdim=True)
    alpha = g2 / (2 * g2 + s * g3 + _EPS_PP)
    alpha = torch.where(grads != 0, alpha, torch.zeros_like(alpha))
    return (torch.relu(grads) * alpha).sum(dim=space)


def _cam(model: Classifier, x: torch.Tensor, target: Target, layer: str | None, variant: str,
         create_graph: bool, relu: bool, plugin: str) -> tuple[torch.Tensor, str]:
    names = resolve_layer(f"explainer {plugin}", model, layer)
    if not x.requires_grad:  # the stage output must be in a graph even if no parameter trains
        x = x.detach().requires_grad_(True)
    with torch.enable_grad(), stage_outputs(model, names) as acts:
        score = target(model, x)
        name = names[0] if len(names) == 1 else pick_layer({n: spatial_shape(a) for n, a in acts.items()})
        a = acts[name]
        (g,) = torch.autograd.grad(score.sum(), a, create_graph=create_graph)
    w = cam_weights(a, g, variant)
    cam = (w.view(*w.shape, *([1] * (a.ndim - 2))) * a).sum(dim=1)
    if relu:
        cam = torch.relu(cam)
    return upsample(cam, spatial_shape(x)), name


def gradcam_maps(model: Classifier, x: torch.Tensor, target: Target, layer: str | None = None,
                 create_graph: bool = True, relu: bool = True) -> torch.Tensor:
    """Grad-CAM maps ``N×*S`` of ``x`` for ``target``; differentiable w.r.t. the model's
    parameters (and ``x``) when ``create_graph`` is true. One pass, no chunking."""
    return _cam(model, x, target, layer, "gradcam", create_graph, relu, "gradcam")[0]


def gradcampp_maps(model: Classifier, x: torch.Tensor, target: Target, layer: str | None = None,
                   create_graph: bool = True, relu: bool = True) -> torch.Tensor:
    """Grad-CAM++ maps, differentiable like :func:`gradcam_maps`."""
    return _cam(model, x, target, layer, "gradcam++", create_graph, relu, "gradcam++")[0]


@dataclass(frozen=True)
class GradCAM:
    """Grad-CAM at a stage (``layer``: a stage name or ``auto``); ReLU then bilinear upsampling."""

    layer: str | None = None
    relu: bool = True

    variant = "gradcam"

    def __post_init__(self) -> None:
        require(self.layer is None or isinstance(self.layer, str), f"explainer {self.variant}", "layer",
                "a stage name or 'auto'")
        require(isinstance(self.relu, bool), f"explainer {self.variant}", "relu", "true or false")

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, f"explainer {self.variant}")
        out = empty_maps(x)
        for sl in chunks(x.shape[0], context.chunk_size):
            cam, _ = _cam(model, x[sl], target.subset(sl), self.layer, self.variant, False, self.relu, self.variant)
            out[sl] = cam.detach()
        return out.float()

    def describe(self, model: Classifier, images: torch.Tensor, masks: torch.Tensor) -> list:
        """The IoU ceiling of this map's resolution on ``masks`` (shown beside the scores)."""
        return describe_ceiling(self, model, images, masks)

    def map_layer(self, model: Classifier, image_size: tuple[int, ...]) -> tuple[str, tuple[int, ...]]:
        """The stage used for images of ``image_size`` and its map shape ``(h, w)`` (for the
        IoU ceiling). Runs one forward pass of a blank image without gradients."""
        names = resolve_layer(f"explainer {self.variant}", model, self.layer)
        p = next(model.parameters())
        with torch.no_grad(), stage_outputs(model, names) as acts:
            model(torch.zeros(1, 1, *image_size, device=p.device, dtype=p.dtype))
        shapes = {n: spatial_shape(a) for n, a in acts.items()}
        name = names[0] if len(names) == 1 else pick_layer(shapes)
        return name, shapes[name]


@xaibench.hookimpl
def xaibench_explainers():
    yield ExplainerRecord("gradcam", "Grad-CAM at a feature stage (bilinear upsampling, ReLU)",
                          option_factory("explainer gradcam", GradCAM), spatial_dims=(2, 3))
