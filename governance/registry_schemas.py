"""What the model-registry and release-gate API takes and returns (one family per entity; rows never leave)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field

from governance.bounds import JsonObject, Name, OptionalId, Text

VERSION_PATTERN = r"^mv-[0-9a-f]{6,61}$"
HASH_PATTERN = r"^[0-9a-f]{64}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ModelVersionBase(BaseModel):
    version: str = Field(pattern=VERSION_PATTERN, description="the artifact store's version id (mv-...)")
    content_hash: str = Field(pattern=HASH_PATTERN, description="sha256 over the version's files")
    parent_version: str | None = Field(default=None, pattern=VERSION_PATTERN)
    task: Annotated[Name, MaxLen(100)]
    kind: str = Field(default="train", pattern=r"^(init|train|unlearn)$")
    proposal_id: OptionalId = Field(default=None, description="the proposal whose job produced it")
    job_id: Name | None = None


class ModelVersionCreate(ModelVersionBase, _In):
    pass


class VerificationPublic(BaseModel):
    id: int
    candidate_hash: str
    policy_hash: str
    config_hash: str
    seed: int
    precision: str
    libraries: dict[str, Any]
    passed: bool
    summary: str
    created_at: datetime


class ModelVersionPublic(ModelVersionBase):
    state: str
    created_at: datetime
    updated_at: datetime
    released_at: datetime | None
    verification: VerificationPublic | None = None


class ModelVersionDetail(ModelVersionPublic):
    lineage: list[str]  # parent, grandparent, ... (registered versions)
    report: dict[str, Any] | None = None  # the latest verification report valid for this exact model


class ReportIn(_In):
    report: JsonObject = Field(description="a VerificationReport as JSON (unlearning.verification)")


class ReasonIn(_In):
    reason: Text = ""


class ProposalCovered(BaseModel):
    id: int
    title: str
    state: str
    role: str  # "produced" (the version's own proposal) | "regression" (an earlier unlearning of its lineage)


class VerdictPublic(BaseModel):
    version: str
    content_hash: str
    verdict: str  # allow | deny | pending
    reasons: list[str]
    state: str
    proposals: list[ProposalCovered]
    tests: list[dict[str, Any]]
    regressions: list[dict[str, Any]]
    report_key: dict[str, Any] | None  # candidate_hash, policy_hash, config_hash, seed, precision, libraries
    decided_at: datetime
    audit_seq: int  # the audit entry recording this verdict
    checkpoint: dict[str, Any]  # the signed checkpoint the proofs lead to
    # inclusion proofs of the verdict's entries (model registration, reports, verdict)
    proofs: list[dict[str, Any]]
    report_url: str | None = None  # the HTML report (GET, same token)
    # a council override, when the allow is one (never a plain allow): id, reason, approvals, council_size
    override: dict[str, Any] | None = None


class OverrideIn(_In):
    reason: str = Field(
        min_length=10, max_length=4000, description="why the council releases against the gate (written)"
    )


class OverridePublic(BaseModel):
    id: int
    version: str
    content_hash: str
    reason: str
    requested_by: int
    approvals: list[int]
    council_size: int
    state: str  # open | granted
    created_at: datetime
    granted_at: datetime | None
