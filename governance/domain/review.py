"""Hierarchical review as pure functions: who may act, and what follows from an action.

``decide`` is the only way a proposal changes state. It takes a snapshot of the proposal
(``ProposalView``), the actor, the action and the clock's ``now``; it checks the transition table and the
recusal rules, and returns a ``Decision``: the new state, the fields to update, the events to record, and
any side effect the service must carry out (open the vote, grant a role, withdraw consent).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from governance.domain.errors import InvalidInput, InvalidTransition, PermissionDenied
from governance.domain.proposals import (
    APPROVED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    Actor,
    Event,
    PendingOutcome,
    ProposalKind,
    ProposalState,
    Rule,
)
from governance.domain.roles import Role
from governance.domain.voting import Outcome, Tally, VotingRules, extended_deadline

S = ProposalState
MAX_REASON = 4000
# council members' support for cancelling an approved proposal is stored beside their ratify/veto decisions,
# in a round of its own (council rounds count up from 0, so this one never mixes with them)
CANCEL_ROUND = -1


@dataclass(frozen=True)
class Policy:
    triage_approvals_required: int
    triage_period: timedelta
    voting_period: timedelta
    council_period: timedelta
    appeal_period: timedelta
    voting: VotingRules

    def __post_init__(self) -> None:
        if self.triage_approvals_required < 1:
            raise InvalidInput(
                "at least one reviewer approval is required", field="triage_approvals_required"
            )


@dataclass(frozen=True)
class ActorView:
    member_id: int | None  # None: the system (deadline sweeper, job worker)
    roles: frozenset[Role] = frozenset()

    @property
    def is_system(self) -> bool:
        return self.member_id is None


SYSTEM = ActorView(None)


@dataclass(frozen=True)
class ProposalView:
    id: int
    kind: ProposalKind
    state: ProposalState
    proposer_id: int
    target_owner_id: int | None = None
    election_candidate_id: int | None = None
    consent_withdrawal: bool = False
    conflicts: frozenset[int] = frozenset()
    triage_approvals: frozenset[int] = frozenset()
    triage_deadline: datetime | None = None
    voting_deadline: datetime | None = None
    deadline_extended: bool = False
    # the vote, as seen by the actor: sizes, and whether the actor is an elector / has voted already
    electorate_size: int = 0
    turnout: int = 0
    actor_is_elector: bool = False
    actor_has_voted: bool = False
    turnout_gain: int | None = None  # what the actor's vote adds to the turnout (None: 1, or 0 for a change);
    # with delegation, a delegate's first vote also casts the votes they carry (governance/domain/delegation.py)
    council_members: frozenset[int] = frozenset()  # council at the time of the decision
    council_ratify: frozenset[int] = frozenset()  # decisions in the current council round
    council_veto: frozenset[int] = frozenset()
    council_cancel: frozenset[int] = frozenset()  # support for cancelling an approved proposal (CANCEL_ROUND)
    council_round: int = 0
    council_deadline: datetime | None = None
    pending_outcome: PendingOutcome | None = None
    appeal_deadline: datetime | None = None
    appealed: bool = False
    appeal_of: PendingOutcome | None = None


@dataclass
class Decision:
    to_state: ProposalState
    updates: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    open_voting: bool = False  # freeze the electorate now
    grant_role: bool = False  # an election passed
    withdraw_consent: bool = False  # a consent withdrawal's unlearning was verified: the data is forgotten
    cancel_support: bool = False  # record the actor's support for cancelling an approved proposal


def recusal_reason(view: ProposalView, member_id: int) -> str | None:
    """Why this member may not take any review action on this proposal, or None.

    Recusal covers every action a role gives: triage, ratify, veto, cancel (a proposal or its job), appeal
    as a reviewer, retry its job, release its model. It does not cover what every member may do as a member
    (vote, declare a conflict) nor the proposer's own actions (edit, submit, withdraw, appeal)."""
    if member_id == view.proposer_id:
        return "the proposer may not review their own proposal"
    if view.target_owner_id is not None and member_id == view.target_owner_id:
        return "the owner of the targeted data source may not review this proposal"
    if view.election_candidate_id is not None and member_id == view.election_candidate_id:
        return "a candidate may not review their own election"
    if member_id in view.conflicts:
        return "you declared a conflict of interest on this proposal"
    return None


def _authorise(view: ProposalView, actor: ActorView, action: Action, rule: Rule) -> None:
    who = rule.who
    if who is Actor.SYSTEM:
        if not actor.is_system:
            raise PermissionDenied(f"{action.value} happens automatically; nobody can take it by hand")
        return
    mid = actor.member_id
    if mid is None:
        raise PermissionDenied(f"{action.value} must be taken by a member")
    if who is Actor.PROPOSER:
        if mid != view.proposer_id:
            raise PermissionDenied(f"only the proposer may {action.value} this proposal")
    elif who is Actor.REVIEWER:
        if Role.REVIEWER not in actor.roles:
            raise PermissionDenied(f"only reviewers may {action.value}")
        if reason := recusal_reason(view, mid):
            raise PermissionDenied(f"recused: {reason}")
    elif who is Actor.COUNCIL:
        if Role.COUNCIL not in actor.roles:
            raise PermissionDenied(f"only council members may {action.value}")
        if reason := recusal_reason(view, mid):
            raise PermissionDenied(f"recused: {reason}")
    elif who is Actor.ELECTORATE:
        if not view.actor_is_elector:
            raise PermissionDenied("you are not in this vote's electorate (frozen when voting opened)")
    elif who is Actor.APPELLANT:
        if mid != view.proposer_id:
            if Role.REVIEWER not in actor.roles:
                raise PermissionDenied("only the proposer or a reviewer may appeal")
            if reason := recusal_reason(view, mid):
                raise PermissionDenied(f"recused: {reason}")
    elif who is Actor.COUNCIL_OR_ADMIN:
        if not ({Role.COUNCIL, Role.ADMIN} & actor.roles):
            raise PermissionDenied(f"only the council or an admin may {action.value}")
        if reason := recusal_reason(view, mid):
            raise PermissionDenied(f"recused: {reason}")
    elif who is Actor.MEMBER and Role.MEMBER not in actor.roles:
        raise PermissionDenied(f"only members may {action.value}")


def allowed(view: ProposalView, actor: ActorView, action: Action, now: datetime) -> bool:
    """Whether ``decide`` would accept this action (ignoring the arguments an action needs)."""
    try:
        rule = _rule_for(view, action)
        _authorise(view, actor, action, rule)
        _check_specifics(view, actor, action, now)
    except (InvalidTransition, PermissionDenied):
        return False
    return True


def _rule_for(view: ProposalView, action: Action) -> Rule:
    if view.state in TERMINAL_STATES:
        raise InvalidTransition(f"the proposal is {view.state.value}; a closed proposal never changes")
    rule = TRANSITIONS.get((view.state, action))
    if rule is None:
        raise InvalidTransition(f"cannot {action.value} a proposal that is {view.state.value}")
    return rule


def _check_specifics(view: ProposalView, actor: ActorView, action: Action, now: datetime) -> None:
    mid = actor.member_id
    if action is Action.VOTE and view.voting_deadline is not None and now >= view.voting_deadline:
        raise InvalidTransition("voting has closed for this proposal")
    if action in (Action.TRIAGE_APPROVE, Action.TRIAGE_REJECT) and _passed(view.triage_deadline, now):
        raise InvalidTransition("the triage period has ended")
    if action in (Action.RATIFY, Action.VETO) and _passed(view.council_deadline, now):
        raise InvalidTransition("the council's review period has ended")
    if action is Action.APPEAL and _passed(view.appeal_deadline, now):
        raise InvalidTransition("the appeal window has closed")
    if action is Action.TRIAGE_APPROVE and mid in view.triage_approvals:
        raise InvalidTransition("you already approved this proposal in triage")
    if action in (Action.RATIFY, Action.VETO) and mid in (view.council_ratify | view.council_veto):
        raise InvalidTransition("you already decided on this proposal in this council round")
    if action is Action.CANCEL and view.consent_withdrawal:
        # the right to be forgotten: only its owner may withdraw it (before approval); a job that must stop is
        # stopped (governance/services/jobs.py), and the withdrawal stays pending and retriable
        raise PermissionDenied(
            "a withdrawal of consent cannot be cancelled; only its owner may withdraw it before approval "
            "(stopping its job leaves it pending and retriable)"
        )
    if action is Action.CANCEL and view.state in APPROVED_STATES and mid in view.council_cancel:
        raise InvalidTransition("you already support cancelling this proposal; it needs a council majority")
    if action is Action.APPEAL:
        if view.appealed:
            raise InvalidTransition("this proposal was already appealed once")
        if view.pending_outcome is PendingOutcome.APPROVED and mid == view.proposer_id:
            raise PermissionDenied("the proposer cannot appeal their own proposal's approval")
    if action is Action.DECLARE_CONFLICT and mid in view.conflicts:
        raise InvalidTransition("you already declared a conflict on this proposal")
    if action is Action.CLOSE_VOTE and view.voting_deadline is not None and now < view.voting_deadline:
        raise InvalidTransition("the vote is still open")
    if (
        action is Action.CLOSE_APPEAL_WINDOW
        and view.appeal_deadline is not None
        and now < view.appeal_deadline
    ):
        raise InvalidTransition("the appeal window is still open")
    if action is Action.EXPIRE:
        deadline = view.council_deadline if view.state is S.COUNCIL_REVIEW else view.triage_deadline
        if deadline is None or now < deadline:
            raise InvalidTransition("the deadline has not passed")
    if action is Action.SUBMIT and view.kind is ProposalKind.ELECTION and view.election_candidate_id is None:
        raise InvalidInput("an election names a candidate")


def _passed(deadline: datetime | None, now: datetime) -> bool:
    return deadline is not None and now >= deadline


def _reason(reason: str | None, what: str) -> str:
    text = (reason or "").strip()
    if not text:
        raise InvalidInput(f"{what} needs a reason", field="reason")
    if len(text) > MAX_REASON:
        raise InvalidInput(f"the reason is longer than {MAX_REASON} characters", field="reason")
    return text


def decide(
    view: ProposalView,
    actor: ActorView,
    action: Action,
    now: datetime,
    policy: Policy,
    *,
    reason: str | None = None,
    tally: Tally | None = None,
) -> Decision:
    """Check and carry out one action on a snapshot. Raises a DomainError, never changes anything."""
    rule = _rule_for(view, action)
    _authorise(view, actor, action, rule)
    _check_specifics(view, actor, action, now)
    d = _apply(view, actor, action, now, policy, reason, tally)
    if d.to_state not in rule.to:  # the table is the contract; a mismatch is a programming error
        raise RuntimeError(f"{action.value} from {view.state.value} led to {d.to_state.value}")
    if d.to_state is not view.state:
        d.updates["state"] = d.to_state
    payload: dict[str, Any] = {"actor": actor.member_id}
    if reason and action not in (Action.VOTE,):
        payload["reason"] = reason.strip()
    d.events.insert(0, Event(action.value, view.state.value, d.to_state.value, payload))
    return d


def _open_vote(view: ProposalView, now: datetime, policy: Policy) -> Decision:
    return Decision(
        S.VOTING,
        updates={
            "voting_opened_at": now,
            "voting_deadline": now + policy.voting_period,
            "deadline_extended": False,
        },
        open_voting=True,
    )


def _to_council(now: datetime, policy: Policy, round_: int, appeal_of: PendingOutcome | None) -> Decision:
    return Decision(
        S.COUNCIL_REVIEW,
        updates={
            "council_deadline": now + policy.council_period,
            "council_round": round_,
            "appeal_of": appeal_of,
        },
    )


def _to_appeal_window(now: datetime, policy: Policy, pending: PendingOutcome) -> Decision:
    return Decision(
        S.APPEAL_WINDOW,
        updates={"pending_outcome": pending, "appeal_deadline": now + policy.appeal_period},
    )


def _apply(
    view: ProposalView,
    actor: ActorView,
    action: Action,
    now: datetime,
    policy: Policy,
    reason: str | None,
    tally: Tally | None,
) -> Decision:
    if action is Action.EDIT or action is Action.DECLARE_CONFLICT or action is Action.VOTE:
        d = Decision(view.state)
        if action is Action.VOTE and view.voting_deadline is not None:
            new = extended_deadline(
                deadline=view.voting_deadline,
                already_extended=view.deadline_extended,
                now=now,
                turnout_before=view.turnout,
                turnout_after=view.turnout
                + (view.turnout_gain if view.turnout_gain is not None else 0 if view.actor_has_voted else 1),
                electorate=view.electorate_size,
                rules=policy.voting,
            )
            if new is not None:
                d.updates.update(voting_deadline=new, deadline_extended=True)
                d.events.append(
                    Event("deadline_extended", view.state.value, view.state.value, {"until": new})
                )
        if action is Action.DECLARE_CONFLICT:
            _reason(reason, "declaring a conflict")
        return d
    if action is Action.SUBMIT:
        return Decision(
            S.SUBMITTED, updates={"submitted_at": now, "triage_deadline": now + policy.triage_period}
        )
    if action is Action.WITHDRAW:
        return Decision(S.WITHDRAWN, updates={"closed_at": now})
    if action is Action.TRIAGE_APPROVE:
        approvals = len(view.triage_approvals) + 1
        if view.consent_withdrawal:
            # a reviewer confirms ownership; the right to be forgotten is not put to a vote. Consent reads
            # "withdrawn" once the unlearning is verified; until then the withdrawal stays pending
            return Decision(S.APPROVED, updates={"closed_at": now})
        if approvals >= policy.triage_approvals_required:
            return _open_vote(view, now, policy)
        return Decision(S.TRIAGE)
    if action is Action.TRIAGE_REJECT:
        _reason(reason, "a triage rejection")
        return _to_appeal_window(now, policy, PendingOutcome.REJECTED)
    if action is Action.CLOSE_VOTE:
        if tally is None:
            raise ValueError("closing a vote needs the tally")
        info: dict[str, Any] = {
            "outcome": tally.outcome.value,
            "approve": tally.approve,
            "object": tally.object,
            "abstain": tally.abstain,
            "block": tally.block,
            "electorate": tally.electorate,
        }
        if tally.delegated is not None:  # direct and delegated weight apart (commons audit recount)
            info["delegated"] = dict(tally.delegated)
            info["recused_delegates"] = list(tally.recused_delegates)
        if view.kind is ProposalKind.ELECTION:
            if tally.outcome is Outcome.PASSED:
                d = Decision(S.APPROVED, updates={"closed_at": now}, grant_role=True)
            elif tally.outcome is Outcome.BLOCKED:
                d = _to_council(now, policy, view.council_round, None)
            else:
                d = Decision(S.REJECTED, updates={"closed_at": now})
        elif tally.outcome in (Outcome.PASSED, Outcome.BLOCKED):
            d = _to_council(now, policy, view.council_round, None)
        else:
            d = Decision(S.REJECTED, updates={"closed_at": now})
        d.updates["block_on_record"] = tally.block > 0
        d.updates["vote_outcome"] = tally.outcome.value
        d.events.append(Event("tally", S.VOTING.value, d.to_state.value, info))
        return d
    if action in (Action.RATIFY, Action.VETO):
        return _council(view, actor, action, now, policy, reason)
    if action is Action.APPEAL:
        _reason(reason, "an appeal")
        d = _to_council(now, policy, view.council_round + 1, view.pending_outcome)
        d.updates.update(appealed=True, pending_outcome=None)
        return d
    if action is Action.CLOSE_APPEAL_WINDOW:
        pending = view.pending_outcome or PendingOutcome.APPROVED
        return Decision(S(pending.value), updates={"closed_at": now, "pending_outcome": None})
    if action is Action.EXPIRE:
        return Decision(S.EXPIRED, updates={"closed_at": now})
    if action is Action.CANCEL:
        _reason(reason, "a cancellation")
        if view.state in APPROVED_STATES:
            return _cancel_approved(view, actor, now)
        return Decision(S.CANCELLED, updates={"closed_at": now})
    # orchestration transitions: the table names the single next state
    (to,) = TRANSITIONS[(view.state, action)].to
    return Decision(to, withdraw_consent=view.consent_withdrawal and action is Action.PASS_VERIFICATION)


def _council(
    view: ProposalView, actor: ActorView, action: Action, now: datetime, policy: Policy, reason: str | None
) -> Decision:
    if action is Action.VETO:
        _reason(reason, "a veto")
    mid = actor.member_id
    assert mid is not None
    ratify = view.council_ratify | ({mid} if action is Action.RATIFY else set())
    veto = view.council_veto | ({mid} if action is Action.VETO else set())
    eligible_count, majority = _majority(view, mid)
    if len(ratify) < majority and len(veto) < majority:
        return Decision(S.COUNCIL_REVIEW)  # recorded; no majority yet
    upheld = len(ratify) >= majority
    if view.appeal_of is None:  # the council's ordinary review after the member vote
        pending = PendingOutcome.APPROVED if upheld else PendingOutcome.VETOED
        d = _to_appeal_window(now, policy, pending)
    elif view.appeal_of is PendingOutcome.REJECTED:
        # hearing an appeal of a triage rejection: upholding it sends the proposal to the member vote
        d = _open_vote(view, now, policy) if upheld else Decision(S.REJECTED, updates={"closed_at": now})
    else:  # hearing an appeal of a veto or of an approval: the council's word is final
        d = Decision(S.APPROVED if upheld else S.VETOED, updates={"closed_at": now})
    d.events.append(
        Event(
            "council_decided",
            S.COUNCIL_REVIEW.value,
            d.to_state.value,
            {"ratify": sorted(ratify), "veto": sorted(veto), "eligible": eligible_count, "upheld": upheld},
        )
    )
    return d


def _majority(view: ProposalView, mid: int) -> tuple[int, int]:
    """How many council members are eligible (not recused; the actor counts) and how many make a majority."""
    eligible = {m for m in view.council_members if recusal_reason(view, m) is None} | {mid}
    return len(eligible), len(eligible) // 2 + 1


def _cancel_approved(view: ProposalView, actor: ActorView, now: datetime) -> Decision:
    """Cancelling an approved proposal undoes what the council ratified: each council member's support is
    recorded, and the proposal (and its job) is cancelled once a majority of the eligible council supports it."""
    mid = actor.member_id
    assert mid is not None
    support = view.council_cancel | {mid}
    eligible, majority = _majority(view, mid)
    done = len(support) >= majority
    d = Decision(S.CANCELLED, updates={"closed_at": now}) if done else Decision(view.state)
    d.cancel_support = True
    d.events.append(
        Event(
            "cancel_supported",
            view.state.value,
            d.to_state.value,
            {"support": sorted(support), "eligible": eligible, "needed": majority, "cancelled": done},
        )
    )
    return d


def due_action(view: ProposalView, now: datetime) -> Action | None:
    """The automatic action a deadline makes due now, if any (the sweeper takes it as SYSTEM)."""
    if view.state is S.VOTING and view.voting_deadline is not None and now >= view.voting_deadline:
        return Action.CLOSE_VOTE
    if view.state is S.APPEAL_WINDOW and view.appeal_deadline is not None and now >= view.appeal_deadline:
        return Action.CLOSE_APPEAL_WINDOW
    if (
        view.state in (S.SUBMITTED, S.TRIAGE)
        and view.triage_deadline is not None
        and now >= view.triage_deadline
    ):
        return Action.EXPIRE
    if view.state is S.COUNCIL_REVIEW and view.council_deadline is not None and now >= view.council_deadline:
        return Action.EXPIRE
    return None


def with_(view: ProposalView, **changes: Any) -> ProposalView:
    return replace(view, **changes)
