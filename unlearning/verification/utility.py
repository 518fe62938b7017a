"""Utility, computed on the nodes: every node evaluates each model on its local data through federated
evaluation (the same ``evaluate`` message the jobs use); raw data never leaves a node, only counts and means.

- ``retained_utility_drop``: original - candidate of the nodes' retained-data accuracy (the node's training
  data minus the target; LMs: next-token accuracy), weighted by the nodes' example counts;
- ``worst_node_utility_drop``: the largest per-node drop of local validation accuracy (for a category target
  the node's retained data, because its validation data holds the forgotten category);
- ``heldout_accuracy_gap``: |candidate - reference| accuracy on central held-out data outside the target
  (classifiers; without a reference the original stands in).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from torch import nn

from unlearning.tasks.base import Target
from unlearning.verification.registry import Verification, metric, not_applicable, result, unmeasured

if TYPE_CHECKING:
    from unlearning.federation.server import Federation


def federated_utility(
    fed: Federation, models: Mapping[str, nn.Module], target: Target | None
) -> dict[str, dict[str, Any]]:
    """Federated evaluation of each model on every node ({role: {"nodes", "mean", "worst", "bytes"}})."""
    from unlearning.local import parameters_dict

    out: dict[str, dict[str, Any]] = {}
    for role, model in models.items():
        before = fed.cost.bytes_sent
        ev = fed.evaluate(parameters_dict(model), target, phase=f"verify-{role}")
        ev["bytes"] = fed.cost.bytes_sent - before
        out[role] = ev
    return out


def _quality(node: Mapping[str, float], key: str) -> float | None:
    v = node.get(key)
    return float(v) if v is not None and math.isfinite(v) else None


@metric("retained_utility_drop")
def retained_utility_drop(v: Verification) -> Any:
    name = "retained_utility_drop"
    u = v.utility()
    values: dict[str, float | None] = {}
    for role in v.roles:
        values[role] = _quality(u[role]["mean"], "retain-accuracy")
    orig, cand = values.get("original"), values.get("candidate")
    per_node = {
        pid: {role: _quality(u[role]["nodes"][pid], "retain-accuracy") for role in v.roles}
        for pid in u["candidate"]["nodes"]
    }
    details: dict[str, Any] = {
        "quality": "retain-accuracy (on the nodes, weighted mean)",
        "per_node": per_node,
        "validation": {
            role: {pid: _quality(n, "val-accuracy") for pid, n in u[role]["nodes"].items()}
            for role in v.roles
        },
        "mean": {role: u[role]["mean"] for role in v.roles},
        "bytes": {role: u[role].get("bytes", 0) for role in v.roles},
    }
    if orig is None or cand is None:
        return unmeasured(name, "no node holds retained data", values=values, details=details)
    details["change_vs_original"] = cand - orig
    return result(name, value=orig - cand, values=values, details=details)


@metric("worst_node_utility_drop")
def worst_node_utility_drop(v: Verification) -> Any:
    name = "worst_node_utility_drop"
    u = v.utility()
    key = "retain-accuracy" if v.target is not None and v.target.kind == "category" else "val-accuracy"
    drops: dict[str, float] = {}
    for pid in u["candidate"]["nodes"]:
        o = _quality(u["original"]["nodes"][pid], key)
        c = _quality(u["candidate"]["nodes"][pid], key)
        if o is not None and c is not None:
            drops[pid] = o - c
    if not drops:
        return unmeasured(name, f"no node reported {key}")
    worst = max(drops, key=lambda k: drops[k])
    values: dict[str, float | None] = {role: _quality(u[role]["nodes"][worst], key) for role in v.roles}
    return result(
        name,
        value=drops[worst],
        values=values,
        details={"quality": key, "worst_node": worst, "drops": drops},
    )


@metric("heldout_accuracy_gap")
def heldout_accuracy_gap(v: Verification) -> Any:
    name = "heldout_accuracy_gap"
    if not v.task.is_classifier:
        return not_applicable(name, "not a classifier (see retained_utility_drop)")
    if v.probes.heldout_rest is None:
        return not_applicable(name, "the dataset has no held-out examples outside the target")
    values: dict[str, float | None] = {r: float(v.scores(r, "heldout_rest").correct.mean()) for r in v.roles}
    ref = values.get("reference")
    source = "retrained reference"
    if ref is None:
        ref, source = values["original"], "proxy: the original model"
    cand = values["candidate"]
    assert cand is not None and ref is not None
    return result(name, value=abs(cand - ref), values=values, details={"reference_source": source})


def excluded_for(lineage: Mapping[str, Any], target: Target | None) -> list[Target]:
    """What the candidate's lineage unlearned, minus the target itself (so the nodes still find it)."""
    own = json.loads(target.to_json()) if target is not None else None
    out = []
    for t in lineage.get("excluded", []):
        tt = Target.from_dict(t)
        if own is None or json.loads(tt.to_json()) != own:
            out.append(tt)
    return out
