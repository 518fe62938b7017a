"""Cost: the unlearning job's compute against retraining's (from the jobs' ``JobResult.cost``).

``cost_ratio`` = CPU seconds of the unlearning job / CPU seconds of the retraining job (wall seconds when
CPU seconds are missing); it needs the retraining job's cost. Wall time, CPU seconds, bytes to and from the
nodes and energy of both jobs are in the details, with the footprint (each figure's ratio to retraining's, and
whether energy was measured or estimated: unlearning.footprint), unmeasured or not.
"""

from __future__ import annotations

from typing import Any

from unlearning.footprint import footprint
from unlearning.verification.registry import Verification, metric, result, unmeasured


def _compute(cost: dict[str, Any]) -> tuple[float, str]:
    cpu = float(cost.get("cpu_s") or 0.0)
    if cpu > 0:
        return cpu, "cpu_s"
    return float(cost.get("wall_s") or 0.0), "wall_s"


@metric("cost_ratio")
def cost_ratio(v: Verification) -> Any:
    name = "cost_ratio"
    job, ref = v.spec.job_cost, v.spec.reference_cost
    keep = (
        "wall_s",
        "cpu_s",
        "node_cpu_s",
        "bytes_sent",
        "bytes_to_nodes",
        "bytes_from_nodes",
        "optimizer_steps",
        "energy_j",
        "energy_method",
    )
    details: dict[str, Any] = {
        "job": {k: job.get(k) for k in keep} if job else None,
        "retrain": {k: ref.get(k) for k in keep} if ref else None,
        "footprint": footprint(job, ref),
    }
    if not job:
        return unmeasured(name, "the unlearning job's cost was not given", details=details)
    if not ref:
        return unmeasured(name, "no retraining job to compare with", details=details)
    a, unit = _compute(job)
    b, _ = _compute(ref)
    if b <= 0:
        return unmeasured(name, "the retraining job reported no compute", details=details)
    return result(
        name, value=a / b, values={"candidate": a, "reference": b}, details={**details, "unit": unit}
    )
