"""Unlearning jobs, webhooks and notifications: the pure rules.

A job is a durable row that workers claim with a lease::

    queued -> running -> verifying -> succeeded
                     \\-> failed (attempts left: back to queued) | cancelled
    a running or verifying job whose lease expired is claimable again (its worker died)

The proposal follows its job: approved -> job_queued -> unlearning -> verifying -> verified |
verification_failed (governance/domain/proposals.py).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from governance.domain.errors import InvalidInput, InvalidTransition
from governance.domain.roles import Role
from unlearning import contract


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    VERIFYING = "verifying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINAL_JOB_STATES = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
LEASED_STATES = frozenset({JobState.RUNNING, JobState.VERIFYING})

JOB_TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.VERIFYING, JobState.QUEUED, JobState.FAILED, JobState.CANCELLED}),
    JobState.VERIFYING: frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.QUEUED, JobState.CANCELLED}),
    JobState.FAILED: frozenset({JobState.QUEUED}),  # a reviewer's retry, with other settings
    JobState.SUCCEEDED: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def check_job_transition(current: JobState, new: JobState) -> None:
    if new not in JOB_TRANSITIONS[current]:
        raise InvalidTransition(f"a {current.value} job cannot become {new.value}")


def claimable(state: JobState, lease_expires_at: datetime | None, now: datetime) -> bool:
    """Queued jobs, and leased jobs whose worker stopped renewing the lease."""
    if state is JobState.QUEUED:
        return True
    return state in LEASED_STATES and (lease_expires_at is None or lease_expires_at <= now)


def may_cancel(state: JobState, roles: frozenset[Role]) -> bool:
    """The council or an admin may cancel a job that has not finished."""
    return bool({Role.COUNCIL, Role.ADMIN} & roles) and state not in FINAL_JOB_STATES


def may_retry(
    state: JobState, verification_failed: bool, roles: frozenset[Role], job_failed: bool = False
) -> bool:
    """A reviewer may retry a failed job, one whose candidate failed verification, or a stopped job whose
    proposal waits for it (a consent withdrawal's job that was stopped: the withdrawal stays pending)."""
    return Role.REVIEWER in roles and (
        state is JobState.FAILED
        or (state is JobState.SUCCEEDED and verification_failed)
        or (state is JobState.CANCELLED and job_failed)
    )


def check_method_settings(method: str, settings: Any) -> dict[str, Any]:
    """A job's unlearning method and its settings, validated once, by the contract: an unknown method is an
    error of ``method``; an unknown setting, a wrong type or a value out of bounds one of ``method_config``
    (the message names the setting)."""
    try:
        return contract.validate_method_settings(method, settings)
    except contract.ContractError as exc:
        raise InvalidInput(exc.message, field=exc.field) from None


# -- webhooks --------------------------------------------------------------------------------------------------

WEBHOOK_EVENTS = frozenset(
    {
        "proposal.state_changed",
        "proposal.outcome_written",  # an outcome statement written or revised (services/outcomes.py)
        "job.queued",
        "job.started",
        "job.progress",
        "job.finished",
        "job.failed",
        "job.cancelled",
        "verification.result",
        "release",
    }
)
RETRY_SCHEDULE = (
    timedelta(seconds=10),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
)
SIGNATURE_HEADER = "X-Commons-Signature"
REPLAY_WINDOW = timedelta(minutes=5)


def parse_events(events: list[str]) -> list[str]:
    unknown = sorted(set(events) - WEBHOOK_EVENTS)
    if unknown:
        raise InvalidInput(
            f"unknown webhook event(s): {', '.join(unknown)}; known: {', '.join(sorted(WEBHOOK_EVENTS))}",
            field="events",
        )
    if not events:
        raise InvalidInput("subscribe to at least one event", field="events")
    return sorted(set(events))


def next_attempt_delay(attempts_made: int) -> timedelta | None:
    """How long to wait before the next delivery attempt, or None when the delivery is given up."""
    if attempts_made < 1:
        return timedelta(0)
    if attempts_made > len(RETRY_SCHEDULE):
        return None
    return RETRY_SCHEDULE[attempts_made - 1]


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header value: ``t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>." + body>``."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, now: datetime) -> bool:
    """What a receiver does: recompute the HMAC and refuse stale timestamps (replay protection)."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        ts = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs(now.timestamp() - ts) > REPLAY_WINDOW.total_seconds():
        return False
    return hmac.compare_digest(sign(secret, ts, body), header)


# -- errors, as members see them ---------------------------------------------------------------------------------

_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][^\s\\/:'\"]+)+[\\/]?")
MAX_ERROR_SUMMARY = 300


def error_summary(error: str | None) -> str | None:
    """What a member sees of a job's error: its last line (the exception and its message), with file system
    paths cut to their last part; operators (admins) see the whole trace."""
    if not error:
        return error
    lines = [ln.strip() for ln in error.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    last = _PATH.sub(lambda m: "…/" + re.split(r"[\\/]", m.group(0).rstrip("\\/"))[-1], last)
    return last[:MAX_ERROR_SUMMARY]


def sees_traces(roles: frozenset[Role]) -> bool:
    """Operators (admins) see jobs' full tracebacks, with the server's paths; everyone else a summary."""
    return Role.ADMIN in roles


def time_left(started: datetime, now: datetime, done: int, total: int) -> float | None:
    """Seconds left, estimated from the pace so far (``done`` of ``total`` steps since ``started``); None
    before the first step is done."""
    if done <= 0 or total <= 0 or done > total:
        return None
    if started.tzinfo is None and now.tzinfo is not None:
        started = started.replace(tzinfo=now.tzinfo)
    elapsed = max(0.0, (now - started).total_seconds())
    return elapsed / done * (total - done)
