"""``gradient_ascent_ewc`` (the default): bounded gradient ascent with EWC, then federated repair rounds that
must not re-learn what was forgotten.

1. Fisher of the retained data at the pre-unlearning model (``ascent_fisher``), averaged over nodes.
2. Bounded ascent on the holders (L2 ball + early stop, as gradient_ascent) with the EWC proximal step
   anchored at the pre-unlearning model (``ascent_anchor="original"``): protects what the rest taught.
3. Fisher of the *forget* data at the *unlearned* model (``repair_fisher="forget"``), from the holders.
4. ``repair_rounds`` FedAvg rounds on retained data with the EWC proximal step anchored at the *unlearned*
   model (``repair_anchor="unlearned"``): the weights that carry the forgetting stay put while utility comes
   back. (Repair with plain FedAvg, or anchored at the original model, re-learns the forgotten data.)
   With ``repair_noise`` the repair starts from the unlearned model mixed with a fresh initialisation, and
   with ``repair_distill`` it also learns the unlearned model's outputs (UNDO's noise, then distil).
"""

from __future__ import annotations

from typing import Any

from unlearning.contract import GradientAscentEWCConfig  # the settings' schema (types, defaults, bounds)
from unlearning.local import FRESH_SEED, parameters_dict, shrink_perturb
from unlearning.methods.base import MethodContext, UnlearningMethod, bounded_ascent, register
from unlearning.methods.blocks import Params


@register
class GradientAscentEWC(UnlearningMethod):
    name = "gradient_ascent_ewc"
    Config = GradientAscentEWCConfig

    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        c: GradientAscentEWCConfig = self.config
        fed = ctx.fed
        _, include = fed.holders(ctx.target)
        ascent_lambda = c.ascent_lambda if c.ascent_lambda is not None else fed.task.ewc_defaults["ascent"]
        repair_lambda = c.repair_lambda if c.repair_lambda is not None else fed.task.ewc_defaults["repair"]
        fisher = None
        ewc = c.ascent_fisher != "none" and ascent_lambda > 0
        # the dampening compares with the retained Fisher: without EWC in the ascent it is computed anyway and
        # sent with EWC weight 0 (the proximal step then changes nothing)
        if ewc or c.dampen_alpha > 0:
            fisher = fed.fisher(
                ctx.original,
                c.ascent_fisher if ewc else "retain",
                ctx.target,
                examples=c.fisher_examples,
                phase="fisher-ascent",
                include_examples=include,
            )
            ascent_lambda = ascent_lambda if ewc else 0.0
        dampen: dict[str, Any] = {}
        if c.dampen_alpha > 0 and fisher is not None:  # None: no node holds retained data
            dampen = {
                "dampen-alpha": c.dampen_alpha,
                "dampen-lambda": c.dampen_lambda,
                "dampen-mode": c.dampen_mode,
                "fisher-examples": c.fisher_examples,
            }
        unlearned, details = bounded_ascent(
            ctx,
            c,
            anchor=ctx.original if fisher is not None else None,
            fisher=fisher,
            lam=ascent_lambda,
            node_settings=dampen,
        )
        if c.repair_rounds == 0:
            return unlearned, details
        repair_fisher = None
        if c.repair_fisher != "none":
            repair_fisher = fed.fisher(
                unlearned,
                c.repair_fisher,
                ctx.target,
                examples=c.fisher_examples,
                phase="fisher-repair",
                include_examples=include,
            )
        anchor = unlearned if c.repair_anchor == "unlearned" else ctx.original
        local = {**dict(ctx.lineage.get("local", {})), **fed.task.repair_defaults, **c.repair_local}
        start = unlearned
        if c.repair_noise > 0:
            fresh = parameters_dict(fed.task.build_model(fed.seed + FRESH_SEED))
            start = shrink_perturb(unlearned, fresh, c.repair_noise)
            details["repair-noise"] = c.repair_noise
        if c.repair_distill > 0:
            details["repair-distill"] = c.repair_distill
        arrays = fed.fedavg(
            start,
            c.repair_rounds,
            "repair",
            local,
            target=ctx.target,
            anchor=anchor if repair_fisher is not None else None,
            fisher=repair_fisher,
            lam=repair_lambda,
            guard=(
                {
                    "guard-weight": c.repair_guard,
                    "guard-factor": c.repair_guard_factor,
                    "guard-floor": c.repair_guard_floor,
                    "secret-pattern": c.secrets,
                }
                if c.repair_guard > 0
                else None
            ),
            teacher=unlearned if c.repair_distill > 0 else None,
            distill=c.repair_distill,
        )
        details.update(
            {
                "repair-rounds": c.repair_rounds,
                "repair-lambda": repair_lambda,
                "ascent-lambda": ascent_lambda,
            }
        )
        return arrays, details
