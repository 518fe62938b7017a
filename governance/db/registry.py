"""SQLModel tables of the model registry: model versions with lineage and state, and verification reports.

The artifacts themselves live in the artifact store (unlearning.artifacts); a row names a version by its id and
content hash. A verification report row is keyed by the candidate's content hash and the policy hash; the gate
never uses a report whose hash differs from the version's (see governance/services/gate.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime


def _ts(nullable: bool = False, **kw: Any) -> Any:
    return Field(sa_column=Column(UTCDateTime(), nullable=nullable), **kw)


class ModelVersionRow(SQLModel, table=True):
    __tablename__ = "model_version"
    version: str = Field(primary_key=True, max_length=64)
    content_hash: str = Field(max_length=64, index=True)
    parent_version: str | None = Field(default=None, max_length=64, index=True)
    task: str = Field(max_length=100)
    kind: str = Field(default="train", max_length=16)  # init | train | unlearn
    proposal_id: int | None = Field(default=None, foreign_key="proposal.id", index=True)
    job_id: str | None = Field(default=None, max_length=200)
    state: str = Field(max_length=16, index=True)  # candidate | verified | failed | released | rejected
    registered_by: int | None = Field(default=None, foreign_key="member.id")
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)
    updated_at: datetime = _ts(default_factory=utcnow)
    released_at: datetime | None = _ts(nullable=True, default=None)


class VerificationReportRow(SQLModel, table=True):
    __tablename__ = "verification_report"
    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(foreign_key="model_version.version", index=True, max_length=64)
    candidate_hash: str = Field(max_length=64)
    policy_hash: str = Field(max_length=64, index=True)
    config_hash: str = Field(max_length=64)
    seed: int = Field(default=0)
    precision: str = Field(max_length=16)
    libraries: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    passed: bool = Field(default=False)
    summary: str = Field(default="", max_length=4000)
    report: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts(default_factory=utcnow)


class ReleaseOverride(SQLModel, table=True):
    """A council override of the gate for one model (version and content hash): a written reason, granted once a
    majority of the council approved it (governance/services/gate.py). Every verdict and bundle shows it."""

    __tablename__ = "release_override"
    id: int | None = Field(default=None, primary_key=True)
    model_version: str = Field(foreign_key="model_version.version", index=True, max_length=64)
    content_hash: str = Field(max_length=64)
    reason: str = Field(max_length=4000)
    requested_by: int = Field(foreign_key="member.id")
    approvals: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    council_size: int = Field(default=0)
    state: str = Field(default="open", max_length=16, index=True)  # open | granted
    created_at: datetime = _ts(default_factory=utcnow)
    granted_at: datetime | None = _ts(nullable=True, default=None)
