"""Delegation's use cases: delegate, revoke, list, the votes a member carries, a proposal's tags.

Which delegations count in a poll is fixed when its vote opens, with the electorate
(``lifecycle.apply_decision`` freezes them through governance/db/delegation.py). A delegation made later counts
from the next poll that opens; a revocation takes the delegator's vote back at once, from the open polls too
(each such poll gets a ``proposal.delegation_withdrawn`` entry, which the recount reads). Every delegation and
revocation is an audit entry (``delegation.created``, ``delegation.revoked``).
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from governance.db import delegation as ddb
from governance.db.delegation import DelegationRow, PollDelegation, ProposalTag
from governance.db.engine import read_session, write_session
from governance.db.models import CurrentVote, Elector, Member, Proposal
from governance.delegation_schemas import (
    CarriedPoll,
    CarryPublic,
    DelegationCreate,
    DelegationPublic,
    DelegationsPublic,
    PollDelegationPublic,
)
from governance.domain.delegation import Delegation, carried_by, check_new, parse_scope, parse_tags
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.proposals import ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.services import lifecycle
from governance.services.audit import record
from governance.services.context import Ctx

S = ProposalState
WITHDRAWN_ACTION = "proposal.delegation_withdrawn"
TAGGABLE = (S.DRAFT.value, S.SUBMITTED.value, S.TRIAGE.value)


def _member(actor: ActorView) -> int:
    if actor.member_id is None or Role.MEMBER not in actor.roles:
        raise PermissionDenied("only members delegate their vote")
    return actor.member_id


def _public(
    row: DelegationRow, handles: dict[int, str], released: list[int] | None = None
) -> DelegationPublic:
    d = ddb.to_domain(row)
    return DelegationPublic(
        id=d.id,
        delegator_id=d.delegator,
        delegator=handles.get(d.delegator, ""),
        delegate_id=d.delegate,
        delegate=handles.get(d.delegate, ""),
        scope=d.scope.kind.value,
        scope_value=d.scope.value,
        label=d.scope.label,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
        open_polls_released=released or [],
    )


def _handles(s: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(s.exec(select(Member.id, Member.handle).where(col(Member.id).in_(ids))).all())  # type: ignore[arg-type]


def create(ctx: Ctx, actor: ActorView, data: DelegationCreate) -> DelegationPublic:
    """Delegate the caller's vote (for everything or a scope) to another active member."""
    me = _member(actor)
    scope = parse_scope(data.scope, data.scope_value)
    if (data.delegate is None) == (data.delegate_id is None):
        raise InvalidInput(
            "name the delegate: its handle (delegate) or its id (delegate_id)", field="delegate"
        )
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        q = select(Member).where(
            Member.handle == data.delegate if data.delegate is not None else Member.id == data.delegate_id
        )
        target = s.exec(q).first()
        if target is None or target.id is None:
            raise InvalidInput(f"no member {data.delegate or data.delegate_id}", field="delegate")
        if not target.active:
            raise InvalidInput(f"member {target.handle} is not active", field="delegate")
        ddb.lock(s)  # the cycle check reads the whole graph: no concurrent delegation may slip past it
        check_new(ddb.active(s), Delegation(0, me, target.id, scope))
        row = DelegationRow(
            delegator_id=me,
            delegate_id=target.id,
            scope=scope.kind.value,
            scope_value=scope.value,
            created_at=now,
        )
        s.add(row)
        s.flush()
        record(
            s,
            actor=me,
            action="delegation.created",
            subject=f"delegation:{row.id}",
            payload={"delegator": me, "delegate": target.id, "scope": scope.kind.value, "value": scope.value},
            at=now,
        )
        return _public(row, _handles(s, {me, target.id}))


def revoke(ctx: Ctx, actor: ActorView, delegation_id: int) -> DelegationPublic:
    """Revoke one of the caller's delegations: from now on, and in the open polls it counts in."""
    me = _member(actor)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        row = s.exec(select(DelegationRow).where(DelegationRow.id == delegation_id).with_for_update()).first()
        if row is None:
            raise NotFound(f"no delegation {delegation_id}")
        if row.delegator_id != me:
            raise PermissionDenied("only the member who made a delegation may revoke it")
        if row.revoked_at is not None:
            raise Conflict(f"delegation {delegation_id} was already revoked")
        row.revoked_at = now
        s.add(row)
        # the open polls it counts in, locked in id order (as a vote locks its proposal) before they change
        polls = s.exec(
            select(Proposal.id)
            .join(PollDelegation, col(PollDelegation.proposal_id) == Proposal.id)
            .where(
                PollDelegation.delegation_id == delegation_id,
                col(PollDelegation.withdrawn_at).is_(None),
                Proposal.state == S.VOTING.value,
            )
            .order_by(col(Proposal.id))
            .with_for_update()
        ).all()
        released = [pid for pid in polls if pid is not None]
        for pid in released:
            frozen = s.get(PollDelegation, (pid, me))
            if frozen is not None:
                frozen.withdrawn_at = now
                s.add(frozen)
        record(
            s,
            actor=me,
            action="delegation.revoked",
            subject=f"delegation:{delegation_id}",
            payload={"delegator": me, "delegate": row.delegate_id, "open_polls": released},
            at=now,
        )
        for pid in released:
            record(
                s,
                actor=me,
                action=WITHDRAWN_ACTION,
                subject=f"proposal:{pid}",
                payload={"delegator": me, "delegation": delegation_id},
                at=now,
            )
        return _public(row, _handles(s, {me, row.delegate_id}), released)


def list_for(ctx: Ctx, actor: ActorView, revoked: bool = False) -> DelegationsPublic:
    """The caller's delegations (``revoked``: the revoked ones too) and the active ones made to them."""
    me = _member(actor)
    with read_session(ctx.engine) as s:
        given_q = select(DelegationRow).where(DelegationRow.delegator_id == me)
        if not revoked:
            given_q = given_q.where(col(DelegationRow.revoked_at).is_(None))
        given = s.exec(given_q.order_by(col(DelegationRow.id))).all()
        received = s.exec(
            select(DelegationRow)
            .where(DelegationRow.delegate_id == me, col(DelegationRow.revoked_at).is_(None))
            .order_by(col(DelegationRow.id))
        ).all()
        handles = _handles(
            s, {r.delegator_id for r in [*given, *received]} | {r.delegate_id for r in given} | {me}
        )
        return DelegationsPublic(
            given=[_public(r, handles) for r in given], received=[_public(r, handles) for r in received]
        )


def _poll_state(s: Session, p: Proposal) -> tuple[dict[int, int], int, set[int], set[int]]:
    """A poll's frozen delegations, depth limit, who voted (public) and who is recused from carrying."""
    assert p.id is not None
    edges, depth = ddb.frozen(s, p.id)
    voted = set(s.exec(select(CurrentVote.member_id).where(CurrentVote.proposal_id == p.id)).all())
    return edges, depth, voted, ddb.recused(s, p)


def _carried(member: int, edges: dict[int, int], depth: int, voted: set[int], recused: set[int]) -> int:
    if not edges:
        return 0
    electors = voted | set(edges) | set(edges.values()) | {member}
    return carried_by(member, electors=electors, edges=edges, voted=voted, recused=recused, max_depth=depth)


def carrying(ctx: Ctx, actor: ActorView) -> CarryPublic:
    """The votes the caller carries: the delegations made to them, and per open poll how many votes they
    cast for others (or would, by voting). Computed from who voted, never from what anyone chose."""
    me = _member(actor)
    with read_session(ctx.engine) as s:
        received = s.exec(
            select(DelegationRow)
            .where(DelegationRow.delegate_id == me, col(DelegationRow.revoked_at).is_(None))
            .order_by(col(DelegationRow.id))
        ).all()
        handles = _handles(s, {r.delegator_id for r in received} | {me})
        open_polls = s.exec(
            select(Proposal)
            .join(Elector, col(Elector.proposal_id) == Proposal.id)
            .where(Elector.member_id == me, Proposal.state == S.VOTING.value)
            .where(
                col(Proposal.id).in_(
                    select(PollDelegation.proposal_id).where(col(PollDelegation.withdrawn_at).is_(None))
                )
            )
            .order_by(col(Proposal.id))
        ).all()
        polls = []
        for p in open_polls:
            assert p.id is not None
            edges, depth, voted, recused = _poll_state(s, p)
            n = _carried(me, edges, depth, voted, recused)
            if n:
                polls.append(
                    CarriedPoll(
                        proposal_id=p.id,
                        title=p.title,
                        voting_deadline=p.voting_deadline,
                        carried=n,
                        voted=me in voted,
                    )
                )
        return CarryPublic(member_id=me, delegators=[_public(r, handles) for r in received], polls=polls)


def for_proposal(ctx: Ctx, proposal_id: int, viewer: ActorView | None) -> PollDelegationPublic:
    """Delegation in one poll as ``viewer`` sees it: how many delegations count, how many votes the viewer
    carries, and whom their own vote goes to. Nothing here depends on anyone's choice."""
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id)
        assert p.id is not None
        if p.state == S.DRAFT.value and (viewer is None or viewer.member_id != p.proposer_id):
            raise NotFound(f"no proposal {proposal_id}")  # a draft is its author's until submitted
        tags = ddb.tags_of(s, p.id)
        edges, depth, voted, recused = _poll_state(s, p)
        me = viewer.member_id if viewer is not None else None
        mine = edges.get(me) if me is not None else None
        return PollDelegationPublic(
            proposal_id=p.id,
            frozen=p.voting_opened_at is not None,
            delegations=len(edges),
            max_depth=depth or None,
            carried=_carried(me, edges, depth, voted, recused) if me is not None else 0,
            my_delegate_id=mine,
            my_delegate=_handles(s, {mine}).get(mine) if mine is not None else None,
            tags=tags,
        )


def set_tags(ctx: Ctx, proposal_id: int, actor: ActorView, raw: list[str]) -> list[str]:
    """The proposer sets the proposal's tags until its vote opens (the delegations that count are chosen by
    the tags it has then)."""
    tags = parse_tags(raw)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id, lock=True)
        assert p.id is not None
        if actor.member_id != p.proposer_id:
            raise PermissionDenied("only the proposer may tag a proposal")
        if p.state not in TAGGABLE:
            raise Conflict("a proposal's tags are fixed once its vote opens")
        for old in s.exec(select(ProposalTag).where(ProposalTag.proposal_id == p.id)).all():
            s.delete(old)
        s.flush()
        for t in tags:
            s.add(ProposalTag(proposal_id=p.id, tag=t))
        record(
            s,
            actor=actor.member_id,
            action="proposal.tagged",
            subject=f"proposal:{p.id}",
            payload={"tags": list(tags)},
            at=now,
        )
        return list(tags)
