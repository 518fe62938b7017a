"""Outcome statements: when a proposal's decision closes, its author or a council member (the reviewers, for a
triage rejection that stood) writes what was decided, why and what happens next (governance/domain/outcome.py
has the rules). Each write and each revision is a new row (the history is kept), an audit entry on the
proposal (``proposal.outcome_written`` / ``proposal.outcome_revised``, with the text), an in-app
notification to every active member and a ``proposal.outcome_written`` webhook event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import or_
from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.models import Conflict as ConflictRow
from governance.db.models import DataSource, Member, MemberRole, Proposal, ProposalEvent
from governance.db.outcomes import OutcomeStatement
from governance.domain import outcome as rules
from governance.domain.errors import Conflict, InvalidInput, InvalidTransition, NotFound, PermissionDenied
from governance.domain.proposals import Actor, ProposalState
from governance.domain.review import ActorView
from governance.domain.roles import Role
from governance.outcome_schemas import OutcomePublic, OutcomeStatus
from governance.services import events
from governance.services.audit import record
from governance.services.context import Ctx

#: how many handles the "expected from" line names before "and N more"
_NAMED = 5
#: the dashboard lists the statements a member may write for decisions that closed this recently
RECENT = timedelta(days=30)


@dataclass(frozen=True)
class Due:
    """A closed decision whose outcome statement is not written yet, and that the viewer may write."""

    proposal_id: int
    title: str
    state: str


def _proposal(s: Session, proposal_id: int, viewer: ActorView | None, lock: bool = False) -> Proposal:
    q = select(Proposal).where(Proposal.id == proposal_id)
    if lock:
        q = q.with_for_update()
    p = s.exec(q).first()
    if p is None or (
        p.state == ProposalState.DRAFT.value and (viewer is None or viewer.member_id != p.proposer_id)
    ):
        raise NotFound(f"no proposal {proposal_id}")  # a draft is its author's until submitted
    return p


def _triage_rejection(s: Session, p: Proposal) -> bool:
    into_window = s.exec(
        select(ProposalEvent.action)
        .where(ProposalEvent.proposal_id == p.id, ProposalEvent.to_state == ProposalState.APPEAL_WINDOW.value)
        .order_by(col(ProposalEvent.id).desc())
        .limit(1)
    ).first()
    return rules.rejected_at_triage(p.state, p.appealed, into_window)


def _recused(s: Session, p: Proposal) -> frozenset[int]:
    ids = set(s.exec(select(ConflictRow.member_id).where(ConflictRow.proposal_id == p.id)).all())
    if p.data_source_id is not None:
        owner = s.exec(select(DataSource.owner_id).where(DataSource.id == p.data_source_id)).first()
        if owner is not None:
            ids.add(owner)
    if p.election_candidate_id is not None:
        ids.add(p.election_candidate_id)
    return frozenset(ids)


def _role_holders(s: Session, role: Role) -> list[tuple[int, str]]:
    rows = s.exec(
        select(Member.id, Member.handle)
        .join(MemberRole, col(MemberRole.member_id) == col(Member.id))
        .where(MemberRole.role == role.value, col(Member.active).is_(True))
        .order_by(col(Member.handle))
    ).all()
    return [(int(i), str(h)) for i, h in rows if i is not None]


def _handle(s: Session, member_id: int) -> str:
    return str(s.exec(select(Member.handle).where(Member.id == member_id)).first() or f"member {member_id}")


def _named(rows: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"@{h}" for _, h in rows[:_NAMED])
    more = len(rows) - _NAMED
    return shown + (f" and {more} more" if more > 0 else "")


def _writers(s: Session, p: Proposal, triage_rejection: bool) -> tuple[list[int], str]:
    """The members who may write the statement now, and who is expected to, in words."""
    who = rules.writers(p.state, triage_rejection)
    if not who:
        return [], "its author or a council member, once the decision closes"
    recused = _recused(s, p) | {p.proposer_id}
    ids: list[int] = []
    parts: list[str] = []
    if Actor.PROPOSER in who:
        ids.append(p.proposer_id)
        parts.append(f"its author @{_handle(s, p.proposer_id)}")
    for actor, role, noun in (
        (Actor.COUNCIL, Role.COUNCIL, "council"),
        (Actor.REVIEWER, Role.REVIEWER, "reviewer"),
    ):
        if actor in who:
            holders = [(i, h) for i, h in _role_holders(s, role) if i not in recused]
            ids.extend(i for i, _ in holders)
            if holders:
                parts.append(
                    f"a {noun} member ({_named(holders)})"
                    if noun == "council"
                    else f"a reviewer ({_named(holders)})"
                )
            else:
                parts.append(
                    f"a {noun} member (none is serving)"
                    if noun == "council"
                    else "a reviewer (none is serving)"
                )
    return sorted(set(ids)), " or ".join(parts)


def _public(s: Session, row: OutcomeStatement, handles: dict[int, str]) -> OutcomePublic:
    if row.author_id not in handles:
        handles[row.author_id] = _handle(s, row.author_id)
    return OutcomePublic(
        version=row.version,
        decided=row.decided,
        reasons=row.reasons,
        next_steps=row.next_steps,
        author_id=row.author_id,
        author=handles[row.author_id],
        decision=row.decision,
        written_at=row.written_at,
    )


def _versions(s: Session, proposal_id: int) -> list[OutcomeStatement]:
    """Every version of a proposal's statement, newest first."""
    return list(
        s.exec(
            select(OutcomeStatement)
            .where(OutcomeStatement.proposal_id == proposal_id)
            .order_by(col(OutcomeStatement.version).desc())
        ).all()
    )


def status_in(s: Session, p: Proposal, viewer: ActorView | None) -> OutcomeStatus:
    """The statement and its history, or who is expected to write it (inside a session)."""
    assert p.id is not None
    closed = rules.decision_closed(p.state)
    if not closed:  # nothing is written before the decision closes, and a closed decision never reopens
        return OutcomeStatus(closed=False, statement=None, expected_from=_writers(s, p, False)[1])
    triage_rejection = _triage_rejection(s, p)
    writer_ids, expected = _writers(s, p, triage_rejection)
    versions = _versions(s, p.id)
    handles: dict[int, str] = {}
    may = viewer is not None and rules.may_write(
        p.state,
        triage_rejection,
        viewer.member_id,
        viewer.roles,
        p.proposer_id,
        _recused(s, p),
    )
    return OutcomeStatus(
        closed=closed,
        statement=_public(s, versions[0], handles) if versions else None,
        history=[_public(s, v, handles) for v in versions[1:]],
        expected_from=expected,
        writer_ids=writer_ids,
        may_write=may,
    )


def status(ctx: Ctx, proposal_id: int, viewer: ActorView | None) -> OutcomeStatus:
    with read_session(ctx.engine) as s:
        return status_in(s, _proposal(s, proposal_id, viewer), viewer)


def write(
    ctx: Ctx,
    proposal_id: int,
    actor: ActorView,
    decided: object,
    reasons: object,
    next_steps: object,
    revise: bool | None = None,
) -> OutcomeStatus:
    """Write the statement of a closed decision (``revise``: False only a first statement, True only a
    revision, None either). Bad input, an open decision, a writer not allowed or nothing changed: an error,
    and nothing is stored."""
    text = rules.parse_statement(decided, reasons, next_steps)
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = _proposal(s, proposal_id, actor, lock=True)
        if not rules.decision_closed(p.state):
            raise InvalidTransition(
                f"proposal #{proposal_id} is still {p.state.replace('_', ' ')}: the outcome statement is written "
                "once its decision closes"
            )
        triage_rejection = _triage_rejection(s, p)
        if not rules.may_write(
            p.state, triage_rejection, actor.member_id, actor.roles, p.proposer_id, _recused(s, p)
        ):
            _, expected = _writers(s, p, triage_rejection)
            raise PermissionDenied(
                f"the outcome statement of proposal #{proposal_id} is written by {expected}"
            )
        assert actor.member_id is not None
        versions = _versions(s, proposal_id)
        current = versions[0] if versions else None
        if revise is False and current is not None:
            raise Conflict(
                f"proposal #{proposal_id} has an outcome statement already (version {current.version}); revise it"
            )
        if revise is True and current is None:
            raise InvalidTransition(f"proposal #{proposal_id} has no outcome statement yet; write it first")
        if current is not None and (current.decided, current.reasons, current.next_steps) == (
            text.decided,
            text.reasons,
            text.next_steps,
        ):
            raise InvalidInput("the statement is unchanged; edit it before saving", field="decided")
        version = current.version + 1 if current else 1
        row = OutcomeStatement(
            proposal_id=proposal_id,
            version=version,
            author_id=actor.member_id,
            decision=p.state,
            decided=text.decided,
            reasons=text.reasons,
            next_steps=text.next_steps,
            written_at=now,
        )
        s.add(row)
        s.flush()
        action = "proposal.outcome_written" if version == 1 else "proposal.outcome_revised"
        record(
            s,
            at=now,
            actor=actor.member_id,
            action=action,
            subject=f"proposal:{proposal_id}",
            payload={
                "version": version,
                "decision": p.state,
                "decided": text.decided,
                "reasons": text.reasons,
                "next_steps": text.next_steps,
            },
        )
        events.emit(
            s,
            "proposal.outcome_written",
            {"proposal_id": proposal_id, "title": p.title, "version": version, "decision": p.state},
            now,
        )
        members = [
            int(m)
            for m in s.exec(select(Member.id).where(col(Member.active).is_(True))).all()
            if m is not None and m != actor.member_id
        ]
        summary = text.decided if len(text.decided) <= 160 else text.decided[:157] + "..."
        verb = "was written" if version == 1 else "was revised"
        events.notify(
            s,
            members,
            kind="outcome",
            message=f"The outcome statement of #{proposal_id} '{p.title}' {verb}: {summary}",
            proposal_id=proposal_id,
            dedupe_key=f"outcome:{proposal_id}:{version}",
            now=now,
        )
        return status_in(s, p, actor)


def due(ctx: Ctx, actor: ActorView, limit: int = 10) -> list[Due]:
    """The statements ``actor`` may write that nobody has written yet, for decisions that changed in the last
    :data:`RECENT` (newest first): their own proposals; for council members every decision but a standing
    triage rejection; for reviewers the standing triage rejections."""
    if actor.member_id is None:
        return []
    council, reviewer = Role.COUNCIL in actor.roles, Role.REVIEWER in actor.roles
    written = select(OutcomeStatement.proposal_id)
    q = select(Proposal).where(
        col(Proposal.state).not_in([st.value for st in rules.OPEN_STATES]),
        col(Proposal.id).not_in(written),
        col(Proposal.updated_at) >= ctx.clock.now() - RECENT,
    )
    if not council:
        states = [ProposalState.REJECTED.value] if reviewer else []
        q = q.where(or_(col(Proposal.proposer_id) == actor.member_id, col(Proposal.state).in_(states)))
    out: list[Due] = []
    with read_session(ctx.engine) as s:
        for p in s.exec(q.order_by(col(Proposal.updated_at).desc()).limit(limit * 3)).all():
            assert p.id is not None
            if rules.may_write(
                p.state, _triage_rejection(s, p), actor.member_id, actor.roles, p.proposer_id, _recused(s, p)
            ):
                out.append(Due(p.id, p.title, p.state))
            if len(out) == limit:
                break
    return out
