"""What the API takes and returns. One family per entity: XBase -> XCreate / XUpdate -> XPublic.

Table rows (governance/db/models.py) are never returned; services build these from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from governance.bounds import MAX_LIST, JsonObject, LongText, Name, Text, Title, Word
from governance.outcome_schemas import OutcomeStatus

HANDLE_PATTERN = r"^[a-z0-9][a-z0-9_.-]{1,63}$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class MemberCreate(_In):
    handle: str = Field(pattern=HANDLE_PATTERN, description="lower-case login name, 2-64 characters")
    display_name: Name
    email: Annotated[Text, MaxLen(320)] | None = None
    roles: Annotated[list[Word], MaxLen(MAX_LIST)] = Field(default_factory=lambda: ["member"])


class MemberPublic(BaseModel):
    id: int
    handle: str
    display_name: str
    roles: list[str]
    active: bool
    created_at: datetime


class RolesUpdate(_In):
    roles: Annotated[list[Word], MaxLen(MAX_LIST)]


class TokenCreate(_In):
    name: Annotated[Name, MaxLen(100)]


class TokenPublic(BaseModel):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="shown once; store it now")


class DataSourceCreate(_In):
    name: Name
    node_id: Name
    content_hash: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 (hex) of the source's manifest")
    description: Text = ""
    protected_count: int | None = Field(
        default=None, ge=0, le=1000, description="how many protected strings the owner declared on the node"
    )
    protected_sha256: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="salted sha256 of the protected strings (`commons data-source register --protected`)",
    )

    @model_validator(mode="after")
    def _protected_pair(self) -> DataSourceCreate:
        if (self.protected_count is None) != (self.protected_sha256 is None):
            raise ValueError("protected_count and protected_sha256 go together (a commitment is both)")
        return self


class DataSourcePublic(BaseModel):
    id: int
    owner_id: int
    name: str
    node_id: str
    content_hash: str
    description: str
    consent_state: str
    created_at: datetime
    protected_count: int | None = None  # the commitment to the owner's protected strings, when registered
    protected_sha256: str | None = None


class AcceptanceTestIn(_In):
    metric: Word
    comparator: Word
    threshold: float
    relative_to_reference: bool = False


class ProposalCreate(_In):
    kind: Word = Field(default="unlearning", description="unlearning or election")
    title: Title
    target: JsonObject | None = Field(
        default=None,
        description="{kind: data_source, data_source_id} | {kind: category, category} | "
        "{kind: behaviour, examples: [{prompt, completion}], pattern}",
    )
    election: JsonObject | None = Field(default=None, description="{role: reviewer|council, candidate_id}")
    rationale: LongText = ""
    evidence: LongText = ""
    acceptance_tests: Annotated[list[JsonObject], MaxLen(MAX_LIST)] | None = Field(
        default=None, description="omit to start from the target kind's defaults"
    )
    consent_withdrawal: bool = False
    secret_tally: bool = False
    submit: bool = Field(default=False, description="submit at once instead of keeping a draft")


class ProposalUpdate(_In):
    title: Title | None = None
    rationale: LongText | None = None
    evidence: LongText | None = None
    target: JsonObject | None = None
    acceptance_tests: Annotated[list[JsonObject], MaxLen(MAX_LIST)] | None = None
    secret_tally: bool | None = None


class ReasonIn(_In):
    reason: Text = ""


class TriageIn(_In):
    decision: Word = Field(description="approve or reject (reject needs a reason)")
    reason: Text = ""


class VoteIn(_In):
    choice: Word = Field(description="approve, object, abstain or block (object and block need a reason)")
    reason: Text = ""


class CouncilIn(_In):
    decision: Word = Field(description="ratify or veto (veto needs a reason)")
    reason: Text = ""


class VotePublic(BaseModel):
    proposal_id: int
    member_id: int
    choice: str
    reason: str | None
    cast_at: datetime


class TallyPublic(BaseModel):
    proposal_id: int
    hidden: bool = Field(description="true while a secret tally's vote is open: counts are withheld")
    electorate: int
    turnout: int
    approve: int | None
    object: int | None
    abstain: int | None
    block: int | None
    quorum_reached: bool | None
    support: float | None
    outcome: str | None
    voting_deadline: datetime | None
    closed: bool
    direct: dict[str, int] | None = Field(
        None,
        description="of the counts, the votes members cast themselves, per choice (withheld while hidden)",
    )
    delegated: dict[str, int] | None = Field(
        None,
        description="of the counts, the votes delegates cast for others, per choice (null: no delegation "
        "counts in this poll, or withheld while hidden)",
    )


class EventPublic(BaseModel):
    action: str
    actor_id: int | None
    from_state: str | None
    to_state: str | None
    payload: dict[str, Any]
    at: datetime


class ProposalPublic(BaseModel):
    id: int
    kind: str
    title: str
    state: str
    proposer_id: int
    target: dict[str, Any] | None
    election_role: str | None
    election_candidate_id: int | None
    rationale: str
    evidence: str
    acceptance_tests: list[dict[str, Any]]
    consent_withdrawal: bool
    secret_tally: bool
    created_at: datetime
    updated_at: datetime
    triage_deadline: datetime | None
    voting_deadline: datetime | None
    council_deadline: datetime | None
    appeal_deadline: datetime | None
    pending_outcome: str | None
    block_on_record: bool
    vote_outcome: str | None
    appealed: bool
    appeal_of: str | None = Field(
        default=None,
        description="while an appeal is heard: the outcome appealed (rejected, vetoed, approved)",
    )
    closed_at: datetime | None
    unmeasurable_tests: dict[str, str] = Field(
        default_factory=dict,
        description="acceptance tests (by metric) that cannot be measured on this community's model and dataset, "
        "each with why: voted, such a test never counts as passed (one proposal: create, edit, show; empty in "
        "lists)",
    )


class DecisionPublic(BaseModel):
    member_id: int
    decision: str
    reason: str | None
    at: datetime
    round: int = 0


class ProposalDetail(ProposalPublic):
    history: list[EventPublic]
    triage: list[DecisionPublic]
    council: list[DecisionPublic]
    conflicts: list[int]
    tally: TallyPublic | None
    allowed_actions: list[str] = Field(description="what the caller may do now")
    outcome: OutcomeStatus | None = Field(
        default=None, description="the outcome statement of a closed decision, or who is expected to write it"
    )


class ErrorPublic(BaseModel):
    status_code: int
    error: str
    detail: str
    field: str | None = None
    request_id: str | None = Field(
        default=None, description="quote it when reporting a problem: the log has it"
    )

    @field_validator("detail")
    @classmethod
    def _nonempty(cls, v: str) -> str:
        return v or "error"
