"""What the delegation API takes and returns (governance/web/api/delegations.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from annotated_types import MaxLen
from pydantic import BaseModel, ConfigDict, Field

from governance.bounds import MAX_ID, MAX_LIST, Word


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class DelegationCreate(_In):
    delegate: Word | None = Field(None, description="the delegate's handle (or give delegate_id)")
    delegate_id: Annotated[int, Field(ge=1, le=MAX_ID)] | None = Field(None, description="the delegate's id")
    scope: Word = Field("all", description="all | target_kind | category | tag")
    scope_value: Word = Field(
        "",
        description="for target_kind: data_source, category, behaviour or election; for category: its name; "
        "for tag: the tag",
    )


class DelegationPublic(BaseModel):
    id: int
    delegator_id: int
    delegator: str
    delegate_id: int
    delegate: str
    scope: str
    scope_value: str
    label: str = Field(description="the scope in words, e.g. 'category cooking' or 'everything'")
    created_at: datetime
    revoked_at: datetime | None
    open_polls_released: list[int] = Field(
        default_factory=list,
        description="on revocation: the open polls this delegation counted in, where it no longer does",
    )


class DelegationsPublic(BaseModel):
    given: list[DelegationPublic] = Field(
        description="your delegations (with revoked=true, revoked ones too)"
    )
    received: list[DelegationPublic] = Field(description="active delegations made to you")


class CarriedPoll(BaseModel):
    proposal_id: int
    title: str
    voting_deadline: datetime | None
    carried: int = Field(description="votes you cast for others in this poll (or would, by voting)")
    voted: bool = Field(description="whether you voted in it yourself")


class CarryPublic(BaseModel):
    """The votes a member carries: never what a delegator chose (a hidden tally stays hidden)."""

    member_id: int
    delegators: list[DelegationPublic] = Field(description="active delegations made to you")
    polls: list[CarriedPoll] = Field(description="open polls where you carry votes")


class PollDelegationPublic(BaseModel):
    """Delegation in one poll, as the caller sees it."""

    proposal_id: int
    frozen: bool = Field(description="whether the poll's delegations are frozen (its vote has opened)")
    delegations: int = Field(description="delegations that count in this poll")
    max_depth: int | None
    carried: int = Field(description="votes the caller casts for others here (or would, by voting)")
    my_delegate_id: int | None = Field(description="whom the caller's own vote goes to unless they vote")
    my_delegate: str | None = Field(None, description="that delegate's handle")
    tags: list[str]


class TagsIn(_In):
    tags: Annotated[list[Word], MaxLen(MAX_LIST)]
