"""Evaluation probes: members' prompts that every later candidate version is checked against, triaged like
a proposal. A probe moves ``submitted -> accepted | rejected``; a reviewer who did not submit it decides, and
both states are final (a probe is never edited: the candidates checked against it keep their record).

Only accepted probes run (on every candidate verified after the acceptance), and a probe whose outcome is
``fail`` or ``error`` on a candidate blocks the release gate like a failed regression check; only the
council's explicit override gets past it.
"""

from __future__ import annotations

from enum import StrEnum

from governance.domain.errors import InvalidTransition, PermissionDenied
from governance.domain.review import ActorView
from governance.domain.roles import Role


class ProbeState(StrEnum):
    SUBMITTED = "submitted"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


class ProbeAction(StrEnum):
    ACCEPT = "accept"
    REJECT = "reject"


TRANSITIONS: dict[tuple[ProbeState, ProbeAction], ProbeState] = {
    (ProbeState.SUBMITTED, ProbeAction.ACCEPT): ProbeState.ACCEPTED,
    (ProbeState.SUBMITTED, ProbeAction.REJECT): ProbeState.REJECTED,
}


def decide(state: ProbeState, action: ProbeAction, actor: ActorView, submitted_by: int) -> ProbeState:
    """The probe's next state when ``actor`` takes ``action``: reviewers only, never on their own probe,
    and only while it is submitted."""
    if Role.REVIEWER not in actor.roles:
        raise PermissionDenied("only reviewers triage evaluation probes")
    if actor.member_id == submitted_by:
        raise PermissionDenied("nobody triages their own evaluation probe")
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        raise InvalidTransition(f"the probe is {state.value}: it can no longer be {action.value}ed") from None
