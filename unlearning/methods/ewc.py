"""``ewc``: gradient ascent with an elastic-weight-consolidation penalty (Wu et al. 2022, "Federated
Unlearning: Guarantee the Right of Clients to Forget").

The objective minimised on the holders is ``-L(forget) + lambda/2 * sum_i F_i (theta_i - theta*_i)^2`` with
``F`` the diagonal Fisher of the *retained* data (computed on every node, averaged by examples, normalised to
mean 1) and ``theta*`` the pre-unlearning model. The penalty is applied as a proximal step after each optimizer
step (stable for any lambda). Early stopping as in gradient_ascent; no L2 ball by default, no repair.
"""

from __future__ import annotations

from typing import Any

from unlearning.contract import EWCConfig  # the settings' schema (types, defaults, bounds)
from unlearning.methods.base import MethodContext, UnlearningMethod, bounded_ascent, register
from unlearning.methods.blocks import Params


@register
class EWC(UnlearningMethod):
    name = "ewc"
    Config = EWCConfig

    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        c: EWCConfig = self.config
        fisher = ctx.fed.fisher(ctx.original, "retain", ctx.target, examples=c.fisher_examples)
        lam = c.ewc_lambda if c.ewc_lambda is not None else ctx.fed.task.ewc_defaults["ascent"]
        anchor = ctx.original if fisher is not None else None
        arrays, details = bounded_ascent(ctx, c, anchor=anchor, fisher=fisher, lam=lam)
        details["ewc-lambda"] = lam
        return arrays, details
