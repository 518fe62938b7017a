"""The transition table: every state x action pair is either allowed (to a state the table names) or refused
with InvalidTransition; every allowed pair refuses the wrong actor with PermissionDenied."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import product

import pytest

from governance.domain.errors import InvalidInput, InvalidTransition, PermissionDenied
from governance.domain.proposals import (
    APPROVED_STATES,
    TERMINAL_STATES,
    TRANSITIONS,
    Action,
    Actor,
    PendingOutcome,
    ProposalKind,
    ProposalState,
)
from governance.domain.review import SYSTEM, ActorView, Policy, ProposalView, decide, due_action
from governance.domain.roles import Role
from governance.domain.voting import Outcome, VoteChoice, VotingRules, tally

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
DAY = timedelta(days=1)
POLICY = Policy(
    triage_approvals_required=2,
    triage_period=7 * DAY,
    voting_period=7 * DAY,
    council_period=7 * DAY,
    appeal_period=3 * DAY,
    voting=VotingRules(quorum=0.5, support_threshold=0.6, extension_window=DAY, extension=DAY),
)
PROPOSER, REVIEWER, ELECTOR, COUNCIL, ADMIN, OTHER = 1, 2, 3, 4, 5, 6
M = frozenset({Role.MEMBER})
ACTORS = {
    Actor.PROPOSER: ActorView(PROPOSER, M),
    Actor.REVIEWER: ActorView(REVIEWER, M | {Role.REVIEWER}),
    Actor.ELECTORATE: ActorView(ELECTOR, M),
    Actor.COUNCIL: ActorView(COUNCIL, M | {Role.COUNCIL}),
    Actor.APPELLANT: ActorView(REVIEWER, M | {Role.REVIEWER}),
    Actor.COUNCIL_OR_ADMIN: ActorView(ADMIN, M | {Role.ADMIN}),
    Actor.MEMBER: ActorView(OTHER, M),
    Actor.SYSTEM: SYSTEM,
}


def view(state: ProposalState, *, deadlines_passed: bool = False, **kw: object) -> ProposalView:
    when = NOW - DAY if deadlines_passed else NOW + DAY
    base: dict[str, object] = dict(
        id=1,
        kind=ProposalKind.UNLEARNING,
        state=state,
        proposer_id=PROPOSER,
        triage_deadline=when,
        voting_deadline=when,
        council_deadline=when,
        appeal_deadline=when,
        electorate_size=4,
        actor_is_elector=True,
        council_members=frozenset({COUNCIL}),
        pending_outcome=PendingOutcome.REJECTED if state is ProposalState.APPEAL_WINDOW else None,
    )
    base.update(kw)
    return ProposalView(**base)  # type: ignore[arg-type]


SYSTEM_ACTIONS = {Action.CLOSE_VOTE, Action.CLOSE_APPEAL_WINDOW, Action.EXPIRE}
EMPTY_TALLY = tally([], 4, POLICY.voting)


def _call(v: ProposalView, actor: ActorView, action: Action) -> ProposalState:
    d = decide(v, actor, action, NOW, POLICY, reason="because", tally=EMPTY_TALLY)
    return d.to_state


@pytest.mark.parametrize(("state", "action"), list(product(ProposalState, Action)))
def test_every_state_action_pair(state: ProposalState, action: Action) -> None:
    rule = TRANSITIONS.get((state, action))
    passed = action in SYSTEM_ACTIONS  # deadline-driven actions are due only after the deadline
    v = view(state, deadlines_passed=passed)
    if rule is None:
        with pytest.raises(InvalidTransition):
            _call(v, ACTORS[Actor.COUNCIL_OR_ADMIN], action)
        with pytest.raises(InvalidTransition):
            _call(v, SYSTEM, action)
        return
    assert state not in TERMINAL_STATES
    assert _call(v, ACTORS[rule.who], action) in rule.to


@pytest.mark.parametrize(("state", "action"), sorted(TRANSITIONS, key=str))
def test_wrong_actor_is_refused(state: ProposalState, action: Action) -> None:
    rule = TRANSITIONS[(state, action)]
    v = view(state, deadlines_passed=action in SYSTEM_ACTIONS, actor_is_elector=False)
    outsider = ActorView(99, frozenset())  # not even a member
    with pytest.raises(PermissionDenied):
        _call(v, outsider, action)
    if rule.who is not Actor.SYSTEM:
        with pytest.raises(PermissionDenied):
            _call(v, SYSTEM, action)


def test_terminal_states_never_change() -> None:
    for state in TERMINAL_STATES:
        assert not any(s is state for s, _ in TRANSITIONS)
        for action in Action:
            with pytest.raises(InvalidTransition, match="never changes"):
                _call(view(state), ACTORS[Actor.COUNCIL_OR_ADMIN], action)


def test_two_reviewer_approvals_open_the_vote() -> None:
    v = view(ProposalState.SUBMITTED)
    d = decide(v, ACTORS[Actor.REVIEWER], Action.TRIAGE_APPROVE, NOW, POLICY)
    assert d.to_state is ProposalState.TRIAGE and not d.open_voting
    v2 = view(ProposalState.TRIAGE, triage_approvals=frozenset({REVIEWER}))
    with pytest.raises(InvalidTransition, match="already approved"):
        decide(v2, ACTORS[Actor.REVIEWER], Action.TRIAGE_APPROVE, NOW, POLICY)
    d = decide(v2, ActorView(7, M | {Role.REVIEWER}), Action.TRIAGE_APPROVE, NOW, POLICY)
    assert d.to_state is ProposalState.VOTING and d.open_voting
    assert d.updates["voting_deadline"] == NOW + POLICY.voting_period


def test_one_rejection_with_reason_rejects_pending_appeal() -> None:
    v = view(ProposalState.TRIAGE, triage_approvals=frozenset({7}))
    with pytest.raises(InvalidInput, match="needs a reason"):
        decide(v, ACTORS[Actor.REVIEWER], Action.TRIAGE_REJECT, NOW, POLICY, reason="  ")
    d = decide(v, ACTORS[Actor.REVIEWER], Action.TRIAGE_REJECT, NOW, POLICY, reason="off-topic")
    assert d.to_state is ProposalState.APPEAL_WINDOW
    assert d.updates["pending_outcome"] is PendingOutcome.REJECTED
    closed = view(ProposalState.APPEAL_WINDOW, deadlines_passed=True)
    assert due_action(closed, NOW) is Action.CLOSE_APPEAL_WINDOW
    assert decide(closed, SYSTEM, Action.CLOSE_APPEAL_WINDOW, NOW, POLICY).to_state is ProposalState.REJECTED


@pytest.mark.parametrize("member", [PROPOSER, 8, 9])
def test_recusal_proposer_owner_and_declared_conflict(member: int) -> None:
    v = view(ProposalState.TRIAGE, target_owner_id=8, conflicts=frozenset({9}))
    reviewer = ActorView(member, M | {Role.REVIEWER, Role.COUNCIL})
    with pytest.raises(PermissionDenied, match="recused"):
        decide(v, reviewer, Action.TRIAGE_APPROVE, NOW, POLICY)
    cv = view(ProposalState.COUNCIL_REVIEW, target_owner_id=8, conflicts=frozenset({9}))
    with pytest.raises(PermissionDenied, match="recused"):
        decide(cv, reviewer, Action.RATIFY, NOW, POLICY)


@pytest.mark.parametrize(
    "state", [ProposalState.TRIAGE, ProposalState.COUNCIL_REVIEW, ProposalState.UNLEARNING]
)
def test_recusal_covers_cancel(state: ProposalState) -> None:
    # a council member (even an admin too) who owns the targeted data source cannot cancel it, before or
    # after approval, any more than ratify or veto it
    owner = ActorView(8, M | {Role.COUNCIL, Role.ADMIN})
    v = view(state, target_owner_id=8, council_members=frozenset({8, 11, 12}))
    with pytest.raises(PermissionDenied, match="recused"):
        decide(v, owner, Action.CANCEL, NOW, POLICY, reason="mine")
    appealing = view(ProposalState.APPEAL_WINDOW, target_owner_id=REVIEWER)
    with pytest.raises(PermissionDenied, match="recused"):
        decide(appealing, ACTORS[Actor.APPELLANT], Action.APPEAL, NOW, POLICY, reason="mine")


def test_before_approval_one_council_member_or_admin_cancels() -> None:
    v = view(ProposalState.VOTING, council_members=frozenset({11, 12, 13}))
    d = decide(v, ActorView(11, M | {Role.COUNCIL}), Action.CANCEL, NOW, POLICY, reason="spam")
    assert d.to_state is ProposalState.CANCELLED and not d.cancel_support
    d = decide(v, ACTORS[Actor.COUNCIL_OR_ADMIN], Action.CANCEL, NOW, POLICY, reason="spam")
    assert d.to_state is ProposalState.CANCELLED


@pytest.mark.parametrize("state", sorted(APPROVED_STATES))
def test_cancelling_an_approved_proposal_needs_a_council_majority(state: ProposalState) -> None:
    council = frozenset({8, 11, 12, 13})  # 8 owns the target: 3 eligible, majority 2
    c = {i: ActorView(i, M | {Role.COUNCIL}) for i in council}
    v = view(state, target_owner_id=8, council_members=council)
    with pytest.raises(PermissionDenied, match="council"):  # an admin alone cannot undo an approval
        decide(v, ACTORS[Actor.COUNCIL_OR_ADMIN], Action.CANCEL, NOW, POLICY, reason="x")
    with pytest.raises(InvalidInput, match="reason"):
        decide(v, c[11], Action.CANCEL, NOW, POLICY, reason=" ")
    d = decide(v, c[11], Action.CANCEL, NOW, POLICY, reason="wrong target")
    assert d.to_state is state and d.cancel_support and "state" not in d.updates  # recorded, not yet
    assert d.events[-1].payload == {"support": [11], "eligible": 3, "needed": 2, "cancelled": False}
    v = view(state, target_owner_id=8, council_members=council, council_cancel=frozenset({11}))
    with pytest.raises(InvalidTransition, match="already support"):
        decide(v, c[11], Action.CANCEL, NOW, POLICY, reason="again")
    d = decide(v, c[12], Action.CANCEL, NOW, POLICY, reason="agreed")
    assert d.to_state is ProposalState.CANCELLED and d.updates["state"] is ProposalState.CANCELLED
    assert d.events[-1].payload["cancelled"] is True


def test_election_candidate_cannot_review_own_election() -> None:
    v = view(ProposalState.TRIAGE, kind=ProposalKind.ELECTION, election_candidate_id=REVIEWER)
    with pytest.raises(PermissionDenied, match="candidate"):
        decide(v, ACTORS[Actor.REVIEWER], Action.TRIAGE_APPROVE, NOW, POLICY)


def test_consent_withdrawal_skips_vote_and_council() -> None:
    v = view(ProposalState.SUBMITTED, consent_withdrawal=True, target_owner_id=PROPOSER)
    d = decide(v, ACTORS[Actor.REVIEWER], Action.TRIAGE_APPROVE, NOW, POLICY)
    # approved at once, but consent reads "withdrawn" only once the unlearning is verified
    assert d.to_state is ProposalState.APPROVED and not d.withdraw_consent and not d.open_voting
    verified = decide(
        view(ProposalState.VERIFYING, consent_withdrawal=True, target_owner_id=PROPOSER),
        SYSTEM,
        Action.PASS_VERIFICATION,
        NOW,
        POLICY,
    )
    assert verified.to_state is ProposalState.VERIFIED and verified.withdraw_consent


@pytest.mark.parametrize(
    "state", [ProposalState.SUBMITTED, ProposalState.JOB_QUEUED, ProposalState.UNLEARNING]
)
def test_a_consent_withdrawal_is_never_cancelled(state: ProposalState) -> None:
    v = view(state, consent_withdrawal=True, target_owner_id=PROPOSER)
    with pytest.raises(PermissionDenied, match="withdrawal of consent cannot be cancelled"):
        decide(v, ACTORS[Actor.COUNCIL], Action.CANCEL, NOW, POLICY, reason="too costly")
    with pytest.raises(PermissionDenied):  # an admin neither (the message may name the role first)
        decide(v, ACTORS[Actor.COUNCIL_OR_ADMIN], Action.CANCEL, NOW, POLICY, reason="too costly")


@pytest.mark.parametrize(
    "state", [ProposalState.JOB_QUEUED, ProposalState.UNLEARNING, ProposalState.VERIFYING]
)
def test_a_job_that_ends_without_a_verdict_leaves_the_proposal_retriable(state: ProposalState) -> None:
    failed = decide(view(state), SYSTEM, Action.FAIL_JOB, NOW, POLICY)
    assert failed.to_state is ProposalState.JOB_FAILED
    retried = decide(view(ProposalState.JOB_FAILED), ACTORS[Actor.REVIEWER], Action.RETRY_JOB, NOW, POLICY)
    assert retried.to_state is ProposalState.JOB_QUEUED
    with pytest.raises(PermissionDenied):
        decide(view(state), ACTORS[Actor.REVIEWER], Action.FAIL_JOB, NOW, POLICY)


def _close(choices: list[VoteChoice], kind: ProposalKind = ProposalKind.UNLEARNING) -> ProposalState:
    v = view(ProposalState.VOTING, deadlines_passed=True, kind=kind, election_candidate_id=9)
    t = tally(choices, 4, POLICY.voting)
    return decide(v, SYSTEM, Action.CLOSE_VOTE, NOW, POLICY, tally=t).to_state


def test_vote_outcomes() -> None:
    A, Ob, B, X = VoteChoice.APPROVE, VoteChoice.OBJECT, VoteChoice.BLOCK, VoteChoice.ABSTAIN
    assert _close([A, A]) is ProposalState.COUNCIL_REVIEW  # quorum 2/4, support 1.0
    assert _close([A]) is ProposalState.REJECTED  # no quorum
    assert _close([A, Ob, Ob]) is ProposalState.REJECTED  # support 1/3
    assert _close([A, A, B]) is ProposalState.COUNCIL_REVIEW  # a block goes to the council on record
    assert _close([X, X]) is ProposalState.REJECTED  # quorum but no support
    assert _close([A, A], ProposalKind.ELECTION) is ProposalState.APPROVED  # elections skip the council
    assert _close([A], ProposalKind.ELECTION) is ProposalState.REJECTED


def test_vote_after_deadline_refused() -> None:
    v = view(ProposalState.VOTING, deadlines_passed=True)
    with pytest.raises(InvalidTransition, match="closed"):
        decide(v, ACTORS[Actor.ELECTORATE], Action.VOTE, NOW, POLICY)


def test_council_majority_then_appeal_window_then_approved() -> None:
    council = frozenset({11, 12, 13})
    c = [ActorView(i, M | {Role.COUNCIL}) for i in (11, 12, 13)]
    v = view(ProposalState.COUNCIL_REVIEW, council_members=council)
    assert decide(v, c[0], Action.RATIFY, NOW, POLICY).to_state is ProposalState.COUNCIL_REVIEW
    v = view(ProposalState.COUNCIL_REVIEW, council_members=council, council_ratify=frozenset({11}))
    with pytest.raises(InvalidTransition, match="already decided"):
        decide(v, c[0], Action.RATIFY, NOW, POLICY)
    d = decide(v, c[1], Action.RATIFY, NOW, POLICY)
    assert (
        d.to_state is ProposalState.APPEAL_WINDOW and d.updates["pending_outcome"] is PendingOutcome.APPROVED
    )
    with pytest.raises(InvalidInput, match="reason"):
        decide(v, c[1], Action.VETO, NOW, POLICY)


def test_recused_council_members_do_not_count_toward_majority() -> None:
    # council of 3 where one is the proposer: 2 eligible, majority is 2
    council = frozenset({PROPOSER, 11, 12})
    v = view(ProposalState.COUNCIL_REVIEW, council_members=council)
    d = decide(v, ActorView(11, M | {Role.COUNCIL}), Action.VETO, NOW, POLICY, reason="harmful")
    assert d.to_state is ProposalState.COUNCIL_REVIEW


def test_appeal_once_and_hearing_outcomes() -> None:
    v = view(ProposalState.APPEAL_WINDOW, pending_outcome=PendingOutcome.REJECTED)
    d = decide(v, ACTORS[Actor.PROPOSER], Action.APPEAL, NOW, POLICY, reason="new evidence")
    assert d.to_state is ProposalState.COUNCIL_REVIEW and d.updates["appeal_of"] is PendingOutcome.REJECTED
    with pytest.raises(InvalidTransition, match="already appealed"):
        decide(
            view(ProposalState.APPEAL_WINDOW, appealed=True),
            ACTORS[Actor.PROPOSER],
            Action.APPEAL,
            NOW,
            POLICY,
        )
    with pytest.raises(PermissionDenied, match="proposer or a reviewer"):
        decide(v, ActorView(OTHER, M), Action.APPEAL, NOW, POLICY, reason="x")
    # upholding an appeal of a triage rejection opens the member vote
    hearing = view(ProposalState.COUNCIL_REVIEW, appeal_of=PendingOutcome.REJECTED)
    d = decide(hearing, ACTORS[Actor.COUNCIL], Action.RATIFY, NOW, POLICY)
    assert d.to_state is ProposalState.VOTING and d.open_voting
    # appeal of a veto: the council's word is final
    hearing = view(ProposalState.COUNCIL_REVIEW, appeal_of=PendingOutcome.VETOED)
    assert decide(hearing, ACTORS[Actor.COUNCIL], Action.VETO, NOW, POLICY, reason="no").to_state is (
        ProposalState.VETOED
    )


def test_deadline_driven_actions() -> None:
    assert due_action(view(ProposalState.VOTING), NOW) is None
    assert due_action(view(ProposalState.VOTING, deadlines_passed=True), NOW) is Action.CLOSE_VOTE
    assert due_action(view(ProposalState.TRIAGE, deadlines_passed=True), NOW) is Action.EXPIRE
    assert due_action(view(ProposalState.COUNCIL_REVIEW, deadlines_passed=True), NOW) is Action.EXPIRE
    assert due_action(view(ProposalState.DRAFT, deadlines_passed=True), NOW) is None
    with pytest.raises(InvalidTransition, match="still open"):
        decide(view(ProposalState.VOTING), SYSTEM, Action.CLOSE_VOTE, NOW, POLICY, tally=EMPTY_TALLY)
    with pytest.raises(InvalidTransition, match="triage period"):
        decide(
            view(ProposalState.TRIAGE, deadlines_passed=True),
            ACTORS[Actor.REVIEWER],
            Action.TRIAGE_APPROVE,
            NOW,
            POLICY,
        )


def test_outcome_enum_covers_close_vote() -> None:
    assert {o.value for o in Outcome} == {"passed", "failed_quorum", "failed_support", "blocked"}
