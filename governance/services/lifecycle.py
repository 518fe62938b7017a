"""The proposal lifecycle: the only code that writes a proposal's state.

Every change goes the same way, inside one transaction: :func:`load_proposal` (locked), :func:`proposal_view`
(the domain's snapshot), :func:`governance.domain.review.decide` (the rules), :func:`apply_decision` (the
updates, the electorate freeze, a granted role, the data source's consent, the events in the history and the
audit log, the webhooks, and on approval the unlearning job). The use cases call :func:`act` (a person's
action, in its own transaction), :func:`advance` (the job worker and the registry, in theirs) or
:func:`sweep` (deadlines, from the background sweeper, governance/jobs/sweeper.py). Nothing else sets
``Proposal.state``.

Imports only downwards (domain, db, audit, events, job_queue); proposals, votes, jobs, registry and gate
import this module, never each other in a circle.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal
from sqlmodel import Session, col, select

from governance.audit.models import AuditEntryRow, AuditSensitive
from governance.db import delegation as delegation_db
from governance.db.engine import read_session, write_session
from governance.db.models import Conflict as ConflictRow
from governance.db.models import (
    CouncilDecision,
    CurrentVote,
    DataSource,
    Elector,
    Member,
    MemberRole,
    Proposal,
    ProposalEvent,
    TriageDecision,
)
from governance.domain.consent import ConsentState
from governance.domain.errors import NotFound
from governance.domain.proposals import (
    TERMINAL_STATES,
    Action,
    Event,
    PendingOutcome,
    ProposalKind,
    ProposalState,
)
from governance.domain.review import (
    CANCEL_ROUND,
    SYSTEM,
    ActorView,
    Decision,
    ProposalView,
    decide,
    due_action,
)
from governance.domain.roles import Role
from governance.domain.voting import Tally
from governance.services import events, job_queue
from governance.services.audit import jsonable, record
from governance.services.context import Ctx

S = ProposalState


def load_proposal(s: Session, proposal_id: int, lock: bool = False) -> Proposal:
    """The proposal row (``lock``: FOR UPDATE, before a decision changes it); NotFound if there is none."""
    q = select(Proposal).where(Proposal.id == proposal_id)
    if lock:
        q = q.with_for_update()
    p = s.exec(q).first()
    if p is None:
        raise NotFound(f"no proposal {proposal_id}")
    return p


def _count(s: Session, q: Any) -> int:
    return int(s.exec(select(func.count()).select_from(q.subquery())).one())


def proposal_view(s: Session, p: Proposal, actor: ActorView, action: Action | None) -> ProposalView:
    """The domain's snapshot of a proposal, loading only what ``action`` needs (None: everything)."""
    assert p.id is not None
    full = action is None
    needs_review = full or action in (  # every action a role gives: recusal covers them all
        Action.TRIAGE_APPROVE,
        Action.TRIAGE_REJECT,
        Action.RATIFY,
        Action.VETO,
        Action.DECLARE_CONFLICT,
        Action.CANCEL,
        Action.APPEAL,
        Action.RETRY_JOB,
        Action.RELEASE,
    )
    needs_vote = full or action in (Action.VOTE, Action.CLOSE_VOTE)
    needs_council = full or action in (Action.RATIFY, Action.VETO, Action.CANCEL)
    kw: dict[str, Any] = {}
    if needs_review:
        owner = None
        if p.data_source_id is not None:
            owner = s.exec(select(DataSource.owner_id).where(DataSource.id == p.data_source_id)).first()
        kw["target_owner_id"] = owner
        kw["conflicts"] = frozenset(
            s.exec(select(ConflictRow.member_id).where(ConflictRow.proposal_id == p.id)).all()
        )
        kw["triage_approvals"] = frozenset(
            s.exec(
                select(TriageDecision.reviewer_id).where(
                    TriageDecision.proposal_id == p.id, TriageDecision.decision == "approve"
                )
            ).all()
        )
    if needs_vote and p.voting_opened_at is not None:
        kw["electorate_size"] = _count(s, select(Elector.member_id).where(Elector.proposal_id == p.id))
        kw["turnout"] = _count(s, select(CurrentVote.member_id).where(CurrentVote.proposal_id == p.id))
        if actor.member_id is not None:
            kw["actor_is_elector"] = s.get(Elector, (p.id, actor.member_id)) is not None
            kw["actor_has_voted"] = s.get(CurrentVote, (p.id, actor.member_id)) is not None
    if needs_council:
        kw["council_members"] = frozenset(
            s.exec(
                select(MemberRole.member_id)
                .join(Member, col(Member.id) == MemberRole.member_id)
                .where(MemberRole.role == Role.COUNCIL.value, col(Member.active).is_(True))
            ).all()
        )
        rows = s.exec(
            select(CouncilDecision.member_id, CouncilDecision.decision).where(
                CouncilDecision.proposal_id == p.id, CouncilDecision.round == p.council_round
            )
        ).all()
        kw["council_ratify"] = frozenset(m for m, d in rows if d == "ratify")
        kw["council_veto"] = frozenset(m for m, d in rows if d == "veto")
        kw["council_cancel"] = frozenset(
            s.exec(
                select(CouncilDecision.member_id).where(
                    CouncilDecision.proposal_id == p.id, CouncilDecision.round == CANCEL_ROUND
                )
            ).all()
        )
    return ProposalView(
        id=p.id,
        kind=ProposalKind(p.kind),
        state=ProposalState(p.state),
        proposer_id=p.proposer_id,
        election_candidate_id=p.election_candidate_id,
        consent_withdrawal=p.consent_withdrawal,
        triage_deadline=p.triage_deadline,
        voting_deadline=p.voting_deadline,
        deadline_extended=p.deadline_extended,
        council_round=p.council_round,
        council_deadline=p.council_deadline,
        pending_outcome=PendingOutcome(p.pending_outcome) if p.pending_outcome else None,
        appeal_deadline=p.appeal_deadline,
        appealed=p.appealed,
        appeal_of=PendingOutcome(p.appeal_of) if p.appeal_of else None,
        **kw,
    )


def current_tally(s: Session, p: Proposal, ctx: Ctx) -> Tally:
    """The live tally of the proposal's current votes against its frozen electorate."""
    votes = s.exec(
        select(CurrentVote.member_id, CurrentVote.choice).where(CurrentVote.proposal_id == p.id)
    ).all()
    electorate = _count(s, select(Elector.member_id).where(Elector.proposal_id == p.id))
    return delegation_db.poll_tally(s, p, dict(votes), electorate, ctx.policy.voting)


# ---------------------------------------------------------------- the one way state changes


def apply_decision(s: Session, ctx: Ctx, p: Proposal, actor: ActorView, d: Decision, now: datetime) -> None:
    """Apply a domain decision to ``p`` in the caller's transaction: its updates, its events (audited in the
    same transaction), the job it enqueues and the notifications it sends."""
    assert p.id is not None
    from_state = p.state
    apply_updates(p, d.updates)
    p.updated_at = now
    s.add(p)
    if d.open_voting:
        freeze = insert(Elector).from_select(
            ["proposal_id", "member_id"],
            select(literal(p.id), MemberRole.member_id)
            .join(Member, col(Member.id) == MemberRole.member_id)
            .where(MemberRole.role == Role.MEMBER.value, col(Member.active).is_(True)),
        )
        s.connection().execute(freeze)
        electorate = _count(s, select(Elector.member_id).where(Elector.proposal_id == p.id))
        d.events.append(Event("electorate_frozen", None, None, {"size": electorate}))
        # the delegations that count are frozen with the electorate (docs/governance.md, "Delegation")
        edges = delegation_db.freeze(s, p, ctx.settings.delegation_max_depth)
        if edges:
            depth = ctx.settings.delegation_max_depth
            d.events.append(Event("delegations_frozen", None, None, {"edges": edges, "max_depth": depth}))
    if d.grant_role and p.election_candidate_id is not None and p.election_role is not None:
        if s.get(MemberRole, (p.election_candidate_id, p.election_role)) is None:
            s.add(
                MemberRole(
                    member_id=p.election_candidate_id,
                    role=p.election_role,
                    granted_at=now,
                    election_id=p.id,
                )
            )
        d.events.append(
            Event("role_granted", None, None, {"member": p.election_candidate_id, "role": p.election_role})
        )
    if p.consent_withdrawal and p.data_source_id is not None:
        ds = s.get(DataSource, p.data_source_id)
        if ds is not None:
            if d.withdraw_consent:
                ds.consent_state = ConsentState.WITHDRAWN.value
            elif d.to_state in TERMINAL_STATES and ds.consent_state == ConsentState.WITHDRAWAL_PENDING:
                ds.consent_state = ConsentState.GRANTED.value
            s.add(ds)
    if d.cancel_support and actor.member_id is not None:
        # one row per council member supporting the cancellation of an approved proposal (the majority counts)
        reason = d.events[0].payload.get("reason") if d.events else None
        s.add(
            CouncilDecision(
                proposal_id=p.id,
                round=CANCEL_ROUND,
                member_id=actor.member_id,
                decision="cancel",
                reason=str(reason) if reason else None,
                at=now,
            )
        )
    record_events(s, p.id, actor.member_id, d.events, now)
    if from_state == S.VOTING.value and p.state != from_state:
        reveal_votes(s, p.id, now)
    if p.state != from_state:
        events.proposal_changed(s, p, from_state, now)
    if d.to_state is S.APPROVED and p.kind == ProposalKind.UNLEARNING.value:
        # approval enqueues the unlearning job in the same transaction
        job_queue.enqueue_for_proposal(s, ctx, p, now)
        queued = decide(
            proposal_view(s, p, SYSTEM, Action.QUEUE_JOB), SYSTEM, Action.QUEUE_JOB, now, ctx.policy
        )
        apply_decision(s, ctx, p, SYSTEM, queued, now)


VOTE_ACTIONS = ("proposal.vote_cast", "proposal.vote_changed")
REVEAL_ACTION = "proposal.votes_revealed"
REVEAL_CHUNK = 500  # votes per reveal entry


def reveal_votes(s: Session, proposal_id: int, now: datetime) -> int:
    """When a poll leaves the vote, append the choices its hidden-tally vote entries committed to: for each,
    its seq, the choice and the salt, so anyone can check the choice against the entry's commitment and
    recount the tally from the log (governance/audit/recount.py). Returns how many votes were revealed."""
    subject = f"proposal:{proposal_id}"
    done = s.exec(
        select(func.max(AuditEntryRow.seq)).where(
            AuditEntryRow.subject == subject, AuditEntryRow.action == REVEAL_ACTION
        )
    ).one()
    q = (
        select(AuditEntryRow.seq, AuditSensitive.value, AuditSensitive.salt)
        .join(AuditSensitive, col(AuditSensitive.seq) == AuditEntryRow.seq)
        .where(
            AuditEntryRow.subject == subject,
            col(AuditEntryRow.action).in_(VOTE_ACTIONS),
            AuditSensitive.field == "choice",
        )
        .order_by(col(AuditEntryRow.seq))
    )
    if done is not None:
        q = q.where(AuditEntryRow.seq > done)
    votes = [
        {"seq": seq, "choice": value, "salt": salt.hex() if salt is not None else None}
        for seq, value, salt in s.exec(q).all()
    ]
    for start in range(0, len(votes), REVEAL_CHUNK):
        record(
            s,
            actor=None,
            action=REVEAL_ACTION,
            subject=subject,
            payload={"votes": votes[start : start + REVEAL_CHUNK]},
            at=now,
        )
    return len(votes)


def draft(**fields: Any) -> Proposal:
    """A new, unsaved proposal in the draft state (the use case sets its target, then calls :func:`begin`)."""
    return Proposal(state=S.DRAFT.value, **fields)


def begin(s: Session, p: Proposal, actor: ActorView, now: datetime, sensitive: dict[str, str]) -> None:
    """A new draft enters the lifecycle: stored, with its ``created`` event (the free texts in ``sensitive``
    go to the log as salted hashes)."""
    s.add(p)
    s.flush()
    assert p.id is not None
    payload: dict[str, Any] = {
        "kind": p.kind,
        "title": p.title,
        "target_kind": p.target_kind,
        "data_source_id": p.data_source_id,
        "acceptance_tests": p.acceptance_tests,
        "consent_withdrawal": p.consent_withdrawal,
        "election_role": p.election_role,
        "election_candidate_id": p.election_candidate_id,
    }
    record_events(s, p.id, actor.member_id, [Event("created", None, S.DRAFT.value, payload)], now, sensitive)


def apply_updates(p: Proposal, updates: dict[str, Any]) -> None:
    """Set the fields a domain decision changes (enums stored as their values)."""
    for key, value in updates.items():
        setattr(p, key, value.value if hasattr(value, "value") else value)


def record_vote_events(s: Session, p: Proposal, events: list[Event], now: datetime) -> None:
    """The events a batch of votes caused besides the votes themselves (a late quorum's deadline extension):
    votes never change a proposal's state, only its deadline (already set by :func:`apply_updates`)."""
    assert p.id is not None and all(e.to_state in (None, e.from_state) for e in events)
    p.updated_at = now
    s.add(p)
    record_events(s, p.id, None, events, now)


def record_events(
    s: Session,
    proposal_id: int,
    actor_id: int | None,
    events: list[Event],
    now: datetime,
    sensitive: dict[str, str] | None = None,
) -> None:
    """Store ``events`` in the proposal's history and append each to the audit log (same transaction)."""
    for i, e in enumerate(events):
        payload: dict[str, Any] = {k: jsonable(v) for k, v in e.payload.items()}
        secret = sensitive if i == 0 else None
        if secret is None and "reason" in payload:
            # free-text reasons are sensitive: the log commits to a salted hash, the text can be erased
            secret = {"reason": str(payload.pop("reason"))}
        s.add(
            ProposalEvent(
                proposal_id=proposal_id,
                actor_id=actor_id,
                action=e.action,
                from_state=e.from_state,
                to_state=e.to_state,
                payload={**payload, **(secret or {})},
                at=now,
            )
        )
        record(
            s,
            actor=actor_id,
            action=f"proposal.{e.action}",
            subject=f"proposal:{proposal_id}",
            payload={"from": e.from_state, "to": e.to_state, **payload},
            sensitive=secret,
            at=now,
        )


def act(
    ctx: Ctx,
    proposal_id: int,
    actor: ActorView,
    action: Action,
    *,
    reason: str | None = None,
    before: Callable[[Session, Proposal, ProposalView, datetime], None] | None = None,
) -> Proposal:
    """A person's action on a proposal in a transaction of its own: lock, view, decide, run ``before`` (the
    use case's own rows, e.g. the triage decision), apply."""
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = load_proposal(s, proposal_id, lock=True)
        view = proposal_view(s, p, actor, action)
        t = current_tally(s, p, ctx) if action is Action.CLOSE_VOTE else None
        d = decide(view, actor, action, now, ctx.policy, reason=reason, tally=t)
        if before is not None:
            before(s, p, view, now)
        apply_decision(s, ctx, p, actor, d, now)
        return p


def advance(
    s: Session,
    ctx: Ctx,
    proposal_id: int,
    actor: ActorView,
    action: Action,
    now: datetime,
    *,
    reason: str | None = None,
) -> Proposal:
    """Take ``action`` on a proposal inside the caller's transaction (the job orchestration and the release
    gate move a proposal this way, in the same transaction as their own change)."""
    p = load_proposal(s, proposal_id, lock=True)
    d = decide(proposal_view(s, p, actor, action), actor, action, now, ctx.policy, reason=reason)
    apply_decision(s, ctx, p, actor, d, now)
    return p


OPEN_STATES = (S.SUBMITTED, S.TRIAGE, S.VOTING, S.COUNCIL_REVIEW, S.APPEAL_WINDOW)


def sweep(ctx: Ctx, proposal_id: int | None = None) -> list[tuple[int, str]]:
    """Take every action a passed deadline makes due (close votes, appeal windows, expire). Idempotent.
    Run by the background sweeper (governance/jobs/sweeper.py); never by a read."""
    now = ctx.clock.now()
    with read_session(ctx.engine) as s:
        q = select(Proposal).where(col(Proposal.state).in_([st.value for st in OPEN_STATES]))
        if proposal_id is not None:
            q = q.where(Proposal.id == proposal_id)
        due = [
            p.id
            for p in s.exec(q).all()
            if p.id is not None and due_action(proposal_view(s, p, SYSTEM, Action.EXPIRE), now) is not None
        ]
    done: list[tuple[int, str]] = []
    for pid in due:
        # re-check inside the write transaction: another sweeper may have taken it already
        with write_session(ctx.engine) as s:
            p = load_proposal(s, pid, lock=True)
            action = due_action(proposal_view(s, p, SYSTEM, Action.EXPIRE), now)
            if action is None:
                continue
            view = proposal_view(s, p, SYSTEM, action)
            t = current_tally(s, p, ctx) if action is Action.CLOSE_VOTE else None
            apply_decision(s, ctx, p, SYSTEM, decide(view, SYSTEM, action, now, ctx.policy, tally=t), now)
            done.append((pid, action.value))
    return done
