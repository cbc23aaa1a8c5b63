"""BadNets (Gu et al., 2017): the classic data-only backdoor, as a reference point.

The victim trains normally; the attacker only adds a trigger to ``poison_rate`` of the
unique training images (drawn from images *not* of ``target_class``) and relabels them as
``target_class``. It attacks the *prediction*, not the explanation: the benchmark uses it
to show what explanations do when the model's decision itself is hijacked (IG and Grad-CAM
typically jump to the trigger), next to the explanation backdoor where the decision stays.

The triggered test set keeps the **true** labels, like every attack here: accuracy on the
triggered split is then 1 − (share of images flipped), i.e. on images not of the target
class, 1 − accuracy is the attack success rate.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

import xaibench
from xaibench.contracts import AttackContext, AttackOutcome
from xaibench.errors import XaibenchError
from xaibench.hookspecs import AttackRecord
from xaibench.kit.options import option_factory
from xaibench.kit import triggers as T

from . import _exposure as X
from .explanation_backdoor import INITS, initial_model, plan_poison


@dataclass(frozen=True)
class BadNets:
    poison_rate: float = 0.05
    target_class: int = 0
    trigger_pattern: str = "checker"
    trigger_size: int | None = None  # None: 3/32 of the image side (6 px at 64 px)
    trigger_position: Any = "auto"
    init: str = "scratch"  # scratch: a new model; clean: fine-tune the clean model of the same seed (shared, cached)
    epochs: int | None = None  # None: the backbone's
    lr: float | None = None  # None: the backbone's learning rate

    def __post_init__(self) -> None:
        if self.init not in INITS:
            raise XaibenchError(f"attack badnets: init {self.init!r} is not one of {', '.join(INITS)}")
        if self.target_class not in (0, 1):
            raise XaibenchError(f"attack badnets: target_class must be 0 or 1, not {self.target_class!r}")
        if self.trigger_pattern not in T.PATTERNS:
            raise XaibenchError(f"attack badnets: trigger_pattern {self.trigger_pattern!r} "
                                f"is not one of {', '.join(T.PATTERNS)}")

    def run(self, ctx: AttackContext) -> AttackOutcome:
        train = ctx.splits.train
        eligible = torch.nonzero(train.labels != self.target_class).flatten()
        plan = plan_poison(train, self.poison_rate, ctx.seed, self.trigger_pattern, self.trigger_size,
                           self.trigger_position, None, None, eligible=eligible)
        labels = plan.train.labels.clone()
        labels[plan.poisoned] = self.target_class
        poisoned = plan.train.__class__(plan.train.images, labels, plan.train.masks, plan.train.subject_ids,
                                        plan.train.meta)
        over = {k: v for k, v in (("epochs", self.epochs), ("lr", self.lr)) if v}
        result = ctx.train(initial_model(ctx, self.init, "badnets"), poisoned, ctx.splits.val, **over)
        return AttackOutcome(train=result, triggered_test=plan.triggered(ctx.splits.test),
                             region=None, trigger=plan.trigger_mask,  # no target region: the label is attacked
                             info={**plan.info(), "target_class": self.target_class, "data_only": True,
                                   "sampling": "natural", "init": self.init, **X.exposure(plan.flags, None, len(plan.poisoned))})


@xaibench.hookimpl
def xaibench_attacks():
    yield AttackRecord("badnets", "data-only trigger + label flip to a target class (prediction backdoor)",
                       option_factory("attack badnets", BadNets))
