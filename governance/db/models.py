"""SQLModel tables of the governance core. Alembic migrations create them (migrations/versions)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable), **kw)


class Member(SQLModel, table=True):
    __tablename__ = "member"
    id: int | None = Field(default=None, primary_key=True)
    handle: str = Field(max_length=64, unique=True, index=True)
    display_name: str = Field(max_length=200)
    email: str | None = Field(default=None, max_length=320)
    password_hash: str | None = Field(default=None, max_length=256)
    active: bool = Field(default=True)
    created_at: datetime = _ts(default_factory=utcnow)


class MemberRole(SQLModel, table=True):
    __tablename__ = "member_role"
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    role: str = Field(max_length=16, primary_key=True)
    granted_at: datetime = _ts(default_factory=utcnow)
    granted_by: int | None = Field(default=None, foreign_key="member.id")
    election_id: int | None = Field(default=None, foreign_key="proposal.id")


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_token"
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    name: str = Field(max_length=100)
    prefix: str = Field(max_length=16)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    created_at: datetime = _ts(default_factory=utcnow)
    last_used_at: datetime | None = _ts(nullable=True, default=None)
    revoked_at: datetime | None = _ts(nullable=True, default=None)


class DataSource(SQLModel, table=True):
    __tablename__ = "data_source"
    __table_args__ = (UniqueConstraint("owner_id", "name"),)
    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="member.id", index=True)
    name: str = Field(max_length=200)
    node_id: str = Field(max_length=200)
    content_hash: str = Field(max_length=64)
    description: str = Field(default="", max_length=4000)
    consent_state: str = Field(default="granted", max_length=32)
    created_at: datetime = _ts(default_factory=utcnow)
    # the owner's protected strings, as a commitment only (unlearning.verification.protected): how many, and
    # the salted sha256 of the list the node keeps; the strings and the salt never reach the service
    protected_count: int | None = Field(default=None)
    protected_sha256: str | None = Field(default=None, max_length=64)


class Proposal(SQLModel, table=True):
    __tablename__ = "proposal"
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=16, index=True)
    title: str = Field(max_length=200)
    proposer_id: int = Field(foreign_key="member.id", index=True)
    state: str = Field(max_length=32, index=True)
    target_kind: str | None = Field(default=None, max_length=16)
    data_source_id: int | None = Field(default=None, foreign_key="data_source.id", index=True)
    target: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    election_role: str | None = Field(default=None, max_length=16)
    election_candidate_id: int | None = Field(default=None, foreign_key="member.id")
    rationale: str = Field(default="", max_length=20000)
    evidence: str = Field(default="", max_length=20000)
    acceptance_tests: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    consent_withdrawal: bool = Field(default=False)
    secret_tally: bool = Field(default=False)
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    submitted_at: datetime | None = _ts(nullable=True, default=None)
    triage_deadline: datetime | None = _ts(nullable=True, default=None)
    voting_opened_at: datetime | None = _ts(nullable=True, default=None)
    voting_deadline: datetime | None = _ts(nullable=True, default=None)
    deadline_extended: bool = Field(default=False)
    vote_outcome: str | None = Field(default=None, max_length=32)
    block_on_record: bool = Field(default=False)
    council_round: int = Field(default=0)
    council_deadline: datetime | None = _ts(nullable=True, default=None)
    pending_outcome: str | None = Field(default=None, max_length=16)
    appeal_deadline: datetime | None = _ts(nullable=True, default=None)
    appealed: bool = Field(default=False)
    appeal_of: str | None = Field(default=None, max_length=16)
    closed_at: datetime | None = _ts(nullable=True, default=None)


class ProposalEvent(SQLModel, table=True):
    """The readable history of a proposal (the audit log holds the tamper-evident copy)."""

    __tablename__ = "proposal_event"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    actor_id: int | None = Field(default=None, foreign_key="member.id")
    action: str = Field(max_length=32)
    from_state: str | None = Field(default=None, max_length=32)
    to_state: str | None = Field(default=None, max_length=32)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    at: datetime = _ts(default_factory=utcnow)


class TriageDecision(SQLModel, table=True):
    __tablename__ = "triage_decision"
    __table_args__ = (UniqueConstraint("proposal_id", "reviewer_id"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    reviewer_id: int = Field(foreign_key="member.id")
    decision: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=4000)
    at: datetime = _ts(default_factory=utcnow)


class Elector(SQLModel, table=True):
    """The electorate of a vote, frozen when voting opens."""

    __tablename__ = "elector"
    proposal_id: int = Field(foreign_key="proposal.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id", primary_key=True)


class VoteRecord(SQLModel, table=True):
    """Every vote and vote change, appended; never updated."""

    __tablename__ = "vote_record"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    member_id: int = Field(foreign_key="member.id")
    choice: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=4000)
    cast_at: datetime = _ts(default_factory=utcnow)


class CurrentVote(SQLModel, table=True):
    """The vote that counts: the primary key makes one member, one vote per proposal a database rule."""

    __tablename__ = "current_vote"
    proposal_id: int = Field(foreign_key="proposal.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    record_id: int = Field(foreign_key="vote_record.id", unique=True)
    choice: str = Field(max_length=16)
    cast_at: datetime = _ts(default_factory=utcnow)


class CouncilDecision(SQLModel, table=True):
    __tablename__ = "council_decision"
    __table_args__ = (UniqueConstraint("proposal_id", "round", "member_id"),)
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    round: int = Field(default=0)
    member_id: int = Field(foreign_key="member.id")
    decision: str = Field(max_length=16)
    reason: str | None = Field(default=None, max_length=4000)
    at: datetime = _ts(default_factory=utcnow)


class Appeal(SQLModel, table=True):
    __tablename__ = "appeal"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", unique=True)  # once per proposal
    appellant_id: int = Field(foreign_key="member.id")
    appeal_of: str = Field(max_length=16)
    reason: str = Field(max_length=4000)
    at: datetime = _ts(default_factory=utcnow)


class Conflict(SQLModel, table=True):
    __tablename__ = "conflict_of_interest"
    proposal_id: int = Field(foreign_key="proposal.id", primary_key=True)
    member_id: int = Field(foreign_key="member.id", primary_key=True)
    reason: str = Field(max_length=4000)
    at: datetime = _ts(default_factory=utcnow)


Index("ix_vote_record_proposal_member", VoteRecord.proposal_id, VoteRecord.member_id)  # type: ignore[arg-type]


class Job(SQLModel, table=True):
    """A durable unlearning job; workers claim it with a lease (governance/services/jobs.py)."""

    __tablename__ = "job"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int | None = Field(default=None, foreign_key="proposal.id", index=True)
    kind: str = Field(default="unlearn", max_length=16)
    state: str = Field(max_length=16, index=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    acceptance_tests: list[dict[str, Any]] = Field(
        default_factory=list, sa_column=Column(JSON, nullable=False)
    )
    attempt: int = Field(default=0)
    max_attempts: int = Field(default=3)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_expires_at: datetime | None = _ts(nullable=True, default=None)
    heartbeat_at: datetime | None = _ts(nullable=True, default=None)
    progress: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    cost: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    result: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    report: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    model_version: str | None = Field(default=None, max_length=100)
    error: str | None = Field(default=None, max_length=4000)
    cancel_requested: bool = Field(default=False)
    cancel_reason: str | None = Field(default=None, max_length=4000)
    created_at: datetime = _ts(default_factory=utcnow)
    started_at: datetime | None = _ts(nullable=True, default=None)
    finished_at: datetime | None = _ts(nullable=True, default=None)


class JobAttempt(SQLModel, table=True):
    """Every attempt of a job and the settings it ran with."""

    __tablename__ = "job_attempt"
    __table_args__ = (UniqueConstraint("job_id", "attempt"),)
    id: int | None = Field(default=None, primary_key=True)
    job_id: int = Field(foreign_key="job.id", index=True)
    attempt: int
    worker: str = Field(max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    started_at: datetime = _ts(default_factory=utcnow)
    finished_at: datetime | None = _ts(nullable=True, default=None)
    outcome: str | None = Field(default=None, max_length=32)
    error: str | None = Field(default=None, max_length=4000)


class Webhook(SQLModel, table=True):
    __tablename__ = "webhook"
    id: int | None = Field(default=None, primary_key=True)
    url: str = Field(max_length=2000)
    secret: str = Field(max_length=200)
    events: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    active: bool = Field(default=True)
    created_by: int | None = Field(default=None, foreign_key="member.id")
    created_at: datetime = _ts(default_factory=utcnow)


class WebhookDelivery(SQLModel, table=True):
    """One event for one webhook (written in the transaction of the event: an outbox), and its attempts."""

    __tablename__ = "webhook_delivery"
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: int = Field(foreign_key="webhook.id", index=True)
    event: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    state: str = Field(default="pending", max_length=16, index=True)  # pending | delivered | failed
    attempts: int = Field(default=0)
    next_attempt_at: datetime | None = _ts(nullable=True, default=None)
    last_status: int | None = Field(default=None)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = _ts(default_factory=utcnow)
    delivered_at: datetime | None = _ts(nullable=True, default=None)


class WebhookAttempt(SQLModel, table=True):
    __tablename__ = "webhook_attempt"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_delivery.id", index=True)
    at: datetime = _ts(default_factory=utcnow)
    status_code: int | None = Field(default=None)
    error: str | None = Field(default=None, max_length=2000)
    duration_ms: int = Field(default=0)


class Notification(SQLModel, table=True):
    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("member_id", "dedupe_key"),)
    id: int | None = Field(default=None, primary_key=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    kind: str = Field(max_length=32)
    message: str = Field(max_length=2000)
    proposal_id: int | None = Field(default=None, foreign_key="proposal.id")
    dedupe_key: str = Field(max_length=200)
    created_at: datetime = _ts(default_factory=utcnow)
    read_at: datetime | None = _ts(nullable=True, default=None)


class UiSession(SQLModel, table=True):
    """A browser signed in to the web UI: its cookie carries a random token, this row the token's hash.
    Signing out deletes the row, so a copied cookie dies with the session; a new password ends every session
    (``password_fp`` no longer matches)."""

    __tablename__ = "ui_session"
    id: int | None = Field(default=None, primary_key=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    member_id: int = Field(foreign_key="member.id", index=True)
    password_fp: str = Field(max_length=16)
    created_at: datetime = _ts(default_factory=utcnow)
    expires_at: datetime = _ts()


class LoginAttempt(SQLModel, table=True):
    """A failed sign-in, kept for the limits' window (per handle, per address, overall): the limits hold
    across restarts and across the processes of one deployment."""

    __tablename__ = "login_attempt"
    __table_args__ = (Index("ix_login_attempt_at", "at"),)
    id: int | None = Field(default=None, primary_key=True)
    handle: str = Field(max_length=64, index=True)
    address: str = Field(max_length=64, index=True)
    at: datetime = _ts(default_factory=utcnow)
