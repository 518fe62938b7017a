"""Proposal use cases: create, edit, submit, withdraw, triage, vote, council, appeal, conflicts, deadlines.

Every action goes through ``_act``: lock the proposal, build the domain's view of it, let
``governance.domain.review.decide`` rule, then write the decision, its events and its audit entries in the
same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, literal
from sqlmodel import Session, col, select

from governance.db.engine import read_session, write_session
from governance.db.models import (
    Appeal,
    CouncilDecision,
    CurrentVote,
    DataSource,
    Elector,
    Member,
    MemberRole,
    Proposal,
    ProposalEvent,
    TriageDecision,
    VoteRecord,
)
from governance.db.models import Conflict as ConflictRow
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.proposals import (
    TERMINAL_STATES,
    Action,
    ElectionSpec,
    Event,
    PendingOutcome,
    ProposalKind,
    ProposalState,
    TargetKind,
    parse_acceptance_tests,
    parse_target,
)
from governance.domain.review import SYSTEM, ActorView, Decision, ProposalView, allowed, decide, due_action
from governance.domain.roles import Role, parse_role
from governance.domain.voting import Tally, VoteChoice, tally
from governance.schemas import (
    DecisionPublic,
    EventPublic,
    ProposalCreate,
    ProposalDetail,
    ProposalPublic,
    ProposalUpdate,
    TallyPublic,
    VotePublic,
)
from governance.services import events, jobs
from governance.services.audit import jsonable, record
from governance.services.context import Ctx
from governance.services.data_sources import ConsentState

S = ProposalState


# ---------------------------------------------------------------- reading


def to_public(p: Proposal) -> ProposalPublic:
    assert p.id is not None
    return ProposalPublic(
        id=p.id,
        kind=p.kind,
        title=p.title,
        state=p.state,
        proposer_id=p.proposer_id,
        target=p.target,
        election_role=p.election_role,
        election_candidate_id=p.election_candidate_id,
        rationale=p.rationale,
        evidence=p.evidence,
        acceptance_tests=p.acceptance_tests,
        consent_withdrawal=p.consent_withdrawal,
        secret_tally=p.secret_tally,
        created_at=p.created_at,
        updated_at=p.updated_at,
        triage_deadline=p.triage_deadline,
        voting_deadline=p.voting_deadline,
        council_deadline=p.council_deadline,
        appeal_deadline=p.appeal_deadline,
        pending_outcome=p.pending_outcome,
        block_on_record=p.block_on_record,
        vote_outcome=p.vote_outcome,
        appealed=p.appealed,
        closed_at=p.closed_at,
    )


def load_proposal(s: Session, proposal_id: int, lock: bool = False) -> Proposal:
    """The proposal row (``lock``: FOR UPDATE, before a decision changes it); NotFound if there is none.
    With :func:`proposal_view` and :func:`apply_decision` this is the small public API through which the
    other services (votes, jobs, registry) move a proposal, always inside their own transaction."""
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
    needs_review = full or action in (
        Action.TRIAGE_APPROVE,
        Action.TRIAGE_REJECT,
        Action.RATIFY,
        Action.VETO,
        Action.DECLARE_CONFLICT,
    )
    needs_vote = full or action in (Action.VOTE, Action.CLOSE_VOTE)
    needs_council = full or action in (Action.RATIFY, Action.VETO)
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


def _tally(s: Session, p: Proposal, ctx: Ctx) -> Tally:
    choices = s.exec(select(CurrentVote.choice).where(CurrentVote.proposal_id == p.id)).all()
    electorate = _count(s, select(Elector.member_id).where(Elector.proposal_id == p.id))
    return tally((VoteChoice(c) for c in choices), electorate, ctx.policy.voting)


# ---------------------------------------------------------------- the one way state changes


def apply_decision(s: Session, ctx: Ctx, p: Proposal, actor: ActorView, d: Decision, now: datetime) -> None:
    """Apply a domain decision to ``p`` in the caller's transaction: its updates, its events (audited in the
    same transaction), the job it enqueues and the notifications it sends."""
    assert p.id is not None
    from_state = p.state
    for key, value in d.updates.items():
        setattr(p, key, value.value if hasattr(value, "value") else value)
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
                ds.consent_state = ConsentState.WITHDRAWN
            elif d.to_state in TERMINAL_STATES and ds.consent_state == ConsentState.WITHDRAWAL_PENDING:
                ds.consent_state = ConsentState.GRANTED
            s.add(ds)
    record_events(s, p.id, actor.member_id, d.events, now)
    if p.state != from_state:
        events.proposal_changed(s, p, from_state, now)
    if d.to_state is S.APPROVED and p.kind == ProposalKind.UNLEARNING.value:
        # approval enqueues the unlearning job in the same transaction
        jobs.enqueue_for_proposal(s, ctx, p, now)
        queued = decide(
            proposal_view(s, p, SYSTEM, Action.QUEUE_JOB), SYSTEM, Action.QUEUE_JOB, now, ctx.policy
        )
        apply_decision(s, ctx, p, SYSTEM, queued, now)


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


def _act(
    ctx: Ctx,
    proposal_id: int,
    actor: ActorView,
    action: Action,
    *,
    reason: str | None = None,
    before: Callable[[Session, Proposal, ProposalView, datetime], None] | None = None,
) -> Proposal:
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = load_proposal(s, proposal_id, lock=True)
        view = proposal_view(s, p, actor, action)
        t = _tally(s, p, ctx) if action is Action.CLOSE_VOTE else None
        d = decide(view, actor, action, now, ctx.policy, reason=reason, tally=t)
        if before is not None:
            before(s, p, view, now)
        apply_decision(s, ctx, p, actor, d, now)
        return p


# ---------------------------------------------------------------- use cases


def create(ctx: Ctx, data: ProposalCreate, actor: ActorView) -> ProposalPublic:
    if actor.member_id is None or Role.MEMBER not in actor.roles:
        raise PermissionDenied("only members may table proposals")
    try:
        kind = ProposalKind(data.kind)
    except ValueError:
        raise InvalidInput("kind must be unlearning or election", field="kind") from None
    now = ctx.clock.now()
    with write_session(ctx.engine) as s:
        p = Proposal(
            kind=kind.value,
            title=data.title,
            proposer_id=actor.member_id,
            state=S.DRAFT.value,
            rationale=data.rationale,
            evidence=data.evidence,
            secret_tally=data.secret_tally,
            consent_withdrawal=data.consent_withdrawal,
            created_at=now,
            updated_at=now,
        )
        if kind is ProposalKind.ELECTION:
            _set_election(s, p, data.election, data.target, data.consent_withdrawal)
        else:
            _set_target(s, p, actor, data.target, data.acceptance_tests, data.consent_withdrawal)
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
        sensitive = {"rationale": p.rationale, "evidence": p.evidence}
        if p.target and p.target.get("kind") == TargetKind.BEHAVIOUR.value:
            sensitive["target"] = json.dumps(p.target, sort_keys=True)
        record_events(
            s, p.id, actor.member_id, [Event("created", None, S.DRAFT.value, payload)], now, sensitive
        )
    if data.submit:
        return submit(ctx, p.id, actor)
    return to_public(p)


def _set_target(
    s: Session,
    p: Proposal,
    actor: ActorView,
    raw_target: dict[str, Any] | None,
    raw_tests: list[dict[str, Any]] | None,
    consent_withdrawal: bool,
) -> None:
    if raw_target is None:
        raise InvalidInput("an unlearning proposal names its target", field="target")
    target = parse_target(raw_target)
    if target.kind is TargetKind.DATA_SOURCE:
        assert target.data_source_id is not None
        ds = s.get(DataSource, target.data_source_id)
        if ds is None:
            raise InvalidInput(f"no data source {target.data_source_id}", field="target.data_source_id")
        if consent_withdrawal:
            if ds.owner_id != actor.member_id:
                raise PermissionDenied("only the owner of a data source may withdraw its consent")
            if ds.consent_state != ConsentState.GRANTED:
                raise Conflict(f"consent for data source {ds.id} is already {ds.consent_state}")
            ds.consent_state = ConsentState.WITHDRAWAL_PENDING
            s.add(ds)
        p.data_source_id = ds.id
    elif consent_withdrawal:
        raise InvalidInput(
            "a consent withdrawal targets one of your data sources", field="consent_withdrawal"
        )
    p.target_kind = target.kind.value
    p.target = target.to_dict()
    p.acceptance_tests = [t.to_dict() for t in parse_acceptance_tests(raw_tests, target.kind)]


def _set_election(
    s: Session,
    p: Proposal,
    election: dict[str, Any] | None,
    target: dict[str, Any] | None,
    consent_withdrawal: bool,
) -> None:
    if target is not None or consent_withdrawal:
        raise InvalidInput("an election has no unlearning target", field="target")
    if not isinstance(election, dict):
        raise InvalidInput("an election needs {role, candidate_id}", field="election")
    role = parse_role(str(election.get("role")))
    candidate = election.get("candidate_id")
    if not isinstance(candidate, int) or isinstance(candidate, bool):
        raise InvalidInput("candidate_id must be a member id", field="election.candidate_id")
    spec = ElectionSpec(role, candidate)
    m = s.get(Member, spec.candidate_id)
    if m is None or not m.active:
        raise InvalidInput(f"no active member {spec.candidate_id}", field="election.candidate_id")
    if s.get(MemberRole, (spec.candidate_id, spec.role.value)) is not None:
        raise Conflict(f"member {spec.candidate_id} already holds the {spec.role.value} role")
    p.election_role = spec.role.value
    p.election_candidate_id = spec.candidate_id
    p.acceptance_tests = []


def update(ctx: Ctx, proposal_id: int, data: ProposalUpdate, actor: ActorView) -> ProposalPublic:
    def edit(s: Session, p: Proposal, _v: ProposalView, _now: datetime) -> None:
        fields = data.model_dump(exclude_unset=True)
        for key in ("title", "rationale", "evidence", "secret_tally"):
            if fields.get(key) is not None:
                setattr(p, key, fields[key])
        if p.kind == ProposalKind.UNLEARNING.value and ("target" in fields or "acceptance_tests" in fields):
            if p.consent_withdrawal and "target" in fields:
                raise InvalidInput("the target of a consent withdrawal cannot change", field="target")
            _set_target(
                s,
                p,
                actor,
                fields.get("target", p.target),
                fields.get("acceptance_tests", p.acceptance_tests),
                False,
            )

    return to_public(_act(ctx, proposal_id, actor, Action.EDIT, before=edit))


def submit(ctx: Ctx, proposal_id: int, actor: ActorView) -> ProposalPublic:
    return to_public(_act(ctx, proposal_id, actor, Action.SUBMIT))


def withdraw(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None = None) -> ProposalPublic:
    return to_public(_act(ctx, proposal_id, actor, Action.WITHDRAW, reason=reason))


def triage(ctx: Ctx, proposal_id: int, actor: ActorView, decision: str, reason: str | None) -> ProposalPublic:
    if decision not in ("approve", "reject"):
        raise InvalidInput("triage decision must be approve or reject", field="decision")
    action = Action.TRIAGE_APPROVE if decision == "approve" else Action.TRIAGE_REJECT

    def store(s: Session, p: Proposal, _v: ProposalView, now: datetime) -> None:
        assert actor.member_id is not None
        existing = s.exec(
            select(TriageDecision).where(
                TriageDecision.proposal_id == proposal_id, TriageDecision.reviewer_id == actor.member_id
            )
        ).first()
        if existing is not None:  # an earlier approval followed by a rejection: the latest stands
            s.delete(existing)
            s.flush()
        s.add(
            TriageDecision(
                proposal_id=proposal_id,
                reviewer_id=actor.member_id,
                decision=decision,
                reason=(reason or "").strip() or None,
                at=now,
            )
        )

    return to_public(_act(ctx, proposal_id, actor, action, reason=reason, before=store))


def vote(ctx: Ctx, proposal_id: int, actor: ActorView, choice: str, reason: str | None) -> VotePublic:
    """Cast or change a vote (governance/services/votes.py stores it, possibly batched with others)."""
    from governance.services import votes

    return votes.cast(ctx, votes.VoteRequest(proposal_id, actor, choice, reason))


def council(
    ctx: Ctx, proposal_id: int, actor: ActorView, decision: str, reason: str | None
) -> ProposalPublic:
    if decision not in ("ratify", "veto"):
        raise InvalidInput("council decision must be ratify or veto", field="decision")
    action = Action.RATIFY if decision == "ratify" else Action.VETO

    def store(s: Session, p: Proposal, _v: ProposalView, now: datetime) -> None:
        assert actor.member_id is not None
        s.add(
            CouncilDecision(
                proposal_id=proposal_id,
                round=p.council_round,
                member_id=actor.member_id,
                decision=decision,
                reason=(reason or "").strip() or None,
                at=now,
            )
        )

    return to_public(_act(ctx, proposal_id, actor, action, reason=reason, before=store))


def appeal(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None) -> ProposalPublic:
    def store(s: Session, p: Proposal, v: ProposalView, now: datetime) -> None:
        assert actor.member_id is not None and v.pending_outcome is not None
        s.add(
            Appeal(
                proposal_id=proposal_id,
                appellant_id=actor.member_id,
                appeal_of=v.pending_outcome.value,
                reason=(reason or "").strip(),
                at=now,
            )
        )

    return to_public(_act(ctx, proposal_id, actor, Action.APPEAL, reason=reason, before=store))


def declare_conflict(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None) -> ProposalPublic:
    def store(s: Session, p: Proposal, _v: ProposalView, now: datetime) -> None:
        assert actor.member_id is not None
        s.add(
            ConflictRow(
                proposal_id=proposal_id, member_id=actor.member_id, reason=(reason or "").strip(), at=now
            )
        )

    return to_public(_act(ctx, proposal_id, actor, Action.DECLARE_CONFLICT, reason=reason, before=store))


def cancel(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None) -> ProposalPublic:
    return to_public(_act(ctx, proposal_id, actor, Action.CANCEL, reason=reason))


def sweep(ctx: Ctx, proposal_id: int | None = None) -> list[tuple[int, str]]:
    """Take every action a passed deadline makes due (close votes, appeal windows, expire). Idempotent."""
    now = ctx.clock.now()
    open_states = [S.SUBMITTED.value, S.TRIAGE.value, S.VOTING.value, S.COUNCIL_REVIEW.value, S.APPEAL_WINDOW]
    with read_session(ctx.engine) as s:
        q = select(Proposal).where(col(Proposal.state).in_(open_states))
        if proposal_id is not None:
            q = q.where(Proposal.id == proposal_id)
        due = [
            (p.id, a)
            for p in s.exec(q).all()
            if p.id is not None
            and (a := due_action(proposal_view(s, p, SYSTEM, Action.EXPIRE), now)) is not None
        ]
    done: list[tuple[int, str]] = []
    for pid, _ in due:
        # re-check inside the write transaction: another worker may have taken it already
        with write_session(ctx.engine) as s:
            p = load_proposal(s, pid, lock=True)
            action = due_action(proposal_view(s, p, SYSTEM, Action.EXPIRE), now)
            if action is None:
                continue
            view = proposal_view(s, p, SYSTEM, action)
            t = _tally(s, p, ctx) if action is Action.CLOSE_VOTE else None
            d = decide(view, SYSTEM, action, now, ctx.policy, tally=t)
            apply_decision(s, ctx, p, SYSTEM, d, now)
            done.append((pid, action.value))
    return done


def list_proposals(
    ctx: Ctx,
    *,
    state: str | None = None,
    target_kind: str | None = None,
    kind: str | None = None,
    proposer_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
) -> list[ProposalPublic]:
    if state is not None and state not in {s.value for s in ProposalState}:
        raise InvalidInput(f"unknown state {state!r}", field="state")
    if target_kind is not None and target_kind not in {k.value for k in TargetKind}:
        raise InvalidInput(f"unknown target kind {target_kind!r}", field="target_kind")
    if kind is not None and kind not in {k.value for k in ProposalKind}:
        raise InvalidInput(f"unknown proposal kind {kind!r}", field="kind")
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("limit must be 1-500 and offset >= 0", field="limit")
    with read_session(ctx.engine) as s:
        q = select(Proposal).order_by(col(Proposal.id).desc()).limit(limit).offset(offset)
        if state:
            q = q.where(Proposal.state == state)
        if target_kind:
            q = q.where(Proposal.target_kind == target_kind)
        if kind:
            q = q.where(Proposal.kind == kind)
        if proposer_id is not None:
            q = q.where(Proposal.proposer_id == proposer_id)
        return [to_public(p) for p in s.exec(q).all()]


def _tally_public(s: Session, ctx: Ctx, p: Proposal) -> TallyPublic | None:
    if p.voting_opened_at is None:
        return None
    assert p.id is not None
    t = _tally(s, p, ctx)
    closed = p.state != S.VOTING.value
    hidden = p.secret_tally and not closed
    return TallyPublic(
        proposal_id=p.id,
        hidden=hidden,
        electorate=t.electorate,
        turnout=t.turnout,
        approve=None if hidden else t.approve,
        object=None if hidden else t.object,
        abstain=None if hidden else t.abstain,
        block=None if hidden else t.block,
        quorum_reached=None if hidden else t.quorum_reached,
        support=None if hidden else t.support,
        outcome=None if hidden else (p.vote_outcome if closed else t.outcome.value),
        voting_deadline=p.voting_deadline,
        closed=closed,
    )


def get_tally(ctx: Ctx, proposal_id: int) -> TallyPublic:
    sweep(ctx, proposal_id)
    with read_session(ctx.engine) as s:
        p = load_proposal(s, proposal_id)
        t = _tally_public(s, ctx, p)
        if t is None:
            raise Conflict("voting has not opened on this proposal")
        return t


def get_detail(ctx: Ctx, proposal_id: int, viewer: ActorView | None = None) -> ProposalDetail:
    sweep(ctx, proposal_id)
    now = ctx.clock.now()
    with read_session(ctx.engine) as s:
        p = load_proposal(s, proposal_id)
        history = s.exec(
            select(ProposalEvent)
            .where(ProposalEvent.proposal_id == proposal_id)
            .order_by(col(ProposalEvent.id))
        ).all()
        triage_rows = s.exec(
            select(TriageDecision)
            .where(TriageDecision.proposal_id == proposal_id)
            .order_by(col(TriageDecision.id))
        ).all()
        council_rows = s.exec(
            select(CouncilDecision)
            .where(CouncilDecision.proposal_id == proposal_id)
            .order_by(col(CouncilDecision.id))
        ).all()
        conflicts = s.exec(select(ConflictRow.member_id).where(ConflictRow.proposal_id == proposal_id)).all()
        actions: list[str] = []
        if viewer is not None and viewer.member_id is not None:
            view = proposal_view(s, p, viewer, None)
            actions = [a.value for a in Action if allowed(view, viewer, a, now)]
        return ProposalDetail(
            **to_public(p).model_dump(),
            history=[
                EventPublic(
                    action=e.action,
                    actor_id=e.actor_id,
                    from_state=e.from_state,
                    to_state=e.to_state,
                    payload=e.payload,
                    at=e.at,
                )
                for e in history
            ],
            triage=[
                DecisionPublic(member_id=t.reviewer_id, decision=t.decision, reason=t.reason, at=t.at)
                for t in triage_rows
            ],
            council=[
                DecisionPublic(
                    member_id=c.member_id, decision=c.decision, reason=c.reason, at=c.at, round=c.round
                )
                for c in council_rows
            ],
            conflicts=sorted(conflicts),
            tally=_tally_public(s, ctx, p),
            allowed_actions=actions,
        )


def list_votes(ctx: Ctx, proposal_id: int, history: bool = False) -> list[VotePublic]:
    """Current votes (or the whole append-only history); withheld while a secret tally's vote is open."""
    with read_session(ctx.engine) as s:
        p = load_proposal(s, proposal_id)
        if p.secret_tally and p.state == S.VOTING.value:
            raise PermissionDenied("this vote is secret until it closes")
        q = select(VoteRecord).where(VoteRecord.proposal_id == proposal_id).order_by(col(VoteRecord.id))
        if not history:
            q = q.where(
                col(VoteRecord.id).in_(
                    select(CurrentVote.record_id).where(CurrentVote.proposal_id == proposal_id)
                )
            )
        return [
            VotePublic(
                proposal_id=proposal_id,
                member_id=r.member_id,
                choice=r.choice,
                reason=r.reason,
                cast_at=r.cast_at,
            )
            for r in s.exec(q).all()
        ]
