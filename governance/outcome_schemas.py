"""The outcome statement's API schemas (governance/services/outcomes.py; docs/governance.md)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from governance.bounds import LongText


class OutcomeIn(BaseModel):
    """A statement to write or revise; each part is required, at most 4,000 characters."""

    model_config = ConfigDict(extra="forbid")
    decided: LongText = Field(default="", description="what was decided")
    reasons: LongText = Field(default="", description="why")
    next_steps: LongText = Field(default="", description="what happens next")


class OutcomePublic(BaseModel):
    version: int = Field(description="1 for the first statement, one more per revision")
    decided: str
    reasons: str
    next_steps: str
    author_id: int
    author: str = Field(description="the writer's handle")
    decision: str = Field(description="the proposal's state when it was written")
    written_at: datetime


class OutcomeStatus(BaseModel):
    """A proposal's outcome statement, or who is expected to write it."""

    closed: bool = Field(description="whether the decision is closed (the statement can be written)")
    statement: OutcomePublic | None = Field(description="the current statement (none written yet: null)")
    history: list[OutcomePublic] = Field(default_factory=list, description="earlier versions, newest first")
    expected_from: str = Field(description="who writes it, in words")
    writer_ids: list[int] = Field(
        default_factory=list, description="the members who may write it now (author, council or reviewers)"
    )
    may_write: bool = Field(default=False, description="whether the caller may write or revise it")
