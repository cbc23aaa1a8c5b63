"""The plugin contracts: what every dataset, backbone, attack, explainer and metric
receives and returns.

The core only knows these types; plugins only need these types. Shapes and conventions
(also in ``docs/plugins.md``):

* images are ``float32`` tensors ``N×1×H×W`` with intensities in ``[0, 1]``;
* ROI / region masks are ``bool`` tensors ``N×H×W`` (or ``H×W`` for one region shared by
  every image). ``ImageSet.masks`` is the anatomical ROI; ``ImageSet.named_masks`` holds the
  other masks a dataset knows, by name (see :data:`MASK_NAMES`), and ``ImageSet.mask(name)``
  returns either;
* labels are ``int64`` ``N`` with values ``0`` (group A) and ``1`` (group B);
* an attribution map is ``float32`` ``N×H×W`` at input resolution, on the input's device;
  **larger means more evidence for the explained target**. Signed methods (IG, SHAP, LRP,
  gradients) keep their sign; a metric that needs non-negative values says so and clamps.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence, runtime_checkable

import numpy as np
import torch

# --------------------------------------------------------------------------- data

MASK_NAMES = {
    "roi": "the anatomical region of interest (e.g. both hippocampi); always present",
    "roi-left": "the left half of the ROI (left hippocampus), where the dataset knows it",
    "roi-right": "the right half of the ROI (right hippocampus), where the dataset knows it",
    "evidence": "where the two groups actually differ in this image (simulated data: where the"
                " group effect changed the image)",
    "brain": "the brain (non-background) voxels",
}
"""Conventional mask names. A dataset may add others; metrics take ``mask = NAME``."""


def _pick_mask(name: str, roi: torch.Tensor, named: Mapping[str, torch.Tensor], who: str) -> torch.Tensor:
    if name == "roi":
        return roi
    if name not in named:
        have = ", ".join(["roi", *sorted(named)])
        raise KeyError(f"{who}: no mask named {name!r}; this data has {have}")
    return named[name]


@dataclass(frozen=True)
class ImageSet:
    """A set of 2-D images with labels, ROI masks and per-image metadata."""

    images: torch.Tensor  # N×1×H×W float32 in [0, 1]
    labels: torch.Tensor  # N int64 in {0, 1}
    masks: torch.Tensor  # N×H×W bool; the ROI (all False when the dataset has none)
    subject_ids: tuple[str, ...] = ()
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)  # covariates, length N
    named_masks: Mapping[str, torch.Tensor] = field(default_factory=dict)  # name → N×H×W bool

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def mask(self, name: str = "roi") -> torch.Tensor:
        """The mask called ``name`` (``"roi"`` is :attr:`masks`); a one-line KeyError otherwise."""
        return _pick_mask(name, self.masks, self.named_masks, "image set")

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "ImageSet":
        """Rows ``index`` of every field (used for chunking and subsampling)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long)
        ids = tuple(self.subject_ids[i] for i in idx.tolist()) if self.subject_ids else ()
        meta = {k: np.asarray(v)[idx.numpy()] for k, v in self.meta.items()}
        named = {k: v[idx] for k, v in self.named_masks.items()}
        return ImageSet(self.images[idx], self.labels[idx], self.masks[idx], ids, meta, named)

    def with_images(self, images: torch.Tensor) -> "ImageSet":
        return replace(self, images=images)


@dataclass(frozen=True)
class DatasetSplits:
    """What a dataset plugin returns: a subject-level train/val/test split."""

    name: str
    train: ImageSet
    val: ImageSet
    test: ImageSet
    groups: tuple[str, str] = ("A", "B")  # names of label 0 and label 1
    roi_name: str = "roi"
    card: Mapping[str, Any] = field(default_factory=dict)  # facts a paper states (split, sizes…)

    @property
    def image_size(self) -> tuple[int, ...]:
        """The spatial shape ``S``: ``(H, W)`` for slices, ``(D, H, W)`` for volumes."""
        return tuple(int(s) for s in self.train.images.shape[2:])


@runtime_checkable
class Dataset(Protocol):
    """A dataset plugin instance (made by its factory from the suite's options)."""

    def load(self, *, seed: int, cache_dir: Path) -> DatasetSplits:
        """Deterministic for a given seed; may cache preprocessed arrays under ``cache_dir``."""
        ...


# --------------------------------------------------------------------------- models


class Classifier(torch.nn.Module):
    """The model every explainer sees: encoder → global average pool → linear head.

    ``forward`` takes ``N×1×*S`` images (slices or volumes) in [0, 1] and returns logits ``N×K``. Grayscale
    → 3 channels and input normalisation happen *inside* (so gradients are w.r.t. the
    image the user sees). ``stages`` names the spatial feature modules in depth order; the
    CAM family hooks them. ``embed`` returns the pooled features the head reads.
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        feature_dim: int,
        stages: Mapping[str, torch.nn.Module],
        num_classes: int = 2,
        mean: Sequence[float] = (0.485, 0.456, 0.406),
        std: Sequence[float] = (0.229, 0.224, 0.225),
        dropout: float = 0.0,
        in_chans: int = 3,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.stage_names = tuple(stages)
        self._stages = dict(stages)  # not registered twice: they live inside encoder
        self.in_chans = in_chans
        self.register_buffer("mean", torch.tensor(mean[:in_chans]).view(1, in_chans, 1, 1))
        self.register_buffer("std", torch.tensor(std[:in_chans]).view(1, in_chans, 1, 1))
        self.dropout = torch.nn.Dropout(dropout)
        self.head = torch.nn.Linear(feature_dim, num_classes)

    @property
    def stages(self) -> dict[str, torch.nn.Module]:
        return self._stages

    def stage(self, name: str) -> torch.nn.Module:
        if name not in self._stages:
            raise KeyError(f"unknown layer {name!r}; this model has {', '.join(self.stage_names)}")
        return self._stages[name]

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        # the buffers keep their stored 1×C×1×1 shape (checkpoints load); viewed by the input's dims
        shape = (1, self.in_chans, *([1] * (x.ndim - 2)))
        if x.shape[1] == 1 and self.in_chans != 1:
            x = x.expand(-1, self.in_chans, *x.shape[2:])
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """Last-stage spatial features ``N×C×*s``."""
        return self.encoder(self.prepare(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        f = self.feature_map(x)
        return f.mean(dim=tuple(range(2, f.ndim)))

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and embeddings in one pass."""
        emb = self.embed(x)
        return self.head(self.dropout(emb)), emb

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_all(x)[0]


BackboneBuilder = Callable[..., Classifier]
"""A backbone plugin's instance: ``build(num_classes=2, image_size=S) -> Classifier``, ``S``
the spatial shape (``(H, W)``, or ``(D, H, W)`` for a backbone whose record declares 3).

It may carry training preferences as attributes (``mode``: probe|partial|finetune,
``lr``, ``epochs``) that the trainer reads with defaults."""


# --------------------------------------------------------------------------- targets

TargetKind = Literal["logit", "margin", "group-direction"]


@dataclass(frozen=True)
class Target:
    """The scalar per image that is explained (and that faithfulness metrics perturb).

    * ``logit``: the logit of class ``classes[i]``;
    * ``margin``: logit of ``classes[i]`` minus the other class's logit (two classes);
    * ``group-direction``: φ(x) = wᵀf(x) with w = (μ_A − μ_B)/‖μ_A − μ_B‖ on the
      embeddings (the group-level explanation), sign flipped for images of class 1 so
      that larger always means "more typical of the image's own group".
    """

    kind: TargetKind
    classes: torch.Tensor  # N int64
    direction: torch.Tensor | None = None  # D, for group-direction

    def score(self, logits: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        cls = self.classes.to(logits.device)
        own = logits.gather(1, cls.view(-1, 1)).squeeze(1)
        if self.kind == "logit":
            return own
        if self.kind == "margin":
            other = logits.gather(1, (1 - cls).view(-1, 1)).squeeze(1)
            return own - other
        if emb is None or self.direction is None:
            raise ValueError("group-direction target needs embeddings and a direction")
        sign = 1.0 - 2.0 * cls.to(emb.dtype)
        return (emb @ self.direction.to(emb.device)) * sign

    def __call__(self, model: Classifier, x: torch.Tensor) -> torch.Tensor:
        """Score of ``x`` under ``model``: one scalar per image, differentiable."""
        logits, emb = model.forward_all(x)
        return self.score(logits, emb)

    def subset(self, index: slice | torch.Tensor) -> "Target":
        return replace(self, classes=self.classes[index])


# --------------------------------------------------------------------------- explainers


@dataclass(frozen=True)
class ExplainContext:
    """What an explainer may use besides the model and the images."""

    reference: torch.Tensor  # some training images N_ref×1×H×W (SHAP / mean baselines)
    seed: int = 0
    chunk_size: int = 64  # max images pushed through the model per pass
    # mask name → H×W float: the mean of that mask over the *training* images (the spatial
    # prior a model-free baseline such as ``roi-prior`` returns); "roi" always present
    mask_priors: Mapping[str, torch.Tensor] = field(default_factory=dict)


@runtime_checkable
class Explainer(Protocol):
    """``explain`` returns ``float32 N×H×W`` on ``x``'s device; larger = more evidence.

    Must work on a whole batch, be deterministic for ``context.seed`` and leave the
    model's parameters and ``requires_grad`` flags as it found them.
    """

    def explain(
        self, model: Classifier, x: torch.Tensor, target: Target, context: ExplainContext
    ) -> torch.Tensor: ...

    # Optional: ``describe(model, images, masks) -> list[Score]`` — facts about the maps
    # this explainer can produce on these images (e.g. the IoU ceiling its layer resolution
    # implies); stored with the maps and shown beside the metrics.


# --------------------------------------------------------------------------- metrics

MetricScope = Literal["explanation", "model", "explainers", "seeds", "attack"]
"""What the runner hands a metric:

* ``explanation`` — one explainer's ``attributions`` on one split (clean or triggered),
  plus ``explainer`` to re-explain perturbed inputs and ``reference_maps`` (the same
  explainer on the un-attacked model of the same seed) when the model is attacked;
* ``model`` — no maps: the model and the images (accuracy, group statistics);
* ``explainers`` — ``maps`` of every explainer on the same images (agreement);
* ``seeds`` — ``seed_maps`` of one explainer from models trained with each seed;
* ``attack`` — ``maps`` (clean images) and ``triggered_maps`` (the same images with the
  trigger) of every explainer, with ``region`` and ``trigger`` (detection)."""


@dataclass(frozen=True)
class Score:
    """One named value family a metric produces.

    ``values`` holds one number per image (``N``) or a single aggregate (length 1).
    ``chance`` is the expected value of a uniformly random map on the same inputs.
    ``explainer`` is set only by metrics that score several explainers at once.
    ``param`` marks one level of a swept metric parameter, ``(name, value)`` as the score's
    name shows it (``("q", 5.0)`` for ``delta-t@5%``, see ``kit.pct_param``): the report draws
    the scores of one metric that share the parameter as a curve over it.
    """

    name: str
    values: np.ndarray
    higher_is_better: bool = True
    chance: float | None = None
    explainer: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)  # curves etc., JSON-able
    param: tuple[str, float] | None = None  # one level of a swept metric parameter


@dataclass(frozen=True)
class MetricInput:
    """Everything a metric may read. Fields a scope does not provide are ``None``."""

    model: Classifier
    images: torch.Tensor  # N×1×H×W
    labels: torch.Tensor  # N
    masks: torch.Tensor  # N×H×W bool, the ROI (or the attack's target region, see ``region``)
    target: Target
    context: ExplainContext
    attributions: torch.Tensor | None = None  # N×H×W (scope "explanation")
    explainer: Explainer | None = None  # to re-explain perturbed inputs (stability metrics)
    explainer_name: str | None = None
    maps: Mapping[str, torch.Tensor] | None = None  # scopes "explainers"/"attack": name → N×H×W
    triggered_maps: Mapping[str, torch.Tensor] | None = None  # scope "attack"
    seed_maps: Mapping[int, torch.Tensor] | None = None  # scope "seeds": seed → N×H×W
    reference_maps: torch.Tensor | None = None  # same explainer on the un-attacked model
    split: str = "clean"  # "clean" or "triggered"
    region: torch.Tensor | None = None  # attack's target region (H×W bool), if any
    trigger: torch.Tensor | None = None  # attack's trigger footprint (H×W bool), if any
    meta: Mapping[str, np.ndarray] = field(default_factory=dict)
    splits: DatasetSplits | None = None  # the whole dataset (group statistics)
    named_masks: Mapping[str, torch.Tensor] = field(default_factory=dict)  # name → N×H×W bool

    def mask(self, name: str = "roi") -> torch.Tensor:
        """The mask called ``name`` for these images (``"roi"`` is :attr:`masks`)."""
        return _pick_mask(name, self.masks, self.named_masks, "metric input")


@runtime_checkable
class Metric(Protocol):
    """``score`` returns a list of :class:`Score`; ``scope`` says what input it needs."""

    scope: MetricScope

    def score(self, inp: MetricInput) -> list[Score]: ...


# --------------------------------------------------------------------------- attacks


@dataclass(frozen=True)
class TrainResult:
    model: Classifier
    history: Mapping[str, list[float]] = field(default_factory=dict)
    seconds: float = 0.0


ExtraLoss = Callable[[Classifier, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
"""``extra_loss(model, images, labels, is_poisoned) -> scalar`` added to cross-entropy."""


@dataclass(frozen=True)
class AttackContext:
    """What an attack receives. ``train`` is the standard trainer; an attack that controls
    training passes ``extra_loss`` / ``sample_weights``; a data-only attack passes only
    a poisoned ``ImageSet``."""

    splits: DatasetSplits
    build_model: Callable[[], Classifier]
    train: Callable[..., TrainResult]
    seed: int
    device: torch.device
    # A fresh copy of the clean model of the same dataset, backbone and seed (trained once and
    # cached like any model): attacks that fine-tune a victim's model start from it.
    clean_model: Callable[[], Classifier] | None = None
    batch_size: int = 32  # the trainer's batch size for this backbone (an attack sizes its sampling by it)


@dataclass(frozen=True)
class AttackOutcome:
    """The (possibly attacked) model and what the evaluation needs to measure the attack."""

    train: TrainResult
    triggered_test: ImageSet | None = None  # test images with the trigger, true labels
    region: torch.Tensor | None = None  # H×W bool, where the attacker wants maps to point
    trigger: torch.Tensor | None = None  # H×W bool, the trigger's footprint
    info: Mapping[str, Any] = field(default_factory=dict)  # JSON-able facts (poison count…)


@runtime_checkable
class Attack(Protocol):
    def run(self, ctx: AttackContext) -> AttackOutcome: ...
