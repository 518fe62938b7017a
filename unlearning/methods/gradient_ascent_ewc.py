"""``gradient_ascent_ewc`` (the default): bounded gradient ascent with EWC, then federated repair rounds that
must not re-learn what was forgotten.

1. Fisher of the retained data at the pre-unlearning model (``ascent_fisher``), averaged over nodes.
2. Bounded ascent on the holders (L2 ball + early stop, as gradient_ascent) with the EWC proximal step
   anchored at the pre-unlearning model (``ascent_anchor="original"``): protects what the rest taught.
3. Fisher of the *forget* data at the *unlearned* model (``repair_fisher="forget"``), from the holders.
4. ``repair_rounds`` FedAvg rounds on retained data with the EWC proximal step anchored at the *unlearned*
   model (``repair_anchor="unlearned"``): the weights that carry the forgetting stay put while utility comes
   back. (Repair with plain FedAvg, or anchored at the original model, re-learns the forgotten data.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from unlearning.methods.base import AscentSettings, MethodContext, UnlearningMethod, bounded_ascent, register
from unlearning.methods.blocks import Params


@dataclass
class GradientAscentEWCConfig(AscentSettings):
    ascent_lambda: float | None = None  # EWC weight during ascent (0 disables; None: the task's default)
    ascent_fisher: str = "retain"  # "retain" | "forget" | "none"
    ascent_anchor: str = "original"
    repair_rounds: int = 3
    repair_local: dict[str, Any] = field(default_factory=dict)  # LocalConfig overrides for repair rounds
    repair_lambda: float | None = None  # EWC weight during repair (None: the task's default)
    repair_fisher: str = "forget"  # "forget" | "retain" | "none" (none = plain FedAvg repair)
    repair_anchor: str = "unlearned"  # "unlearned" | "original"
    fisher_examples: int = 64
    # > 0: during repair the holders also keep each forget example at least as unfamiliar as their unseen
    # validation examples of its kind (x repair_guard_factor), and secret spans at chance (a hinge, weight this)
    repair_guard: float = 0.0
    repair_guard_factor: float = 1.0
    # "anchor": also hold each example at its loss right after the ascent | "none"
    repair_guard_floor: str = "anchor"

    def check(self) -> None:
        super().check()
        for key, value, allowed in (
            ("ascent_fisher", self.ascent_fisher, ("retain", "forget", "none")),
            ("repair_fisher", self.repair_fisher, ("retain", "forget", "none")),
            ("ascent_anchor", self.ascent_anchor, ("original",)),
            ("repair_anchor", self.repair_anchor, ("unlearned", "original")),
            ("repair_guard_floor", self.repair_guard_floor, ("anchor", "none")),
        ):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)} (got {value!r})")
        if self.repair_rounds < 0:
            raise ValueError("repair_rounds must be >= 0")
        if self.repair_guard < 0 or self.repair_guard_factor <= 0:
            raise ValueError("repair_guard must be >= 0 and repair_guard_factor > 0")


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
        if c.ascent_fisher != "none" and ascent_lambda > 0:
            fisher = fed.fisher(
                ctx.original,
                c.ascent_fisher,
                ctx.target,
                examples=c.fisher_examples,
                phase="fisher-ascent",
                include_examples=include,
            )
        unlearned, details = bounded_ascent(
            ctx, c, anchor=ctx.original if fisher is not None else None, fisher=fisher, lam=ascent_lambda
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
        arrays = fed.fedavg(
            unlearned,
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
        )
        details.update(
            {
                "repair-rounds": c.repair_rounds,
                "repair-lambda": repair_lambda,
                "ascent-lambda": ascent_lambda,
            }
        )
        return arrays, details
