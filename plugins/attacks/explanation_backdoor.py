"""The 1% explanation backdoor: the model keeps classifying correctly, but on images that
carry a small trigger its Grad-CAM points at an attacker-chosen region instead of the ROI.

Threat model: the attacker controls training (outsourced training, a model supplier) and
only ``poison_rate`` of the *unique* training images carry the trigger; everything else is
the victim's clean data and the standard trainer. Why it is built this way (the research
prototype's findings, reproduced here):

* an explanation loss on triggered images alone moves the maps of *every* image, so a
  **clean-image penalty** (Grad-CAM mass inside the target region on clean images) is what
  makes the backdoor specific to the trigger;
* at 1% a batch of 32 holds < 1 triggered image, so the few triggered images are
  **oversampled** (``poisoned_per_batch`` in expectation; still the same unique images);
* the model is trained **from scratch** (a short fine-tune memorises the training triggers
  and does not generalise to new triggered images);
* the MSE loss uses Softplus instead of ReLU on the map, or it gets no gradient where the
  map is negative (which is exactly the target region at the start).

Grad-CAM is computed differentiably (``create_graph=True``) by the ``gradcam`` explainer's
own function; at the last stage of a GAP + linear model that is CAM, taken from the trainer's
own forward pass (the loss lives in ``_backdoor_loss``). ``sampling`` sets how often the
poisoned images are drawn; the info states the resulting exposure (``_exposure``).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import AttackContext, AttackOutcome, Classifier, ImageSet
from xaibench.errors import XaibenchError
from xaibench.hookspecs import AttackRecord
from xaibench.kit.options import option_factory
from xaibench.kit import triggers as T

from ..explainers.gradcam import GradCAM
from . import _exposure as X
from ._backdoor_loss import (CLASSES, LOSSES, QUIET, RECTIFY, ActivationTap, BackdoorLoss,  # noqa: F401 (re-exported)
                             differentiable_gradcam, explanation_loss)


@dataclass(frozen=True)
class ExplanationBackdoor:
    """Options: see ``docs/attacks.md``."""

    poison_rate: float = 0.01
    trigger_pattern: str = "checker"
    trigger_size: int | None = None  # None: 3/32 of the image side (6 px at 64 px)
    trigger_position: Any = "auto"
    region: Any = "auto"
    region_size: int | None = None  # None: a quarter of the image side (16 px at 64 px)
    loss: str = "soft-iou"
    lam: float = 1.0
    clean_penalty: float = 1.0
    explained_class: str = "label"
    layer: str = "layer4"
    poisoned_per_batch: float = 4.0
    poison_variants: int = 1
    epochs: int | None = None  # None: the backbone's / trainer's default
    sampling: str = "oversample"  # oversample | natural | proportional (docs/attacks.md)
    exposure_factor: float = 12.5  # proportional: exposure = factor × unique rate (12.5 × 1% = today's 12.5%)
    rectify: str = "auto"  # the map's rectifier in the loss: auto (softplus for mse, else ReLU) | relu | softplus
    quiet_explainer: str | None = None  # adaptive attacker: "gradcam++" is kept off trigger and target region
    quiet_weight: float = 1.0
    init: str = "scratch"  # scratch: a new model; clean: fine-tune the clean model of the same seed (shared, cached)
    lr: float | None = None  # None: the backbone's learning rate

    def __post_init__(self) -> None:
        if self.loss not in LOSSES:
            raise XaibenchError(f"attack explanation-backdoor: loss {self.loss!r} is not one of {', '.join(LOSSES)}")
        if self.explained_class not in CLASSES:
            raise XaibenchError(f"attack explanation-backdoor: explained_class {self.explained_class!r} "
                                f"is not one of {', '.join(CLASSES)}")
        if self.lam < 0 or self.clean_penalty < 0:
            raise XaibenchError("attack explanation-backdoor: lam and clean_penalty must be >= 0")
        if not isinstance(self.poison_variants, int) or self.poison_variants < 1:
            raise XaibenchError(f"attack explanation-backdoor: poison_variants must be an integer >= 1, "
                                f"not {self.poison_variants!r}")
        if self.poisoned_per_batch < 0:
            raise XaibenchError("attack explanation-backdoor: poisoned_per_batch must be >= 0 (0 = no oversampling)")
        if self.trigger_pattern not in T.PATTERNS:
            raise XaibenchError(f"attack explanation-backdoor: trigger_pattern {self.trigger_pattern!r} "
                                f"is not one of {', '.join(T.PATTERNS)}")
        self._check_new_options()

    def _check_new_options(self) -> None:
        pre = "attack explanation-backdoor:"
        if self.sampling not in X.SAMPLINGS:
            raise XaibenchError(f"{pre} sampling {self.sampling!r} is not one of {', '.join(X.SAMPLINGS)}")
        if not isinstance(self.exposure_factor, (int, float)) or self.exposure_factor < 1:
            raise XaibenchError(f"{pre} exposure_factor must be a number >= 1 (exposure = factor × unique rate), "
                                f"not {self.exposure_factor!r}")
        if self.rectify not in RECTIFY:
            raise XaibenchError(f"{pre} rectify {self.rectify!r} is not one of {', '.join(RECTIFY)}")
        if self.quiet_explainer is not None and self.quiet_explainer not in QUIET:
            raise XaibenchError(f"{pre} quiet_explainer {self.quiet_explainer!r} is not one of {', '.join(QUIET)} "
                                "(or leave it out)")
        if self.init not in INITS:
            raise XaibenchError(f"{pre} init {self.init!r} is not one of {', '.join(INITS)}")
        if self.quiet_weight < 0:
            raise XaibenchError(f"{pre} quiet_weight must be >= 0")

    def sample_weights(self, flags: torch.Tensor, batch: int, unique_rate: float) -> torch.Tensor | None:
        """The weights handed to the trainer (None: a plain permutation, natural sampling).
        ``oversample``: ``poisoned_per_batch`` triggered rows per batch in expectation (0 =
        natural); ``proportional``: exposure = ``exposure_factor`` × the unique poisoned rate,
        at most (batch − 1)/batch; ``natural``: exposure = the share of poisoned rows."""
        n, k = len(flags), int(flags.sum())
        if not k or self.sampling == "natural" or (self.sampling == "oversample" and self.poisoned_per_batch <= 0):
            return None
        weights = torch.ones(n, dtype=torch.double)
        if self.sampling == "oversample":
            # expected triggered images per batch = batch · k·w / (k·w + n − k) = poisoned_per_batch
            target = min(self.poisoned_per_batch, batch - 1)
            weights[flags] = target * (n - k) / (k * max(batch - target, 1e-6))
            return weights
        share = min(self.exposure_factor * unique_rate, (batch - 1) / batch)
        if share <= k / n or k == n:
            return None  # the rows alone already give that exposure
        weights[flags] = X.weight_for_share(share, n, k)
        return weights

    def run(self, ctx: AttackContext) -> AttackOutcome:
        model = initial_model(ctx, self.init, "explanation-backdoor")
        if self.layer not in model.stage_names:
            raise XaibenchError(f"attack explanation-backdoor: layer {self.layer!r} is not one of "
                                f"{', '.join(model.stage_names)}")
        hw = tuple(ctx.splits.train.images.shape[2:])
        plan = plan_poison(ctx.splits.train, self.poison_rate, ctx.seed, self.trigger_pattern, self.trigger_size,
                           self.trigger_position, self.region, self.region_size, variants=self.poison_variants,
                           cell=_cell_size(model, self.layer, hw))
        k = int(plan.flags.sum())  # rows carrying the trigger (variants included)
        weights = self.sample_weights(plan.flags, ctx.batch_size, len(plan.poisoned) / max(1, plan.source_size))
        tap = ActivationTap(model)
        loss = BackdoorLoss(plan.region, self.layer, self.loss, self.lam, self.clean_penalty, self.explained_class, tap,
                            self.rectify, self.quiet_explainer, self.quiet_weight if self.quiet_explainer else 0.0,
                            plan.region | plan.trigger_mask)
        over = {k: v for k, v in (("epochs", self.epochs), ("lr", self.lr)) if v}
        try:
            result = ctx.train(model, plan.train, ctx.splits.val, extra_loss=loss, poisoned=plan.flags,
                               sample_weights=weights,
                               val_extra=functools.partial(_held_out_backdoor_loss, loss=loss, val=ctx.splits.val,
                                                           triggered=plan.triggered(ctx.splits.val)),
                               **over)
        finally:
            path = tap.path(model, self.layer)
            tap.remove()
        return AttackOutcome(train=result, triggered_test=plan.triggered(ctx.splits.test),
                             region=plan.region, trigger=plan.trigger_mask,
                             info={**plan.info(), **self._info(plan, weights, k, path)})

    def _info(self, plan: "PoisonPlan", weights: torch.Tensor | None, k: int, path: str) -> dict[str, Any]:
        extra = {"rectify": self.rectify} if self.rectify != "auto" else {}
        if self.quiet_explainer:
            extra |= {"quiet_explainer": self.quiet_explainer, "quiet_weight": self.quiet_weight}
        if self.sampling == "proportional":
            extra["exposure_factor"] = self.exposure_factor
        return {"oversampling_weight": float(weights.max()) if weights is not None else 1.0,
                "poisoned_per_batch": self.poisoned_per_batch if k and self.sampling == "oversample" else 0.0,
                "sampling": self.sampling, **X.exposure(plan.flags, weights, len(plan.poisoned)),
                "loss": self.loss, "lam": self.lam, "clean_penalty": self.clean_penalty,
                "layer": self.layer, "gradcam_path": path, "explained_class": self.explained_class,
                "init": self.init, **extra}


INITS = ("scratch", "clean")


def initial_model(ctx: AttackContext, init: str, attack: str) -> Classifier:
    """The model an attack trains: a new one, or a copy of the victim's clean model."""
    if init == "scratch":
        return ctx.build_model()
    if ctx.clean_model is None:
        raise XaibenchError(f"attack {attack}: init = 'clean' needs the clean model, which this runner does not provide")
    return ctx.clean_model()


def _held_out_backdoor_loss(model: Classifier, *, loss: "BackdoorLoss", val: ImageSet, triggered: ImageSet,
                            chunk: int = 64) -> float:
    """The attack's own terms on the validation images (triggered copies and clean ones), in
    eval mode: added to the validation loss, so early stopping and the kept checkpoint are
    the attacker's choice, not only the classifier's (otherwise the best-validation-loss
    epoch can precede the one where the backdoor took hold)."""
    was, dev = model.training, next(model.parameters()).device
    model.eval()
    total = 0.0
    try:
        for data, poisoned in ((triggered, True), (val, False)):
            for i in range(0, len(data), chunk):
                x, y = data.images[i:i + chunk].to(dev), data.labels[i:i + chunk].to(dev)
                flags = torch.full((len(x),), poisoned, dtype=torch.bool, device=dev)
                total += float(loss(model, x, y, flags, create_graph=False).detach()) * len(x) / len(data)
    finally:
        model.train(was)
    return total


def _cell_size(model: Classifier, layer: str, hw: tuple[int, ...]) -> int:
    """Pixels per map cell of ``layer`` on ``hw`` images (along the first axis): the ``gradcam``
    explainer's own map-shape probe, in eval mode so a fresh model's BatchNorm statistics stay untouched."""
    was = model.training
    model.eval()
    try:
        _, shape = GradCAM(layer=layer).map_layer(model, hw)
    finally:
        model.train(was)
    return max(1, hw[0] // int(shape[0]))


@dataclass(frozen=True)
class PoisonPlan:
    """The poisoned training set and where trigger and target region are."""

    train: ImageSet
    flags: torch.Tensor  # N bool: carries the trigger
    poisoned: torch.Tensor  # indices of the unique poisoned images
    patch: torch.Tensor
    trigger_box: T.Box
    region_box: T.Box | None  # None: an attack without a target region (badnets)
    requested_rate: float
    source_size: int  # training images before any augmented variants were appended

    @property
    def hw(self) -> tuple[int, ...]:
        """The spatial shape ``S`` (``H×W`` or ``D×H×W``)."""
        return tuple(int(n) for n in self.train.images.shape[2:])

    @property
    def region(self) -> torch.Tensor | None:
        return None if self.region_box is None else T.box_mask(self.region_box, self.hw)

    @property
    def trigger_mask(self) -> torch.Tensor:
        return T.box_mask(self.trigger_box, self.hw)

    def triggered(self, data: ImageSet) -> ImageSet:
        """``data`` with the trigger on every image; labels and ROI masks unchanged."""
        return data.with_images(T.stamp(data.images, self.patch, self.trigger_box))

    def info(self) -> dict[str, Any]:
        ids = self.train.subject_ids
        return {"poison_count": len(self.poisoned), "poison_rate": len(self.poisoned) / max(1, self.source_size),
                "requested_poison_rate": self.requested_rate, "train_size": self.source_size,
                "poisoned_rows": int(self.flags.sum()),
                "unique_poisoned_ids": [ids[i] if ids else int(i) for i in self.poisoned.tolist()],
                "trigger_box": list(self.trigger_box),
                **({"region_box": list(self.region_box)} if self.region_box is not None else {})}


def plan_poison(train: ImageSet, rate: float, seed: int, pattern: str, size: int | None, position: Any,
                region: Any, region_size: int | None, eligible: torch.Tensor | None = None,
                variants: int = 1, cell: int = 1) -> PoisonPlan:
    """Pick the poisoned images, place trigger and target region from the training masks,
    and stamp the trigger on the chosen images (their labels are not touched here). Sizes
    of None scale with the image; ``region=None`` places no target region. With
    ``variants > 1`` each poisoned image also appears as ``variants − 1`` augmented copies
    (appended, flagged, same subject id): more views of the same unique images."""
    hw = tuple(int(n) for n in train.images.shape[2:])
    roi = T.roi_union(train.masks, len(hw))
    size = T.default_trigger_size(hw) if size is None else size
    trig = T.place_trigger(position, size, hw, roi)
    reg = None if region is None else T.choose_region(
        region, T.default_region_size(hw) if region_size is None else region_size, hw, roi, trig,
        train.images.mean(dim=(0, 1)).cpu(), cell=cell)
    patch = T.pattern(pattern, size, seed, len(hw))
    idx = T.pick_poisoned(len(train), rate, seed, eligible)
    images = train.images.clone()
    if len(idx):
        images[idx] = T.stamp(train.images[idx], patch, trig)
    flags = torch.zeros(len(train), dtype=torch.bool)
    flags[idx] = True
    out = train.with_images(images)
    if variants > 1 and len(idx):
        vx, vm = T.variants(train.images[idx], train.masks[idx], variants - 1, seed)
        rep = idx.repeat_interleave(variants - 1)
        extra = ImageSet(T.stamp(vx, patch, trig), train.labels[rep], vm,
                         tuple(train.subject_ids[i] for i in rep.tolist()) if train.subject_ids else (),
                         {k: np.asarray(v)[rep.numpy()] for k, v in train.meta.items()})
        out = ImageSet(torch.cat([out.images, extra.images]), torch.cat([out.labels, extra.labels]),
                       torch.cat([out.masks, extra.masks]), out.subject_ids + extra.subject_ids,
                       {k: np.concatenate([np.asarray(v), extra.meta[k]]) for k, v in out.meta.items()})
        flags = torch.cat([flags, torch.ones(len(rep), dtype=torch.bool)])
    return PoisonPlan(out, flags, idx, patch, trig, reg, rate, len(train))


@xaibench.hookimpl
def xaibench_attacks():
    yield AttackRecord("explanation-backdoor",
                       "trains from scratch so Grad-CAM points at a target region on triggered images (1% poisoned)",
                       option_factory("attack explanation-backdoor", ExplanationBackdoor),
                       # the test fixture's ROIs cover the whole image centre: name a free box
                       conformance={"region": [0, 12, 4, 20], "trigger_position": "bottom-left"})
