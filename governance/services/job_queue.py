"""Queueing an approved proposal's unlearning job, and the job events every job change records.

The lowest layer of the job orchestration: :mod:`governance.services.lifecycle` queues a job here when a
proposal is approved (in the approval's transaction) and :mod:`governance.services.jobs` records its job
events here; neither module is imported by this one, so the lifecycle and the jobs never import each other
in a circle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Session

from governance.db.models import DataSource, Job, Proposal
from governance.domain.errors import NotFound
from governance.domain.jobs import JobState
from governance.services import registry
from governance.services.audit import record
from governance.services.context import Ctx
from governance.services.events import emit
from unlearning.contract import Target


def federation_target(s: Session, p: Proposal) -> dict[str, Any]:
    """The proposal's target in the unlearning library's terms (:class:`unlearning.contract.Target`: a data
    source by its federation name, not its registry id), as the job spec stores it (empty fields left out)."""
    t = p.target or {}
    if p.target_kind == "data_source":
        ds = s.get(DataSource, p.data_source_id)
        if ds is None:
            raise NotFound(f"data source {p.data_source_id} is gone")
        target = Target("data_source", ds.name if "/" in ds.name else f"{ds.node_id}/{ds.name}")
    elif p.target_kind == "category":
        target = Target("category", str(t.get("category", "")))
    else:
        target = Target("behaviour", examples=list(t.get("examples") or []), pattern=t.get("pattern"))
    return {k: v for k, v in target.to_dict().items() if k == "kind" or v}


def base_version(s: Session, ctx: Ctx) -> str | None:
    """The version unlearning starts from: the latest released one, else the configured base version."""
    latest = registry.latest_released_version(s)
    if latest:
        return latest
    return ctx.settings.base_model_version


def enqueue_for_proposal(s: Session, ctx: Ctx, p: Proposal, now: datetime) -> Job:
    """Queue the unlearning job of an approved proposal, in the approval's transaction."""
    assert p.id is not None
    spec = {
        "kind": "unlearn",
        "base_version": base_version(s, ctx),
        "target": federation_target(s, p),
        "method": ctx.settings.unlearning_method,
        "method_config": {},
        "runtime": ctx.settings.execution_mode,
    }
    job = Job(
        proposal_id=p.id,
        kind="unlearn",
        state=JobState.QUEUED.value,
        spec=spec,
        acceptance_tests=list(p.acceptance_tests),
        max_attempts=ctx.settings.job_max_attempts,
        created_at=now,
    )
    s.add(job)
    s.flush()
    job_event(s, job, "job.queued", now, {"spec": spec})
    return job


def job_event(s: Session, job: Job, event: str, now: datetime, extra: dict[str, Any] | None = None) -> None:
    """Append a job event to the audit log and queue it for webhooks (the caller's transaction)."""
    payload = {"job_id": job.id, "proposal_id": job.proposal_id, "state": job.state, "attempt": job.attempt}
    payload.update(extra or {})
    record(s, actor=None, action=event, subject=f"job:{job.id}", payload=payload, at=now)
    emit(s, event, payload, now)
