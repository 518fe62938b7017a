"""The model registry's state table and the gate's decision, as pure functions."""

from __future__ import annotations

import pytest

from governance.domain.errors import InvalidTransition
from governance.domain.proposals import TargetKind, default_acceptance_tests
from governance.domain.registry import (
    ModelAction,
    ModelState,
    Obligation,
    ReportFacts,
    Verdict,
    VersionFacts,
    decide_verdict,
    transition,
)

PASS = {"metric": "forget_accuracy_gap", "status": "pass", "reason": "ok"}
FAIL = {"metric": "forget_accuracy_gap", "status": "fail", "reason": "0.3 fails <= 0.05"}


def facts(**kw: object) -> VersionFacts:
    base: dict[str, object] = {
        "version": "mv-1",
        "content_hash": "a" * 64,
        "state": ModelState.VERIFIED,
        "proposal_id": 3,
        "proposal_state": "verified",
        "expected_policy_hash": "p",
    }
    return VersionFacts(**{**base, **kw})  # type: ignore[arg-type]


def report(**kw: object) -> ReportFacts:
    base: dict[str, object] = {
        "candidate_hash": "a" * 64,
        "policy_hash": "p",
        "passed": True,
        "tests": [PASS],
        "regressions": [],
        "summary": "PASS",
    }
    return ReportFacts(**{**base, **kw})  # type: ignore[arg-type]


def test_released_and_rejected_versions_never_change() -> None:
    assert transition(ModelState.CANDIDATE, ModelAction.RECORD_PASS) is ModelState.VERIFIED
    assert transition(ModelState.VERIFIED, ModelAction.RECORD_FAIL) is ModelState.FAILED
    assert transition(ModelState.VERIFIED, ModelAction.RELEASE) is ModelState.RELEASED
    for state in (ModelState.RELEASED, ModelState.REJECTED):
        for action in ModelAction:
            with pytest.raises(InvalidTransition, match="never changes"):
                transition(state, action)
    with pytest.raises(InvalidTransition):
        transition(ModelState.FAILED, ModelAction.RELEASE)


def test_verdicts() -> None:
    assert decide_verdict(facts(), report())[0] is Verdict.ALLOW
    assert decide_verdict(facts(), None)[0] is Verdict.PENDING
    v, reasons = decide_verdict(facts(), report(passed=False, tests=[FAIL]))
    assert v is Verdict.DENY and "forget_accuracy_gap" in reasons[0]
    assert decide_verdict(facts(), report(candidate_hash="b" * 64))[0] is Verdict.PENDING
    assert decide_verdict(facts(), report(policy_hash="other"))[0] is Verdict.PENDING
    assert decide_verdict(facts(state=ModelState.REJECTED), report())[0] is Verdict.DENY
    assert decide_verdict(facts(proposal_state="vetoed"), report())[0] is Verdict.DENY
    unmeasured = {**PASS, "status": "unmeasured"}
    assert decide_verdict(facts(), report(tests=[unmeasured]))[0] is Verdict.DENY
    na = {**PASS, "status": "not_applicable"}
    assert decide_verdict(facts(), report(tests=[na]))[0] is Verdict.DENY  # nothing measured
    plain = facts(proposal_id=None, proposal_state=None, expected_policy_hash=None)
    # serving no proposal is not enough: a version needs a report signed by the service's verifier
    assert decide_verdict(plain, None)[0] is Verdict.PENDING
    assert decide_verdict(plain, report(policy_hash="p" * 64))[0] is Verdict.ALLOW


def test_regressions_name_the_earlier_proposal() -> None:
    owed = facts(obligations=(Obligation(1, "proposal 1"),))
    assert decide_verdict(owed, report())[0] is Verdict.PENDING  # the regression check is missing
    failed = {"proposal_id": 1, "passed": False, "tests": [FAIL]}
    v, reasons = decide_verdict(owed, report(regressions=[failed]))
    assert v is Verdict.DENY and reasons[0].startswith("regression: proposal 1 no longer holds")
    v, reasons = decide_verdict(owed, report(regressions=[{**failed, "passed": True}]))
    assert v is Verdict.ALLOW and "proposal 1 still holds" in reasons[-1]


@pytest.mark.parametrize("kind", list(TargetKind))
def test_command_line_defaults_are_the_governance_defaults(kind: TargetKind) -> None:
    from unlearning.verification.cli import DEFAULT_TESTS

    expected = [
        {"metric": t.metric, "comparator": t.comparator, "threshold": t.threshold}
        for t in default_acceptance_tests(kind)
    ]
    assert DEFAULT_TESTS[kind.value] == expected


def test_metric_names_are_synchronised() -> None:
    from governance.domain.metrics import known_metrics
    from governance.services.gate import sync_metric_names
    from unlearning.verification.catalog import CATALOG

    sync_metric_names()
    known = known_metrics()
    assert set(CATALOG) <= set(known)
    for name, m in CATALOG.items():
        assert known[name].target_kinds == m.target_kinds


def test_allow_needs_stored_bytes_a_trusted_report_and_no_unforgotten_proposal() -> None:
    from governance.domain.registry import Obligation, Override

    missing = facts(store_problem="the bytes of mv-x are not in the artifact store")
    assert decide_verdict(missing, report()) == (Verdict.DENY, [missing.store_problem])
    v, reasons = decide_verdict(facts(), report(trusted=False, trust_problem="not signed"))
    assert v is Verdict.DENY and "not signed" in reasons[0]
    owed = facts(unforgotten=(Obligation(9, "proposal 9"),))
    v, reasons = decide_verdict(owed, report())
    assert v is Verdict.DENY and "proposal 9 was approved" in reasons[0]
    assert decide_verdict(facts(proposal_state="verifying"), report())[0] is Verdict.PENDING
    # an override is an allow that says so, and never covers missing bytes or a rejected version
    over = Override(1, "the community needs this release now", 2, 3)
    v, reasons = decide_verdict(facts(unforgotten=owed.unforgotten, override=over), report())
    assert v is Verdict.ALLOW and reasons[0].startswith("council override 1 (2 of 3")
    assert reasons[1].startswith("overridden (deny): ")
    assert decide_verdict(facts(store_problem="gone", override=over), report())[0] is Verdict.DENY
    assert decide_verdict(facts(state=ModelState.REJECTED, override=over), report())[0] is Verdict.DENY
