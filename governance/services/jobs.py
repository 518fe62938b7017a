"""Durable unlearning jobs: enqueue on approval, claim with a lease, heartbeat, progress, verification,
completion, failure and retry, cancellation. Workers (governance/jobs/worker.py) call these
(the job is queued on approval by :mod:`governance.services.job_queue`); each is one
transaction, and each job event is appended to the audit log and queued for webhooks in that transaction.

Claims: on PostgreSQL ``SELECT ... FOR UPDATE SKIP LOCKED`` picks a job no other worker is claiming; on
SQLite the write transaction (``BEGIN IMMEDIATE``) already admits one claimer at a time. A job is claimable
when queued, or when its lease expired (its worker died); every state change after the claim checks that the
caller still holds the lease (``LeaseLost`` otherwise), so two workers never run one job at once and a worker
that lost its lease can never mark the job done.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import or_
from sqlmodel import Session, col, select

from governance.audit.keys import trusted_verifier
from governance.db.engine import read_session, write_session
from governance.db.models import Job, JobAttempt, Proposal
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.jobs import (
    FINAL_JOB_STATES,
    LEASED_STATES,
    JobState,
    check_job_transition,
    check_method_settings,
    error_summary,
    may_cancel,
    may_retry,
    sees_traces,
)
from governance.domain.proposals import Action, ProposalState
from governance.domain.review import SYSTEM, ActorView
from governance.domain.roles import Role
from governance.services import job_queue, ledger, lifecycle, registry
from governance.services.audit import record
from governance.services.context import Ctx
from governance.services.job_queue import job_event
from unlearning.contract import DEFAULT_METHOD


class LeaseLost(Conflict):
    """This worker no longer holds the job's lease (it expired and another worker may have taken it)."""


@dataclass(frozen=True)
class Claim:
    job_id: int
    attempt: int
    spec: dict[str, Any]
    acceptance_tests: list[dict[str, Any]]
    state: str  # running: (re)start the job; verifying: the model exists, verify it
    result: dict[str, Any] | None
    proposal_id: int | None


def public(j: Job) -> dict[str, Any]:
    return {
        "id": j.id,
        "proposal_id": j.proposal_id,
        "kind": j.kind,
        "state": j.state,
        "spec": j.spec,
        "acceptance_tests": j.acceptance_tests,
        "attempt": j.attempt,
        "max_attempts": j.max_attempts,
        "lease_owner": j.lease_owner,
        "lease_expires_at": j.lease_expires_at,
        "heartbeat_at": j.heartbeat_at,
        "progress": j.progress,
        "cost": j.cost,
        "model_version": j.model_version,
        "report": j.report,
        "error": j.error,
        "cancel_requested": j.cancel_requested,
        "cancel_reason": j.cancel_reason,
        "departed": departed_of(j.result),
        "created_at": j.created_at,
        "started_at": j.started_at,
        "finished_at": j.finished_at,
    }


def departed_of(result: dict[str, Any] | None) -> list[str]:
    """The nodes a job's run left out by design (departed members), as its result names them."""
    method = ((result or {}).get("metrics") or {}).get("method") or {}
    departed = method.get("departed") if isinstance(method, dict) else None
    return [str(d) for d in departed] if isinstance(departed, list) else []


# -- the proposal side ---------------------------------------------------------------------------------------


def _advance_proposal(
    s: Session, ctx: Ctx, job: Job, action: Action, now: datetime, actor: ActorView = SYSTEM
) -> None:
    """Move the job's proposal along the lifecycle, in the job change's transaction."""
    if job.proposal_id is not None:
        lifecycle.advance(s, ctx, job.proposal_id, actor, action, now)


def _proposal_state(s: Session, job: Job) -> ProposalState | None:
    if job.proposal_id is None:
        return None
    p = s.get(Proposal, job.proposal_id)
    return ProposalState(p.state) if p is not None else None


# -- the worker side -----------------------------------------------------------------------------------------


def claim(ctx: Ctx, worker: str) -> Claim | None:
    """Claim the oldest claimable job for ``worker`` with a fresh lease, or None."""
    now = ctx.clock.now()
    lease = timedelta(seconds=ctx.settings.job_lease_seconds)
    with write_session(ctx.engine) as s:
        q = (
            select(Job)
            .where(
                or_(
                    col(Job.state) == JobState.QUEUED.value,
                    (col(Job.state).in_([st.value for st in LEASED_STATES]))
                    & (col(Job.lease_expires_at) <= now),
                )
            )
            .order_by(col(Job.id))
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        job = s.exec(q).first()
        if job is None:
            return None
        assert job.id is not None
        resumed = JobState(job.state) in LEASED_STATES
        if job.state == JobState.QUEUED.value:
            check_job_transition(JobState.QUEUED, JobState.RUNNING)
            job.state = JobState.RUNNING.value
        job.attempt += 1
        job.lease_owner, job.lease_expires_at, job.heartbeat_at = worker, now + lease, now
        job.started_at = job.started_at or now
        s.add(job)
        s.add(
            JobAttempt(
                job_id=job.id, attempt=job.attempt, worker=worker, params=dict(job.spec), started_at=now
            )
        )
        s.flush()
        if _proposal_state(s, job) is ProposalState.JOB_QUEUED:
            _advance_proposal(s, ctx, job, Action.START_JOB, now)
        job_event(s, job, "job.started", now, {"worker": worker, "resumed": resumed})
        return Claim(
            job.id,
            job.attempt,
            dict(job.spec),
            list(job.acceptance_tests),
            job.state,
            job.result,
            job.proposal_id,
        )


def _owned(s: Session, job_id: int, worker: str, now: datetime) -> Job:
    job = s.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
    if job is None:
        raise NotFound(f"no job {job_id}")
    if job.lease_owner != worker or JobState(job.state) not in LEASED_STATES:
        raise LeaseLost(f"worker {worker} no longer holds job {job_id}")
    if job.lease_expires_at is not None and job.lease_expires_at <= now:
        raise LeaseLost(f"the lease of worker {worker} on job {job_id} expired")
    return job


def heartbeat(ctx: Ctx, job_id: int, worker: str, progress: dict[str, Any] | None = None) -> bool:
    """Renew the lease (and record progress); returns whether cancellation was requested."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        job.lease_expires_at = now + timedelta(seconds=ctx.settings.job_lease_seconds)
        job.heartbeat_at = now
        if progress is not None:
            job.progress = progress
        s.add(job)
        return job.cancel_requested


def record_milestone(ctx: Ctx, job_id: int, worker: str, progress: dict[str, Any]) -> None:
    """A progress milestone worth an audit entry and a webhook (a phase finished)."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        job.progress = progress
        s.add(job)
        job_event(s, job, "job.progress", now, {"progress": progress})


def start_verification(ctx: Ctx, job_id: int, worker: str, result: dict[str, Any]) -> None:
    """The unlearning run produced its model version: register it with the job and move to verifying."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        check_job_transition(JobState(job.state), JobState.VERIFYING)
        job.state = JobState.VERIFYING.value
        job.result = result
        job.model_version = result.get("model_version")
        job.cost = result.get("cost") or {}
        s.add(job)
        s.flush()
        row = registry.register_from_job(s, job, now, trusted_verifier(ctx.settings))  # the candidate enters
        if job.kind == "train" and row is not None:  # the ledger: what it trained on, each node's share
            from unlearning.api import stored_version

            manifest = stored_version(ctx.settings.artifact_dir, row.version).manifest
            ledger.record_training(s, row, manifest, now)
        if _proposal_state(s, job) is ProposalState.UNLEARNING:
            _advance_proposal(s, ctx, job, Action.START_VERIFICATION, now)
        finished: dict[str, Any] = {"model_version": job.model_version}
        if departed_of(result):  # nodes the job left out by design (a departed member, FedEraser)
            finished["departed"] = departed_of(result)
        job_event(s, job, "job.finished", now, finished)


def complete(ctx: Ctx, job_id: int, worker: str, report: dict[str, Any], passed: bool) -> None:
    """Store the verification report and settle job and proposal: verified or verification_failed."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        if job.model_version is None:
            raise Conflict("a job is only completed with a verified model version")
        check_job_transition(JobState(job.state), JobState.SUCCEEDED)
        job.state = JobState.SUCCEEDED.value
        job.report = report
        job.finished_at = now
        job.lease_owner = job.lease_expires_at = None
        s.add(job)
        s.flush()
        # the report (signed by the verifying worker) is attached to the candidate's registry entry
        registry.register_from_job(s, job, now, trusted_verifier(ctx.settings))
        _finish_attempt(s, job, "verified" if passed else "verification_failed", None, now)
        if _proposal_state(s, job) is ProposalState.VERIFYING:
            _advance_proposal(
                s, ctx, job, Action.PASS_VERIFICATION if passed else Action.FAIL_VERIFICATION, now
            )
        job_event(s, job, "verification.result", now, {"model_version": job.model_version, "passed": passed})


class PermanentJobError(Exception):
    """A failure that another attempt cannot fix (no base model, a target no node holds, invalid settings):
    the job fails at once, its message says what to fix, and a reviewer retries it once fixed."""


#: proposal states in which a job is under way; a job that fails for good moves them to job_failed
_RUNNING_PROPOSAL_STATES = (ProposalState.JOB_QUEUED, ProposalState.UNLEARNING, ProposalState.VERIFYING)


def fail_attempt(ctx: Ctx, job_id: int, worker: str, error: str, permanent: bool = False) -> str:
    """An attempt failed: queue the job again while attempts remain (a transient failure), else fail it, and
    its proposal becomes ``job_failed`` (nothing was verified; retriable). Returns the new state."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        job.error = error[:4000]
        job.lease_owner = job.lease_expires_at = None
        _finish_attempt(s, job, "failed", error, now)
        if job.attempt < job.max_attempts and not permanent:
            job.state = JobState.QUEUED.value
            s.add(job)
            job_event(s, job, "job.failed", now, {"error": error[:500], "will_retry": True})
            return job.state
        job.state = JobState.FAILED.value
        job.finished_at = now
        s.add(job)
        if _proposal_state(s, job) in _RUNNING_PROPOSAL_STATES:
            _advance_proposal(s, ctx, job, Action.FAIL_JOB, now)
        job_event(
            s, job, "job.failed", now, {"error": error[:500], "will_retry": False, "permanent": permanent}
        )
        return job.state


def release(ctx: Ctx, job_id: int, worker: str) -> None:
    """Graceful shutdown: hand the job back (queued again, or verifying if its model exists)."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        try:
            job = _owned(s, job_id, worker, now)
        except LeaseLost:
            return
        if job.state == JobState.RUNNING.value:
            job.state = JobState.QUEUED.value
        job.lease_owner, job.lease_expires_at = None, now  # verifying + expired lease: claimable at once
        s.add(job)
        _finish_attempt(s, job, "released", None, now)
        job_event(s, job, "job.released", now, {"worker": worker})


def mark_cancelled(ctx: Ctx, job_id: int, worker: str) -> None:
    """The worker stopped at a round boundary because cancellation was requested."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = _owned(s, job_id, worker, now)
        job.state = JobState.CANCELLED.value
        job.finished_at = now
        job.lease_owner = job.lease_expires_at = None
        s.add(job)
        _finish_attempt(s, job, "cancelled", job.cancel_reason, now)
        _stopped(s, ctx, job, now)
        job_event(s, job, "job.cancelled", now, {"reason": job.cancel_reason})


def _stopped(s: Session, ctx: Ctx, job: Job, now: datetime) -> None:
    """A stopped job whose proposal still waits for it (a consent withdrawal: it is never cancelled) leaves
    the proposal ``job_failed``: pending, retriable by a reviewer."""
    if _proposal_state(s, job) in _RUNNING_PROPOSAL_STATES:
        _advance_proposal(s, ctx, job, Action.FAIL_JOB, now)


def _finish_attempt(s: Session, job: Job, outcome: str, error: str | None, now: datetime) -> None:
    a = s.exec(
        select(JobAttempt).where(JobAttempt.job_id == job.id, JobAttempt.attempt == job.attempt)
    ).first()
    if a is not None and a.finished_at is None:
        a.finished_at, a.outcome, a.error = now, outcome, (error or None) and error[:4000]
        s.add(a)


# -- people ---------------------------------------------------------------------------------------------------


def request_cancel(ctx: Ctx, job_id: int, actor: ActorView, reason: str) -> dict[str, Any]:
    """Stop the job at its next round boundary (a queued job is cancelled at once) and cancel its proposal,
    recording why. A job that serves a proposal carries out an approval, so cancelling it is cancelling the
    approved proposal: the domain's rules apply (no recused member; a council majority, each member's support
    recorded; until the majority is reached the job runs on and the answer says ``"cancellation":
    "supported"``). A job of no proposal (a verification run) is stopped by one council member or admin."""
    reason = (reason or "").strip()
    if not reason:
        raise InvalidInput("a cancellation needs a reason", field="reason")
    if not may_cancel(JobState.QUEUED, actor.roles):
        raise PermissionDenied("only the council or an admin may cancel a job")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = s.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None:
            raise NotFound(f"no job {job_id}")
        if JobState(job.state) in FINAL_JOB_STATES:
            raise Conflict(f"the job is already {job.state}")
        p = s.get(Proposal, job.proposal_id) if job.proposal_id is not None else None
        # a withdrawal of consent is never cancelled: its job stops, and it stays pending and retriable
        if p is not None and not p.consent_withdrawal and _proposal_state(s, job) in _RUNNING_PROPOSAL_STATES:
            assert job.proposal_id is not None
            p = lifecycle.advance(s, ctx, job.proposal_id, actor, Action.CANCEL, now, reason=reason)
            if p.state != ProposalState.CANCELLED.value:
                return {**public(job), "cancellation": "supported"}
        job.cancel_requested, job.cancel_reason = True, reason
        if job.state == JobState.QUEUED.value:
            job.state, job.finished_at = JobState.CANCELLED.value, now
        s.add(job)
        record(
            s,
            actor=actor.member_id,
            action="job.cancel_requested",
            subject=f"job:{job.id}",
            payload={"job_id": job.id},
            sensitive={"reason": reason},
            at=now,
        )
        if job.state == JobState.CANCELLED.value:
            _stopped(s, ctx, job, now)
            job_event(s, job, "job.cancelled", now, {})
        return {**public(job), "cancellation": "requested"}


def retry(
    ctx: Ctx, job_id: int, actor: ActorView, method_config: dict[str, Any] | None, method: str | None = None
) -> dict[str, Any]:
    """A reviewer retries a failed job (or one whose verification failed) with other method settings."""
    if Role.REVIEWER not in actor.roles:
        raise PermissionDenied("only reviewers may retry a job")
    if method_config is not None and not isinstance(method_config, dict):
        raise InvalidInput("method_config must be an object", field="method_config")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        job = s.exec(select(Job).where(Job.id == job_id).with_for_update()).first()
        if job is None:
            raise NotFound(f"no job {job_id}")
        proposal_state = _proposal_state(s, job)
        verification_failed = proposal_state is ProposalState.VERIFICATION_FAILED
        job_failed = proposal_state is ProposalState.JOB_FAILED
        if not may_retry(JobState(job.state), verification_failed, actor.roles, job_failed):
            raise Conflict(
                f"only a failed job (or one whose verification failed) can be retried; this one is {job.state}"
            )
        spec = dict(job.spec)
        if not spec.get("base_version") and spec.get("kind", "unlearn") == "unlearn":
            # the base is resolved again: a job that failed for want of one runs once it has been released
            spec["base_version"] = job_queue.base_version(s, ctx)
        if method:
            spec["method"] = method
        if method_config is not None:
            spec["method_config"] = method_config
        # the settings the worker will use: unknown methods or settings are refused here (API and UI alike)
        check_method_settings(spec.get("method") or DEFAULT_METHOD, spec.get("method_config") or {})
        job.spec = spec
        job.state = JobState.QUEUED.value
        job.max_attempts = job.attempt + ctx.settings.job_max_attempts
        job.error = job.result = job.report = job.model_version = None
        job.cancel_requested, job.finished_at = False, None
        s.add(job)
        record(
            s,
            actor=actor.member_id,
            action="job.retried",
            subject=f"job:{job.id}",
            payload={
                "job_id": job.id,
                "method": spec["method"],
                "method_config": spec.get("method_config", {}),
            },
            at=now,
        )
        if proposal_state in (ProposalState.VERIFICATION_FAILED, ProposalState.JOB_FAILED):
            _advance_proposal(s, ctx, job, Action.RETRY_JOB, now, actor)
        job_event(s, job, "job.queued", now, {"retry": True})
        return public(job)


def dead_attempts(ctx: Ctx, job_id: int) -> list[int]:
    """Attempts of a job that ended without a registered model (their worker died, failed or let go)."""
    with read_session(ctx.engine) as s:
        rows = s.exec(select(JobAttempt.attempt, JobAttempt.outcome).where(JobAttempt.job_id == job_id)).all()
        job = s.get(Job, job_id)
        current = job.attempt if job is not None else None
        return [
            n for n, outcome in rows if n != current and outcome not in ("verified", "verification_failed")
        ]


def _for_viewer(out: dict[str, Any], viewer: ActorView | None) -> dict[str, Any]:
    """A job as ``viewer`` may see it: members get an error summary, operators (admins; ``None``: the
    service itself) the full traceback."""
    if viewer is None or sees_traces(viewer.roles):
        return out
    out["error"] = error_summary(out.get("error"))
    for a in out.get("attempts", []):
        a["error"] = error_summary(a.get("error"))
    return out


def get(ctx: Ctx, job_id: int, viewer: ActorView | None = None) -> dict[str, Any]:
    with read_session(ctx.engine) as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job {job_id}")
        out = public(job)
        out["attempts"] = [
            {
                "attempt": a.attempt,
                "worker": a.worker,
                "params": a.params,
                "started_at": a.started_at,
                "finished_at": a.finished_at,
                "outcome": a.outcome,
                "error": a.error,
            }
            for a in s.exec(
                select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(col(JobAttempt.attempt))
            ).all()
        ]
        return _for_viewer(out, viewer)


def list_jobs(
    ctx: Ctx,
    state: str | None = None,
    proposal_id: int | None = None,
    limit: int = 50,
    viewer: ActorView | None = None,
) -> list[dict[str, Any]]:
    if state is not None and state not in {st.value for st in JobState}:
        raise InvalidInput(f"unknown job state {state!r}", field="state")
    with read_session(ctx.engine) as s:
        q = select(Job).order_by(col(Job.id).desc()).limit(limit)
        if state:
            q = q.where(Job.state == state)
        if proposal_id is not None:
            q = q.where(Job.proposal_id == proposal_id)
        return [_for_viewer(public(j), viewer) for j in s.exec(q).all()]
