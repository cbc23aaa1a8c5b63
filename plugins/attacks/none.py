"""The identity attack: the victim trains normally on clean data (every grid's baseline)."""
from __future__ import annotations

from dataclasses import dataclass

import xaibench
from xaibench.contracts import AttackContext, AttackOutcome
from xaibench.hookspecs import AttackRecord


@dataclass(frozen=True)
class NoAttack:
    def run(self, ctx: AttackContext) -> AttackOutcome:
        model = ctx.build_model()
        result = ctx.train(model, ctx.splits.train, ctx.splits.val)
        return AttackOutcome(train=result)


@xaibench.hookimpl
def xaibench_attacks():
    yield AttackRecord("none", "no attack: clean training (baseline)", NoAttack)
