"""Outcome statements of closed decisions (governance/domain/outcome.py). Every write is a new row: the
newest row of a proposal is its statement, the earlier ones its history."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, UniqueConstraint
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.bounds import MAX_TEXT
from governance.db.types import UTCDateTime


class OutcomeStatement(SQLModel, table=True):
    __tablename__ = "outcome_statement"
    __table_args__ = (UniqueConstraint("proposal_id", "version"),)  # one row per version
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    version: int  # 1 for the first statement, then one more per revision
    author_id: int = Field(foreign_key="member.id")
    decision: str = Field(max_length=32)  # the proposal's state when it was written
    decided: str = Field(max_length=MAX_TEXT)
    reasons: str = Field(max_length=MAX_TEXT)
    next_steps: str = Field(max_length=MAX_TEXT)
    written_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
