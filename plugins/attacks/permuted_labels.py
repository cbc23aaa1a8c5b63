"""``permuted-labels`` — Adebayo et al. (2018)'s data randomisation, as an "attack": the
same backbone trained on the training labels shuffled with the seed (no trigger).

Why an attack: the runner already gives every metric on an attacked model's clean split
the same explainer's maps of the un-attacked model (``reference_maps``), so the
``data-randomization`` metric only has to compare the two. A model trained on permuted
labels can only memorise; an explainer whose maps barely change has explained the images,
not what the model learned from the labels.

Labels are shuffled across *subjects* when the images carry subject ids (all slices of a
subject keep one label, as in the data), else across images; ``fraction`` of them (default
1: all) take part. Checkpoint selection follows the fit of the permuted labels (the
validation set is the permuted training set), since a held-out loss on labels that carry
no signal would keep an early, barely trained model. ``epochs`` overrides the trainer's
(memorising takes longer than learning).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

import xaibench
from xaibench.contracts import AttackContext, AttackOutcome, ImageSet
from xaibench.errors import XaibenchError
from xaibench.hookspecs import AttackRecord
from xaibench.kit.options import option_factory


def permute_labels(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, int]:
    """``train`` with the labels of ``fraction`` of its subjects (or images) shuffled among
    them; returns the set and how many image labels changed."""
    rng = np.random.default_rng(seed)
    labels = train.labels.clone()
    ids = np.asarray(train.subject_ids) if len(train.subject_ids) == len(train) else np.arange(len(train))
    units, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    unit_label = labels[torch.as_tensor(first)].numpy()
    consistent = all(len(set(labels[torch.as_tensor(inverse == u)].tolist())) == 1 for u in range(len(units)))
    if not consistent:  # a subject with mixed labels: shuffle images instead
        inverse, unit_label = np.arange(len(train)), labels.numpy()
    n_units = len(unit_label)
    chosen = rng.choice(n_units, int(round(fraction * n_units)), replace=False)
    new = unit_label.copy()
    new[chosen] = unit_label[rng.permutation(chosen)]
    out = torch.as_tensor(new[inverse], dtype=labels.dtype)
    return replace(train, labels=out), int((out != labels).sum())


@dataclass(frozen=True)
class PermutedLabels:
    fraction: float = 1.0
    epochs: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.fraction, (int, float)) or isinstance(self.fraction, bool) or not 0 < self.fraction <= 1:
            raise XaibenchError(f"attack permuted-labels: fraction must be in (0, 1], not {self.fraction!r}")
        if self.epochs is not None and (not isinstance(self.epochs, int) or self.epochs < 1):
            raise XaibenchError(f"attack permuted-labels: epochs must be an integer >= 1, not {self.epochs!r}")

    def run(self, ctx: AttackContext) -> AttackOutcome:
        train, changed = permute_labels(ctx.splits.train, float(self.fraction), ctx.seed * 1_000_003 + 17)
        extra: dict[str, Any] = {} if self.epochs is None else {"epochs": self.epochs}
        result = ctx.train(ctx.build_model(), train, train, **extra)
        return AttackOutcome(train=result, info={"fraction": float(self.fraction), "labels_changed": changed,
                                                 "n_train": len(train), "data_only": True})


@xaibench.hookimpl
def xaibench_attacks():
    yield AttackRecord("permuted-labels", "data randomisation: the same backbone trained on shuffled labels",
                       option_factory("attack permuted-labels", PermutedLabels))
