"""The discussion on a proposal: members comment while it is open; every comment is audited."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel
from sqlmodel import col, select

from governance.db.comments import MAX_COMMENT, ProposalComment
from governance.db.engine import read_session, write_session
from governance.db.models import Proposal
from governance.domain.errors import InvalidInput, InvalidTransition, NotFound, PermissionDenied
from governance.domain.proposals import TERMINAL_STATES, ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.services.audit import record
from governance.services.context import Ctx


class CommentPublic(BaseModel):
    id: int
    proposal_id: int
    author_id: int
    body: str
    created_at: datetime


def _public(c: ProposalComment) -> CommentPublic:
    assert c.id is not None
    return CommentPublic(
        id=c.id, proposal_id=c.proposal_id, author_id=c.author_id, body=c.body, created_at=c.created_at
    )


def may_comment(state: str, actor: ActorView | None) -> bool:
    """Members discuss a proposal until it closes (a draft only its author sees, until it is submitted)."""
    return (
        actor is not None
        and actor.member_id is not None
        and Role.MEMBER in actor.roles
        and ProposalState(state) not in TERMINAL_STATES
    )


def add(ctx: Ctx, proposal_id: int, actor: ActorView, body: str) -> CommentPublic:
    text = (body or "").strip()
    if not text:
        raise InvalidInput("a comment cannot be empty", field="body")
    if len(text) > MAX_COMMENT:
        raise InvalidInput(f"a comment has at most {MAX_COMMENT} characters", field="body")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = s.get(Proposal, proposal_id)
        if p is None or (p.state == ProposalState.DRAFT.value and p.proposer_id != actor.member_id):
            raise NotFound(f"no proposal {proposal_id}")  # a draft is its author's until submitted
        if actor.member_id is None or Role.MEMBER not in actor.roles:
            raise PermissionDenied("only members may take part in the discussion")
        if not may_comment(p.state, actor):
            raise InvalidTransition(f"the proposal is {p.state}; its discussion is closed")
        c = ProposalComment(proposal_id=proposal_id, author_id=actor.member_id, body=text, created_at=now)
        s.add(c)
        s.flush()
        record(
            s,
            at=now,
            actor=actor.member_id,
            action="proposal.comment_added",
            subject=f"proposal:{proposal_id}",
            payload={"comment": c.id},
            sensitive={"body": text},  # erasable: the log keeps a salted hash
        )
        return _public(c)


def list_for(ctx: Ctx, proposal_id: int) -> list[CommentPublic]:
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(ProposalComment)
            .where(ProposalComment.proposal_id == proposal_id)
            .order_by(col(ProposalComment.id))
        ).all()
        return [_public(c) for c in rows]
