"""A job's footprint as the job's page and its proposal's page show it beside the verdict: CPU seconds, wall
time, bytes to and from the nodes and energy, the job's and the retraining reference's, and their ratio
(``unlearning.api.footprint``; the reference's figures come from the signed report's ``cost_ratio`` details).
Reads only."""

from __future__ import annotations

from typing import Any

from governance.domain.review import ActorView
from governance.services import jobs
from governance.services.context import Ctx
from unlearning.api import footprint

UNITS = {
    "cpu_s": ("CPU time", "s"),
    "wall_s": ("Wall time", "s"),
    "bytes_to_nodes": ("Sent to nodes", "B"),
    "bytes_from_nodes": ("Received from nodes", "B"),
    "energy_j": ("Energy", "J"),
}


def reference_cost(report: dict[str, Any] | None) -> dict[str, Any] | None:
    """The retraining reference's cost as the verification report recorded it (None: not computed)."""
    metric = ((report or {}).get("metrics") or {}).get("cost_ratio") or {}
    ref = (metric.get("details") or {}).get("retrain")
    return ref if isinstance(ref, dict) else None


def job_footprint(job: dict[str, Any]) -> dict[str, Any] | None:
    """The footprint of a job (None before it reported any cost)."""
    cost = job.get("cost") or {}
    if not cost:
        return None
    out = footprint(cost, reference_cost(job.get("report")))
    for f in out["figures"]:
        f["label"], f["unit"] = UNITS[f["name"]]
    out["departed"] = list(job.get("departed") or [])
    return out


def proposal_verdict(ctx: Ctx, proposal_id: int, actor: ActorView) -> dict[str, Any]:
    """The latest job of a proposal with its verdict and footprint, for the proposal's page."""
    rows = jobs.list_jobs(ctx, proposal_id=proposal_id, limit=1, viewer=actor)
    if not rows:
        return {"verdict_job": None}
    job = jobs.get(ctx, int(rows[0]["id"]), actor)
    report = job.get("report") or {}
    return {
        "verdict_job": job,
        "verdict_summary": report.get("summary"),
        "verdict_passed": report.get("passed"),
        "verdict_footprint": job_footprint(job),
    }
