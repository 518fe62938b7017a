"""``gradient_ascent``: bounded gradient ascent on the forget data, on the node(s) that hold it.

Bounded twice: an L2 ball around a reference model (Halimi et al. 2022: for a data source, the global model
with the owning node's contribution removed; radius ``ball_radius`` or ``ball_radius_ratio`` x the
reference's distance to a random model) and early stopping when the forget data reaches the stop rule's
target (see AscentSettings). No repair rounds. Unbounded ascent always collapses (notes/unlearning-probe.md).
"""

from __future__ import annotations

from typing import Any

from unlearning.contract import GradientAscentConfig  # the settings' schema (types, defaults, bounds)
from unlearning.methods.base import MethodContext, UnlearningMethod, bounded_ascent, register
from unlearning.methods.blocks import Params


@register
class GradientAscent(UnlearningMethod):
    name = "gradient_ascent"
    Config = GradientAscentConfig

    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        return bounded_ascent(ctx, self.config)
