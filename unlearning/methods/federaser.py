"""``federaser``: unlearn a node that has left the federation with the remaining nodes alone (FedEraser, Liu et
al. 2021, "FedEraser: Enabling Efficient Client-Level Data Removal from Federated Learning Models").

Training kept, every ``keep_updates_every`` = k rounds (t_1 = 1, t_2 = 1 + k, ...), the global model W_{t_j} and
each node's update dW^i_j summed over the interval's k rounds (written by :mod:`unlearning.federation.history`). The
unlearned model is rebuilt from the lineage's initial model U_1 = W_{t_1} over the kept intervals, leaving the
departed node(s) out:

- each remaining node i trains from U_j for ``calibration_ratio`` x the lineage's local training of one round
  (its retained data; one message per node), giving dU^i;
- its calibrated update keeps the kept update's size and takes the new direction, tensor by tensor:
  ``|dW^i_j| * dU^i / |dU^i|``;
- U_{j+1} = U_j + the remaining nodes' calibrated updates averaged by their examples.

In the first interval the model starts from the initial one, where the kept updates of the first round are
exactly what the remaining nodes would send; with k = 1 they are used as kept (no calibration round). The job
never contacts the departed node: it is left out of the job (``without_owner``; ``departed_nodes`` in
unlearning/federation/server.py) and its kept updates are never read. One calibration round per kept
interval: about ``calibration_ratio / k`` of retraining's local work.

Limits: it removes the departed node's whole contribution, not one of its sources; the lineage must have kept
a history over every training round; the remaining nodes' kept updates were computed on models that had seen
the departed node, so the rebuild approximates retraining without it (bench/RESULTS.md, FedEraser).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from unlearning.contract import FedEraserConfig  # the settings' schema (types, defaults, bounds)
from unlearning.methods.base import MethodContext, UnlearningMethod, register
from unlearning.methods.blocks import Params


def calibration_local(
    lineage_local: dict[str, Any], defaults: dict[str, Any], ratio: float, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The calibration rounds' local settings: the lineage's, with its training length times ``ratio``."""
    base = {**defaults, **lineage_local}
    out = dict(lineage_local)
    if base.get("steps") is not None:
        out["steps"] = max(1, round(float(base["steps"]) * ratio))
    else:
        out["epochs"] = float(base.get("epochs") or 1.0) * ratio
    return {**out, **overrides}


def calibrate(old: Params, new: Params) -> Params:
    """The new update's direction with the kept update's size, tensor by tensor (a zero step stays zero)."""
    out: Params = {}
    for k, du in new.items():
        n_new = float(torch.linalg.vector_norm(du))
        n_old = float(torch.linalg.vector_norm(old[k]))
        out[k] = du * (n_old / n_new) if n_new > 0 and math.isfinite(n_new) else torch.zeros_like(du)
    return out


@register
class FedEraser(UnlearningMethod):
    name = "federaser"
    Config = FedEraserConfig
    without_owner = True

    def run(self, ctx: MethodContext) -> tuple[Params, dict[str, Any]]:
        from unlearning.update_history import check_complete, load_rounds

        c: FedEraserConfig = self.config
        fed = ctx.fed
        if not ctx.departed:
            raise ValueError("federaser needs a departed node to remove (none was left out of the job)")
        entries = check_complete(ctx.lineage)
        nodes = {n.partition_id: n for n in fed.nodes}
        local = calibration_local(
            dict(ctx.lineage.get("local", {})), dict(fed.task.train_defaults), c.calibration_ratio, c.local
        )
        kept = [int(r) for e in entries for r in e["rounds"]]
        unlearned: Params | None = None
        calibrated_rounds = 0
        for j, kept_round in enumerate(load_rounds(ctx.artifact_root, entries)):
            remaining = {p: u for p, u in kept_round.updates.items() if p not in ctx.departed}
            if unlearned is None:
                unlearned = {k: v.clone() for k, v in kept_round.global_params.items()}
            if not remaining:
                continue
            missing = sorted(set(remaining) - set(nodes))
            if missing:
                raise ValueError(
                    f"partition(s) {', '.join(map(str, missing))} contributed to training but are not in "
                    "this job (only the departed nodes may be left out)"
                )
            if j == 0 and kept_round.through == kept_round.round:  # one round from the initial model: exact
                steps = remaining
            else:
                calibrated_rounds += 1
                fresh = fed.local_updates(
                    unlearned,
                    "calibrate",
                    local,
                    [nodes[p] for p in sorted(remaining)],
                    target=ctx.target,
                    round_=calibrated_rounds,
                    total=len(kept),
                )
                steps = {
                    p: calibrate(remaining[p], {k: v - unlearned[k] for k, v in fresh[p][0].items()})
                    for p in remaining
                }
            weights = {p: kept_round.examples.get(p, 0.0) for p in steps}
            total = sum(weights.values())
            if total <= 0:
                continue
            unlearned = {
                k: v + sum((weights[p] / total) * steps[p][k] for p in steps) for k, v in unlearned.items()
            }
        if unlearned is None:
            raise ValueError("the update history holds no round")
        return unlearned, {
            "kept-rounds": len(kept),
            "calibration-rounds": calibrated_rounds,
            "calibration-local": local,
            "history-bytes": sum(int(e.get("bytes", 0)) for e in entries),
            "history-interval": sorted({int(e["interval"]) for e in entries}),
        }
