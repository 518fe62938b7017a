"""Proposals: targets, acceptance tests, and the lifecycle as a transition table.

The lifecycle (docs/governance.md has the diagram)::

    draft -> submitted -> triage -> voting -> council_review -> appeal_window -> approved
          -> job_queued -> unlearning -> verifying -> verified | verification_failed -> released
    job_queued | unlearning | verifying -> job_failed (the job ended without a verdict; retriable)
    side exits: withdrawn, rejected, vetoed, expired, cancelled

``TRANSITIONS`` maps (state, action) to the states the action may lead to and who may take it. Pure
functions in governance/domain/review.py decide which of those states follows; nothing else changes state.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from governance.bounds import MAX_EXAMPLES, MAX_PATTERN, MAX_TEXT, is_id
from governance.domain.errors import InvalidInput
from governance.domain.roles import ELECTED_ROLES, Role
from unlearning import contract
from unlearning.contract import AcceptanceTest


class ProposalState(StrEnum):
    DRAFT = "draft"
    SUBMITTED = "submitted"
    TRIAGE = "triage"
    VOTING = "voting"
    COUNCIL_REVIEW = "council_review"
    APPEAL_WINDOW = "appeal_window"
    APPROVED = "approved"
    # the orchestration issue drives these
    JOB_QUEUED = "job_queued"
    UNLEARNING = "unlearning"
    VERIFYING = "verifying"
    VERIFIED = "verified"
    VERIFICATION_FAILED = "verification_failed"
    # the job ended without a verdict (a configuration error, attempts used up, or a consent withdrawal's job
    # stopped): nothing was verified, and a reviewer may retry it once the cause is fixed
    JOB_FAILED = "job_failed"
    RELEASED = "released"
    # side exits
    WITHDRAWN = "withdrawn"
    REJECTED = "rejected"
    VETOED = "vetoed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


TERMINAL_STATES = frozenset(
    {
        ProposalState.RELEASED,
        ProposalState.WITHDRAWN,
        ProposalState.REJECTED,
        ProposalState.VETOED,
        ProposalState.EXPIRED,
        ProposalState.CANCELLED,
    }
)


class Action(StrEnum):
    EDIT = "edit"
    SUBMIT = "submit"
    WITHDRAW = "withdraw"
    TRIAGE_APPROVE = "triage_approve"
    TRIAGE_REJECT = "triage_reject"
    VOTE = "vote"
    CLOSE_VOTE = "close_vote"
    RATIFY = "ratify"
    VETO = "veto"
    APPEAL = "appeal"
    CLOSE_APPEAL_WINDOW = "close_appeal_window"
    EXPIRE = "expire"
    CANCEL = "cancel"
    DECLARE_CONFLICT = "declare_conflict"
    # orchestration (job) actions
    QUEUE_JOB = "queue_job"
    START_JOB = "start_job"
    START_VERIFICATION = "start_verification"
    PASS_VERIFICATION = "pass_verification"
    FAIL_VERIFICATION = "fail_verification"
    FAIL_JOB = "fail_job"
    RETRY_JOB = "retry_job"
    RELEASE = "release"


class Actor(StrEnum):
    """Who may take a transition. ``SYSTEM`` is the deadline sweeper / job worker, never a person."""

    PROPOSER = "proposer"
    REVIEWER = "reviewer"
    ELECTORATE = "electorate"  # a member of the electorate frozen when voting opened
    COUNCIL = "council"
    APPELLANT = "appellant"  # the proposer or any reviewer
    COUNCIL_OR_ADMIN = "council_or_admin"
    MEMBER = "member"
    SYSTEM = "system"


@dataclass(frozen=True)
class Rule:
    to: frozenset[ProposalState]
    who: Actor


S = ProposalState
_OPEN = (S.DRAFT, S.SUBMITTED, S.TRIAGE, S.VOTING, S.COUNCIL_REVIEW, S.APPEAL_WINDOW)
# approved and not closed: its job may be queued, running or done; cancelling it now undoes an approval
APPROVED_STATES = frozenset(
    {S.APPROVED, S.JOB_QUEUED, S.UNLEARNING, S.VERIFYING, S.VERIFIED, S.VERIFICATION_FAILED, S.JOB_FAILED}
)


def _rule(who: Actor, *to: ProposalState) -> Rule:
    return Rule(frozenset(to), who)


TRANSITIONS: dict[tuple[ProposalState, Action], Rule] = {
    (S.DRAFT, Action.EDIT): _rule(Actor.PROPOSER, S.DRAFT),
    (S.DRAFT, Action.SUBMIT): _rule(Actor.PROPOSER, S.SUBMITTED),
    # the first reviewer approval moves a proposal into triage; enough approvals open the vote (or, for a
    # consent withdrawal, approve it at once: the right to be forgotten is not put to a vote)
    (S.SUBMITTED, Action.TRIAGE_APPROVE): _rule(Actor.REVIEWER, S.TRIAGE, S.VOTING, S.APPROVED),
    (S.TRIAGE, Action.TRIAGE_APPROVE): _rule(Actor.REVIEWER, S.TRIAGE, S.VOTING, S.APPROVED),
    # a rejection opens the appeal window; it becomes final when the window closes unappealed
    (S.SUBMITTED, Action.TRIAGE_REJECT): _rule(Actor.REVIEWER, S.APPEAL_WINDOW),
    (S.TRIAGE, Action.TRIAGE_REJECT): _rule(Actor.REVIEWER, S.APPEAL_WINDOW),
    (S.VOTING, Action.VOTE): _rule(Actor.ELECTORATE, S.VOTING),
    # elections skip the council: the hierarchy is chosen by the members
    (S.VOTING, Action.CLOSE_VOTE): _rule(Actor.SYSTEM, S.COUNCIL_REVIEW, S.REJECTED, S.APPROVED),
    (S.COUNCIL_REVIEW, Action.RATIFY): _rule(
        Actor.COUNCIL, S.COUNCIL_REVIEW, S.APPEAL_WINDOW, S.APPROVED, S.VOTING
    ),
    (S.COUNCIL_REVIEW, Action.VETO): _rule(
        Actor.COUNCIL, S.COUNCIL_REVIEW, S.APPEAL_WINDOW, S.VETOED, S.REJECTED
    ),
    (S.APPEAL_WINDOW, Action.APPEAL): _rule(Actor.APPELLANT, S.COUNCIL_REVIEW),
    (S.APPEAL_WINDOW, Action.CLOSE_APPEAL_WINDOW): _rule(Actor.SYSTEM, S.APPROVED, S.REJECTED, S.VETOED),
    (S.APPROVED, Action.QUEUE_JOB): _rule(Actor.SYSTEM, S.JOB_QUEUED),
    (S.JOB_QUEUED, Action.START_JOB): _rule(Actor.SYSTEM, S.UNLEARNING),
    (S.UNLEARNING, Action.START_VERIFICATION): _rule(Actor.SYSTEM, S.VERIFYING),
    (S.VERIFYING, Action.PASS_VERIFICATION): _rule(Actor.SYSTEM, S.VERIFIED),
    (S.VERIFYING, Action.FAIL_VERIFICATION): _rule(Actor.SYSTEM, S.VERIFICATION_FAILED),
    (S.JOB_QUEUED, Action.FAIL_JOB): _rule(Actor.SYSTEM, S.JOB_FAILED),
    (S.UNLEARNING, Action.FAIL_JOB): _rule(Actor.SYSTEM, S.JOB_FAILED),
    (S.VERIFYING, Action.FAIL_JOB): _rule(Actor.SYSTEM, S.JOB_FAILED),
    (S.VERIFICATION_FAILED, Action.RETRY_JOB): _rule(Actor.REVIEWER, S.JOB_QUEUED),
    (S.JOB_FAILED, Action.RETRY_JOB): _rule(Actor.REVIEWER, S.JOB_QUEUED),
    (S.VERIFIED, Action.RELEASE): _rule(Actor.COUNCIL_OR_ADMIN, S.RELEASED),
}
for _state in (S.DRAFT, S.SUBMITTED, S.TRIAGE, S.VOTING):
    TRANSITIONS[(_state, Action.WITHDRAW)] = _rule(Actor.PROPOSER, S.WITHDRAWN)
for _state in (S.SUBMITTED, S.TRIAGE, S.VOTING, S.COUNCIL_REVIEW):
    TRANSITIONS[(_state, Action.DECLARE_CONFLICT)] = _rule(Actor.MEMBER, _state)
for _state in (S.SUBMITTED, S.TRIAGE, S.COUNCIL_REVIEW):
    TRANSITIONS[(_state, Action.EXPIRE)] = _rule(Actor.SYSTEM, S.EXPIRED)
for _state in _OPEN:
    # emergency cancel by one council member (ratified afterwards) or an operator, neither of them recused
    TRANSITIONS[(_state, Action.CANCEL)] = _rule(Actor.COUNCIL_OR_ADMIN, S.CANCELLED)
for _state in APPROVED_STATES:
    # undoing an approval needs what the approval needed: a majority of the council members not recused, each
    # member's support recorded (the proposal stays where it is until the majority is reached)
    TRANSITIONS[(_state, Action.CANCEL)] = _rule(Actor.COUNCIL, _state, S.CANCELLED)


class ProposalKind(StrEnum):
    UNLEARNING = "unlearning"
    ELECTION = "election"


class TargetKind(StrEnum):
    DATA_SOURCE = "data_source"
    CATEGORY = "category"
    BEHAVIOUR = "behaviour"


class PendingOutcome(StrEnum):
    """What the appeal window will settle into if nobody appeals."""

    APPROVED = "approved"
    REJECTED = "rejected"
    VETOED = "vetoed"


@dataclass(frozen=True)
class BehaviourExample:
    prompt: str
    completion: str


@dataclass(frozen=True)
class Target:
    kind: TargetKind
    data_source_id: int | None = None
    category: str | None = None
    examples: tuple[BehaviourExample, ...] = ()
    pattern: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "data_source_id": self.data_source_id,
            "category": self.category,
            "examples": [{"prompt": e.prompt, "completion": e.completion} for e in self.examples],
            "pattern": self.pattern,
        }


_CATEGORY_RE = re.compile(r"^[\w][\w .:/-]{0,99}$")


def parse_target(data: dict[str, Any]) -> Target:
    """Validate a target given as plain data (from the API, the CLI or a form)."""
    raw_kind = data.get("kind")
    try:
        kind = TargetKind(str(raw_kind))
    except ValueError:
        allowed = ", ".join(k.value for k in TargetKind)
        raise InvalidInput(f"target kind must be one of: {allowed}", field="target.kind") from None
    if kind is TargetKind.DATA_SOURCE:
        ds = data.get("data_source_id")
        if not is_id(ds):
            raise InvalidInput("a data_source target needs data_source_id (a data source's id)", "target")
        return Target(kind, data_source_id=ds)
    if kind is TargetKind.CATEGORY:
        cat = data.get("category")
        if not isinstance(cat, str) or not _CATEGORY_RE.match(cat.strip()):
            raise InvalidInput(
                "a category target needs a category name (1-100 letters, digits, spaces or ._:/-)", "target"
            )
        return Target(kind, category=cat.strip())
    raw_examples = data.get("examples") or []
    pattern = data.get("pattern")
    if not isinstance(raw_examples, list):
        raise InvalidInput("behaviour examples must be a list of {prompt, completion}", "target.examples")
    if len(raw_examples) > MAX_EXAMPLES:
        raise InvalidInput(f"at most {MAX_EXAMPLES} behaviour examples", "target.examples")
    examples = []
    for i, ex in enumerate(raw_examples):
        if not isinstance(ex, dict):
            raise InvalidInput(
                f"example {i + 1} must be an object with prompt and completion", "target.examples"
            )
        prompt, completion = ex.get("prompt"), ex.get("completion")
        if not isinstance(prompt, str) or not isinstance(completion, str) or not completion.strip():
            raise InvalidInput(
                f"example {i + 1} needs a prompt and a non-empty completion (strings)", "target.examples"
            )
        if len(prompt) > MAX_TEXT or len(completion) > MAX_TEXT:
            raise InvalidInput(f"example {i + 1} is longer than {MAX_TEXT} characters", "target.examples")
        examples.append(BehaviourExample(prompt, completion))
    if pattern is not None:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidInput("pattern must be a non-empty regular expression", "target.pattern")
        if len(pattern) > MAX_PATTERN:
            raise InvalidInput(f"pattern is longer than {MAX_PATTERN} characters", "target.pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(
                f"pattern is not a valid regular expression: {exc}", "target.pattern"
            ) from None
    if not examples and not pattern:
        raise InvalidInput("a behaviour target needs examples, a pattern, or both", "target")
    return Target(kind, examples=tuple(examples), pattern=pattern)


def parse_acceptance_tests(raw: Any, target_kind: TargetKind) -> tuple[AcceptanceTest, ...]:
    """Validate a proposal's acceptance tests against the metric catalogue (``None``: the target kind's
    defaults); the rules are the contract's (:func:`unlearning.contract.check_acceptance_tests`)."""
    try:
        return contract.check_acceptance_tests(raw, target_kind.value)
    except contract.ContractError as exc:
        raise InvalidInput(exc.message, field=exc.field) from None


def default_acceptance_tests(target_kind: TargetKind, task: str | None = None) -> tuple[AcceptanceTest, ...]:
    """Documented defaults a proposal starts from (docs/governance.md; :mod:`unlearning.contract`): those of
    the target kind that can be measured on the base model's ``task`` when it is known."""
    return contract.default_acceptance_tests(target_kind.value, task)


@dataclass(frozen=True)
class ElectionSpec:
    role: Role
    candidate_id: int

    def __post_init__(self) -> None:
        if self.role not in ELECTED_ROLES:
            raise InvalidInput("elections are for the reviewer or council role", field="election.role")


@dataclass
class Event:
    """Something that happened, to be recorded in the history and the audit log."""

    action: str
    from_state: str | None
    to_state: str | None
    payload: dict[str, Any] = field(default_factory=dict)
