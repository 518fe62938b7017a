"""The model registry's rules and the release gate's decision, as pure functions.

Model versions move ``candidate -> verified | failed -> released | rejected``. A verification report can be
recorded again (a re-verification under a new policy moves verified <-> failed); a released or rejected version
never changes. Release needs the gate's ``allow``: the domain refuses it otherwise, whoever asks.

The gate (:func:`decide_verdict`) answers allow / deny / pending from facts the service gathers:

- pending: no verification report yet for this exact model (content hash) and policy, or a regression
  check of an earlier released unlearning of the lineage is missing;
- deny: the version was rejected, an acceptance test failed or could not be measured, a regression check
  failed (naming the earlier proposal), or the proposal it serves is no longer on its way to release;
- allow: every acceptance test and every regression check passed (or the lineage has no unlearning
  obligation at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from governance.domain.errors import InvalidTransition


class ModelState(StrEnum):
    CANDIDATE = "candidate"
    VERIFIED = "verified"
    FAILED = "failed"
    RELEASED = "released"
    REJECTED = "rejected"


class ModelAction(StrEnum):
    RECORD_PASS = "record_pass"
    RECORD_FAIL = "record_fail"
    RELEASE = "release"
    REJECT = "reject"


class Verdict(StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    PENDING = "pending"


M, A = ModelState, ModelAction
TRANSITIONS: dict[tuple[ModelState, ModelAction], ModelState] = {
    (M.CANDIDATE, A.RECORD_PASS): M.VERIFIED,
    (M.CANDIDATE, A.RECORD_FAIL): M.FAILED,
    (M.VERIFIED, A.RECORD_PASS): M.VERIFIED,
    (M.VERIFIED, A.RECORD_FAIL): M.FAILED,
    (M.FAILED, A.RECORD_PASS): M.VERIFIED,
    (M.FAILED, A.RECORD_FAIL): M.FAILED,
    (M.VERIFIED, A.RELEASE): M.RELEASED,
    (
        M.CANDIDATE,
        A.RELEASE,
    ): M.RELEASED,  # only when the gate allows: a version with no unlearning obligation
    (M.CANDIDATE, A.REJECT): M.REJECTED,
    (M.VERIFIED, A.REJECT): M.REJECTED,
    (M.FAILED, A.REJECT): M.REJECTED,
}


def transition(state: ModelState, action: ModelAction) -> ModelState:
    try:
        return TRANSITIONS[(state, action)]
    except KeyError:
        if state in (M.RELEASED, M.REJECTED):
            raise InvalidTransition(f"a {state.value} model version never changes") from None
        raise InvalidTransition(
            f"cannot {action.value.replace('_', ' ')} a {state.value} model version"
        ) from None


# proposal states in which a version serving the proposal may still be released
RELEASABLE_PROPOSAL_STATES = frozenset(
    {"approved", "verifying", "verified", "released", "verification_failed"}
)


@dataclass(frozen=True)
class ReportFacts:
    candidate_hash: str
    policy_hash: str
    passed: bool
    tests: Sequence[dict[str, Any]]
    regressions: Sequence[dict[str, Any]]
    summary: str = ""


@dataclass(frozen=True)
class Obligation:
    """An earlier approved-and-released unlearning of the lineage that every later version must still meet."""

    proposal_id: int
    label: str


@dataclass(frozen=True)
class VersionFacts:
    version: str
    content_hash: str
    state: ModelState
    proposal_id: int | None = None
    proposal_state: str | None = None
    expected_policy_hash: str | None = (
        None  # the hash of the acceptance tests the proposal's members voted on
    )
    obligations: Sequence[Obligation] = field(default_factory=tuple)


def _failing(tests: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{t.get('metric')}: {t.get('status')} ({t.get('reason', '')})"
        for t in tests
        if t.get("status") in ("fail", "unmeasured")
    ]


def decide_verdict(v: VersionFacts, report: ReportFacts | None) -> tuple[Verdict, list[str]]:
    """allow / deny / pending for releasing ``v``, with the reasons (see the module docstring)."""
    if v.state is ModelState.REJECTED:
        return Verdict.DENY, [f"model version {v.version} was rejected"]
    if v.proposal_id is not None and v.proposal_state not in RELEASABLE_PROPOSAL_STATES:
        return Verdict.DENY, [f"proposal {v.proposal_id} is {v.proposal_state}, not approved for release"]
    if v.proposal_id is None and not v.obligations:
        return Verdict.ALLOW, [
            "no unlearning obligation: the version serves no proposal and its lineage forgot nothing"
        ]
    if report is None:
        return Verdict.PENDING, [
            f"no verification report for {v.version} (content hash {v.content_hash[:12]}) yet"
        ]
    if report.candidate_hash != v.content_hash:  # the service never passes one; a second line of defence
        return Verdict.PENDING, ["the stored report was computed for a different model and is ignored"]
    if v.expected_policy_hash is not None and report.policy_hash != v.expected_policy_hash:
        return Verdict.PENDING, [
            "the report checked other acceptance tests than the proposal's: re-verification is needed"
        ]
    reasons: list[str] = []
    deny = False
    if v.proposal_id is not None:
        failing = _failing(report.tests)
        if failing:
            deny = True
            reasons += [f"proposal {v.proposal_id}: {f}" for f in failing]
        elif not any(t.get("status") == "pass" for t in report.tests):
            deny = True
            reasons.append(f"proposal {v.proposal_id}: no acceptance test was measured")
    by_proposal = {r.get("proposal_id"): r for r in report.regressions}
    missing = [o for o in v.obligations if o.proposal_id not in by_proposal]
    for o in v.obligations:
        r = by_proposal.get(o.proposal_id)
        if r is not None and not r.get("passed"):
            deny = True
            reasons += [
                f"regression: {o.label} no longer holds: {f}" for f in _failing(r.get("tests", []))
            ] or [f"regression: {o.label} no longer holds"]
    if deny:
        return Verdict.DENY, reasons
    if missing:
        return Verdict.PENDING, [
            f"regression check of {o.label} missing: re-verification is needed" for o in missing
        ]
    passed = [f"proposal {v.proposal_id}: {report.summary}"] if v.proposal_id is not None else []
    passed += [f"regression: {o.label} still holds" for o in v.obligations]
    return Verdict.ALLOW, passed
