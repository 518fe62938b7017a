"""``retrain``: FedAvg from the lineage's initial model without the forget data (and without everything the
lineage already unlearned): the gold-standard reference, and a method in its own right when affordable.

Uses the lineage's number of rounds and local settings unless ``rounds`` / ``local`` are given.
"""

from __future__ import annotations

from typing import Any

from unlearning.contract import RetrainConfig  # the settings' schema (types, defaults, bounds)
from unlearning.methods.base import MethodContext, UnlearningMethod, register
from unlearning.methods.blocks import Params


@register
class Retrain(UnlearningMethod):
    name = "retrain"
    Config = RetrainConfig

    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        c: RetrainConfig = self.config
        rounds = c.rounds if c.rounds is not None else int(ctx.lineage.get("rounds", 0))
        if rounds < 1:
            raise ValueError("nothing to retrain: the base version was never trained (give rounds)")
        local = {**dict(ctx.lineage.get("local", {})), **c.local}
        arrays = ctx.fed.fedavg(ctx.load_init(), rounds, "retrain", local, target=ctx.target)
        return arrays, {"retrain-rounds": rounds}
