"""The model registry's rules and the release gate's decision, as pure functions.

Model versions move ``candidate -> verified | failed -> released | rejected``. A verification report can be
recorded again (a re-verification under a new policy moves verified <-> failed); a released or rejected version
never changes. Release needs the gate's ``allow``: the domain refuses it otherwise, whoever asks.

The gate (:func:`decide_verdict`) answers allow / deny / pending from facts the service gathers:

- deny: the version was rejected; its bytes are not in the artifact store or no longer match their hashes
  (re-checked at every verdict); its report is not signed by the service's verifier; a proposal approved to
  forget something that the version's lineage still contains has no verified unlearning the version descends
  from ("obligations follow the data"); an acceptance test failed or could not be measured; a regression check
  failed (naming the earlier proposal); a member's accepted evaluation probe failed on it (naming the probe);
  the verification failed; or the proposal it serves is no longer on its way to release;
- pending: no verification report yet for this exact model (content hash) and policy, the proposal it serves
  has not finished verification, or a regression check of an earlier released unlearning is missing;
- allow: the bytes are in the store and a report signed by the service's verifier passed every acceptance
  test and every regression check. A version serving no proposal is never allowed without such a report.

A council override (a majority of the council, with a written reason) turns a deny or pending into an allow
that says so: :attr:`Decision.override` is set and the first reason names it. It never covers a rejected
version or bytes that are not in the store.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from governance.domain.errors import InvalidTransition
from unlearning.contract import BLOCKING_TEST_STATUSES


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
    ): M.RELEASED,  # only when the gate allows (a verified version, or a council override)
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


# proposal states in which a version serving the proposal may be released (its verification passed)
RELEASABLE_PROPOSAL_STATES = frozenset({"verified", "released"})
# proposal states in which its verification has not finished yet: its candidate's verdict is pending
UNFINISHED_PROPOSAL_STATES = frozenset({"approved", "job_queued", "unlearning", "verifying"})
# proposal states that oblige every version whose lineage still holds the target (approved, not undone)
OBLIGING_PROPOSAL_STATES = UNFINISHED_PROPOSAL_STATES | {
    "verified",
    "verification_failed",
    "job_failed",
    "released",
}


@dataclass(frozen=True)
class ReportFacts:
    candidate_hash: str
    policy_hash: str
    passed: bool
    tests: Sequence[dict[str, Any]]
    regressions: Sequence[dict[str, Any]]
    summary: str = ""
    trusted: bool = True  # signed by the service's verifier key and unaltered (re-checked at verdict time)
    trust_problem: str = ""
    # the community evaluation's probe outcomes ({"id", "title", "status", "reason"}): fail / error block
    probes: Sequence[dict[str, Any]] = ()


@dataclass(frozen=True)
class Override:
    """A council override granted for this exact model (content hash)."""

    id: int
    reason: str
    approvals: int
    council_size: int


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
    # None when the bytes are in the store and match their hashes; otherwise what is wrong
    store_problem: str | None = None
    # approved proposals whose target the lineage still holds (no verified unlearning it descends from)
    unforgotten: Sequence[Obligation] = field(default_factory=tuple)
    override: Override | None = None


def _failing(tests: Sequence[dict[str, Any]]) -> list[str]:
    return [
        f"{t.get('metric')}: {t.get('status')} ({t.get('reason', '')})"
        for t in tests
        if t.get("status") in BLOCKING_TEST_STATUSES  # a voted test nobody could measure never passes
    ]


def decide_verdict(v: VersionFacts, report: ReportFacts | None) -> tuple[Verdict, list[str]]:
    """allow / deny / pending for releasing ``v``, with the reasons (see the module docstring)."""
    if v.state is ModelState.REJECTED:
        return Verdict.DENY, [f"model version {v.version} was rejected"]
    if v.store_problem is not None:
        return Verdict.DENY, [v.store_problem]
    verdict, reasons = _decide(v, report)
    if verdict is Verdict.ALLOW or v.override is None:
        return verdict, reasons
    o = v.override
    return Verdict.ALLOW, [
        f"council override {o.id} ({o.approvals} of {o.council_size} council members): {o.reason}",
        *(f"overridden ({verdict.value}): {r}" for r in reasons),
    ]


def _decide(v: VersionFacts, report: ReportFacts | None) -> tuple[Verdict, list[str]]:
    if (
        v.proposal_id is not None
        and v.proposal_state not in RELEASABLE_PROPOSAL_STATES
        and v.proposal_state not in UNFINISHED_PROPOSAL_STATES
    ):
        return Verdict.DENY, [f"proposal {v.proposal_id} is {v.proposal_state}, not approved for release"]
    if v.unforgotten:
        return Verdict.DENY, [
            f"{o.label} was approved and the lineage of {v.version} still holds its target: "
            "no verified unlearning of it is an ancestor of this version"
            for o in v.unforgotten
        ]
    if v.proposal_id is not None and v.proposal_state in UNFINISHED_PROPOSAL_STATES:
        return Verdict.PENDING, [
            f"proposal {v.proposal_id} is {v.proposal_state}: its verification has not finished"
        ]
    if report is None:
        return Verdict.PENDING, [
            f"no verification report for {v.version} (content hash {v.content_hash[:12]}) yet"
        ]
    if not report.trusted:
        return Verdict.DENY, [
            f"the verification report is not trusted: {report.trust_problem or 'bad signature'}"
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
    for p in report.probes:  # members' accepted probes block like a failed regression check
        if p.get("status") in ("fail", "error"):
            deny = True
            reasons.append(
                f"community probe {p.get('id')} ({p.get('title', '')}): {p.get('status')}: {p.get('reason', '')}"
            )
    if v.proposal_id is None and not report.passed:
        deny = True
        reasons.append(f"the verification of {v.version} failed: {report.summary}")
    if deny:
        return Verdict.DENY, reasons
    if missing:
        return Verdict.PENDING, [
            f"regression check of {o.label} missing: re-verification is needed" for o in missing
        ]
    passed = [f"proposal {v.proposal_id}: {report.summary}"] if v.proposal_id is not None else []
    passed += [f"regression: {o.label} still holds" for o in v.obligations]
    if v.proposal_id is None:
        passed.append(f"verified by the service's verifier: {report.summary}")
    return Verdict.ALLOW, passed
