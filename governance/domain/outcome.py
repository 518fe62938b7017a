"""The outcome statement: when a proposal's decision closes, someone says what was decided, why, and what
happens next (as Loomio's poll outcome). Pure rules: when a statement may be written, by whom, and what a
valid one holds; governance/services/outcomes.py stores it.

A decision closes when the proposal leaves the open states (draft, submitted, triage, voting, council review
and the appeal window): it was approved (and may go on to its job, verification and release), rejected,
vetoed, withdrawn, expired or cancelled. A triage rejection closes when its appeal window closes unappealed.

Who writes it:

- a **triage rejection** that stood (never appealed): any reviewer not recused from the proposal (the
  reviewers decided it);
- **every other decision** (a vote closed, a council ratification or veto, an appeal heard, a withdrawal, an
  expiry, a cancellation): the proposal's author or any council member not recused from it.

Anyone allowed may write the first statement or revise it later; every version is kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from governance.bounds import MAX_TEXT
from governance.domain.proposals import Actor, ProposalState
from governance.domain.roles import Role
from governance.domain.text import TextWording, required_text

S = ProposalState
OPEN_STATES = frozenset({S.DRAFT, S.SUBMITTED, S.TRIAGE, S.VOTING, S.COUNCIL_REVIEW, S.APPEAL_WINDOW})
#: the longest each part of a statement may be
MAX_PART = MAX_TEXT


def decision_closed(state: str) -> bool:
    """Whether the proposal's decision is closed (so its outcome statement may be written)."""
    return ProposalState(state) not in OPEN_STATES


def rejected_at_triage(state: str, appealed: bool, into_appeal_window: str | None) -> bool:
    """A triage rejection that stood: rejected, never appealed, and the appeal window it closed was opened by
    a reviewer's rejection (``into_appeal_window``: the action of the last event that entered the window)."""
    return state == S.REJECTED.value and not appealed and into_appeal_window == "triage_reject"


def writers(state: str, triage_rejection: bool) -> frozenset[Actor]:
    """Who writes the statement of a closed decision (empty while it is open)."""
    if not decision_closed(state):
        return frozenset()
    if triage_rejection:
        return frozenset({Actor.REVIEWER})
    return frozenset({Actor.PROPOSER, Actor.COUNCIL})


def may_write(
    state: str,
    triage_rejection: bool,
    member_id: int | None,
    roles: frozenset[Role],
    proposer_id: int,
    recused: frozenset[int],
) -> bool:
    """``recused``: members who may not review this proposal (the target's owner, the candidate, declared
    conflicts); the author writes as its author, never as a reviewer or council member."""
    if member_id is None:
        return False
    who = writers(state, triage_rejection)
    if Actor.PROPOSER in who and member_id == proposer_id:
        return True
    if member_id == proposer_id or member_id in recused:
        return False
    return (Actor.COUNCIL in who and Role.COUNCIL in roles) or (
        Actor.REVIEWER in who and Role.REVIEWER in roles
    )


@dataclass(frozen=True)
class Statement:
    decided: str  # what was decided
    reasons: str  # why
    next_steps: str  # what happens next


#: how a statement's part is refused
PART_WORDING = TextWording(
    empty="write {what}",
    too_long="{what} is longer than {limit} characters ({length})",
    nul="{what} holds a NUL character",
)


def _part(value: object, name: str, what: str) -> str:
    return required_text(value, name, what, MAX_PART, PART_WORDING)


def parse_statement(decided: object, reasons: object, next_steps: object) -> Statement:
    """Validate the three parts of a statement: each is required, at most :data:`MAX_PART` characters."""
    return Statement(
        decided=_part(decided, "decided", "what was decided"),
        reasons=_part(reasons, "reasons", "why it was decided"),
        next_steps=_part(next_steps, "next_steps", "what happens next"),
    )
