"""Proposal use cases: create, edit, submit, withdraw, triage, vote, council, appeal, conflicts; reading.

Every action goes through :func:`governance.services.lifecycle.act`, which locks the proposal, lets
``governance.domain.review.decide`` rule and writes the decision, its events and its audit entries in one
transaction; a use case only adds its own rows (the triage decision, the council decision, the appeal).
Reads never write: deadlines are swept by the background sweeper (governance/jobs/sweeper.py), not by a GET.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, select

from governance.bounds import is_id
from governance.db.engine import read_session, write_session
from governance.db.models import (
    Appeal,
    CouncilDecision,
    CurrentVote,
    DataSource,
    Member,
    MemberRole,
    Proposal,
    ProposalEvent,
    TriageDecision,
    VoteRecord,
)
from governance.db.models import Conflict as ConflictRow
from governance.domain.consent import ConsentState
from governance.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from governance.domain.proposals import (
    Action,
    ElectionSpec,
    ProposalKind,
    ProposalState,
    TargetKind,
    parse_acceptance_tests,
    parse_target,
)
from governance.domain.review import ActorView, ProposalView, allowed, recusal_reason
from governance.domain.roles import Role, parse_role
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
from governance.services import lifecycle, measurability, outcomes, probes, votes
from governance.services.context import Ctx

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
        appeal_of=p.appeal_of,
        closed_at=p.closed_at,
    )


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
        p = lifecycle.draft(
            kind=kind.value,
            title=data.title,
            proposer_id=actor.member_id,
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
            _set_target(s, p, actor, data.target, data.acceptance_tests, data.consent_withdrawal, ctx=ctx)
        sensitive = {"rationale": p.rationale, "evidence": p.evidence}
        if p.target and p.target.get("kind") == TargetKind.BEHAVIOUR.value:
            sensitive["target"] = json.dumps(p.target, sort_keys=True)
        lifecycle.begin(s, p, actor, now, sensitive)
    assert p.id is not None
    return with_unmeasurable_tests(ctx, submit(ctx, p.id, actor) if data.submit else to_public(p))


def with_unmeasurable_tests(ctx: Ctx, out: ProposalPublic) -> ProposalPublic:
    """``out`` with the tests that cannot be measured on this dataset (governance/services/measurability.py)."""
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, out.id)
        return out.model_copy(update={"unmeasurable_tests": measurability.for_proposal(s, ctx, p)})


def _set_target(
    s: Session,
    p: Proposal,
    actor: ActorView,
    raw_target: dict[str, Any] | None,
    raw_tests: list[dict[str, Any]] | None,
    consent_withdrawal: bool,
    *,
    ctx: Ctx,
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
            ds.consent_state = ConsentState.WITHDRAWAL_PENDING.value
            s.add(ds)
        p.data_source_id = ds.id
    elif consent_withdrawal:
        raise InvalidInput(
            "a consent withdrawal targets one of your data sources", field="consent_withdrawal"
        )
    p.target_kind = target.kind.value
    p.target = target.to_dict()
    if raw_tests is None:  # the defaults that can be measured on this model and dataset (unmeasurable_tests)
        raw_tests = measurability.default_tests(s, ctx, p, target.kind.value)
    p.acceptance_tests = [t.to_dict() for t in parse_acceptance_tests(raw_tests, target.kind)]
    probes.require_accepted(s, p.acceptance_tests)  # a test may name a member's accepted probe (probe_<id>)


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
    if not is_id(candidate):
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
                ctx=ctx,
            )

    return with_unmeasurable_tests(
        ctx, to_public(lifecycle.act(ctx, proposal_id, actor, Action.EDIT, before=edit))
    )


def submit(ctx: Ctx, proposal_id: int, actor: ActorView) -> ProposalPublic:
    return to_public(lifecycle.act(ctx, proposal_id, actor, Action.SUBMIT))


def withdraw(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None = None) -> ProposalPublic:
    return to_public(lifecycle.act(ctx, proposal_id, actor, Action.WITHDRAW, reason=reason))


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

    return to_public(lifecycle.act(ctx, proposal_id, actor, action, reason=reason, before=store))


def vote(ctx: Ctx, proposal_id: int, actor: ActorView, choice: str, reason: str | None) -> VotePublic:
    """Cast or change a vote (governance/services/votes.py stores it, possibly batched with others)."""
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

    return to_public(lifecycle.act(ctx, proposal_id, actor, action, reason=reason, before=store))


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

    return to_public(lifecycle.act(ctx, proposal_id, actor, Action.APPEAL, reason=reason, before=store))


def declare_conflict(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None) -> ProposalPublic:
    def store(s: Session, p: Proposal, _v: ProposalView, now: datetime) -> None:
        assert actor.member_id is not None
        s.add(
            ConflictRow(
                proposal_id=proposal_id, member_id=actor.member_id, reason=(reason or "").strip(), at=now
            )
        )

    return to_public(
        lifecycle.act(ctx, proposal_id, actor, Action.DECLARE_CONFLICT, reason=reason, before=store)
    )


def cancel(ctx: Ctx, proposal_id: int, actor: ActorView, reason: str | None) -> ProposalPublic:
    return to_public(lifecycle.act(ctx, proposal_id, actor, Action.CANCEL, reason=reason))


def list_proposals(
    ctx: Ctx,
    *,
    state: str | None = None,
    target_kind: str | None = None,
    kind: str | None = None,
    proposer_id: int | None = None,
    limit: int = 50,
    offset: int = 0,
    viewer_id: int | None = None,
    q: str | None = None,
) -> list[ProposalPublic]:
    """Newest first. A draft is its author's until submitted: it is listed only to ``viewer_id`` its author.
    ``q`` (text search) matches the title or the rationale, case-insensitively, as a substring."""
    if state is not None and state not in {s.value for s in ProposalState}:
        raise InvalidInput(f"unknown state {state!r}", field="state")
    if target_kind is not None and target_kind not in {k.value for k in TargetKind}:
        raise InvalidInput(f"unknown target kind {target_kind!r}", field="target_kind")
    if kind is not None and kind not in {k.value for k in ProposalKind}:
        raise InvalidInput(f"unknown proposal kind {kind!r}", field="kind")
    if not 1 <= limit <= 500 or offset < 0:
        raise InvalidInput("limit must be 1-500 and offset >= 0", field="limit")
    if q is not None and len(q) > 200:  # text search
        raise InvalidInput("the search text is at most 200 characters", field="q")
    with read_session(ctx.engine) as s:
        stmt = select(Proposal).order_by(col(Proposal.id).desc()).limit(limit).offset(offset)
        stmt = stmt.where(or_(col(Proposal.state) != S.DRAFT.value, col(Proposal.proposer_id) == viewer_id))
        if state:
            stmt = stmt.where(Proposal.state == state)
        if target_kind:
            stmt = stmt.where(Proposal.target_kind == target_kind)
        if kind:
            stmt = stmt.where(Proposal.kind == kind)
        if proposer_id is not None:
            stmt = stmt.where(Proposal.proposer_id == proposer_id)
        if text := (q or "").strip().lower():  # text search: lower() on both sides, SQLite and PostgreSQL
            stmt = stmt.where(
                or_(
                    func.lower(col(Proposal.title)).contains(text, autoescape=True),
                    func.lower(col(Proposal.rationale)).contains(text, autoescape=True),
                )
            )
        return [to_public(p) for p in s.exec(stmt).all()]


def _tally_public(s: Session, ctx: Ctx, p: Proposal) -> TallyPublic | None:
    if p.voting_opened_at is None:
        return None
    assert p.id is not None
    t = lifecycle.current_tally(s, p, ctx)
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
        direct=None if hidden or t.delegated is None else t.direct,
        delegated=None if hidden or t.delegated is None else dict(t.delegated),
    )


def get_tally(ctx: Ctx, proposal_id: int) -> TallyPublic:
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id)
        t = _tally_public(s, ctx, p)
        if t is None:
            raise Conflict("voting has not opened on this proposal")
        return t


def get_detail(ctx: Ctx, proposal_id: int, viewer: ActorView | None = None) -> ProposalDetail:
    now = ctx.clock.now()
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id)
        if p.state == S.DRAFT.value and (viewer is None or viewer.member_id != p.proposer_id):
            raise NotFound(f"no proposal {proposal_id}")  # a draft is its author's until submitted
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
            view = lifecycle.proposal_view(s, p, viewer, None)
            actions = [a.value for a in Action if allowed(view, viewer, a, now)]
        return ProposalDetail(
            **{**to_public(p).model_dump(), "unmeasurable_tests": measurability.for_proposal(s, ctx, p)},
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
            outcome=outcomes.status_in(s, p, viewer),
        )


def list_votes(ctx: Ctx, proposal_id: int, history: bool = False) -> list[VotePublic]:
    """Current votes (or the whole append-only history); withheld while a secret tally's vote is open."""
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id)
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


def recusal_for(ctx: Ctx, proposal_id: int, actor: ActorView) -> str | None:
    """Why a reviewer or council member may not review this proposal (shown where their buttons would be)."""
    if actor.member_id is None or not ({Role.REVIEWER, Role.COUNCIL} & actor.roles):
        return None
    with read_session(ctx.engine) as s:
        p = lifecycle.load_proposal(s, proposal_id)
        return recusal_reason(lifecycle.proposal_view(s, p, actor, None), actor.member_id)


def reasons_given(ctx: Ctx, proposal_id: int) -> list[VotePublic]:
    """The reasons members gave with their current votes (objections and blocks first); withheld while a
    secret tally's vote is open, like the votes themselves."""
    try:
        rows = [v for v in list_votes(ctx, proposal_id) if v.reason]
    except PermissionDenied:  # a secret vote still open
        return []
    order = {"block": 0, "object": 1}
    return sorted(rows, key=lambda v: (order.get(v.choice, 2), v.cast_at))
