"""How often the model sees a trigger: the exposure an attack's sampling gives its poisoned images.

Why a number of its own: the *unique* poisoned share (10 of 960 training images = 1%) says how
many different triggered images the attacker needs; it does not say how often the model sees a
trigger. An attack that oversamples its few images puts many more triggered samples into
training than the unique share suggests, and published explanation backdoors count the share of
triggered *samples* (e.g. 50% of fine-tuning samples). Comparing the two counts needs both.

The standard trainer draws each epoch either a permutation of the ``n`` rows (no sample
weights: every row once) or ``n`` rows with replacement from the multinomial of the sample
weights. So, with ``p_i = w_i / Σ w``:

* ``exposure`` — the expected share of drawn samples that carry the trigger: ``Σ_{poisoned} p_i``;
* ``presentations_per_poisoned_image`` — expected draws per epoch of one unique poisoned image,
  its augmented variants counted as presentations of it: ``n · exposure / unique``;
* ``presentations_per_poisoned_row`` — the same per training row (variants counted apart).

The trainer skips a last batch of a single row; these expectations ignore that (at most one
draw in an epoch).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

SAMPLINGS = ("oversample", "natural", "proportional")


def exposure(flags: torch.Tensor, weights: torch.Tensor | None, unique: int) -> dict[str, float]:
    """Exposure facts of a training set whose rows ``flags`` carry the trigger, drawn with
    ``weights`` (None: a permutation, every row once per epoch); ``unique`` poisoned images."""
    n, k = len(flags), int(flags.sum())
    if k == 0 or n == 0:
        return {"exposure": 0.0, "presentations_per_poisoned_image": 0.0, "presentations_per_poisoned_row": 0.0}
    w = torch.ones(n, dtype=torch.double) if weights is None else weights.double()
    share = float(w[flags].sum() / w.sum())
    return {"exposure": share, "presentations_per_poisoned_image": n * share / max(1, unique),
            "presentations_per_poisoned_row": n * share / k}


def exposure_from_info(info: Mapping[str, Any]) -> dict[str, float]:
    """The same facts rebuilt from an older attack's ``info`` (before they were stated):
    its rows, poisoned rows and the single weight given to every poisoned row."""
    if "exposure" in info:
        return {k: float(info[k]) for k in ("exposure", "presentations_per_poisoned_image",
                                            "presentations_per_poisoned_row")}
    unique, rows = int(info.get("poison_count", 0)), int(info.get("poisoned_rows", info.get("poison_count", 0)))
    n = int(info.get("train_size", 0)) + rows - unique  # variants are appended rows
    flags = torch.zeros(n, dtype=torch.bool)
    flags[:rows] = True
    weights = torch.ones(n, dtype=torch.double)
    weights[flags] = float(info.get("oversampling_weight", 1.0))
    return exposure(flags, weights, unique)


def weight_for_share(share: float, n: int, k: int) -> float:
    """The weight of each of ``k`` poisoned rows (the other ``n − k`` weigh 1) that makes the
    expected share of drawn poisoned rows ``share``: ``k·w / (k·w + n − k) = share``."""
    return share * (n - k) / (k * (1.0 - share))
