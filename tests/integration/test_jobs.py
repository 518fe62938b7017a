"""Durable jobs: approval enqueues, workers claim with leases, progress, verification hand-off, failure and
retry, cancellation, lease expiry and takeover, and claims racing on both databases."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from governance.domain.clock import FixedClock
from governance.jobs.worker import Worker
from governance.registry_schemas import ModelVersionCreate
from governance.schemas import ProposalCreate
from governance.services import jobs, lifecycle, proposals, registry
from governance.services.context import Ctx
from tests.conftest import Person
from tests.trust import store_version
from unlearning import JobResult


def approved_proposal(
    ctx: Ctx,
    clock: FixedClock,
    people: dict[str, Person],
    title: str = "Forget spam",
    category: str = "spam",
    tests: list[dict[str, Any]] | None = None,
) -> int:
    """A category proposal taken through triage, vote and council to ``job_queued`` (the kind's default tests
    unless ``tests`` are given)."""
    extra: dict[str, Any] = {} if tests is None else {"acceptance_tests": tests}
    p = proposals.create(
        ctx,
        ProposalCreate(title=title, target={"kind": "category", "category": category}, submit=True, **extra),
        people["bob"].actor,
    )
    for r in ("rev1", "rev2"):
        proposals.triage(ctx, p.id, people[r].actor, "approve", None)
    for h in ("ann", "cat", "dan", "bob", "rev3", "admin"):
        proposals.vote(ctx, p.id, people[h].actor, "approve", None)
    clock.advance(days=7, seconds=1)
    lifecycle.sweep(ctx)
    for c in ("coun1", "coun2"):
        proposals.council(ctx, p.id, people[c].actor, "ratify", None)
    clock.advance(days=3, seconds=1)
    lifecycle.sweep(ctx)
    assert proposals.get_detail(ctx, p.id).state == "job_queued"
    return p.id


def fake_result(claim: jobs.Claim, status: str = "succeeded") -> JobResult:
    return JobResult(
        job_id=f"job-{claim.job_id}",
        kind="unlearn",
        status=status,
        model_version=f"mv-{claim.job_id:020x}" if status == "succeeded" else None,
        content_hash="0" * 64,
        parent_version="mv-" + "b" * 20,
        error=None if status == "succeeded" else "boom",
    )


def ok_runner(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
    from unlearning import ProgressEvent

    for r in (1, 2):
        progress(
            ProgressEvent(job_id="x", phase="ascent", round=r, total_rounds=2, metrics={"forget_loss": r})
        )
    return fake_result(claim)


def verifier(passed: bool) -> Any:
    def verify(
        ctx: Ctx, claim: jobs.Claim, result: dict[str, Any], progress: Any
    ) -> tuple[dict[str, Any], bool]:
        return {"candidate": result["model_version"], "verdict": "pass" if passed else "fail"}, passed

    return verify


@pytest.mark.parametrize("passed", [True, False])
def test_job_runs_to_verified_or_failed(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person], passed: bool
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    assert job["state"] == "queued" and job["spec"]["target"] == {"kind": "category", "value": "spam"}
    w = Worker(ctx, "w1", runner=ok_runner, verifier=verifier(passed))
    assert w.run_once() is True
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "succeeded" and done["model_version"] == f"mv-{job['id']:020x}"
    assert done["report"]["verdict"] == ("pass" if passed else "fail")
    assert done["progress"]["phase"] == "ascent" and done["progress"]["round"] == 2
    assert [a["outcome"] for a in done["attempts"]] == ["verified" if passed else "verification_failed"]
    detail = proposals.get_detail(ctx, pid)
    assert detail.state == ("verified" if passed else "verification_failed")
    assert [e.action for e in detail.history][-3:] == [
        "start_job",
        "start_verification",
        "pass_verification" if passed else "fail_verification",
    ]
    assert w.run_once() is False  # nothing left


def test_failures_retry_then_fail_then_a_reviewer_retries(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    calls: list[dict[str, Any]] = []

    def failing(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        calls.append(dict(claim.spec))
        raise RuntimeError("node unreachable")

    w = Worker(ctx, "w1", runner=failing, verifier=verifier(True))
    for _ in range(3):
        assert w.run_once()
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    assert job["state"] == "failed" and "node unreachable" in job["error"] and job["attempt"] == 3
    assert proposals.get_detail(ctx, pid).state == "job_failed"  # no verification ran
    assert w.run_once() is False
    with pytest.raises(Exception, match="reviewers"):
        jobs.retry(ctx, job["id"], community["ann"].actor, {"repair_rounds": 5})
    jobs.retry(ctx, job["id"], community["rev1"].actor, {"repair_rounds": 5})
    assert proposals.get_detail(ctx, pid).state == "job_queued"
    w2 = Worker(ctx, "w2", runner=ok_runner, verifier=verifier(True))
    assert w2.run_once()
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "succeeded" and done["attempts"][-1]["params"]["method_config"] == {
        "repair_rounds": 5
    }
    assert [a["outcome"] for a in done["attempts"]] == ["failed", "failed", "failed", "verified"]
    assert proposals.get_detail(ctx, pid).state == "verified"


def test_cancel_stops_at_a_round_boundary(ctx: Ctx, clock: FixedClock, community: dict[str, Person]) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    ctx.settings.job_lease_seconds = 2.0  # heartbeat every 0.5 s
    started = threading.Event()

    def slow(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        started.set()
        for _ in range(200):  # rounds; cancellation is checked at each boundary
            if cancel.wait(0.05):
                return fake_result(claim, "cancelled")
        return fake_result(claim)

    w = Worker(ctx, "w1", runner=slow, verifier=verifier(True))
    t = threading.Thread(target=w.run_once)
    t.start()
    assert started.wait(10)
    with pytest.raises(Exception, match="council or an admin"):
        jobs.request_cancel(ctx, job["id"], community["ann"].actor, "no")
    with pytest.raises(Exception, match="council"):  # an admin alone cannot undo an approval
        jobs.request_cancel(ctx, job["id"], community["admin"].actor, "no")
    # cancelling an approved proposal's job needs a council majority (2 of 3): the first only supports it
    first = jobs.request_cancel(ctx, job["id"], community["coun1"].actor, "the member withdrew the request")
    assert first["cancellation"] == "supported" and not first["cancel_requested"]
    assert proposals.get_detail(ctx, pid).state != "cancelled"
    with pytest.raises(Exception, match="already support"):
        jobs.request_cancel(ctx, job["id"], community["coun1"].actor, "again")
    jobs.request_cancel(ctx, job["id"], community["coun2"].actor, "the member withdrew the request")
    t.join(timeout=20)
    done = jobs.get(ctx, job["id"])
    assert done["state"] == "cancelled" and done["cancel_reason"] == "the member withdrew the request"
    assert done["model_version"] is None
    assert proposals.get_detail(ctx, pid).state == "cancelled"


def test_expired_lease_is_taken_over_and_the_old_worker_cannot_finish(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)
    a = jobs.claim(ctx, "worker-a")
    assert a is not None and jobs.claim(ctx, "worker-b") is None  # held
    clock.advance(seconds=ctx.settings.job_lease_seconds + 1)  # worker-a died: no heartbeat
    b = jobs.claim(ctx, "worker-b")
    assert b is not None and b.job_id == a.job_id and b.attempt == 2
    with pytest.raises(jobs.LeaseLost):
        jobs.start_verification(ctx, a.job_id, "worker-a", fake_result(a).to_dict())
    with pytest.raises(jobs.LeaseLost):
        jobs.heartbeat(ctx, a.job_id, "worker-a")
    jobs.start_verification(ctx, b.job_id, "worker-b", fake_result(b).to_dict())
    # worker-b dies during verification: the next worker resumes at verification, with the same model
    clock.advance(seconds=ctx.settings.job_lease_seconds + 1)
    c = jobs.claim(ctx, "worker-c")
    assert c is not None and c.state == "verifying" and c.result is not None
    jobs.complete(ctx, c.job_id, "worker-c", {"verdict": "pass"}, True)
    done = jobs.get(ctx, c.job_id)
    assert done["model_version"] == f"mv-{c.job_id:020x}" and done["state"] == "succeeded"
    assert proposals.get_detail(ctx, pid).state == "verified"


def test_graceful_release_requeues(ctx: Ctx, clock: FixedClock, community: dict[str, Person]) -> None:
    approved_proposal(ctx, clock, community)
    a = jobs.claim(ctx, "worker-a")
    assert a is not None
    jobs.release(ctx, a.job_id, "worker-a")
    b = jobs.claim(ctx, "worker-b")
    assert b is not None and b.job_id == a.job_id and b.state == "running"


def test_concurrent_claims_never_share_a_job(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    ids = [approved_proposal(ctx, clock, community, f"Forget topic {i}") for i in range(6)]
    claimed: list[int] = []
    lock = threading.Lock()

    def grab(name: str) -> None:
        while True:
            c = jobs.claim(ctx, name)
            if c is None:
                return
            with lock:
                claimed.append(c.job_id)

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(grab, [f"w{i}" for i in range(4)]))
    assert len(ids) == 6
    assert sorted(Counter(claimed).values()) == [1] * 6


def test_only_the_lifecycle_writes_a_proposals_state(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    """Every write of Proposal.state on the way from filing to release comes from services/lifecycle.py."""
    import inspect

    from sqlalchemy import event

    from governance.db.models import Proposal

    writers: list[str] = []

    def on_set(target: Any, value: Any, old: Any, initiator: Any) -> None:
        for frame in inspect.stack()[1:]:
            path = frame.filename.replace("\\", "/")
            if "/governance/" in path and "/governance/db/" not in path:
                writers.append(path.rsplit("/governance/", 1)[1])
                return

    event.listen(Proposal.state, "set", on_set)
    try:
        pid = approved_proposal(ctx, clock, community)
        w = Worker(ctx, "w1", runner=ok_runner, verifier=verifier(True))
        assert w.run_once() is True
        assert proposals.get_detail(ctx, pid).state == "verified"
        other = approved_proposal(ctx, clock, community, title="Forget ham")
        (job,) = jobs.list_jobs(ctx, proposal_id=other)
        jobs.request_cancel(ctx, job["id"], community["coun1"].actor, "changed our minds")
        jobs.request_cancel(ctx, job["id"], community["coun2"].actor, "changed our minds")
        assert proposals.get_detail(ctx, other).state == "cancelled"
    finally:
        event.remove(Proposal.state, "set", on_set)
    assert writers and set(writers) == {"services/lifecycle.py"}, Counter(writers)


def test_a_later_attempt_collects_what_dead_attempts_left_and_keeps_what_the_registry_knows(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    """Attempt 1 dies while running (its half-written version is no one's); attempt 2 dies while verifying (its
    candidate is registered, its retrained reference is no one's). Attempt 3 resumes the verification: it
    removes the orphans, references included, and keeps every version the registry has a row for."""
    from unlearning.api import stored_version

    store = ctx.settings.artifact_dir

    def stored() -> set[str]:
        versions = store / "versions"
        return {p.name for p in versions.iterdir()} if versions.is_dir() else set()

    approved_proposal(ctx, clock, community)
    a = jobs.claim(ctx, "worker-a")
    assert a is not None
    half, _ = store_version(ctx, "half-written", job_id=f"job-{a.job_id}-a1")
    clock.advance(seconds=ctx.settings.job_lease_seconds + 1)  # worker-a is killed while running
    b = jobs.claim(ctx, "worker-b")
    assert b is not None and b.attempt == 2
    candidate, content_hash = store_version(ctx, "candidate", job_id=f"job-{a.job_id}-a2")
    result = {**fake_result(b).to_dict(), "model_version": candidate, "content_hash": content_hash}
    jobs.start_verification(ctx, b.job_id, "worker-b", {**result, "task": "digits"})
    reference, _ = store_version(ctx, "reference", job_id=f"job-{a.job_id}-a2-reference")
    # a version the registry knows, written under a dead attempt's name, stays whatever became of its attempt
    known, known_hash = store_version(ctx, "registered", job_id=f"job-{a.job_id}-a1")
    registry.register_version(
        ctx,
        community["admin"].actor,
        ModelVersionCreate(version=known, content_hash=known_hash, task="digits"),
    )
    clock.advance(seconds=ctx.settings.job_lease_seconds + 1)  # worker-b is killed while verifying
    assert {half, candidate, reference, known} <= stored()

    seen: list[set[str]] = []

    def verify(
        ctx: Ctx, claim: jobs.Claim, result: dict[str, Any], progress: Any
    ) -> tuple[dict[str, Any], bool]:
        assert claim.state == "verifying" and claim.attempt == 3
        seen.append(stored())
        return {"candidate": result["model_version"], "verdict": "pass"}, True

    assert Worker(ctx, "worker-c", runner=ok_runner, verifier=verify).run_once() is True
    assert seen and half not in seen[0] and reference not in seen[0]
    assert {candidate, known} <= stored() and not {half, reference} & stored()
    assert stored_version(store, candidate).version == candidate  # intact: its bytes still hash right
    done = jobs.get(ctx, b.job_id)
    assert done["state"] == "succeeded" and done["model_version"] == candidate
