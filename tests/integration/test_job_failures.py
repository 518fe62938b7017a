"""A job that ends without a verdict never reads as a failed verification, a configuration error fails once
and can be fixed, and a withdrawal of consent is never lost: a stopped or failed job leaves it pending."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from governance.domain.clock import FixedClock
from governance.domain.errors import PermissionDenied
from governance.jobs.worker import Worker
from governance.schemas import DataSourceCreate, ProposalCreate
from governance.services import data_sources, jobs, proposals
from governance.services.context import Ctx
from tests.conftest import Person
from tests.integration.test_jobs import approved_proposal, fake_result, ok_runner, verifier
from unlearning import JobResult


def test_transient_failures_use_up_the_attempts_then_the_proposal_reads_job_failed(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid = approved_proposal(ctx, clock, community)

    def unreachable(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        raise RuntimeError("node unreachable")

    w = Worker(ctx, "w1", runner=unreachable, verifier=verifier(True))
    for _ in range(3):
        assert w.run_once()
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    assert job["state"] == "failed" and job["attempt"] == 3
    detail = proposals.get_detail(ctx, pid)
    assert detail.state == "job_failed"  # nothing was verified: not "verification_failed"
    assert [e.action for e in detail.history][-1] == "fail_job"


@pytest.mark.parametrize("how", ["raised", "returned"])
def test_a_configuration_error_fails_once_and_a_retry_runs_once_fixed(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person], how: str
) -> None:
    pid = approved_proposal(ctx, clock, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    assert job["spec"]["base_version"] is None  # no version released, none configured

    def misconfigured(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        if how == "raised":
            raise jobs.PermanentJobError("no base model version: release one, then retry the job")
        failed = fake_result(claim, "failed")
        failed.error, failed.retriable = "JobSpecError: no node holds data of the target", False
        return failed

    w = Worker(ctx, "w1", runner=misconfigured, verifier=verifier(True))
    assert w.run_once()
    failed = jobs.get(ctx, job["id"])
    assert failed["state"] == "failed" and failed["attempt"] == 1  # not three attempts in a row
    assert ("no base model" if how == "raised" else "no node holds") in failed["error"]
    assert w.run_once() is False
    assert proposals.get_detail(ctx, pid).state == "job_failed"
    # the operator fixes the cause (here: a base version); a reviewer's retry picks it up
    ctx.settings.base_model_version = "mv-" + "c" * 20
    jobs.retry(ctx, job["id"], community["rev1"].actor, None)
    assert jobs.get(ctx, job["id"])["spec"]["base_version"] == "mv-" + "c" * 20
    assert proposals.get_detail(ctx, pid).state == "job_queued"
    assert Worker(ctx, "w2", runner=ok_runner, verifier=verifier(True)).run_once()
    assert proposals.get_detail(ctx, pid).state == "verified"


def _consent_withdrawal(ctx: Ctx, people: dict[str, Person]) -> tuple[int, int]:
    src = data_sources.register(
        ctx, DataSourceCreate(name="diary", node_id="node-1", content_hash="a" * 64), people["cat"].actor
    )
    p = proposals.create(
        ctx,
        ProposalCreate(
            title="Forget my diary",
            target={"kind": "data_source", "data_source_id": src.id},
            consent_withdrawal=True,
            submit=True,
        ),
        people["cat"].actor,
    )
    proposals.triage(ctx, p.id, people["rev1"].actor, "approve", None)
    assert proposals.get_detail(ctx, p.id).state == "job_queued"
    assert data_sources.get(ctx, src.id).consent_state == "withdrawal_pending"
    return p.id, src.id


def test_a_withdrawal_of_consent_is_never_lost(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person]
) -> None:
    pid, src = _consent_withdrawal(ctx, community)
    (job,) = jobs.list_jobs(ctx, proposal_id=pid)
    with pytest.raises(PermissionDenied, match="withdrawal of consent cannot be cancelled"):
        proposals.cancel(ctx, pid, community["coun1"].actor, "we would rather keep the data")
    # the job can be stopped (one council member or admin), but the withdrawal stays pending and retriable
    stopped = jobs.request_cancel(ctx, job["id"], community["admin"].actor, "the federation is down tonight")
    assert stopped["state"] == "cancelled"
    assert proposals.get_detail(ctx, pid).state == "job_failed"
    assert data_sources.get(ctx, src).consent_state == "withdrawal_pending"
    jobs.retry(ctx, job["id"], community["rev1"].actor, None)
    # a failed verification leaves it pending too
    assert Worker(ctx, "w1", runner=ok_runner, verifier=verifier(False)).run_once()
    assert proposals.get_detail(ctx, pid).state == "verification_failed"
    assert data_sources.get(ctx, src).consent_state == "withdrawal_pending"
    jobs.retry(ctx, job["id"], community["rev1"].actor, {"repair_rounds": 5})
    assert Worker(ctx, "w2", runner=ok_runner, verifier=verifier(True)).run_once()
    assert proposals.get_detail(ctx, pid).state == "verified"
    assert data_sources.get(ctx, src).consent_state == "withdrawn"  # forgotten, verified


def test_proposal_show_says_why_the_job_failed(
    ctx: Ctx, clock: FixedClock, community: dict[str, Person], client: Any
) -> None:
    from click.testing import CliRunner

    from governance.cli import main
    from governance.cli.common import ApiContext
    from governance.client import CommonsClient

    pid = approved_proposal(ctx, clock, community)

    def no_base(ctx: Ctx, claim: jobs.Claim, progress: Any, cancel: threading.Event) -> JobResult:
        raise jobs.PermanentJobError("no base model version: release one, then retry the job")

    assert Worker(ctx, "w1", runner=no_base, verifier=verifier(True)).run_once()
    r = CliRunner().invoke(
        main, ["proposal", "show", str(pid)], obj=ApiContext(CommonsClient(client, community["bob"].token))
    )
    assert r.exit_code == 0, r.output
    assert "job_failed" in r.output
    assert "failed (attempt 1 of 3)" in r.output
    assert "PermanentJobError: no base model version: release one" in r.output
