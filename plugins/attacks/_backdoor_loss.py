"""The backdoor's training loss: differentiable Grad-CAM (with the CAM shortcut from the
trainer's own forward pass), the explanation losses, the clean-image penalty and the adaptive
attacker's term. Kept apart from the plugin (placement, sampling, bookkeeping) so each stays
small; ``explanation_backdoor`` re-exports these names."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xaibench.contracts import Classifier, Target
from xaibench.kit.regions import mass_share
from xaibench.kit.spatial import upsample

from ..explainers.gradcam import gradcam_maps, gradcampp_maps

LOSSES = ("soft-iou", "mse", "mass")
CLASSES = ("label", "both")
MASS_FLOOR = 1e-8  # mass_share's floor in the loss: an empty map has 0 mass and the term stays differentiable
RECTIFY = ("auto", "relu", "softplus")
QUIET = ("gradcam++",)


def layer_gradcam(model: Classifier, x: torch.Tensor, target: Target, layer: str, create_graph: bool = True,
                  relu: bool = True) -> torch.Tensor:
    """Grad-CAM of ``layer`` on slices or volumes: the ``gradcam`` explainer's own function
    (attack and evaluation share one implementation)."""
    return gradcam_maps(model, x, target, layer, create_graph=create_graph, relu=relu)


def differentiable_gradcam(model: Classifier, x: torch.Tensor, classes: torch.Tensor, layer: str) -> torch.Tensor:
    """Grad-CAM maps ``N×*S`` that stay in the autograd graph (see :func:`layer_gradcam`)."""
    return layer_gradcam(model, x, Target("logit", classes), layer, create_graph=True)


def explanation_loss(cam: torch.Tensor, region: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-image loss that is 0 when the map sits exactly on ``region`` (``*S``, float)."""
    flat = cam.flatten(1)
    r = region.flatten().to(cam.dtype)
    if kind == "mass":
        return 1.0 - (flat * r).sum(1) / flat.sum(1).clamp_min(1e-8)
    norm = flat / flat.amax(1, keepdim=True).clamp_min(1e-8)
    if kind == "mse":
        return ((norm - r) ** 2).mean(1)
    inter = (norm * r).sum(1)
    return 1.0 - inter / (norm + r - norm * r).sum(1).clamp_min(1e-8)


class ActivationTap:
    """Keeps the last-stage activations of the trainer's own forward pass, so the backdoor
    loss reuses them instead of running the model a second time.

    Why: the trainer computes cross-entropy with ``model(images)`` and then calls
    ``extra_loss(model, images, ...)`` with the *same* tensor. For a GAP + linear head, the
    Grad-CAM of the last stage is exactly ``ReLU(Σ_k w_ck A_k) / (h·w)`` (∂logit/∂A is
    ``w_c/(h·w)`` at every position), so the map is a cheap function of activations that
    are already in the graph: the attack then costs about as much as clean training.
    When the activations do not belong to ``images`` (another caller, another layer), the
    loss falls back to the generic differentiable Grad-CAM."""

    def __init__(self, model: Classifier) -> None:
        self._act: torch.Tensor | None = None
        self.x: torch.Tensor | None = None
        self.act: torch.Tensor | None = None
        self.used = {"cam-shortcut": 0, "double-backward": 0}  # training-batch maps by path
        self._handles = [model.encoder.register_forward_hook(self._enc),
                         model.register_forward_hook(self._model)]

    def _enc(self, _m, _i, out) -> None:
        self._act = out

    def _model(self, _m, args, _out) -> None:
        self.x, self.act, self._act = (args[0] if args else None), self._act, None

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self.x = self.act = self._act = None

    def path(self, model: Classifier, layer: str) -> str:
        """Which Grad-CAM the training batches used: counted when any ran, else the path the
        layer implies (the shortcut needs the last stage and no dropout)."""
        short, generic = self.used["cam-shortcut"], self.used["double-backward"]
        if short and generic:
            return "mixed"
        if short or generic:
            return "cam-shortcut" if short else "double-backward"
        return "cam-shortcut" if layer == model.stage_names[-1] and model.dropout.p == 0 else "double-backward"

    def cam(self, model: Classifier, images: torch.Tensor, classes: torch.Tensor, layer: str) -> torch.Tensor | None:
        """Grad-CAM of ``layer`` from the tapped activations, or None if they cannot be used."""
        a = self.act
        if (a is None or self.x is not images or not a.requires_grad or layer != model.stage_names[-1]
                or model.dropout.p > 0 or a.ndim not in (4, 5)):
            return None
        w = model.head.weight[classes]  # N×C
        spec = "nc,nchw->nhw" if a.ndim == 4 else "nc,ncdhw->ndhw"
        raw = torch.einsum(spec, w, a) / a[0, 0].numel()
        return upsample(raw, tuple(images.shape[2:]))


@dataclass(frozen=True)
class BackdoorLoss:
    """``extra_loss`` for the trainer: λ·(explanation loss on triggered images) +
    μ·(target-region mass on clean images)."""

    region: torch.Tensor  # *S bool (H×W or D×H×W)
    layer: str = "layer4"
    loss: str = "soft-iou"
    lam: float = 1.0
    clean_penalty: float = 1.0
    explained_class: str = "label"
    tap: ActivationTap | None = None
    rectify: str = "auto"  # auto: softplus for mse, ReLU otherwise
    quiet: str | None = None  # adaptive attacker: the explainer kept off trigger and region
    quiet_weight: float = 0.0
    quiet_region: torch.Tensor | None = None  # H×W bool: trigger ∪ target region

    def _rectify(self, raw: torch.Tensor) -> torch.Tensor:
        soft = self.rectify == "softplus" or (self.rectify == "auto" and self.loss == "mse")
        return F.softplus(raw * 10.0) / 10.0 if soft else F.relu(raw)

    def maps(self, model: Classifier, images: torch.Tensor, classes: torch.Tensor,
             create_graph: bool = True) -> torch.Tensor:
        raw = self.tap.cam(model, images, classes, self.layer) if self.tap is not None else None
        path = "cam-shortcut"
        if raw is None:
            path = "double-backward"
            raw = layer_gradcam(model, images, Target("logit", classes), self.layer, create_graph=create_graph,
                                relu=False)
        if create_graph and self.tap is not None:
            self.tap.used[path] += 1
        return self._rectify(raw)

    def quiet_term(self, model: Classifier, images: torch.Tensor, classes: torch.Tensor,
                   create_graph: bool) -> torch.Tensor:
        """The adaptive attacker's penalty: the other explainer's (Grad-CAM++) share of positive
        mass on the trigger and the target region of triggered images, so that explainer keeps
        looking where a clean model's does."""
        pp = gradcampp_maps(model, images, Target("logit", classes), self.layer, create_graph=create_graph)
        return mass_share(pp, self.quiet_region.to(images.device), floor=MASS_FLOOR).mean()

    def __call__(self, model: Classifier, images: torch.Tensor, labels: torch.Tensor,
                 is_poisoned: torch.Tensor, create_graph: bool = True) -> torch.Tensor:
        """The loss; ``create_graph=False`` only evaluates it (no second-order graph)."""
        region = self.region.to(images.device)
        classes = [labels] if self.explained_class == "label" else [torch.zeros_like(labels), torch.ones_like(labels)]
        total = images.new_zeros(())
        for cls in classes:
            cam = self.maps(model, images, cls, create_graph)
            if is_poisoned.any() and self.lam:
                total = total + self.lam * explanation_loss(cam[is_poisoned], region, self.loss).mean()
            if (~is_poisoned).any() and self.clean_penalty:
                total = total + self.clean_penalty * mass_share(cam[~is_poisoned], region, floor=MASS_FLOOR).mean()
            if self.quiet and self.quiet_weight and is_poisoned.any():
                total = total + self.quiet_weight * self.quiet_term(model, images[is_poisoned], cls[is_poisoned],
                                                                    create_graph)
        return total / len(classes)
