"""The native CAM family beyond Grad-CAM: LayerCAM, XGrad-CAM, HiResCAM, element-wise
Grad-CAM, Eigen-CAM and Eigen-Grad-CAM, shared by their one-file plugins.

Why by hand: pytorch-grad-cam computes these on numpy copies behind tensor hooks, one layer
at a time, so there is no batching control, no CUDA-resident output and no graph to
differentiate. Here every map is a few tensor operations on the stage's activations ``A``
and gradients ``G = ∂score/∂A`` of shape ``N×C×*S`` (any number of spatial dimensions:
``h×w`` for 2-D, ``d×h×w`` for 3-D), so the maps are batched and keep the graph when asked
(``create_graph``). Each variant equals pytorch-grad-cam up to its per-image min-max
normalisation (tested); the library's 1e-7 guards are kept where they change values. One deliberate difference: the
Eigen variants orient the principal component (see :func:`first_component`), where the
library keeps whichever sign its LAPACK returns.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, ExplainContext, Target

# the shared helpers, in one place (the lead retargets this import at merge)
from xaibench.kit.batching import chunks
from xaibench.kit.checks import check_images
from xaibench.kit.layers import pick_layer, resolve_layer, stage_outputs
from .gradcam import GradCAM

_EPS_X = 1e-7  # pytorch-grad-cam's XGrad-CAM denominator guard
GRADIENT_FREE = frozenset({"eigencam"})
VARIANTS = ("layercam", "xgradcam", "hirescam", "gradcam-elementwise", "eigencam", "eigengradcam")


def first_component(v: torch.Tensor, orient: bool = True) -> torch.Tensor:
    """Projection of each position's channel vector (``N×C×*S``, centred over positions) on
    the first right singular vector: ``N×*S``.

    An SVD fixes that vector only up to its sign, and LAPACK builds differ in the sign they
    return (numpy's and torch's disagree on about 1 matrix in 16 here), so the library's map
    is not reproducible across machines. ``orient`` fixes the sign: the projection correlates
    positively with the channel sum of ``v`` (the total activation, or HiResCAM's map for
    Eigen-Grad-CAM), so the map points at where the stage fires for the target."""
    n, spatial = v.shape[0], v.shape[2:]
    flat = torch.nan_to_num(v, nan=0.0).flatten(2).transpose(1, 2)  # N×P×C
    centred = flat - flat.mean(dim=1, keepdim=True)
    _, _, vh = torch.linalg.svd(centred, full_matrices=False)
    proj = (centred @ vh[:, 0, :, None])[..., 0]  # N×P
    if orient:
        sign = torch.where((proj * flat.sum(dim=2)).sum(dim=1) < 0, -1.0, 1.0).detach()
        proj = proj * sign[:, None].to(proj.dtype)
    return proj.reshape(n, *spatial)


def layer_map(variant: str, acts: torch.Tensor, grads: torch.Tensor | None) -> torch.Tensor:
    """The map ``N×*S`` (before the ReLU) of ``variant`` from ``acts`` and ``grads`` (``N×C×*S``)."""
    space = tuple(range(2, acts.ndim))
    if variant == "eigencam":
        return first_component(acts)
    if variant == "eigengradcam":
        return first_component(grads * acts)
    if variant == "layercam":
        return (torch.relu(grads) * acts).sum(dim=1)
    if variant == "hirescam":
        return (grads * acts).sum(dim=1)
    if variant == "gradcam-elementwise":
        return torch.relu(grads * acts).sum(dim=1)
    if variant == "xgradcam":
        w = (grads * acts / (acts.sum(dim=space, keepdim=True) + _EPS_X)).sum(dim=space)
        return (w.view(*w.shape, *([1] * len(space))) * acts).sum(dim=1)
    raise ValueError(f"unknown CAM variant {variant!r}; one of {', '.join(VARIANTS)}")


def upsample_nd(maps: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """``N×*s`` → ``N×*S``: bilinear (2-D) or trilinear (3-D), half-pixel centres."""
    if tuple(maps.shape[1:]) == tuple(size):
        return maps
    mode = {1: "linear", 2: "bilinear", 3: "trilinear"}[len(size)]
    return F.interpolate(maps[:, None], size=size, mode=mode, align_corners=False)[:, 0]


def cam_from_layer(variant: str, acts: torch.Tensor, score: torch.Tensor | None, size: tuple[int, ...],
                   create_graph: bool = False, relu: bool = True) -> torch.Tensor:
    """Upsampled map ``N×*size`` from a recorded stage output ``acts`` and the summed-over-images
    ``score`` it feeds (``None`` for gradient-free variants). Works for any spatial rank."""
    grads = None
    if variant not in GRADIENT_FREE:
        (grads,) = torch.autograd.grad(score.sum(), acts, create_graph=create_graph)
    cam = layer_map(variant, acts if create_graph else acts.detach(), grads)
    return upsample_nd(torch.relu(cam) if relu else cam, size)


def layer_cam_maps(model: Classifier, x: torch.Tensor, target: Target, variant: str, layer: str | None = None,
                   create_graph: bool = True, relu: bool = True) -> torch.Tensor:
    """``variant`` maps ``N×*S`` of ``x`` for ``target`` at a stage (``layer`` or the default);
    differentiable w.r.t. the parameters (and ``x``) when ``create_graph``. One pass, no chunks."""
    names = resolve_layer(variant, model, layer)
    needs_graph = create_graph or variant not in GRADIENT_FREE
    if needs_graph and not x.requires_grad:  # the stage output must be in a graph even if no parameter trains
        x = x.detach().requires_grad_(True)
    with torch.set_grad_enabled(needs_graph), stage_outputs(model, names) as acts:
        score = target(model, x)
        name = names[0] if len(names) == 1 else pick_layer({n: tuple(a.shape[2:]) for n, a in acts.items()})
        return cam_from_layer(variant, acts[name], score, tuple(x.shape[2:]), create_graph, relu)


@dataclass(frozen=True)
class LayerCAMFamily(GradCAM):
    """A native CAM variant at a stage (``layer``: a stage name or ``auto``); ReLU, then bilinear."""

    variant = "layercam"

    def explain(self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext) -> torch.Tensor:
        check_images(x, f"explainer {self.variant}")
        out = torch.empty(x.shape[0], *x.shape[2:], device=x.device)
        for sl in chunks(x.shape[0], context.chunk_size):
            cam = layer_cam_maps(model, x[sl], target.subset(sl), self.variant, self.layer, False, self.relu)
            out[sl] = cam.detach()
        return out.float()
