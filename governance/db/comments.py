"""The discussion on a proposal: comments, appended by members (the audit log commits to each body)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime

MAX_COMMENT = 4000


class ProposalComment(SQLModel, table=True):
    __tablename__ = "proposal_comment"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    author_id: int = Field(foreign_key="member.id")
    body: str = Field(max_length=MAX_COMMENT)
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
