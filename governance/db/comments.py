"""The discussion on a proposal: comments, appended by members (the audit log commits to each body), one level
of replies, edits kept as revisions, reports that reviewers resolve by hiding the comment or dismissing them."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column
from sqlmodel import Field, SQLModel

import governance.db.base  # noqa: F401  (naming convention first)
from governance.db.base import utcnow
from governance.db.types import UTCDateTime

MAX_COMMENT = 4000
MAX_MODERATION_REASON = 500


class ProposalComment(SQLModel, table=True):
    __tablename__ = "proposal_comment"
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    author_id: int = Field(foreign_key="member.id")
    # a reply names the top-level comment it answers (one level of threading)
    parent_id: int | None = Field(default=None, foreign_key="proposal_comment.id")
    body: str = Field(max_length=MAX_COMMENT)  # emptied when its author deletes it
    created_at: datetime = Field(default_factory=utcnow, sa_column=Column(UTCDateTime(), nullable=False))
    edited_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    deleted_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    hidden_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    hidden_by: int | None = Field(default=None, foreign_key="member.id")
    hidden_reason: str | None = Field(default=None, max_length=MAX_MODERATION_REASON)


class ProposalCommentRevision(SQLModel, table=True):
    """A body a comment had before its author edited it (emptied when the author deletes the comment)."""

    __tablename__ = "proposal_comment_revision"
    id: int | None = Field(default=None, primary_key=True)
    comment_id: int = Field(foreign_key="proposal_comment.id", index=True)
    body: str = Field(max_length=MAX_COMMENT)
    written_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    replaced_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))


class ProposalCommentReport(SQLModel, table=True):
    """A member's report of a comment; open (``resolved_at`` empty) until a reviewer hides the comment or
    dismisses the reports."""

    __tablename__ = "proposal_comment_report"
    id: int | None = Field(default=None, primary_key=True)
    comment_id: int = Field(foreign_key="proposal_comment.id", index=True)
    reporter_id: int = Field(foreign_key="member.id")
    reason: str = Field(max_length=MAX_MODERATION_REASON)
    created_at: datetime = Field(sa_column=Column(UTCDateTime(), nullable=False))
    resolved_at: datetime | None = Field(default=None, sa_column=Column(UTCDateTime(), nullable=True))
    resolved_by: int | None = Field(default=None, foreign_key="member.id")
    resolution: str | None = Field(default=None, max_length=16)  # hidden | dismissed
