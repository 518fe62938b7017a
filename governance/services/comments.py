"""The discussion on a proposal: members comment while it is open, reply to a comment (one level of threads),
edit their comments (the earlier bodies kept as history) and delete them (the text erased, the row kept);
any member reports a comment, and a reviewer hides it with a reason or dismisses the reports. Every change is
an audit entry on the proposal (``proposal.comment_*``); bodies and report reasons enter the log as erasable
sensitive values, which a deletion by the author erases."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from pydantic import BaseModel
from sqlalchemy import func
from sqlmodel import Session, col, select

from governance.audit import log as audit_log
from governance.db.comments import (
    MAX_COMMENT,
    MAX_MODERATION_REASON,
    ProposalComment,
    ProposalCommentReport,
    ProposalCommentRevision,
)
from governance.db.engine import read_session, write_session
from governance.db.models import Member, Proposal
from governance.domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from governance.domain.proposals import TERMINAL_STATES, ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.domain.text import TextWording, required_text
from governance.services.audit import record
from governance.services.context import Ctx

Status = Literal["shown", "deleted", "hidden"]
DELETED_TEXT = "deleted by its author"


class CommentPublic(BaseModel):
    id: int
    proposal_id: int
    author_id: int
    body: str  # empty when the comment is deleted or hidden
    created_at: datetime
    parent_id: int | None = None
    status: Status = "shown"
    edited_at: datetime | None = None
    revisions: int = 0  # earlier bodies kept (shown as "edited")
    hidden_reason: str | None = None
    open_reports: int = 0


class RevisionPublic(BaseModel):
    body: str
    written_at: datetime
    replaced_at: datetime


class ReportPublic(BaseModel):
    id: int
    comment_id: int
    reporter_id: int
    reporter: str  # the reporter's handle
    reason: str
    created_at: datetime
    resolved_at: datetime | None = None
    resolved_by: int | None = None
    resolution: str | None = None


@dataclass
class CommentThread:
    """One comment's page: the comment, its replies, its history and what the viewer may do with it."""

    comment: CommentPublic
    proposal_title: str
    proposal_state: str
    replies: list[CommentPublic] = field(default_factory=list)
    history: list[RevisionPublic] = field(default_factory=list)  # earlier bodies, oldest first
    reports: list[ReportPublic] = field(default_factory=list)  # reviewers only
    can_reply: bool = False
    can_edit: bool = False
    can_delete: bool = False
    can_report: bool = False
    can_moderate: bool = False
    why_not_moderate: str | None = None


@dataclass
class ReportedComment:
    """A row of the reviewers' queue: a comment with open reports."""

    comment: CommentPublic  # with its body: the reviewer reads what was reported
    author: str
    proposal_title: str
    reports: list[ReportPublic]


def _status(c: ProposalComment) -> Status:
    if c.hidden_at is not None:  # a reviewer's decision stays in view, even after the author deletes
        return "hidden"
    return "deleted" if c.deleted_at is not None else "shown"


def _public(
    c: ProposalComment, revisions: int = 0, open_reports: int = 0, body: bool = False
) -> CommentPublic:
    """``body``: keep the text of a hidden comment (for reviewers); a deleted one has none left."""
    assert c.id is not None
    status = _status(c)
    return CommentPublic(
        id=c.id,
        proposal_id=c.proposal_id,
        author_id=c.author_id,
        body=c.body if status == "shown" or body else "",
        created_at=c.created_at,
        parent_id=c.parent_id,
        status=status,
        edited_at=c.edited_at,
        revisions=revisions,
        hidden_reason=c.hidden_reason,
        open_reports=open_reports,
    )


def may_comment(state: str, actor: ActorView | None) -> bool:
    """Members discuss a proposal until it closes (a draft only its author sees, until it is submitted)."""
    return (
        actor is not None
        and actor.member_id is not None
        and Role.MEMBER in actor.roles
        and ProposalState(state) not in TERMINAL_STATES
    )


# -- checks ----------------------------------------------------------------------------------------------------


#: how a comment's body or a moderation reason is refused
TEXT_WORDING = TextWording(
    empty="{what} cannot be empty",
    too_long="{what} has at most {limit} characters (this one has {length})",
    nul="{what} must not contain a NUL character",
)


def _text(value: str | None, name: str, limit: int, what: str) -> str:
    return required_text(value, name, what, limit, TEXT_WORDING)


def _proposal(s: Session, proposal_id: int, actor: ActorView) -> Proposal:
    p = s.get(Proposal, proposal_id)
    if p is None or (p.state == ProposalState.DRAFT.value and p.proposer_id != actor.member_id):
        raise NotFound(f"no proposal {proposal_id}")  # a draft is its author's until submitted
    return p


def _comment(
    s: Session, proposal_id: int, comment_id: int, actor: ActorView, lock: bool = False
) -> tuple[Proposal, ProposalComment]:
    p = _proposal(s, proposal_id, actor)
    c = s.get(ProposalComment, comment_id, with_for_update=lock)
    if c is None or c.proposal_id != proposal_id:
        raise NotFound(f"proposal {proposal_id} has no comment {comment_id}")
    return p, c


def _member(actor: ActorView) -> int:
    if actor.member_id is None or Role.MEMBER not in actor.roles:
        raise PermissionDenied("only members may take part in the discussion")
    return actor.member_id


def _reviewer(actor: ActorView, c: ProposalComment) -> int:
    if actor.member_id is None or Role.REVIEWER not in actor.roles:
        raise PermissionDenied("only a reviewer moderates comments")
    if c.author_id == actor.member_id:
        raise PermissionDenied("a reviewer does not moderate their own comment")
    return actor.member_id


def _open_reports(s: Session, comment_id: int) -> list[ProposalCommentReport]:
    return list(
        s.exec(
            select(ProposalCommentReport)
            .where(ProposalCommentReport.comment_id == comment_id)
            .where(col(ProposalCommentReport.resolved_at).is_(None))
            .order_by(col(ProposalCommentReport.id))
        ).all()
    )


def _resolve(
    s: Session, reports: list[ProposalCommentReport], now: datetime, by: int | None, how: str
) -> list[int]:
    for r in reports:
        r.resolved_at, r.resolved_by, r.resolution = now, by, how
        s.add(r)
    return [r.id for r in reports if r.id is not None]


# -- changes ---------------------------------------------------------------------------------------------------


def add(
    ctx: Ctx, proposal_id: int, actor: ActorView, body: str, parent_id: int | None = None
) -> CommentPublic:
    """A comment, or with ``parent_id`` a reply (a reply to a reply joins its thread's top comment)."""
    text = _text(body, "body", MAX_COMMENT, "a comment")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = _proposal(s, proposal_id, actor)
        member = _member(actor)
        if not may_comment(p.state, actor):
            raise InvalidTransition(f"the proposal is {p.state}; its discussion is closed")
        if parent_id is not None:
            _, parent = _comment(s, proposal_id, parent_id, actor)
            if parent.parent_id is not None:  # one level of threads
                parent = s.get(ProposalComment, parent.parent_id) or parent
            if _status(parent) != "shown":
                raise InvalidTransition(f"comment {parent.id} is {_status(parent)}; it takes no replies")
            parent_id = parent.id
        c = ProposalComment(
            proposal_id=proposal_id, author_id=member, parent_id=parent_id, body=text, created_at=now
        )
        s.add(c)
        s.flush()
        payload: dict[str, int] = {"comment": c.id or 0}
        if parent_id is not None:
            payload["reply_to"] = parent_id
        record(
            s,
            at=now,
            actor=member,
            action="proposal.comment_added",
            subject=f"proposal:{proposal_id}",
            payload=payload,
            sensitive={"body": text},  # erasable: the log keeps a salted hash
        )
        return _public(c)


def edit(ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView, body: str) -> CommentPublic:
    """The author's new text while the discussion is open; the previous body is kept as a revision."""
    text = _text(body, "body", MAX_COMMENT, "a comment")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p, c = _comment(s, proposal_id, comment_id, actor, lock=True)
        member = _member(actor)
        if c.author_id != member:
            raise PermissionDenied("only its author edits a comment")
        if _status(c) != "shown":
            raise InvalidTransition(f"the comment is {_status(c)}; it cannot be edited")
        if not may_comment(p.state, actor):
            raise InvalidTransition(f"the proposal is {p.state}; its discussion is closed")
        if text == c.body:
            raise InvalidInput("the comment is unchanged", field="body")
        s.add(
            ProposalCommentRevision(
                comment_id=comment_id, body=c.body, written_at=c.edited_at or c.created_at, replaced_at=now
            )
        )
        c.body, c.edited_at = text, now
        s.add(c)
        s.flush()
        revisions = _revision_count(s, comment_id)
        record(
            s,
            at=now,
            actor=member,
            action="proposal.comment_edited",
            subject=f"proposal:{proposal_id}",
            payload={"comment": comment_id, "revision": revisions},
            sensitive={"body": text},
        )
        return _public(c, revisions=revisions)


def delete(ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView) -> CommentPublic:
    """Soft deletion by the author: the row stays (its replies keep their place) and reads "deleted by its
    author"; its text, its earlier bodies and their sensitive values in the audit log are erased (the log
    keeps their commitments); open reports on it are closed."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        _, c = _comment(s, proposal_id, comment_id, actor, lock=True)
        member = _member(actor)
        if c.author_id != member:
            raise PermissionDenied("only its author deletes a comment")
        if c.deleted_at is not None:
            raise InvalidTransition("the comment is already deleted")
        closed = _resolve(s, _open_reports(s, comment_id), now, None, "deleted")
        for rev in s.exec(
            select(ProposalCommentRevision).where(ProposalCommentRevision.comment_id == comment_id)
        ).all():
            rev.body = ""
            s.add(rev)
        c.body, c.deleted_at = "", now
        s.add(c)
        subject = f"proposal:{proposal_id}"
        record(
            s,
            at=now,
            actor=member,
            action="proposal.comment_deleted",
            subject=subject,
            payload={"comment": comment_id, "reports_closed": closed},
        )
        for entry in audit_log.entries_for_subject(s, subject):
            if (
                entry.action in ("proposal.comment_added", "proposal.comment_edited")
                and entry.payload.get("comment") == comment_id
                and "body" in entry.sensitive
            ):
                with contextlib.suppress(audit_log.AlreadyErased):  # an admin erased it already
                    audit_log.erase(s, entry.seq, "body", f"member:{member}", "comment deleted by its author")
        s.flush()
        return _public(c, revisions=_revision_count(s, comment_id))


def report(ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView, reason: str) -> ReportPublic:
    """A member's report: the comment enters the reviewers' queue until one hides it or dismisses it."""
    text = _text(reason, "reason", MAX_MODERATION_REASON, "the reason")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        _, c = _comment(s, proposal_id, comment_id, actor, lock=True)
        member = _member(actor)
        if c.author_id == member:
            raise PermissionDenied("you cannot report your own comment; edit or delete it instead")
        if _status(c) != "shown":
            raise InvalidTransition(f"the comment is {_status(c)}; there is nothing to report")
        if any(r.reporter_id == member for r in _open_reports(s, comment_id)):
            raise Conflict("you have already reported this comment; a reviewer will look at it")
        r = ProposalCommentReport(comment_id=comment_id, reporter_id=member, reason=text, created_at=now)
        s.add(r)
        s.flush()
        record(
            s,
            at=now,
            actor=member,
            action="proposal.comment_reported",
            subject=f"proposal:{proposal_id}",
            payload={"comment": comment_id, "report": r.id},
            sensitive={"reason": text},
        )
        return _report_public(s, r)


def hide(ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView, reason: str) -> CommentPublic:
    """A reviewer hides a comment: the reason is shown in place of its text; its open reports are closed."""
    text = _text(reason, "reason", MAX_MODERATION_REASON, "the reason")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        _, c = _comment(s, proposal_id, comment_id, actor, lock=True)
        reviewer = _reviewer(actor, c)
        if _status(c) != "shown":
            raise InvalidTransition(f"the comment is already {_status(c)}")
        closed = _resolve(s, _open_reports(s, comment_id), now, reviewer, "hidden")
        c.hidden_at, c.hidden_by, c.hidden_reason = now, reviewer, text
        s.add(c)
        record(
            s,
            at=now,
            actor=reviewer,
            action="proposal.comment_hidden",
            subject=f"proposal:{proposal_id}",
            payload={"comment": comment_id, "reason": text, "reports_closed": closed},
        )
        return _public(c, revisions=_revision_count(s, comment_id))


def dismiss(
    ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView, reason: str | None = None
) -> list[int]:
    """A reviewer dismisses the open reports on a comment (it stays as it is); returns the reports closed."""
    text = (reason or "").strip()
    if text:
        text = _text(text, "reason", MAX_MODERATION_REASON, "the reason")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        _, c = _comment(s, proposal_id, comment_id, actor, lock=True)
        reviewer = _reviewer(actor, c)
        pending = _open_reports(s, comment_id)
        if not pending:
            raise InvalidTransition("this comment has no open report to dismiss")
        closed = _resolve(s, pending, now, reviewer, "dismissed")
        payload: dict[str, object] = {"comment": comment_id, "reports_closed": closed}
        if text:
            payload["reason"] = text
        record(
            s,
            at=now,
            actor=reviewer,
            action="proposal.comment_reports_dismissed",
            subject=f"proposal:{proposal_id}",
            payload=payload,
        )
        return closed


# -- reads -----------------------------------------------------------------------------------------------------


def _revision_count(s: Session, comment_id: int) -> int:
    return int(
        s.exec(
            select(func.count())
            .select_from(ProposalCommentRevision)
            .where(ProposalCommentRevision.comment_id == comment_id)
        ).one()
    )


def _counts(s: Session, ids: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """(revisions, open reports) by comment id."""
    if not ids:
        return {}, {}
    revs = s.exec(
        select(ProposalCommentRevision.comment_id, func.count())
        .where(col(ProposalCommentRevision.comment_id).in_(ids))
        .group_by(col(ProposalCommentRevision.comment_id))
    ).all()
    reps = s.exec(
        select(ProposalCommentReport.comment_id, func.count())
        .where(col(ProposalCommentReport.comment_id).in_(ids))
        .where(col(ProposalCommentReport.resolved_at).is_(None))
        .group_by(col(ProposalCommentReport.comment_id))
    ).all()
    return {k: int(v) for k, v in revs}, {k: int(v) for k, v in reps}


def _report_public(
    s: Session, r: ProposalCommentReport, handles: dict[int, str] | None = None
) -> ReportPublic:
    assert r.id is not None
    if handles is None:
        m = s.get(Member, r.reporter_id)
        handles = {r.reporter_id: m.handle if m else f"member {r.reporter_id}"}
    return ReportPublic(
        id=r.id,
        comment_id=r.comment_id,
        reporter_id=r.reporter_id,
        reporter=handles.get(r.reporter_id, f"member {r.reporter_id}"),
        reason=r.reason,
        created_at=r.created_at,
        resolved_at=r.resolved_at,
        resolved_by=r.resolved_by,
        resolution=r.resolution,
    )


def _handles(s: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    rows = s.exec(select(Member.id, Member.handle).where(col(Member.id).in_(ids))).all()
    return {mid: handle for mid, handle in rows if mid is not None}


def list_for(ctx: Ctx, proposal_id: int) -> list[CommentPublic]:
    """Every comment of a proposal in posting order (replies carry ``parent_id``); a deleted or hidden one
    without its text."""
    with read_session(ctx.engine) as s:
        rows = s.exec(
            select(ProposalComment)
            .where(ProposalComment.proposal_id == proposal_id)
            .order_by(col(ProposalComment.id))
        ).all()
        revs, reps = _counts(s, [c.id for c in rows if c.id is not None])
        return [_public(c, revs.get(c.id or 0, 0), reps.get(c.id or 0, 0)) for c in rows]


def thread(ctx: Ctx, proposal_id: int, comment_id: int, actor: ActorView) -> CommentThread:
    """A comment's page: itself, its replies, its earlier bodies, and for reviewers its reports."""
    with read_session(ctx.engine) as s:
        p, c = _comment(s, proposal_id, comment_id, actor)
        replies = s.exec(
            select(ProposalComment)
            .where(ProposalComment.parent_id == comment_id)
            .order_by(col(ProposalComment.id))
        ).all()
        ids = [comment_id, *(r.id for r in replies if r.id is not None)]
        revs, reps = _counts(s, ids)
        reviewer = actor.member_id is not None and Role.REVIEWER in actor.roles
        history: list[RevisionPublic] = []
        if _status(c) == "shown":  # a hidden comment's history is hidden with it
            history = [
                RevisionPublic(body=r.body, written_at=r.written_at, replaced_at=r.replaced_at)
                for r in s.exec(
                    select(ProposalCommentRevision)
                    .where(ProposalCommentRevision.comment_id == comment_id)
                    .order_by(col(ProposalCommentRevision.id))
                ).all()
            ]
        reports: list[ReportPublic] = []
        if reviewer:
            rows = s.exec(
                select(ProposalCommentReport)
                .where(ProposalCommentReport.comment_id == comment_id)
                .order_by(col(ProposalCommentReport.id))
            ).all()
            handles = _handles(s, {r.reporter_id for r in rows})
            reports = [_report_public(s, r, handles) for r in rows]
        me = actor.member_id
        member = me is not None and Role.MEMBER in actor.roles
        status = _status(c)
        is_open = may_comment(p.state, actor)
        why_not = None
        if reviewer and c.author_id == me:
            why_not = "a reviewer does not moderate their own comment"
        return CommentThread(
            comment=_public(c, revs.get(comment_id, 0), reps.get(comment_id, 0)),
            proposal_title=p.title,
            proposal_state=p.state,
            replies=[_public(r, revs.get(r.id or 0, 0), reps.get(r.id or 0, 0)) for r in replies],
            history=history,
            reports=reports,
            can_reply=is_open and status == "shown" and c.parent_id is None,
            can_edit=is_open and status == "shown" and c.author_id == me,
            can_delete=member and c.deleted_at is None and c.author_id == me,
            can_report=member and status == "shown" and c.author_id != me,
            can_moderate=reviewer and c.author_id != me,
            why_not_moderate=why_not,
        )


def reported(ctx: Ctx, actor: ActorView, limit: int = 100) -> list[ReportedComment]:
    """The reviewers' queue: comments with open reports, oldest report first (empty for anyone else)."""
    if actor.member_id is None or Role.REVIEWER not in actor.roles:
        return []
    with read_session(ctx.engine) as s:
        reports = s.exec(
            select(ProposalCommentReport)
            .where(col(ProposalCommentReport.resolved_at).is_(None))
            .order_by(col(ProposalCommentReport.id))
        ).all()
        by_comment: dict[int, list[ProposalCommentReport]] = {}
        for r in reports:
            by_comment.setdefault(r.comment_id, []).append(r)
        ids = list(by_comment)[:limit]
        if not ids:
            return []
        rows = {
            c.id: c for c in s.exec(select(ProposalComment).where(col(ProposalComment.id).in_(ids))).all()
        }
        titles = dict(
            s.exec(
                select(Proposal.id, Proposal.title).where(
                    col(Proposal.id).in_({c.proposal_id for c in rows.values()})
                )
            ).all()
        )
        handles = _handles(
            s, {c.author_id for c in rows.values()} | {r.reporter_id for r in reports if r.comment_id in rows}
        )
        revs, _ = _counts(s, ids)
        out = []
        for cid in ids:
            c = rows[cid]
            out.append(
                ReportedComment(
                    comment=_public(c, revs.get(cid, 0), len(by_comment[cid]), body=True),
                    author=handles.get(c.author_id, f"member {c.author_id}"),
                    proposal_title=str(titles.get(c.proposal_id, "")),
                    reports=[_report_public(s, r, handles) for r in by_comment[cid]],
                )
            )
        return out
