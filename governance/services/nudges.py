"""Who has not voted yet: on an open vote, reviewers (and admins) see the electors who have not cast a vote
(by handle) and may remind them; a reminder is an in-app notification, sent to each such member at most once
a day per proposal, and an audit entry.

Who voted is not secret, even on a poll with a hidden tally: every vote's audit entry names its voter (only
its choice and reason are committed as salted hashes until the close), and the tally shows the turnout. So
the list says nothing that the public log does not; it is offered on every open vote."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.models import CurrentVote, Elector, Member, Notification, Proposal
from governance.domain.errors import InvalidTransition, NotFound, PermissionDenied
from governance.domain.proposals import ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.services import events
from governance.services.audit import record
from governance.services.context import Ctx

MODERATORS = frozenset({Role.REVIEWER, Role.ADMIN})


@dataclass(frozen=True)
class NotVoted:
    member_id: int
    handle: str


def may_see(actor: ActorView | None) -> bool:
    return actor is not None and not actor.is_system and bool(actor.roles & MODERATORS)


def _open_vote(s: Session, proposal_id: int) -> Proposal:
    p = s.get(Proposal, proposal_id)
    if p is None:
        raise NotFound(f"no proposal #{proposal_id}")
    if p.state != ProposalState.VOTING.value:
        raise InvalidTransition(f"proposal #{proposal_id} is not open for voting (it is {p.state})")
    return p


def _not_voted(s: Session, proposal_id: int) -> list[NotVoted]:
    voted = select(CurrentVote.member_id).where(CurrentVote.proposal_id == proposal_id)
    rows = s.exec(
        select(Member.id, Member.handle)
        .join(Elector, col(Elector.member_id) == col(Member.id))
        .where(Elector.proposal_id == proposal_id, col(Elector.member_id).not_in(voted))
        .order_by(col(Member.handle))
    ).all()
    return [NotVoted(int(i), str(h)) for i, h in rows if i is not None]


def not_voted(ctx: Ctx, proposal_id: int, actor: ActorView | None) -> list[NotVoted]:
    """The electors of an open vote who have not voted, by handle (reviewers and admins only)."""
    if not may_see(actor):
        raise PermissionDenied("only reviewers and admins see who has not voted yet")
    with read_session(ctx.engine) as s:
        _open_vote(s, proposal_id)
        return _not_voted(s, proposal_id)


def remind(ctx: Ctx, proposal_id: int, actor: ActorView) -> int:
    """Notify every elector who has not voted yet; a member already reminded today (UTC) about this proposal
    is skipped. Returns how many were notified; audited (``proposal.voters_reminded``) when any were."""
    if not may_see(actor):
        raise PermissionDenied("only reviewers and admins remind electors to vote")
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = _open_vote(s, proposal_id)
        silent = _not_voted(s, proposal_id)
        deadline = f"{p.voting_deadline:%Y-%m-%d %H:%M} UTC" if p.voting_deadline else "its deadline"
        before = {
            m
            for m in s.exec(
                select(Notification.member_id).where(
                    Notification.dedupe_key == f"vote_nudge:{proposal_id}:{now:%Y-%m-%d}"
                )
            ).all()
        }
        sent = events.notify(
            s,
            [n.member_id for n in silent],
            kind="vote_reminder",
            message=f"A reviewer reminds you: the vote on #{proposal_id} '{p.title}' is open until {deadline}, "
            "and you have not voted yet.",
            proposal_id=proposal_id,
            dedupe_key=f"vote_nudge:{proposal_id}:{now:%Y-%m-%d}",  # at most once per member per day
            now=now,
        )
        if sent:
            reminded = sorted(n.member_id for n in silent if n.member_id not in before)
            record(
                s,
                at=now,
                actor=actor.member_id,
                action="proposal.voters_reminded",
                subject=f"proposal:{proposal_id}",
                payload={"members": reminded},
            )
        return sent
