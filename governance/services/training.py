"""Training jobs the worker runs: a base model trained federatedly (the demo's, or an operator's), verified
like every version (an integrity report signed by the service's verifier) and, when asked, released as the
base that unlearning starts from. ``preparing`` tells the dashboard and the terminal what is still being
prepared and about how long it will take."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import col, select

from governance.db.engine import read_session, write_session
from governance.db.models import Job
from governance.domain.jobs import JobState, time_left
from governance.services.context import Ctx
from governance.services.job_queue import job_event

UNFINISHED = (JobState.QUEUED.value, JobState.RUNNING.value, JobState.VERIFYING.value)


def enqueue(
    ctx: Ctx,
    *,
    base_version: str,
    rounds: int,
    purpose: str,
    release_as_base: bool = False,
    num_threads: int | None = None,
) -> int:
    """Queue a federated training job from ``base_version`` (an initialised or trained version of the store);
    returns its id. A job that releases its model as the base is what unlearning starts from once it is done."""
    if not 1 <= rounds <= 1000:
        raise ValueError("rounds must be between 1 and 1000")
    now = ctx.clock.now()
    spec: dict[str, Any] = {
        "kind": "train",
        "base_version": base_version,
        "rounds": rounds,
        "purpose": purpose,
        "release_as_base": release_as_base,
        "runtime": ctx.settings.execution_mode,
    }
    if num_threads is not None:
        spec["num_threads"] = num_threads
    with write_session(ctx.engine) as s:
        job = Job(
            proposal_id=None,
            kind="train",
            state=JobState.QUEUED.value,
            spec=spec,
            acceptance_tests=[],
            max_attempts=ctx.settings.job_max_attempts,
            created_at=now,
        )
        s.add(job)
        s.flush()
        assert job.id is not None
        job_event(s, job, "job.queued", now, {"spec": spec})
        return job.id


@dataclass(frozen=True)
class Preparing:
    """A training job that releases a base model and has not finished: what the UI says is being prepared."""

    job_id: int
    purpose: str
    state: str
    phase: str | None
    round: int | None
    total_rounds: int | None
    seconds_left: float | None

    def describe(self) -> str:
        where = "queued" if self.state == JobState.QUEUED.value else self.state
        if self.state == JobState.RUNNING.value and self.round and self.total_rounds:
            where = f"{self.phase or 'training'}, round {self.round} of {self.total_rounds}"
        elif self.state == JobState.VERIFYING.value:
            where = "verifying the trained model"
        left = f", about {_human(self.seconds_left)} left" if self.seconds_left is not None else ""
        return f"{self.purpose} (job #{self.job_id}): {where}{left}"


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"


def preparing(ctx: Ctx, now: datetime | None = None) -> list[Preparing]:
    """Unfinished training jobs that release a base model, oldest first, with the time left estimated."""
    now = now or ctx.clock.now()
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(Job)
            .where(col(Job.kind) == "train", col(Job.state).in_(UNFINISHED))
            .order_by(col(Job.id))
            .limit(20)
        ).all()
        out = []
        for j in rows:
            if not (j.spec or {}).get("release_as_base"):
                continue
            p = j.progress or {}
            rnd, total = p.get("round"), p.get("total_rounds")
            left = (
                time_left(j.started_at, now, int(rnd), int(total))
                if j.state == JobState.RUNNING.value and j.started_at and rnd and total
                else None
            )
            assert j.id is not None
            out.append(
                Preparing(
                    j.id,
                    str(j.spec.get("purpose") or "a base model"),
                    j.state,
                    p.get("phase"),
                    rnd,
                    total,
                    left,
                )
            )
        return out


def base_pending(ctx: Ctx) -> int | None:
    """The id of an unfinished job that will release the base model, or None."""
    rows = preparing(ctx)
    return rows[0].job_id if rows else None
